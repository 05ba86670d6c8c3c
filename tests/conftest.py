"""Fixtures the test modules share (helpers that are not fixtures live in tests/harness.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.harness import FAST, SHARED, TEST_CACHE, CountingDevice
from tests.tiny import tiny_space

os.environ.setdefault("HNAS_CACHE", str(TEST_CACHE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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


@pytest.fixture(scope="session")
def _tiny_lut_built(tmp_path_factory, exporter) -> Path:
    """The tiny space's table, measured on this host once per session."""
    from latency.build import build
    from latency.items import items_for_space

    path = tmp_path_factory.mktemp("lut-built") / "tiny.json"
    build(CountingDevice(), items_for_space(tiny_space()), path, FAST, exporter)
    return path


@pytest.fixture(scope="module")
def tiny_lut(tmp_path_factory, _tiny_lut_built) -> Path:
    """A copy of the tiny space's measured table for each test module (a module may change its copy)."""
    path = tmp_path_factory.mktemp("lut") / "tiny.json"
    shutil.copyfile(_tiny_lut_built, path)
    return path


@pytest.fixture
def space_file(tmp_path) -> Path:
    """The tiny space saved as a space file."""
    path = tmp_path / "tiny.json"
    tiny_space().save(path)
    return path


@pytest.fixture
def loopback_phone(tmp_path):
    """A started LoopbackPhone whose `adbkey` (a fresh key pair made by adb-shell's keygen) is authorized."""
    from adb_shell.auth.keygen import keygen

    from tests.adb_loopback import LoopbackPhone

    keys = tmp_path / "host-keys"
    keys.mkdir()
    key = keys / "adbkey"
    keygen(str(key))
    phone = LoopbackPhone(tmp_path / "phone", authorized_keys=[Path(f"{key}.pub").read_text()])
    phone.adbkey = key
    phone.start()
    try:
        yield phone
    finally:
        phone.stop()


@pytest.fixture
def phone_env(loopback_phone, tmp_path):
    """(phone, env for the CLI so it uses the phone's authorized key, fake arm64 benchmark binary)."""
    from tests.adb_loopback import make_elf_aarch64

    home = tmp_path / "android-home"
    home.mkdir()
    shutil.copy(loopback_phone.adbkey, home / "adbkey")
    shutil.copy(f"{loopback_phone.adbkey}.pub", home / "adbkey.pub")
    binary = make_elf_aarch64(tmp_path / "benchmark_model")
    return loopback_phone, {"ANDROID_USER_HOME": str(home)}, binary
