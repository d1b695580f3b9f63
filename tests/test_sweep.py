"""Tests of the sweep runner (vaeas.sweep): grid expansion, shards, fast overrides, filters, and one
real end-to-end grid (two runs as subprocesses, on MNIST when it is available)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from vaeas import sweep
from vaeas.data import DataError, find_root

CONFIG = {
    "results": "res/grid",
    "runs": "runs/grid",
    "datasets": ["mnist", "omniglot"],
    "seeds": [0, 1, 2],
    "common": {"arch": "mlp", "latent": 4, "epochs": 3},
    "eval": {"k": 100},
    "methods": {"vae": {}, "beta": {"beta": 0.5}, "label": {"model": "vaeas", "lam": 10}},
    "per_dataset": {"omniglot": {"epochs": 2}},
    "fast": {"seeds": [0], "epochs": 1, "k": 5, "no_pictures": True},
}


def write_config(path, cfg=CONFIG):
    path.write_text(json.dumps(cfg))
    return path


def test_expand_grid_order_and_options():
    runs = sweep.expand(CONFIG)
    assert len(runs) == 2 * 3 * 3
    assert [r.name for r in runs[:4]] == ["mnist-vae-s0", "mnist-vae-s1", "mnist-vae-s2", "mnist-beta-s0"]
    beta = runs[3].options
    assert beta["beta"] == 0.5 and beta["k"] == 100 and beta["epochs"] == 3 and beta["seed"] == 0
    assert all(r.options["epochs"] == 2 for r in runs if r.dataset == "omniglot")  # per_dataset wins
    assert "beta" not in runs[0].options  # a method's options do not leak into the next


def test_fast_overrides_shrink_the_grid():
    runs = sweep.expand(CONFIG, fast=True)
    assert len(runs) == 2 * 3 * 1
    assert all(r.options["epochs"] == 1 and r.options["k"] == 5 for r in runs)


def test_shards_partition_the_grid():
    runs = sweep.expand(CONFIG)
    names = [r.name for i in range(4) for r in runs[i::4]]
    assert sorted(names) == sorted(r.name for r in runs) and len(set(names)) == len(names)


def test_train_args():
    args = sweep.train_args({"warmup_epochs": 4, "direct": True, "amp": False, "decoder_hidden": [10, 20],
                             "head_hidden": None})
    assert args == ["--warmup-epochs", "4", "--direct", "--decoder-hidden", "10,20"]


@pytest.mark.parametrize("cfg, fragment", [
    ("{not json", "not valid JSON"),
    (json.dumps({**CONFIG, "seeds": []}), "seeds"),
    (json.dumps({**CONFIG, "methods": ["vae"]}), "methods"),
])
def test_bad_configs_are_refused(tmp_path, cfg, fragment):
    path = tmp_path / "cfg.json"
    path.write_text(cfg)
    with pytest.raises(sweep.SweepError, match=fragment):
        sweep.load_config(path)


def test_unknown_dataset_filter_is_refused(tmp_path):
    with pytest.raises(sweep.SweepError, match="cifar"):
        sweep.run_sweep(write_config(tmp_path / "cfg.json"), datasets=["cifar"], dry_run=True)


def test_method_filter_keeps_those_methods_and_refuses_unknown_ones(tmp_path, monkeypatch, capsys):
    runs = sweep.select(CONFIG, datasets=["omniglot"], methods=["label", "vae"])
    assert [r.name for r in runs] == ["omniglot-vae-s0", "omniglot-vae-s1", "omniglot-vae-s2",
                                      "omniglot-label-s0", "omniglot-label-s1", "omniglot-label-s2"]  # grid order
    with pytest.raises(sweep.SweepError, match="method vea is not in the grid"):
        sweep.select(CONFIG, methods=["vea"])
    monkeypatch.chdir(tmp_path)
    assert sweep.run_sweep(write_config(tmp_path / "cfg.json"), methods=["beta"], shard=(1, 2), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "6 runs in the grid, 3 in shard 1/2" in out   # the shard slices what the filter keeps
    assert "todo  mnist-beta-s1" in out and "todo  omniglot-beta-s0" in out and "vae" not in out


def test_dry_run_lists_done_and_todo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "cfg.json")
    (tmp_path / "res/grid").mkdir(parents=True)
    (tmp_path / "res/grid/mnist-vae-s1.json").write_text("{}")
    assert sweep.run_sweep(cfg, datasets=["mnist"], dry_run=True) == 0
    out = capsys.readouterr().out
    assert "9 runs in the grid" in out and "1 done, 8 to run" in out
    assert "done  mnist-vae-s1" in out and "todo  mnist-vae-s0" in out and "omniglot" not in out
    # the fast grid has its own results folder, so the full-size result above does not count
    assert sweep.run_sweep(cfg, datasets=["mnist"], fast=True, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "0 done, 3 to run -> res/grid-fast" in out


def test_committed_configs_pass_validation():
    from pathlib import Path

    sweep.validate_config(CONFIG)
    for path in sorted((Path(__file__).resolve().parents[1] / "results" / "configs").glob("*.json")):
        sweep.load_config(path)  # raises on a problem


@pytest.mark.parametrize("change, fragment", [
    ({"common": {"epochz": 3}}, "unknown option 'epochz'"),
    ({"fast": {"methods": ["vae", "nope"]}}, "unknown method 'nope'"),
    ({"fast": {"datasets": ["cifar"]}}, "unknown dataset 'cifar'"),
    ({"seeds": [0, "1"]}, "seeds"),
    ({"eval": {"k": -5}}, "--k"),
    ({"methods": {"beta": {"beta": "half"}}}, "--beta"),
    ({"common": {"seed": 3}}, "set by the sweep"),
    ({"common": {"arch": "mlp", "latent": 4, "epochs": 3, "snapshots": "0,3"}},
     r"snapshot epoch 3 is past its 2 epochs"),
    ({"common": {"arch": "mlp", "latent": 4, "epochs": 3, "snapshots": "0,2"}}, r"\(fast\): snapshot epoch 2"),
])
def test_validate_config_names_the_problem(change, fragment):
    with pytest.raises(sweep.SweepError, match=fragment) as info:
        sweep.validate_config({**CONFIG, **change}, "cfg.json")
    assert "\n" not in str(info.value) and "cfg.json" in str(info.value)


def test_dry_run_refuses_a_bad_config_before_listing(tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.json", {**CONFIG, "common": {"latnet": 4}})
    with pytest.raises(sweep.SweepError, match="latnet"):
        sweep.run_sweep(cfg, dry_run=True)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- end to end
TINY_GRID = {
    "results": "results/tiny",
    "runs": "runs/tiny",
    "datasets": ["mnist"],
    "seeds": [0],
    "common": {"arch": "mlp", "latent": 4, "hidden": [32], "epochs": 1, "limit": 300, "val_size": 100,
               "device": "cpu", "no_pictures": True},
    "eval": {"k": 4, "iw_size": 10, "no_probe": True},
    "methods": {"vae": {}, "label": {"model": "vaeas", "target": "label", "lam": 1}},
}


def test_tiny_grid_end_to_end(tmp_path, monkeypatch, capsys):
    try:
        root = find_root("mnist", download=False).resolve()
    except DataError as exc:
        pytest.skip(f"MNIST is not available: {exc}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEAS_DATA", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = write_config(tmp_path / "tiny.json", TINY_GRID)
    assert sweep.run_sweep(cfg) == 0
    out = capsys.readouterr().out
    assert "[2/2] mnist-label-s0 done" in out
    results = sweep.load_results("results/tiny")
    assert [r["name"] for r in results] == ["mnist-label-s0", "mnist-vae-s0"]
    for r in results:
        m = r["metrics"]
        assert m["iw_k"] == 4 and m["iw_n"] == 10 and m["mi_batch_size"] == 128 and m["au_delta"] == 0.01
        assert len(r["history"]) == 1 and r["history"][0]["epoch"] == 1
        assert set(r) == {"name", "dataset", "method", "seed", "model", "trainer", "data", "eval", "versions",
                          "metrics", "history"}  # one vocabulary: the API's, no CLI options block
        assert r["trainer"]["epochs"] == 1 and r["eval"]["k"] == 4 and r["data"]["limit"] == 300
        assert str(root) not in json.dumps(r)  # no path of this machine in a result file
        assert not (tmp_path / "runs/tiny" / r["name"] / "samples.png").exists()  # no_pictures
    assert results[0]["model"]["model"] == "vaeas" and results[0]["metrics"]["bound_split"] == "test"
    # a second call finds every result and runs nothing
    before = os.path.getmtime("results/tiny/mnist-vae-s0.json")
    assert sweep.run_sweep(cfg) == 0
    assert "2 done, 0 to run" in capsys.readouterr().out
    assert os.path.getmtime("results/tiny/mnist-vae-s0.json") == before


def fake_result(dataset, method, seed, **metrics):
    return {"name": f"{dataset}-{method}-s{seed}", "dataset": dataset, "method": method, "seed": seed,
            "metrics": metrics}


def test_train_or_load_loads_without_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "cfg.json")
    res = tmp_path / "res/grid-fast"
    res.mkdir(parents=True)
    runs = sweep.select(CONFIG, fast=True, datasets=["omniglot"])
    for r in reversed(runs):
        (res / f"{r.name}.json").write_text(json.dumps(fake_result(r.dataset, r.method, r.seed, kl=1.0)))

    def no_training(*args, **kwargs):
        raise AssertionError("train_or_load trained although every result exists")

    monkeypatch.setattr(sweep, "run_sweep", no_training)
    results = sweep.train_or_load(cfg, fast=True, datasets=["omniglot"])
    assert [r["name"] for r in results] == [r.name for r in runs]  # grid order, not file order
    with pytest.raises(AssertionError, match="trained although"):
        sweep.train_or_load(cfg, fast=True, datasets=["mnist"])  # mnist results are missing
    (res / "omniglot-label-s0.json").unlink()
    beta = sweep.train_or_load(cfg, fast=True, methods=["beta"], datasets=["omniglot"])  # label's file is not asked for
    assert [r["name"] for r in beta] == ["omniglot-beta-s0"]


def test_finished_methods_are_those_with_every_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "cfg.json")
    res = tmp_path / "res/grid"
    res.mkdir(parents=True)
    assert sweep.finished_methods(cfg) == []
    for r in sweep.select(CONFIG):
        if not (r.method == "beta" and r.dataset == "omniglot" and r.seed == 2):   # one run still training
            (res / f"{r.name}.json").write_text("{}")
    assert sweep.finished_methods(cfg) == ["vae", "label"]                      # config order
    assert sweep.finished_methods(cfg, datasets=["mnist"]) == ["vae", "beta", "label"]
    assert sweep.finished_methods(cfg, fast=True) == []                         # the fast grid has its own folder
    assert sweep.finished_methods(cfg, results=tmp_path / "elsewhere") == []    # another results folder


# --------------------------------------------------------------------------- snapshots of a run
SNAP_GRID = {
    "results": "results/snap",
    "runs": "runs/snap",
    "datasets": ["synthetic"],
    "seeds": [0],
    "common": {"arch": "lstm", "latent": 2, "embed_dim": 8, "lstm_hidden": 8, "epochs": 2, "limit": 128,
               "val_size": 64, "batch_size": 64, "device": "cpu"},
    "eval": {"k": 2, "iw_size": 4, "no_probe": True},
    "methods": {"vae": {}},
}


def test_run_snapshots_trains_once_then_loads(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    (repo / "data").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(repo / "data")  # the synthetic corpus' cache, generated once
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p))
    cfg = write_config(tmp_path / "snap.json", SNAP_GRID)
    models = sweep.run_snapshots(cfg, "vae", 0, [2, 0])
    assert sorted(models) == [0, 2]
    assert (tmp_path / "runs/snap/synthetic-vae-s0-snapshots/snapshot-2.pt").is_file()
    w0, w2 = (torch.cat([p.flatten() for p in models[e].parameters()]) for e in (0, 2))
    assert not torch.equal(w0, w2) and not models[2].training  # trained between the two; eval mode
    monkeypatch.setattr(sweep.subprocess, "run", lambda *a, **k: pytest.fail("trained again"))
    again = sweep.run_snapshots(cfg, "vae", 0, [0, 2])
    assert torch.equal(torch.cat([p.flatten() for p in again[2].parameters()]), w2)
    with pytest.raises(sweep.SweepError, match="no run of method 'beta' with seed 0"):
        sweep.run_snapshots(cfg, "beta", 0, [0])
    # the posterior-mean space of those snapshots: encoder means, grid means, and a cache
    study = sweep.posterior_means(cfg, "vae", 0, [0, 2], n=6, grid=5, cache=tmp_path / "pm.json")
    assert sorted(study) == [0, 2]
    assert study[2]["q_mean"].shape == study[2]["p_mean"].shape == (6, 2) and study[2]["border_mass"].shape == (6,)
    assert abs(study[2]["p_mean"]).max() <= 4.0  # a mean of grid points lies inside the grid
    again = sweep.posterior_means(cfg, "vae", 0, [0, 2], n=6, grid=5, cache=tmp_path / "pm.json")  # no training
    assert all(abs(again[e][k] - study[e][k]).max() < 1e-4 for e in study for k in study[e])


def test_a_method_may_run_on_its_own_seeds():
    cfg = {**CONFIG, "methods": {**CONFIG["methods"], "costly": {"beta": 0.5, "seeds": [0, 2]}}}
    sweep.validate_config(cfg)
    runs = [r for r in sweep.expand(cfg) if r.method == "costly"]
    assert [(r.dataset, r.seed) for r in runs] == [("mnist", 0), ("mnist", 2), ("omniglot", 0), ("omniglot", 2)]
    assert all("seeds" not in r.options and r.options["beta"] == 0.5 for r in runs)
    fast = [(r.dataset, r.seed) for r in sweep.expand(cfg, fast=True) if r.method == "costly"]
    assert fast == [("mnist", 0), ("omniglot", 0)]                                          # the fast grid wins
    assert len([r for r in sweep.expand(cfg) if r.method == "vae"]) == 6                  # others keep the grid's
    with pytest.raises(sweep.SweepError, match="method 'costly': 'seeds'"):
        sweep.validate_config({**cfg, "methods": {"costly": {"seeds": [0, 0]}}}, "cfg.json")


def test_a_method_may_run_on_its_own_datasets():
    cfg = {**CONFIG, "methods": {**CONFIG["methods"], "mnist_only": {"beta": 0.5, "datasets": ["mnist"]}}}
    sweep.validate_config(cfg)
    runs = [r for r in sweep.expand(cfg) if r.method == "mnist_only"]
    assert {r.dataset for r in runs} == {"mnist"} and len(runs) == len(CONFIG["seeds"])
    assert all("datasets" not in r.options for r in runs)
    assert {r.dataset for r in sweep.expand(cfg) if r.method == "vae"} == {"mnist", "omniglot"}
    for bad in (["svhn"], [], "mnist"):
        with pytest.raises(sweep.SweepError, match="method 'x': 'datasets'"):
            sweep.validate_config({**cfg, "methods": {"x": {"datasets": bad}}}, "cfg.json")
