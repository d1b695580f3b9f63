"""Tests of the command line (vaeas.cli): error paths and a tiny end-to-end run.

Every user mistake must exit with status 2 and print exactly one line on stderr, never a
traceback. The end-to-end tests need the real MNIST files (``$VAEAS_DATA`` or ``./data``) and are
skipped without them.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from vaeas import cli
from vaeas import data as data_mod
from vaeas.data import DataError


def run(argv, capsys):
    """Run ``vaeas.cli.main(argv)`` in-process: ``(exit status, stdout, stderr)``."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert "error" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _subprocess_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    return env


# --------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize("args,fragment", [
    (["--lam", "-1"], "--lam"),
    (["--lam", "nan"], "--lam"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--lr", "0"], "--lr"),
    (["--hidden", "1,x"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--ratio", "2"], "--ratio"),
    (["--arch", "foo"], "--arch"),
    (["--model", "ae"], "--model"),
    (["--limit", "0"], "--limit"),
    (["--delta", "0"], "--delta"),
    (["--k", "-1"], "--k"),
    (["--seed", "-3"], "--seed"),
    (["--mi-batch", "0"], "--mi-batch"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_train_arguments(args, fragment, capsys, tmp_path):
    code, out, err = run(["train", "--out", tmp_path / "run", *args], capsys)
    assert_usage_error(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_missing_out(capsys):
    code, _, err = run(["train", "--epochs", "1"], capsys)
    assert_usage_error(code, err, "--out")


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["sweep", "cfg.json", "--shard", "3/2"],
                                  ["sweep", "cfg.json", "--shard", "a/b"],
                                  ["sweep", "cfg.json", "--shard", "0/0"]])
def test_bad_commands(argv, capsys):
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err)


@pytest.mark.skipif(importlib.util.find_spec("vaeas.sweep") is None, reason="no vaeas.sweep yet")
def test_sweep_with_a_missing_config(capsys, tmp_path):
    code, _, err = run(["sweep", tmp_path / "missing.json", "--dry-run"], capsys)
    assert_usage_error(code, err)


# --------------------------------------------------------------------------- checks before data
def test_out_already_holds_a_run(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"x")
    code, _, err = run(["train", "--out", run_dir, "--device", "cpu"], capsys)
    assert_usage_error(code, err, "--resume")
    assert (run_dir / "checkpoint.pt").read_bytes() == b"x"


def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    code, _, err = run(["train", "--out", f, "--device", "cpu"], capsys)
    assert_usage_error(code, err, "not a folder")
    assert f.read_text() == "keep"


@pytest.mark.parametrize("args", [["--lam", "0.5"], ["--head-hidden", "8"]])
def test_vaeas_options_with_model_vae(args, capsys, tmp_path):
    code, _, err = run(["train", "--out", tmp_path / "r", "--device", "cpu", *args], capsys)
    assert_usage_error(code, err, "vaeas")


def test_hidden_with_conv(capsys, tmp_path):
    code, _, err = run(["train", "--out", tmp_path / "r", "--device", "cpu", "--arch", "conv",
                        "--hidden", "32"], capsys)
    assert_usage_error(code, err, "conv")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda(capsys, tmp_path):
    code, _, err = run(["train", "--out", tmp_path / "r", "--device", "cuda"], capsys)
    assert_usage_error(code, err, "CUDA")


def test_unknown_device(capsys, tmp_path):
    code, _, err = run(["train", "--out", tmp_path / "r", "--device", "tpu"], capsys)
    assert_usage_error(code, err, "tpu")


def test_data_root_without_data(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    code, _, err = run(["train", "--out", out, "--device", "cpu", "--data-root", empty], capsys)
    assert_usage_error(code, err, "MNIST", str(empty))
    assert not out.exists()  # nothing is written before the data is there


def test_no_data_anywhere_and_download_fails(capsys, tmp_path, monkeypatch):
    def offline(name, dest):
        raise OSError("network is unreachable")

    monkeypatch.delenv("VAEAS_DATA", raising=False)
    monkeypatch.setattr(data_mod, "_download", offline)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["train", "--out", "run", "--device", "cpu"], capsys)
    assert_usage_error(code, err, "unreachable", "VAEAS_DATA")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- evaluate errors
def test_evaluate_missing_folder(capsys, tmp_path):
    code, _, err = run(["evaluate", tmp_path / "nope"], capsys)
    assert_usage_error(code, err, "not a run folder")


def _fake_run(path, checkpoint: bytes, config='{"dataset": "mnist"}'):
    path.mkdir()
    (path / "config.json").write_text(config)
    (path / "checkpoint.pt").write_bytes(checkpoint)
    return path


def _checkpoint_bytes(tmp_path) -> bytes:
    from vaeas.models import build_model

    model = build_model(latent_dim=2, hidden=(8,))
    f = tmp_path / "good.pt"
    torch.save({"epoch": 1, "model": model.state_dict(), "model_config": model.config}, f)
    return f.read_bytes()


@pytest.mark.parametrize("case, expected", [
    ("truncated", "cannot load"),      # half of a real checkpoint
    ("foreign", "cannot load"),        # not a checkpoint at all
    ("empty", "cannot load"),          # a 0-byte file (empty exception message)
    ("bad_json", "config.json"),       # config.json is not JSON
    ("not_object", "config.json"),     # config.json is JSON but not an object
])
def test_evaluate_broken_run_folder(capsys, tmp_path, case, expected):
    good = _checkpoint_bytes(tmp_path)
    ckpt, config = {
        "truncated": (good[: len(good) // 2], None),
        "foreign": (b"this is not a checkpoint", None),
        "empty": (b"", None),
        "bad_json": (good, "{"),
        "not_object": (good, "[1]"),
    }[case]
    kwargs = {} if config is None else {"config": config}
    run_dir = _fake_run(tmp_path / "run", ckpt, **kwargs)
    code, _, err = run(["evaluate", run_dir, "--device", "cpu"], capsys)
    assert_usage_error(code, err, expected)


# --------------------------------------------------------------------------- real subprocesses
def test_subprocess_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vaeas", "train", "--lam", "-1", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True,
                          env=_subprocess_env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "--lam" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_help(capsys):
    code, out, err = run(["train", "--help"], capsys)
    assert code == 0 and err == ""
    assert "--out" in out and "--lam" in out and "--resume" in out


# --------------------------------------------------------------------------- end to end (MNIST)
def _mnist_root():
    try:
        return data_mod.find_root("mnist", download=False).resolve()
    except DataError as exc:
        pytest.skip(f"MNIST is not available: {exc}")


TINY = ["--limit", "600", "--epochs", "1", "--k", "10", "--iw-size", "20", "--latent", "4",
        "--hidden", "32", "--quiet", "--device", "cpu", "--val-size", "200"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory shared by the end-to-end tests (the processed cache lives in it)."""
    return tmp_path_factory.mktemp("cli_work")


@pytest.fixture(scope="module")
def mnist_root():
    return _mnist_root()


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    return workdir


def _read_history(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_evaluate_resume_end_to_end(mnist_root, in_workdir, capsys):
    out = in_workdir / "run"
    code, stdout, err = run(["train", "--data-root", mnist_root, "--out", out, *TINY], capsys)
    assert code == 0, err
    assert stdout == ""  # --quiet
    for name in ("config.json", "history.csv", "metrics.json", "checkpoint.pt", "samples.png",
                 "reconstructions.png"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "mnist" and config["limit"] == 600
    assert config["model"]["latent_dim"] == 4 and config["model"]["hidden"] == [32]
    assert config["trainer"]["epochs"] == 1 and config["eval"]["k"] == 10
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iw_k"] == 10 and metrics["iw_n"] == 20 and metrics["n"] == 600
    assert metrics["mi_batch_size"] == 128 and metrics["au_delta"] == 0.01
    assert metrics["epochs"] == 1 and metrics["train_seconds"] > 0
    assert metrics["iw_nll"] < metrics["neg_elbo"] + 5.0
    assert 0 <= metrics["au"] <= 4 and 0 <= metrics["probe_acc"] <= 1
    assert len(_read_history(out / "history.csv")) == 1
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # evaluate rewrites metrics.json with the new settings and keeps the training facts
    code, stdout, err = run(["evaluate", out, "--data-root", mnist_root, "--device", "cpu",
                             "--k", "5", "--iw-size", "10"], capsys)
    assert code == 0, err
    assert "IW-NLL" in stdout and "(k=5)" in stdout
    again = json.loads((out / "metrics.json").read_text())
    assert again["iw_k"] == 5 and again["iw_n"] == 10
    assert again["epochs"] == 1 and again["train_seconds"] == metrics["train_seconds"]
    assert again["neg_elbo"] == pytest.approx(metrics["neg_elbo"], rel=1e-6)  # same model, seed

    # --resume of a finished run is accepted and trains no further epoch
    ckpt_before = torch.load(out / "checkpoint.pt", weights_only=True)
    code, _, err = run(["train", "--data-root", mnist_root, "--out", out, "--resume", *TINY],
                       capsys)
    assert code == 0, err
    assert len(_read_history(out / "history.csv")) == 1
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    ckpt_after = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt_after["epoch"] == 1
    for key, value in ckpt_before["model"].items():
        assert torch.equal(value, ckpt_after["model"][key]), key

    # resuming with another model is refused with one line and status 1; the run is untouched
    code, _, err = run(["train", "--data-root", mnist_root, "--out", out, "--resume", *TINY,
                        "--latent", "3"], capsys)
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_train_vaeas_in_a_subprocess(mnist_root, in_workdir):
    out = in_workdir / "vaeas_run"
    argv = [sys.executable, "-m", "vaeas", "train", "--data-root", str(mnist_root), "--out",
            str(out), "--model", "vaeas", "--lam", "2", "--target", "instance", *TINY,
            "--no-probe", "--epochs", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_subprocess_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"ce", "mi_bound", "target_entropy"} <= set(metrics)
    assert metrics["bound_split"] == "train[:600]" and "probe_acc" not in metrics
    assert metrics["target_entropy"] == pytest.approx(float(torch.log(torch.tensor(600.0))))
    assert metrics["epochs"] == 2
    assert [int(r["epoch"]) for r in _read_history(out / "history.csv")] == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["num_classes"] == 600 and config["model"]["lam"] == 2.0
