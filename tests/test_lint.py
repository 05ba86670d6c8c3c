import shutil
import subprocess
import sys

import pytest

from tests.harness import ROOT


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```")[0].strip() for b in text.split("```bash\n")[1:3]]
    assert blocks[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/hnas")
    assert blocks[1] == ".venv/bin/python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1] in ci and ".venv/bin/pip install -e '.[dev]'" in ci
    assert sys.version_info[:2] == (3, 11)
