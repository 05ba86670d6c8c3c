"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "reference"
# converted models are cached across test runs (content-addressed, so never stale)
TEST_CACHE = ROOT / ".cache" / "tflite-tests"
os.environ.setdefault("HNAS_CACHE", str(TEST_CACHE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run `hnas ARGS...` in a fresh interpreter, as a user would (`env` adds variables)."""
    return subprocess.run(
        [sys.executable, "-m", "hnas.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def kill_cli_when(args: list[str], ready, timeout: float = 300, poll: float = 0.02, env: dict | None = None) -> None:
    """Start `hnas ARGS`, and SIGKILL it the moment `ready()` is true (as a crash or a pulled plug would); `env` adds
    variables."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "hnas.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def shared_reference() -> Path:
    """../shared/reference, or skip when this checkout has no shared folder beside it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/reference is absent beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def exporter():
    """One exporter (so TensorFlow is imported once) over the shared test cache."""
    from latency.export import Exporter

    return Exporter(TEST_CACHE)
