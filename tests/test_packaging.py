"""A wheel, not only a checkout: built offline, installed non-editable into a fresh venv, it runs from another
directory (every subpackage, the phone's scripts as package data, a host runner that needs no PYTHONPATH)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from tests.harness import ROOT

SOURCES = ("hnas", "latency", "device_scripts", "pyproject.toml", "README.md")


def _run(argv, cwd, timeout=120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_a_wheel_installs_into_a_fresh_venv_and_runs_from_another_directory(tmp_path):
    src = tmp_path / "src"  # built from a copy: the build leaves build/ and *.egg-info behind, not in the checkout
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(
            ROOT / name,
            src / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("hnas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "hnas/spec/space.py",
        "hnas/cli/__main__.py",
        "hnas/workflows/demo.py",
        "latency/runner.py",
        "device_scripts/probe.sh",
        "device_scripts/batch.sh",
        "device_scripts/governor.sh",
    ):
        assert needed in names, needed

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path).returncode == 0
    py = venv / "bin" / "python"
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    # the dependencies (torch, tensorflow, ...) come from this venv's site-packages, appended by a .pth file; .pth
    # files in an appended folder are not processed, so this venv's editable hnas stays out
    (tmp_path / "venv-site").write_text(site.stdout.strip())
    with open(os.path.join(site.stdout.strip(), "deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], tmp_path
    )
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        [str(py), "-c", "import hnas, latency, device_scripts; print(hnas.__file__, latency.__file__)"], elsewhere
    )
    assert where.returncode == 0 and all(p.startswith(site.stdout.strip()) for p in where.stdout.split()), where
    hnas = str(venv / "bin" / "hnas")
    help_ = _run([hnas, "--help"], elsewhere)
    assert help_.returncode == 0 and "search" in help_.stdout and "lut" in help_.stdout, help_.stderr
    show = _run([hnas, "space", "show", "basic"], elsewhere)
    assert show.returncode == 0 and "664506689423701824" in show.stdout.replace(",", ""), show.stderr
    from latency.adb import device_scripts  # the installed package finds its scripts as package data

    scripts = _run([str(py), "-c", "from latency.adb import device_scripts; print(*device_scripts())"], elsewhere)
    assert scripts.stdout.split() == [str(venv_file) for venv_file in _installed(site.stdout.strip(), device_scripts())]
    profile = _run(
        [
            hnas,
            "profile",
            "--device",
            "local",
            "--op",
            "IBConv_K3_E3",
            "--in",
            "8x8x8",
            "--out-ch",
            "8",
            "--stride",
            "1",
            "--repeats",
            "2",
            "--runs",
            "5",
            "--warmup",
            "1",
            "--json",
        ],
        elsewhere,
        300,
    )
    assert profile.returncode == 0, profile.stderr
    assert '"median_ms"' in profile.stdout and "IBConv_K3_E3" in profile.stdout


def _installed(site: str, checkout_scripts) -> list[str]:
    """Where the checkout's scripts are in the installed package."""
    return [os.path.join(site, "device_scripts", p.name) for p in checkout_scripts]
