"""The benchmark scripts the GPU check runs, checked on the CPU at tiny settings, and the check's refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.harness import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_eval  # noqa: E402
import bench_gpu  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _bin(tmp_path: Path, fake_nvidia_smi: bool) -> dict:
    """An environment whose PATH holds only what the check needs before it refuses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "sed", "timeout", "nproc", "uptime", "date", "sort", "grep", "tail", "awk", "printf"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found.startswith("/"):
            (bin_dir / tool).symlink_to(found)
    if fake_nvidia_smi:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho fake\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def test_gpu_check_refuses_in_one_line_without_nvidia_smi(tmp_path):
    r = subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, env=_bin(tmp_path, False))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "no NVIDIA GPU here (nvidia-smi not found)" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the check would run")
def test_gpu_check_refuses_when_torch_sees_no_cuda(tmp_path):
    args = ["/bin/bash", str(SCRIPT), "--python", sys.executable]
    r = subprocess.run(args, capture_output=True, text=True, env=_bin(tmp_path, True))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "sees no CUDA GPU" in r.stderr


def test_gpu_check_refuses_unknown_arguments():
    r = subprocess.run(["/bin/bash", str(SCRIPT), "--gpus", "3"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "gpu_check: unknown argument '--gpus' (see --help)\n"
    r = subprocess.run(["/bin/bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--cpu-dry-run" in r.stdout and "--python PY" in r.stdout


def test_bench_gpu_step_on_the_cpu(capsys):
    bench_gpu.main(
        ["step", "--device", "cpu", "--resolution", "16", "--width", "0.25", "--batch", "4"]
        + ["--steps", "2", "--epochs", "1", "--workers", "0"]
    )
    line = capsys.readouterr().out.strip()
    assert line.startswith("step: one device, basic at 16 px") and "fp32, channels_last" in line
    assert float(line.rsplit("images/s ", 1)[1]) > 0


def test_bench_eval_both_parts_at_tiny_settings(tmp_path, capsys):
    bench_eval.main(
        ["--data", "digits", "--archs", "1", "--repeats", "1", "--folder", str(tmp_path), "--classes", "2"]
        + ["--train-per-class", "5", "--val-per-class", "1", "--jpeg-px", "32", "--resolution", "16", "--batch", "4"]
        + ["--bn-images", "4", "--workers", "0", "--imagenet-archs", "1"]
    )
    out = capsys.readouterr().out
    assert "accuracies identical on all paths: True" in out and "ratio after / before" in out
    assert "training loader, 0 workers" in out and "per-architecture time after / before" in out
    folder = tmp_path / "imagenet-mnist5k-2c-5t-1v-32px"
    assert sorted(p.name for p in folder.iterdir()) == ["train", "val"]
    assert len(list((folder / "train" / "c001").iterdir())) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary build folder is gone
