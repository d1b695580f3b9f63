"""benchmarks/gpu_check.py: skips cleanly without CUDA; its CPU smoke mode runs every check to PASS."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaeas.data import DataError, find_root

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
# A tiny model on 1,000 images of each split: the whole check in a few seconds on one thread.
SMOKE = ["--device", "cpu", "--limit", "1000", "--epochs", "1", "--hidden", "64", "--decoder-hidden", "64",
         "--k", "20", "--iw-size", "100", "--fixed-n", "100", "--fixed-k", "8", "--threads", "1"]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_skips_without_cuda():
    proc = _run(CUDA_VISIBLE_DEVICES="")  # hides any GPU, so this holds on a CUDA machine too
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "no CUDA device: skipped\n"


def test_cpu_smoke_mode_passes():
    try:
        find_root("mnist", download=False)
    except DataError as err:
        pytest.skip(f"MNIST not available: {err}")
    proc = _run(*SMOKE, CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "PASS: 9 of 9 checks passed" in out, out
    assert "FAIL" not in out
    for check in ("bf16 training", "resume == uninterrupted", "same noise: neg_elbo", "same noise: iw_nll",
                  "evaluate: neg_elbo", "evaluate: kl", "evaluate: iw_nll", "evaluate: au"):
        assert check in out, check
    assert "train s" in out and "evaluate, cpu" in out  # the timing table


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_failed_check_fails_the_run(capsys):
    mod = _module()
    assert mod.print_checks([("a", True, ""), ("info", None, "")]) is True
    assert mod.print_checks([("a", True, ""), ("b", False, "too far")]) is False
    out = capsys.readouterr().out
    assert "b  FAIL" in out and out.rstrip().endswith("FAIL: 1 of 2 checks passed")
    fp32 = [{"val_neg_elbo": 100.0}]
    assert mod.check_bf16({"fp32": fp32, "bf16": [{"val_neg_elbo": 101.5}]}, 1)[0]
    assert not mod.check_bf16({"fp32": fp32, "bf16": [{"val_neg_elbo": 103.0}]}, 1)[0]
    assert not mod.check_bf16({"fp32": fp32, "bf16": [{"val_neg_elbo": float("nan")}]}, 1)[0]
