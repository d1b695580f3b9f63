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
from pathlib import Path

import pytest
import torch

from vaeas import cli
from vaeas import data as data_mod
from vaeas import datasets as datasets_mod
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
    """The environment of a ``python -m vaeas`` child: this checkout's package, one thread."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **extra)


# --------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize("args,fragment", [
    (["--lam", "-1"], "--lam"),
    (["--lam", "nan"], "--lam"),
    (["--epochs", "0"], "--epochs"),
    (["--patience", "-1"], "--patience"),
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
    (["--snapshots", "0,x"], "--snapshots"),
    (["--snapshots", "-1"], "--snapshots"),
    (["--aggressive-check-every", "0"], "--aggressive-check-every"),
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
    monkeypatch.setattr(datasets_mod, "_download", offline)
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
    assert "IW-NLL" in stdout and "(k=5, n=10)" in stdout and "10 random test points of 600" in stdout
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

    # resuming with another model is refused with one line and status 2; the run is untouched
    config_before = (out / "config.json").read_text()
    code, _, err = run(["train", "--data-root", mnist_root, "--out", out, "--resume", *TINY,
                        "--latent", "3"], capsys)
    assert_usage_error(code, err, "latent_dim=4 there, 3 now")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert (out / "config.json").read_text() == config_before


def test_train_vaeas_in_a_subprocess(mnist_root, in_workdir):
    out = in_workdir / "vaeas_run"
    argv = [sys.executable, "-m", "vaeas", "train", "--data-root", str(mnist_root), "--out",
            str(out), "--model", "vaeas", "--lam", "2", "--target", "instance", *TINY,
            "--no-probe", "--epochs", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_subprocess_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"ce", "mi_bound", "target_entropy"} <= set(metrics)
    assert metrics["bound_split"] == "train" and metrics["bound_n"] == 600 and "probe_acc" not in metrics
    assert metrics["target_entropy"] == pytest.approx(float(torch.log(torch.tensor(600.0))))
    assert metrics["epochs"] == 2
    assert [int(r["epoch"]) for r in _read_history(out / "history.csv")] == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["num_classes"] == 600 and config["model"]["lam"] == 2.0


# --------------------------------------------------------------------------- tiny runs without files
@pytest.fixture
def tiny_cli(monkeypatch, tiny_dataset):
    """``vaeas train`` on the tiny in-memory dataset, with a stub evaluation (fast, no files)."""
    seen = {}

    def load(dataset, root, device, limit, text_file=None, max_len=None):
        return tiny_dataset(n_train=128, n_val=32, n_test=32, num_classes=3).to(device)

    def fake_evaluate(model, data, seed, settings, quiet):
        seen.update(settings)
        return {"neg_elbo": 1.0, "kl": 0.5, "mi_dataset": 0.1, "mi_minibatch": 0.1, "mi_batch_size": 128,
                "au": 1}

    monkeypatch.setattr(cli, "_load_data", load)
    monkeypatch.setattr(cli, "_evaluate", fake_evaluate)
    return seen


SMALL = ["--epochs", "1", "--latent", "2", "--hidden", "16", "--device", "cpu", "--val-size", "32",
         "--no-pictures", "--quiet"]


def test_out_under_a_regular_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    code, _, err = run(["train", "--out", f / "sub" / "run", "--device", "cpu"], capsys)
    assert_usage_error(code, err, "cannot create --out", "is a file")
    assert f.read_text() == "keep"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_out_where_no_folder_can_be_made(capsys):
    code, _, err = run(["train", "--out", "/proc/vaeas-no-such/run", "--device", "cpu"], capsys)
    assert_usage_error(code, err, "cannot create --out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run(["train", "--out", ro / "run", "--device", "cpu"], capsys)
    finally:
        ro.chmod(0o700)
    assert_usage_error(code, err, "cannot create --out", "not writable")
    assert not (ro / "run").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--dataset", "text"], "--text-file"),
    (["--text-file", "corpus.txt"], "--text-file"),
    (["--full-eval", "--iw-size", "10"], "--full-eval"),
    (["--detach-aux"], "vaeas"),
    (["--word-dropout", "1.5"], "--word-dropout"),
    (["--target", "nope"], "--target"),
    (["--epochs", "2", "--snapshots", "0,3"], "--snapshots"),
])
def test_bad_combinations(args, fragment, capsys, tmp_path):
    code, _, err = run(["train", "--out", tmp_path / "r", "--device", "cpu", *args], capsys)
    assert_usage_error(code, err, fragment)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--embed-dim", "8"], "--embed-dim"), (["--lstm-hidden", "8"], "--lstm-hidden"),
    (["--arch", "lstm"], "image"),
])
def test_lstm_flags_with_images(args, fragment, capsys, tmp_path, tiny_cli):
    code, _, err = run(["train", "--out", tmp_path / "r", "--device", "cpu", "--epochs", "1", *args], capsys)
    assert_usage_error(code, err, fragment)


def test_default_evaluation_is_printed_and_full_eval_is_one_flag(capsys, tmp_path, tiny_cli):
    code, out, err = run(["train", "--out", tmp_path / "a", *SMALL[:-1]], capsys)
    assert code == 0, err
    assert tiny_cli["k"] == 5000 and tiny_cli["iw_size"] == cli.DEFAULT_IW_SIZE == 1000
    assert out.splitlines()[0] == "evaluation: IW-NLL with k=5,000 on the whole test split"  # 32 < 1000
    assert json.loads((tmp_path / "a" / "config.json").read_text())["eval"]["iw_size"] == 1000
    code, out, err = run(["train", "--out", tmp_path / "b", *SMALL[:-1], "--full-eval"], capsys)
    assert code == 0, err
    assert tiny_cli["iw_size"] is None
    code, _, err = run(["train", "--out", tmp_path / "c", *SMALL, "--k", "7", "--iw-size", "9"], capsys)
    assert code == 0 and tiny_cli["k"] == 7 and tiny_cli["iw_size"] == 9
    assert cli._describe_eval({"k": 5000, "iw_size": 1000}, 10_000) == (
        "evaluation: IW-NLL with k=5,000 on 1,000 random test points of 10,000; "
        "--full-eval uses all of them (slow on a CPU)")


def test_resume_with_changed_settings_exits_2_naming_them(capsys, tmp_path, tiny_cli):
    out = tmp_path / "run"
    code, _, err = run(["train", "--out", out, *SMALL], capsys)
    assert code == 0, err
    config = (out / "config.json").read_text()
    for args, fragment in ((["--latent", "3"], "latent_dim=2 there, 3 now"),
                           (["--model", "vaeas"], "model='vae' there, 'vaeas' now"),
                           (["--lr", "0.01"], "lr=0.001 there, 0.01 now")):
        code, _, err = run(["train", "--out", out, *SMALL, "--resume", *args], capsys)
        assert_usage_error(code, err, fragment)
        assert (out / "config.json").read_text() == config  # untouched
    code, _, err = run(["train", "--out", out, *SMALL, "--resume", "--epochs", "2"], capsys)
    assert code == 0, err  # more epochs continue the run
    assert len(_read_history(out / "history.csv")) == 2


def test_train_aggressive_records_it(capsys, tmp_path, tiny_cli):
    out = tmp_path / "agg"
    code, _, err = run(["train", "--out", out, *SMALL, "--aggressive", "--aggressive-max-inner", "3",
                        "--aggressive-check-every", "2", "--model", "vaeas", "--target", "batch"], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["trainer"]["aggressive"] is True and config["trainer"]["aggressive_max_inner"] == 3
    assert config["trainer"]["aggressive_check_every"] == 2
    assert config["model"]["target"] == "batch"
    row = _read_history(out / "history.csv")[0]
    assert row["aggressive"] == "1" and 1 <= int(row["inner_steps"]) <= 3 * 2


@pytest.mark.skipif(importlib.util.find_spec("vaeas.diagnose") is None, reason="no vaeas.diagnose yet")
def test_diagnose_a_run(capsys, tmp_path, tiny_cli):
    out = tmp_path / "run"
    code, _, err = run(["train", "--out", out, *SMALL], capsys)
    assert code == 0, err
    code, stdout, err = run(["diagnose", out, "--n", "16", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert "collapse" in stdout
    assert (out / "diagnosis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = tmp_path / "figs" / "d.pdf"
    code, _, err = run(["diagnose", out, "--device", "cpu", "--quiet", "--out", fig], capsys)
    assert code == 0, err
    assert fig.read_bytes()[:4] == b"%PDF"
    code, _, err = run(["diagnose", out, "--out", out / "config.json" / "x.png"], capsys)
    assert_usage_error(code, err, "not a folder")
    code, _, err = run(["diagnose", tmp_path / "nothing"], capsys)
    assert_usage_error(code, err, "not a run folder")


# --------------------------------------------------------------------------- sweep configs
GRID = {"datasets": ["mnist"], "seeds": [0, 1], "common": {"epochs": 1},
        "methods": {"vae": {}, "label": {"model": "vaeas", "lam": 2}}, "fast": {"seeds": [0]}}


@pytest.mark.parametrize("change, fragment", [
    ({"common": {"epochs": 1, "epochz": 3}}, "unknown option 'epochz'"),
    ({"methods": {"vae": {"lamda": 1}}}, "unknown option 'lamda'"),
    ({"fast": {"methods": ["vae", "nope"]}}, "unknown method 'nope'"),
    ({"fast": {"no_such": 1}}, "unknown option 'no_such'"),
    ({"datasets": ["mnist", "cifar"]}, "unknown dataset 'cifar'"),
    ({"seeds": [0, -1]}, "seeds"), ({"seeds": ["0"]}, "seeds"), ({"seeds": [1, 1]}, "repeated"),
    ({"seeds": [True]}, "seeds"), ({"fast": {"seeds": [0.5]}}, "seeds"),
    ({"methods": {}}, "methods"), ({"datasets": None}, "datasets"),
    ({"common": {"lam": -1}}, "--lam"), ({"common": {"out": "x"}}, "set by the sweep"),
    ({"methodz": {}}, "unknown key 'methodz'"),
    ({"per_dataset": {"omniglot": {"epochs": 2}}}, "omniglot"),
    ({"methods": {"a b": {}}}, "method name"),
])
def test_bad_sweep_configs_are_refused_before_anything_runs(change, fragment, capsys, tmp_path):
    cfg = {**GRID, **change}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    for extra in (["--dry-run"], []):
        code, out, err = run(["sweep", path, *extra], capsys)
        assert_usage_error(code, err, fragment)
        assert out == ""  # refused before the first line of the listing
    assert not (tmp_path / "results").exists()


def test_sweep_with_an_unknown_method_exits_2(capsys, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(GRID))
    code, out, err = run(["sweep", path, "--method", "labl", "--dry-run"], capsys)
    assert_usage_error(code, err, "method labl is not in the grid")
    code, out, err = run(["sweep", path, "--method", "label", "--dry-run"], capsys)
    assert code == 0 and "todo  mnist-label-s0" in out and "mnist-vae" not in out


def test_dry_run_into_a_closed_pipe(tmp_path):
    path = tmp_path / "big.json"  # a listing far larger than a pipe's buffer
    path.write_text(json.dumps({**GRID, "seeds": list(range(3000))}))
    env = {k: v for k, v in _subprocess_env().items() if k != "VAEAS_FAST"}  # the full grid, also in CI
    proc = subprocess.Popen([sys.executable, "-m", "vaeas", "sweep", str(path), "--dry-run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"sweep big.json: 6000 runs")
    assert err == "", err
    assert proc.returncode in (0, 141)


def test_train_on_a_text_file_writes_sentences(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    words = "the cat dog sat ran on a mat log and big small red".split()
    corpus.write_text("".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 5)) + "\n"
                              for i in range(300)))
    out = tmp_path / "text_run"
    code, stdout, err = run(["train", "--dataset", "text", "--text-file", corpus, "--out", out, "--epochs", "1",
                             "--latent", "2", "--lstm-hidden", "16", "--embed-dim", "8", "--k", "5",
                             "--device", "cpu", "--no-probe"], capsys)
    assert code == 0, err
    assert "perplexity" in stdout.splitlines()[-1]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "lstm" and config["text_file"] == str(corpus)
    sentences = (out / "samples.txt").read_text().splitlines()
    assert len(sentences) == 10 and all(set(s.split()) <= set(words) | {"<unk>"} for s in sentences)
    assert not (out / "samples.png").exists()
    code, stdout, err = run(["evaluate", out, "--device", "cpu", "--k", "3", "--no-probe", "--quiet"], capsys)
    assert code == 0, err  # the text file is found again from config.json


def test_eval_epochs_gives_the_result_of_the_shorter_run(tmp_path, capsys):
    """A 3-epoch run evaluated also after epoch 2 reports, for epoch 2, exactly what a 2-epoch run
    of the same seed reports; results.load_results(at_epoch=2) reads both alike."""
    from vaeas.results import load_results, make_result

    corpus = tmp_path / "corpus.txt"
    words = "the cat dog sat ran on a mat log and big small red".split()
    corpus.write_text("".join(" ".join(words[(i * 3 + j) % len(words)] for j in range(2 + i % 4)) + "\n"
                              for i in range(300)))
    common = ["train", "--dataset", "text", "--text-file", corpus, "--latent", "2", "--lstm-hidden", "8",
              "--embed-dim", "6", "--k", "4", "--device", "cpu", "--no-probe", "--quiet", "--seed", "3"]
    code, _, err = run([*common, "--epochs", "3", "--eval-epochs", "2", "--out", tmp_path / "long"], capsys)
    assert code == 0, err
    code, _, err = run([*common, "--epochs", "2", "--out", tmp_path / "short"], capsys)
    assert code == 0, err
    long_m = json.loads((tmp_path / "long" / "metrics.json").read_text())
    short_m = json.loads((tmp_path / "short" / "metrics.json").read_text())
    at = long_m["at_epoch"]["2"]
    assert at["epochs"] == 2 and long_m["epochs"] == 3
    for key in ("neg_elbo", "kl", "iw_nll", "mi_dataset", "code_gain"):
        assert at[key] == short_m[key], key
    assert at["neg_elbo"] != long_m["neg_elbo"]
    results = []
    for name in ("long", "short"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        results.append(make_result(f"text-{name}-s3", "text", name, 3, config, m, []))
    df = load_results(results, at_epoch=2)
    assert list(df["method"]) == ["long", "short"] and df["neg_elbo"].nunique() == 1
    assert list(load_results(results, at_epoch=3)["method"]) == ["long"]


@pytest.mark.parametrize("flags", [["--eval-epochs", "4"], ["--eval-epochs", "0"]])
def test_eval_epochs_outside_the_run_are_refused(tmp_path, capsys, flags):
    code, _, err = run(["train", "--epochs", "3", *flags, "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--eval-epochs" in err
