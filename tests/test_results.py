"""Tests of the reporting layer (vaeas.results): the result-file schema, the frames, the statistics
(summary, paired differences with t intervals, rank correlation), KL-weight curves and tables."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vaeas import report as P
from vaeas import results as R

COMPARISON = Path(__file__).resolve().parents[1] / "results" / "comparison"


def fake_result(dataset, method, seed, **metrics):
    return {"name": f"{dataset}-{method}-s{seed}", "dataset": dataset, "method": method, "seed": seed,
            "model": {}, "trainer": {}, "data": {}, "eval": {}, "versions": {}, "metrics": metrics,
            "history": [{"epoch": 1, "step": 10, "val_kl": 1.0 + seed}, {"epoch": 2, "step": 20, "val_kl": 2.0}]}


def frame(values, method="a", dataset="mnist", key="x"):
    """A results frame with one run per seed: ``values`` is {seed: value}."""
    return R.load_results([fake_result(dataset, method, s, **{key: v}) for s, v in values.items()])


# ----------------------------------------------------------------------------- schema and frames
def test_committed_results_load_as_one_numeric_row_per_run():
    df = R.load_results(COMPARISON)
    assert len(df) == 42 and list(df.columns[:4]) == list(R.KEYS)
    assert set(df["dataset"]) == {"mnist", "omniglot"} and df.groupby(["dataset", "method"]).size().eq(3).all()
    for col in ["neg_elbo", "iw_nll", "kl", "rec", "mi_minibatch", "mi_dataset", "au", "probe_acc", "iw_k",
                "train_seconds", "train_minutes", "bound_n"]:
        assert pd.api.types.is_numeric_dtype(df[col]), col
    assert df["iw_nll"].notna().all() and (df["iw_nll"] <= df["neg_elbo_iw"] + 1e-3).all()
    assert df["bound_n"].notna().sum() == 12  # the 12 VAE-AS runs
    assert len(df.loc[0, "kl_per_dim"]) == 32  # list-valued metrics stay reachable


def test_committed_results_use_one_vocabulary():
    for path in sorted(COMPARISON.glob("*.json")):
        r = json.loads(path.read_text())
        assert set(r) == {"name", "dataset", "method", "seed", "model", "trainer", "data", "eval", "versions",
                          "metrics", "history"}, path.name
        assert "latent_dim" in r["model"] and "kl_schedule" in r["trainer"] and "k" in r["eval"]
        assert all(not isinstance(v, str) or k in ("split", "bound_split") for k, v in r["metrics"].items())
        if "bound_split" in r["metrics"]:
            assert r["metrics"]["bound_split"] in ("test", "train") and isinstance(r["metrics"]["bound_n"], int)


def test_upgrade_of_the_old_layout_keeps_every_number():
    old = {"name": "mnist-x-s0", "dataset": "mnist", "method": "x", "seed": 0, "options": {"latent": 4},
           "config": {"command": "train", "dataset": "mnist", "data_source": "/here/datasets", "limit": 300,
                      "model": {"latent_dim": 4}, "trainer": {"epochs": 2}, "eval": {"k": 5}, "device": "cpu",
                      "versions": {"vaeas": "0.1.0"}},
           "metrics": {"split": "test", "n": 10, "kl": 1.5, "bound_split": "train[:300]"}, "history": [{"epoch": 1}]}
    new = R.upgrade_result(old)
    assert new == {"name": "mnist-x-s0", "dataset": "mnist", "method": "x", "seed": 0, "model": {"latent_dim": 4},
                   "trainer": {"epochs": 2}, "data": {"limit": 300}, "eval": {"k": 5},
                   "versions": {"vaeas": "0.1.0"}, "history": [{"epoch": 1}],
                   "metrics": {"split": "test", "n": 10, "kl": 1.5, "bound_split": "train", "bound_n": 300}}
    assert R.upgrade_result(new) == new
    label = R.normalize_metrics({"split": "test", "n": 10, "bound_split": "test"})
    assert label["bound_n"] == 10  # a bound on the whole split


def test_train_minutes_only_for_runs_trained_in_their_own_process():
    fresh = fake_result("mnist", "vae", 0, train_seconds=120.0, wall_seconds=300.0)
    reused = fake_result("mnist", "vae", 1, train_seconds=900.0, wall_seconds=200.0)  # resumed after its last epoch
    df = R.load_results([fresh, reused])
    assert df["train_minutes"].iloc[0] == 2.0 and math.isnan(df["train_minutes"].iloc[1])
    s = R.summary(df, "train_minutes").loc[("mnist", "vae"), "train_minutes"]
    assert (s["mean"], s["n"]) == (2.0, 1) and math.isnan(s["sd"])


def test_histories_are_long():
    h = R.load_histories([fake_result("mnist", "vae", s) for s in (0, 1)])
    assert list(h.columns) == [*R.KEYS, "epoch", "step", "val_kl"] and len(h) == 4
    assert h.loc[h["seed"] == 1, "val_kl"].tolist() == [2.0, 2.0]


# ----------------------------------------------------------------------------- statistics
def test_summary_equals_the_hand_computation():
    pairs = [(1.0, 3), (2.0, 5), (6.0, 7)]
    results = [fake_result("mnist", "vae", s, kl=kl, au=au) for s, (kl, au) in enumerate(pairs)]
    results.append(fake_result("mnist", "label", 0, kl=4.0, au=float("nan")))
    results.append(fake_result("mnist", "label", 1, kl=float("inf"), au=2))
    s = R.summary(R.load_results(results), ["kl", "au", "missing"])
    assert list(s.index) == [("mnist", "vae"), ("mnist", "label")]  # order of appearance
    vae = s.loc[("mnist", "vae")]
    assert vae[("kl", "mean")] == 3.0 and vae[("kl", "n")] == 3
    assert vae[("kl", "sd")] == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))
    assert (vae[("au", "mean")], vae[("au", "sd")], vae[("au", "n")]) == (5.0, 2.0, 3)
    label = s.loc[("mnist", "label")]
    assert label[("kl", "mean")] == 4.0 and label[("kl", "n")] == 1 and math.isnan(label[("kl", "sd")])  # inf left out
    assert label[("au", "n")] == 1 and vae[("missing", "n")] == 0


def test_paired_difference_matches_the_t_interval():
    df = pd.concat([frame({0: 11.0, 1: 22.0, 2: 33.0}, "a"), frame({0: 10.0, 1: 20.0, 2: 30.0}, "b")])
    d = R.paired_difference(df, "a", "b", "x")  # differences 1, 2, 3
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of (1, 2, 3) is 1
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert (d["n"], d["mean"], d["sd"]) == (3, 2.0, 1.0) and d["seeds"] == [0, 1, 2]
    assert d["low"] == pytest.approx(2 - half) and d["high"] == pytest.approx(2 + half)
    assert d["low"] < 0 and not d["resolved"]  # three seeds: t(0.975, 2) = 4.30 makes the interval wide
    tight = pd.concat([frame({0: 1.9, 1: 2.0, 2: 2.1}, "a"), frame({0: 0.0, 1: 0.0, 2: 0.0}, "b")])
    t = R.paired_difference(tight, "a", "b", "x")
    assert t["low"] == pytest.approx(2 - stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)) and t["resolved"]
    wide = R.paired_difference(df, "a", "b", "x", level=0.99)
    assert wide["high"] - wide["low"] > d["high"] - d["low"]


def test_paired_difference_is_unresolved_when_the_interval_holds_zero():
    df = pd.concat([frame({0: 1.0, 1: -1.0, 2: 0.5}, "a"), frame({0: 0.0, 1: 0.0, 2: 0.0}, "b")])
    d = R.paired_difference(df, "a", "b", "x")
    assert d["low"] < 0 < d["high"] and not d["resolved"]
    one = R.paired_difference(pd.concat([frame({0: 5.0}, "a"), frame({0: 1.0}, "b")]), "a", "b", "x")
    assert one["n"] == 1 and one["mean"] == 4.0 and math.isnan(one["low"]) and not one["resolved"]


def test_paired_difference_uses_only_shared_seeds():
    df = pd.concat([frame({0: 3.0, 1: 5.0, 2: 100.0}, "a"), frame({0: 1.0, 1: 2.0, 3: -50.0}, "b"),
                    frame({0: 1000.0, 1: 1000.0}, "a", dataset="omniglot")])
    d = R.paired_difference(df, "a", "b", "x", dataset="mnist")
    assert d["seeds"] == [0, 1] and d["mean"] == 2.5 and d["n"] == 2
    with pytest.raises(ValueError, match="several datasets"):
        R.paired_difference(df, "a", "b", "x")


def test_paired_differences_table_against_one_reference():
    df = pd.concat([frame({0: 1.0, 1: 2.0, 2: 3.0}, "ref"), frame({0: 2.0, 1: 4.0, 2: 6.0}, "double"),
                    frame({0: 1.0, 1: 2.0, 2: 3.0}, "same")])
    t = R.paired_differences(df, "ref", ["x"])
    assert t["method"].tolist() == ["double", "same"] and t["mean"].tolist() == [2.0, 0.0]
    text = R.format_differences(t, digits=1)
    assert text.columns.tolist() == ["method", "x"] and text.loc[0, "x"].startswith("+2.0 [")
    assert R.format_differences(t, interval=False).loc[1, "x"] == "+0.00"


def test_budget_verdicts_name_each_way_a_short_budget_finding_can_end():
    ref = {0: 0.0, 1: 0.0, 2: 0.0}
    tight_up, tight_down, noisy = {0: 1.9, 1: 2.0, 2: 2.1}, {0: -1.9, 1: -2.0, 2: -2.1}, {0: 1.0, 1: -1.0, 2: 0.5}
    cases = {"holds": (tight_up, tight_up), "reverses": (tight_up, tight_down),
             "no longer resolved": (tight_down, noisy), "appears": (noisy, tight_up),
             "unresolved at both": (noisy, noisy)}
    short = pd.concat([frame(ref, "ref")] + [frame(a, m) for m, (a, _) in cases.items()])
    long = pd.concat([frame(ref, "ref")] + [frame(b, m) for m, (_, b) in cases.items()])
    v = P.budget_verdicts(short, long, "ref", "x").set_index("method")
    assert list(v.index) == list(cases) and (v["verdict"] == list(cases)).all()
    expect = R.paired_difference(long, "reverses", "ref", "x")
    assert v.loc["reverses", "long_mean"] == pytest.approx(-2.0)
    assert v.loc["reverses", "short_mean"] == pytest.approx(2.0)
    assert (v.loc["reverses", "long_low"], v.loc["reverses", "long_high"]) == (expect["low"], expect["high"])
    # a method the short budget lacks is left out; the table prints both intervals and the verdict
    only_long = pd.concat([long, frame(tight_up, "new")])
    assert "new" not in set(P.budget_verdicts(short, only_long, "ref", "x")["method"])
    table = R.verdicts_table(v.reset_index().iloc[:1])
    header, _, row = table.splitlines()[:3]
    assert header.rstrip(" |").endswith("verdict") and row.rstrip(" |").endswith("holds")
    assert row.count("+2.00 [") == 2


def test_rank_correlation_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=7), rng.normal(size=7)
    rho, p = R.rank_correlation(x, y)
    ref = stats.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert R.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]).rho == pytest.approx(1.0)
    with pytest.raises(ValueError):
        R.rank_correlation([1, 2], [1, 2, 3])


def test_frontier_offsets_measure_the_distance_to_the_chords_of_a_convex_frontier():
    # the frontier D = 100 / R, traced at R = 1, 2, 4, 8: the chord from (2, 50) to (4, 25) is D = 75 - 12.5 R
    fr = [8.0, 1.0, 4.0, 2.0]                                  # unsorted on purpose
    fd = [100 / r for r in fr]
    off = R.frontier_offsets((fr, fd), [3.0, 3.0, 2.0, 0.5, 9.0], [37.5 + 1, 100 / 3, 50.0, 10.0, 1.0])
    assert off[0] == pytest.approx(1.0)                         # 1 nat above the chord
    assert off[1] == pytest.approx(100 / 3 - 37.5) and off[1] < 0   # the true curve lies below its chord
    assert off[2] == pytest.approx(0.0)                         # a frontier point is on it
    assert np.isnan(off[3]) and np.isnan(off[4])                # outside the frontier's range of rates
    with pytest.raises(ValueError):
        R.frontier_offsets(([1.0], [2.0]), [1.0], [2.0])
    with pytest.raises(ValueError):
        R.frontier_offsets((fr, fd), [1.0, 2.0], [2.0])


# ----------------------------------------------------------------------------- curves
def test_kl_weight_curve_of_a_linear_schedule_hits_beta_at_the_end_of_warmup():
    config = {"epochs": 6, "kl_schedule": "linear", "beta": 0.8, "warmup_epochs": 4}
    epochs, w = R.kl_weight_curve(config, steps_per_epoch=10)
    assert len(epochs) == len(w) == 60 and epochs[10] == 1.0
    assert w[0] == 0.0 and np.all(np.diff(w[:40]) > 0) and w[20] == pytest.approx(0.4)
    assert w[40] == pytest.approx(0.8) and np.all(w[40:] == pytest.approx(0.8))
    const = R.kl_weight_curve({"epochs": 2, "beta": 0.5}, 5)[1]
    assert np.all(const == 0.5)


def test_kl_weight_curve_of_a_committed_run():
    r = R.read_results(COMPARISON / "mnist-linear_anneal-s0.json")[0]
    epochs, w = R.kl_weight_curve(r["trainer"], R.steps_per_epoch(r))
    assert R.steps_per_epoch(r) == r["history"][0]["step"] and w[-1] == 1.0
    assert w[0] == 0.0 and epochs[-1] < r["trainer"]["epochs"]


def test_kl_profile():
    p = R.kl_profile([0.05, 2.0, 1.0, 0.5, 0.3, 0.2, 0.0], top=2)
    assert p["dims_above"] == 5 and p["top_share"] == pytest.approx(3.0 / 4.05)


# ----------------------------------------------------------------------------- tables
def test_pm():
    assert R.pm(1.234, 0.056) == "1.23 ± 0.06"
    assert R.pm(1.234) == "1.23" and R.pm(float("nan")) == "–" and R.pm(1.0, 0.1, n=0) == "–"
    assert R.pm((0.5, 0.01, 3), digits=1, scale=100) == "50.0 ± 1.0"
    row = pd.Series({"mean": 2.0, "sd": float("nan"), "n": 1})
    assert R.pm(row) == "2.00"


def test_markdown_table_splits_at_eight_columns_and_keeps_the_key():
    columns = ["method", *[f"c{j}" for j in range(11)]]
    df = pd.DataFrame([[f"m{i}", *range(i, i + 11)] for i in range(3)], columns=columns)
    text = R.markdown_table(df)
    tables = text.split("\n\n")
    assert len(tables) == 2
    headers = [t.splitlines()[0].strip("| ").split(" | ") for t in tables]
    assert headers[0] == ["method", *[f"c{j}" for j in range(7)]] and headers[1] == ["method", "c7", "c8", "c9", "c10"]
    assert all(len(h) <= 8 for h in headers)
    assert tables[1].splitlines()[2] == "| m0 | 7 | 8 | 9 | 10 |"
    assert text._repr_markdown_() == str(text)
    keyed = R.markdown_table(df, key="c3", max_columns=4)
    assert all(t.startswith("| c3 |") for t in keyed.split("\n\n"))


def test_markdown_table_formats_cells_and_units():
    df = pd.DataFrame({"method": ["a|b", "c"], "kl": [1.23456, float("nan")], "au": [3, 4], "tiny": [-1e-9, 0.5]})
    text = R.markdown_table(df, digits={"kl": 3, "tiny": 1}, units={"kl": "nats"})
    lines = text.splitlines()
    assert lines[0] == "| method | kl (nats) | au | tiny |"
    assert lines[2] == "| a\\|b | 1.235 | 3 | 0.0 |" and lines[3] == "| c | – | 4 | 0.5 |"


def test_comparison_table_formats_mean_and_sd():
    results = [fake_result("mnist", "vae", s, kl=kl, probe_acc=acc, au=au)
               for s, (kl, acc, au) in enumerate([(1.0, 0.8, 3), (3.0, 0.9, 5)])]
    results.append(fake_result("mnist", "label", 0, kl=4.0, probe_acc=0.95, au=7))
    t = R.comparison_table(R.load_results(results), ["kl", "probe_acc", "au", "iw_nll"])
    assert t.columns.tolist() == ["method", "seeds", "KL, rate (nats)", "probe acc. (%)", "AU (dims)", "IW-NLL (nats)"]
    assert t.values.tolist()[0] == ["vae", 2, f"2.00 ± {2 ** 0.5:.2f}", f"85.0 ± {100 * 0.05 * 2 ** 0.5:.1f}",
                                    "4.0 ± 1.4", "–"]
    assert t.values.tolist()[1] == ["label", 1, "4.00", "95.0", "7.0", "–"]
    both = R.comparison_table(R.load_results([*results, fake_result("omniglot", "vae", 0, kl=1.0)]), ["kl"])
    assert both.columns.tolist()[:2] == ["dataset", "method"] and len(both) == 3


def test_show_table_prints_without_a_notebook(capsys):
    R.show_table(["a", "b"], [["x", 1.5]], digits=1)
    out = capsys.readouterr().out
    assert "| a | b |" in out and "| x | 1.5 |" in out


# ----------------------------------------------------------------------------- the comparison chapters
def tiny_config():
    return {"results": "results/x", "runs": "runs/x", "datasets": ["mnist"], "seeds": [0, 1],
            "common": {"arch": "made", "latent": 8, "epochs": 2}, "eval": {"k": 10, "iw_size": 50, "mi_batch": 16,
                                                                           "delta": 0.01},
            "methods": {"vae": {}, "beta": {"model": "vae", "beta": 0.5}, "lab": {"model": "vaeas", "lam": 10}},
            "fast": {"seeds": [0], "epochs": 1, "k": 5}}


def test_protocol_table_lists_each_methods_own_options_and_the_note_the_rest():
    from vaeas import sweep

    cfg = tiny_config()
    table = P.protocol_table(cfg, sweep.select(cfg), sweep.train_args)
    assert table.splitlines() == ["| method | options on top of the common ones |", "|---|---|", "| vae | – |",
                                  "| beta | --model vae --beta 0.5 |", "| lab | --model vaeas --lam 10 |"]
    common, evaluation = P.protocol_note(cfg, sweep.select(cfg), sweep.train_args).splitlines()
    assert common == "common to every run: --arch made --latent 8 --epochs 2 --k 10"  # common + what fast overrides
    assert evaluation == ("evaluation: IW-NLL with k=10 importance samples on 50 test images; MI minibatch B=16; "
                          "AU threshold delta=0.01; seeds [0, 1]")
    fast = P.protocol_note(cfg, sweep.select(cfg, fast=True), sweep.train_args)
    assert "--epochs 1 --k 5" in fast and "k=5" in fast and "seeds [0]" in fast


def test_iw_subset_reads_each_results_recorded_settings():
    old = fake_result("mnist", "vae", 0, split="test", n=10000, iw_n=1000, iw_k=1000)  # no subset_seed
    new = [fake_result("mnist", "vae", s, split="test", n=10000, iw_n=1000, iw_k=1000, subset_seed=s) for s in (1, 0)]
    whole = fake_result("mnist", "vae", 3, split="test", n=500, iw_n=500, iw_k=10, subset_seed=3)
    assert P.iw_subset([old]) == "the first 1000 test images"
    assert P.iw_subset(new) == "1000 random test images (subset seeds 0, 1)"
    assert P.iw_subset(new[:1]) == "1000 random test images (subset seed 1)"
    assert P.iw_subset([whole]) == "all 500 test images"
    assert P.iw_subset([old, *new]) == "the first 1000 test images; 1000 random test images (subset seeds 0, 1)"
    assert P.iw_subset([fake_result("mnist", "vae", 0, kl=1.0)]) == "–"
    assert P.iw_subset(COMPARISON) == "the first 1000 test images"  # the committed runs predate random subsets


def test_describe_runs_counts_methods_seeds_and_time():
    runs = [fake_result("mnist", m, s, n=100, iw_n=100, iw_k=5, wall_seconds=1800.0, seconds_iw=10.0 * (s + 1))
            for m in ("a", "b") for s in (0, 1, 2)]
    assert P.describe_runs(runs).splitlines() == [
        "6 runs (2 methods x 3 seeds)",
        "sum of the runs' wall times (training + evaluation): 3.00 h; IW-NLL alone: 20 s per run on average",
        "IW-NLL: k=5 importance samples on all 100 test images"]


def test_seed_runs_takes_each_methods_run_of_one_seed():
    runs = [fake_result("mnist", m, s) for s in (2, 1) for m in ("b", "a")] + [fake_result("mnist", "c", 2)]
    first = R.seed_runs(runs)
    assert list(first) == ["b", "a"] and {r["seed"] for r in first.values()} == {1}  # smallest seed; c has none
    assert list(R.seed_runs(runs, seed=2)) == ["b", "a", "c"]
    both = runs + [fake_result("omniglot", "a", 0)]
    with pytest.raises(ValueError, match="dataset="):
        R.seed_runs(both)
    assert list(R.seed_runs(both, dataset="omniglot")) == ["a"]


def comparison_frame():
    """vae, b and c on seeds 0-2 with known values of two metrics."""
    values = {"vae": ([1.0, 2.0, 6.0], [10.0, 10.0, 13.0]), "b": ([2.0, 4.0, 6.0], [9.0, 9.0, 9.0]),
              "c": ([1.5, 2.5, 6.5], [10.0, 11.0, 12.0])}
    return R.load_results([fake_result("mnist", m, s, kl=kl[s], iw_nll=iw[s]) for m, (kl, iw) in values.items()
                           for s in range(3)])


def test_differences_table_has_a_row_per_method_and_the_reference_sd_last():
    df = comparison_frame()
    table = P.differences_table(df, "vae", ["kl", "iw_nll"], label="vanilla")
    assert table.splitlines() == [
        "| method − vanilla | Δ KL | Δ IW-NLL |", "|---|---|---|",
        "| b | 1.00 | -2.00 |",                      # mean of (2-1, 4-2, 6-6) and of (9-10, 9-10, 9-13)
        "| c | 0.50 | 0.00 |",
        f"| (vanilla seed sd) | {math.sqrt(7):.2f} | {math.sqrt(3):.2f} |"]   # sd of (1, 2, 6) and of (10, 10, 13)
    only_c = P.differences_table(df, "vae", ["kl"], methods=["c"], digits=3)
    assert only_c.splitlines()[2:] == ["| c | 0.500 |", f"| (vae seed sd) | {math.sqrt(7):.3f} |"]
    two = pd.concat([df, df.assign(dataset="omniglot")])
    with pytest.raises(ValueError, match="dataset="):
        P.differences_table(two, "vae", ["kl"])
    assert P.differences_table(two, "vae", ["kl"], dataset="omniglot") == P.differences_table(df, "vae", ["kl"])


def test_kl_profile_table_averages_each_methods_seeds():
    runs = [fake_result("mnist", "a", 0, kl_per_dim=[3.0, 1.0, 0.05, 0.0]),
            fake_result("mnist", "a", 1, kl_per_dim=[2.0, 2.0, 0.0, 0.0]),
            fake_result("mnist", "b", 0, kl_per_dim=[1.0, 1.0, 1.0, 1.0])]
    table = P.kl_profile_table(R.load_results(runs), threshold=0.1, top=1)
    assert table.splitlines() == [
        "| method | dims with KL > 0.1 nats (mean over seeds) | share of the KL in the top 1 dims |", "|---|---|---|",
        f"| a | 2.00 | {(3.0 / 4.05 + 0.5) / 2:.2f} |", "| b | 4.00 | 0.25 |"]


def test_estimator_claims_and_check_claims(capsys):
    ok = R.load_results([fake_result("mnist", "a", s, mi_minibatch=4.0, mi_minibatch_cap=4.85, mi_dataset=9.2,
                                     mi_dataset_cap=9.21, neg_elbo_iw=90.0 + s, iw_nll=88.0) for s in range(2)])
    claims = P.estimator_claims(ok)
    assert [c[2] for c in claims] == pytest.approx([-0.85, -0.01, 2.0]) and all(c[3] for c in claims)
    P.check_claims(claims, structural=3)
    out = capsys.readouterr().out
    assert "| every minibatch MI estimate ≤ its cap log B | max (estimate − cap) | -0.85 | yes |" in out
    assert out.strip().endswith("3 claims hold (3 structural, 0 about the full-size results)")
    bad = ok.assign(iw_nll=[88.0, 91.5])  # run 1: IW-NLL above its -ELBO on the same images
    claims = P.estimator_claims(bad)
    assert [c[3] for c in claims] == [True, True, False] and claims[2][2] == pytest.approx(-0.5)
    with pytest.raises(AssertionError, match="IW-NLL ≤ −ELBO"):
        P.check_claims(claims)
    assert "| **no** |" in capsys.readouterr().out
    with pytest.raises(AssertionError):  # glued under a label for a numbered table: the same check
        P.check_claims(claims, name="tab-claims")
    assert "| **no** |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not a label"):
        P.check_claims(claims, name="bad label")
    noisy = ok.assign(iw_nll=[88.0, 91.0015])  # a collapsed model: the two estimates differ by noise
    assert not P.estimator_claims(noisy)[2][3]
    claim = P.estimator_claims(noisy, gap_tol=0.01)[2]
    assert claim[3] and claim[2] == pytest.approx(-0.0015) and "(up to 0.01 nats)" in claim[0]
    assert not P.estimator_claims(bad, gap_tol=0.01)[2][3]


def test_glue_table_stores_one_table_under_its_label(monkeypatch):
    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: calls.append((name, str(obj), display)))
    table = R.markdown_table(pd.DataFrame({"method": ["vae"], "kl": [0.0]}))
    R.glue_table("tab-sequence-main", table)
    assert calls == [("tab-sequence-main", str(table), True)]   # shown in the notebook, stored for {glue:md}


def test_glue_table_refuses_a_bad_label_or_two_tables():
    wide = R.markdown_table(pd.DataFrame({f"c{j}": [j] for j in range(10)}))
    with pytest.raises(ValueError, match="several tables"):
        R.glue_table("tab-wide", wide)
    with pytest.raises(ValueError, match="not a label"):
        R.glue_table("tab wide", "| a |\n|---|\n| 1 |")


def test_glue_table_only_shows_without_myst_nb(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)   # import fails
    R.glue_table("tab-x", "| a |\n|---|\n| 1 |")
    assert "| a |" in capsys.readouterr().out


# ----------------------------------------------------------------------------- report helpers
def test_in_order_puts_methods_in_the_given_order_then_seeds():
    df = pd.concat([frame({1: 1.0, 0: 2.0}, "b"), frame({0: 3.0}, "z"), frame({0: 4.0, 1: 5.0}, "a")])
    out = P.in_order(df, ["a", "b"])
    assert list(zip(out["method"], out["seed"], strict=True)) == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("z", 0)]
    assert "_rank" not in out.columns and len(out) == len(df)


def test_pairs_table_has_one_row_per_present_pair_with_the_paired_interval():
    df = pd.concat([frame({0: 11.0, 1: 22.0, 2: 33.0}, "a"), frame({0: 10.0, 1: 20.0, 2: 30.0}, "b")])
    table = P.pairs_table(df, [("a", "b"), ("a", "missing")], ["x"])
    header, _, *rows = table.splitlines()
    expect = R.paired_difference(df, "a", "b", "x")
    assert header.split("|")[1:3] == [" a − b ", " Δ x "] and len(rows) == 1
    assert f"+2.00 [{expect['low']:+.2f}, {expect['high']:+.2f}]" in rows[0] and rows[0].startswith("| a − b |")
    empty = P.pairs_table(df, [("a", "missing")], ["x"])
    assert len(empty.splitlines()) == 2  # the header and its rule, no rows


def test_vs_reference_compares_one_seed_with_a_reference_trained_once():
    df = pd.concat([frame({0: 5.0, 1: 50.0}, "a"), frame({0: 2.0}, "ref"), frame({1: 9.0}, "late")])
    diff = P.vs_reference(df, "ref", "x")
    assert diff.to_dict() == {"a": 3.0}  # seed 0 only; "late" has no seed 0
    with pytest.raises(ValueError, match="no run of seed 1"):
        P.vs_reference(df, "ref", "x", seed=1)


def test_resolved_sign_needs_the_interval_off_zero_on_the_named_side():
    df = pd.concat([frame({0: 2.0, 1: 3.0, 2: 2.5}, "a"), frame({0: 1.0, 1: 1.9, 2: 1.6}, "b"),
                    frame({0: 1.0, 1: 4.0, 2: 0.0}, "noisy")])
    assert P.resolved_sign(df, "a", "b", "x", 1) and not P.resolved_sign(df, "a", "b", "x", -1)
    assert P.resolved_sign(df, "b", "a", "x", -1)
    assert not P.resolved_sign(df, "noisy", "b", "x", 1)       # mean +0.17, interval across zero
    with pytest.raises(ValueError, match="sign must be"):
        P.resolved_sign(df, "a", "b", "x", 0)
