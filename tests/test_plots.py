"""Tests of the book's figures (vaeas.plots) for the comparison chapters: the panels, their labels
and data, and the width limit of the book's style (<= 7 in)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vaeas import plots  # noqa: E402
from vaeas import results as R  # noqa: E402

TRAINERS = {"vae": {"epochs": 2}, "half": {"epochs": 2, "beta": 0.5},
            "warm": {"epochs": 2, "kl_schedule": "linear", "warmup_epochs": 1}}


def run(method, seed, kl, rec, iw_nll, dataset="mnist"):
    """A result dict with the metrics the figures read and a two-epoch history of 5 updates each."""
    history = [{"epoch": e, "step": 5 * e, "val_kl": kl + e + seed, "val_au": 2 + e, "val_mi": 0.5 * e,
                "val_neg_elbo": kl + rec + 3 - e} for e in (1, 2)]
    return {"name": f"{dataset}-{method}-s{seed}", "dataset": dataset, "method": method, "seed": seed,
            "model": {}, "trainer": TRAINERS[method], "data": {}, "eval": {}, "versions": {}, "history": history,
            "metrics": {"kl": kl, "rec": rec, "iw_nll": iw_nll, "iw_k": 100, "neg_elbo": kl + rec,
                        "kl_per_dim": [kl / 2, kl / 4, kl / 4, 0.0]}}


@pytest.fixture
def runs():
    yield [run(m, s, kl=1.0 + i + s, rec=50.0 - i - s, iw_nll=48.0 - 0.5 * i + 0.1 * s)
           for i, m in enumerate(TRAINERS) for s in (1, 0)]
    plt.close("all")


def scatter_points(ax):
    return [c.get_offsets().data.tolist() for c in ax.collections]


def test_rate_and_likelihood_draws_each_method_in_both_panels(runs):
    df = R.load_results(runs)
    fig = plots.rate_and_likelihood(df, title="mnist")
    left, right = fig.axes
    assert fig.get_size_inches()[0] <= 7
    assert left.get_xlabel() == right.get_xlabel() == "rate: KL (nats)"
    assert left.get_ylabel() == "distortion: rec (nats)" and right.get_ylabel() == "IW-NLL, k=100 (nats)"
    assert "mnist" in fig.get_suptitle() and left.get_legend() is None
    # one scatter per method, one dot per seed, in order of appearance
    assert scatter_points(left) == [[[1.0 + i + s, 50.0 - i - s] for s in (1, 0)] for i in range(3)]
    assert scatter_points(right) == [[[1.0 + i + s, pytest.approx(48.0 - 0.5 * i + 0.1 * s)] for s in (1, 0)]
                                     for i in range(3)]
    assert [c.get_facecolor()[0].tolist() for c in left.collections] == \
           [c.get_facecolor()[0].tolist() for c in right.collections]  # a method keeps its colour
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(TRAINERS)
    assert len(left.lines) == 3  # the -ELBO iso-lines


def test_kl_schedules_draws_each_methods_trainer_schedule(runs):
    fig = plots.kl_schedules(runs, offset=0.01)
    (ax,) = fig.axes
    assert fig.get_size_inches()[0] <= 7 and ax.get_xlabel() == "epoch" and ax.get_ylabel() == "KL weight"
    assert [line.get_label() for line in ax.lines] == list(TRAINERS)
    for i, (line, method) in enumerate(zip(ax.lines, TRAINERS, strict=True)):
        epochs, w = R.kl_weight_curve(TRAINERS[method], steps_per_epoch=5)
        assert np.allclose(line.get_xdata(), epochs) and np.allclose(line.get_ydata(), w + 0.01 * i)
    warm = ax.lines[2].get_ydata() - 0.02
    assert warm[0] == 0.0 and warm[-1] == 1.0 and np.allclose(ax.lines[1].get_ydata(), 0.51)


def test_method_histories_has_a_panel_per_key_and_a_line_per_method(runs):
    fig = plots.method_histories(runs, title="seed 0")
    assert fig.get_size_inches()[0] <= 7 and fig.get_suptitle() == "seed 0"
    assert [ax.get_title() for ax in fig.axes] == ["KL (nats)", "active units", "MI (nats)", "-ELBO (nats)"]
    kl = fig.axes[0]
    assert [line.get_label() for line in kl.lines] == list(TRAINERS)
    assert kl.lines[0].get_xdata().tolist() == [1, 2] and kl.lines[0].get_ydata().tolist() == [2.0, 3.0]  # seed 0
    seed1 = plots.method_histories(runs, keys=["val_kl", "val_au", "val_mi"], seed=1)
    assert len(seed1.axes) == 4 and not seed1.axes[3].axison  # three panels, the fourth left empty
    assert seed1.axes[0].lines[0].get_ydata().tolist() == [4.0, 5.0]


def test_trajectories_draw_means_per_method_and_differences_from_the_reference():
    rows = [{"dataset": "omniglot", "method": m, "seed": s, "name": f"{m}{s}", "epoch": e,
             "val_kl": k * e + s, "val_neg_elbo": 100.0 - e + k}
            for m, k, last in [("ref", 0.0, 4), ("a", 1.0, 4), ("b", 2.0, 4)] for s in (0, 1)
            for e in range(1, (3 if (m, s) == ("b", 1) else last) + 1)]
    hist = pd.DataFrame(rows)
    fig = plots.trajectories(hist, reference="ref", start=2, title="long")
    kl, elbo = fig.axes[:2]
    assert fig.get_size_inches()[0] <= 7 and fig.get_suptitle() == "long"
    assert elbo.get_title() == "-ELBO (nats) minus ref's" and kl.get_title() == "KL (nats)"
    means = {line.get_label(): line for line in kl.lines if not line.get_label().startswith("_")}
    assert list(means) == ["ref", "a", "b"]
    assert means["a"].get_xdata().tolist() == [2, 3, 4] and means["a"].get_ydata().tolist() == [2.5, 3.5, 4.5]
    assert means["b"].get_xdata().tolist() == [2, 3]  # seed 1 stopped after epoch 3: the mean ends there
    diff = {line.get_label(): line for line in elbo.lines if not line.get_label().startswith("_")}
    assert diff["b"].get_ydata().tolist() == [2.0, 2.0] and diff["ref"].get_ydata().tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="reference"):
        plots.trajectories(hist, reference="nope")


def test_run_kl_per_dim_sorts_each_methods_kl(runs):
    fig = plots.run_kl_per_dim(runs, threshold=0.1)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert fig.get_size_inches()[0] <= 7 and ax.get_ylabel() == "KL (nats)"
    assert heights[:4] == [0.5, 0.25, 0.25, 0.0] and heights[4:8] == [1.0, 0.5, 0.5, 0.0]  # seed 0, sorted


def test_history_puts_two_panels_per_row_and_the_legend_below():
    fig = plots.history({"a": [{"epoch": 1, "val_kl": 1.0}, {"epoch": 2, "val_kl": ""}]},
                        keys=["val_kl", "kl_weight", "val_mi"], labels={"val_kl": "rate"})
    assert fig.get_size_inches()[0] == pytest.approx(plots.FIG_WIDTH)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["rate", "KL weight", "MI (nats)"]    # a 2 x 2 grid, one hidden
    assert shown[0].lines[0].get_ydata().tolist() == [1.0] and shown[1].lines[0].get_ydata().size == 0
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)   # outside the data
    plt.close("all")


def test_posterior_mean_space_plots_each_coordinate_against_the_truth():
    q = np.array([[0.0, 0.1], [0.5, -0.2], [1.0, 0.3]])
    p = np.array([[0.2, 0.0], [0.6, -0.4], [1.5, 0.2]])
    fig = plots.posterior_mean_space(q, p, title="epoch 1")
    assert len(fig.axes) == 2 and fig.get_figwidth() <= 7
    for k, ax in enumerate(fig.axes):
        x, y = ax.collections[0].get_offsets().T
        assert np.allclose(x, q[:, k]) and np.allclose(y, p[:, k])       # encoder mean on x, truth on y
        assert ax.get_xlim() == ax.get_ylim()                             # the y = x line is a diagonal
        assert f"z_{k + 1}" in ax.get_xlabel()
    plt.close(fig)
    one = plots.posterior_mean_space(q[:, 0], p[:, 0])                    # a 1-D latent: one panel
    assert len(one.axes) == 1
    plt.close(one)
    with pytest.raises(ValueError, match="N, 2"):
        plots.posterior_mean_space(np.zeros((3, 3)), np.zeros((3, 3)))


def test_posterior_mean_grid_one_row_per_method_one_column_per_epoch():
    q = np.array([[0.0, 0.1], [0.5, -0.2], [1.0, 0.3]])
    p = np.array([[0.2, 0.0], [0.6, -0.4], [1.5, 0.2]])
    studies = {"vae": {0: {"q_mean": q, "p_mean": p}, 3: {"q_mean": q * 0, "p_mean": p}},
               "aggressive": {0: {"q_mean": q, "p_mean": p}, 3: {"q_mean": p, "p_mean": p}}}
    fig = plots.posterior_mean_grid(studies, coord=1)
    assert len(fig.axes) == 4 and fig.get_figwidth() <= 7
    top_right, bottom_right = fig.axes[1], fig.axes[3]
    assert top_right.get_title() == "epoch 3" and fig.axes[0].get_title() == "before training"
    x, y = top_right.collections[0].get_offsets().T
    assert np.allclose(x, 0) and np.allclose(y, p[:, 1])        # vae at epoch 3: the encoder says 0
    x, y = bottom_right.collections[0].get_offsets().T
    assert np.allclose(x, y)                                      # on the diagonal: caught up
    assert "aggressive" in fig.axes[2].get_ylabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        plots.posterior_mean_grid({})


def test_lambda_paths_draws_baselines_as_points_and_targets_as_paths():
    import pandas as pd

    rows = []
    for seed in (0, 1):
        rows += [dict(method="vae", seed=seed, kl=0.0, rec=45.0 + seed, iw_nll=44.9, iw_k=500),
                 dict(method="beta", seed=seed, kl=4.0, rec=42.0, iw_nll=45.2, iw_k=500)]
        rows += [dict(method=f"label_l{lam:g}", seed=seed, kl=lam / 10, rec=44.0 - lam / 100, iw_nll=45.0, iw_k=500)
                 for lam in (1, 10, 100)]
    df = pd.DataFrame(rows)
    fig = plots.lambda_paths(df, ["vae", "beta"], {"label": [(100, "label_l100"), (1, "label_l1"), (10, "label_l10")]})
    left, right = fig.axes[:2]
    path = [ln for ln in left.get_lines() if ln.get_label() == "VAE-AS label"][0]
    assert list(path.get_xdata()) == [0.1, 1.0, 10.0]                   # sorted by lambda
    assert [t.get_text() for t in left.texts] == ["1", "10", "100"]
    assert fig.get_figwidth() <= 7 and "k=500" in right.get_ylabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="at most 9"):
        plots.lambda_paths(df, [f"m{i}" for i in range(10)], {})


def test_rd_frontier_sorts_the_frontier_by_rate_and_the_paths_by_lambda():
    frontier = [(1.0, 9.0, 82.0), (0.25, 38.8, 61.9), (0.5, 20.0, 70.0)]
    paths = {"label": [(10.0, 15.5, 78.0), (1.0, 10.9, 80.4), (3.0, 13.3, 77.9)]}
    fig = plots.rd_frontier(frontier, paths, nll=88.2, zoom=(8, 16))
    left, right = fig.axes[:2]
    lines = {ln.get_label(): ln for ln in left.get_lines()}
    assert list(lines["β sweep (frontier)"].get_xdata()) == [9.0, 20.0, 38.8]
    assert list(lines["VAE-AS label, over λ"].get_xdata()) == [10.9, 13.3, 15.5]
    diag = lines["R + D = 88.2 (≥ H)"]
    assert np.allclose(diag.get_xdata() + diag.get_ydata(), 88.2)
    assert right.get_xlim() == (8, 16) and {t.get_text() for t in right.texts} >= {"β=1", "1", "3", "10"}
    assert fig.get_figwidth() <= plots.FIG_WIDTH
    plt.close(fig)


def test_latent_scatter_gives_each_class_its_own_colour():
    z = np.random.default_rng(0).normal(size=(40, 2))
    labels = np.repeat(np.arange(4), 10)
    fig = plots.latent_scatter(z, labels)
    sc = fig.axes[0].collections[0]
    colours = sc.to_rgba(sc.get_array())[:, :3]
    per_class = [np.unique(colours[labels == k], axis=0) for k in range(4)]
    assert all(len(c) == 1 for c in per_class)                        # one colour per class
    assert len(np.unique(np.vstack(per_class), axis=0)) == 4          # and four different ones
    assert sc.cmap.N == 4                                             # the colour bar shows 4 colours, not 10
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["0", "1", "2", "3"]
    plt.close(fig)


def _distance(a: str, b: str) -> float:
    from matplotlib.colors import to_rgb

    return float(np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b))))


def test_the_palette_has_nine_distinct_colours():
    assert len(plots.PALETTE) == 9
    assert min(_distance(a, b) for i, a in enumerate(plots.PALETTE) for b in plots.PALETTE[i + 1:]) > 0.2


def test_every_figure_fits_the_column_with_text_of_at_least_10_pt(runs):
    import pandas as pd

    plots.use_style()
    try:
        df = R.load_results(runs)
        rows = [dict(method=m, seed=s, kl=float(i), rec=45.0 - i, iw_nll=44.0 + i, iw_k=500)
                for i, m in enumerate(["vae", "beta", "label_l1", "label_l10"]) for s in (0, 1)]
        q = np.random.default_rng(0).normal(size=(30, 2))
        study = {0: {"q_mean": q, "p_mean": q}, 1: {"q_mean": q, "p_mean": 2 * q}}
        figures = {
            "history": plots.history({m: r["history"] for m, r in zip("abcdefg", runs, strict=False)}),
            "method_histories": plots.method_histories(runs),
            "rate_and_likelihood": plots.rate_and_likelihood(df, title="mnist"),
            "kl_schedules": plots.kl_schedules(runs),
            "run_kl_per_dim": plots.run_kl_per_dim(runs, threshold=0.1),
            "lambda_paths": plots.lambda_paths(pd.DataFrame(rows), ["vae", "beta"],
                                               {"label": [(1, "label_l1"), (10, "label_l10")]}, title="t"),
            "posterior_mean_grid": plots.posterior_mean_grid({"vae": study, "label": study}),
            "latent_scatter": plots.latent_scatter(q, np.arange(30) % 4),
            "reconstructions": plots.reconstructions(np.random.rand(12, 784), {"D = 2": np.random.rand(12, 784)}, n=12),
            "image_grid": plots.image_grid(np.random.rand(32, 784), nrow=16),
            "vaeas_diagram": plots.vaeas_diagram(),
        }
        for name, fig in figures.items():
            assert fig.get_figwidth() <= plots.FIG_WIDTH + 1e-9, f"{name}: {fig.get_figwidth():.2f} in wide"
            fig.canvas.draw()
            small = sorted({round(t.get_fontsize(), 1) for t in fig.findobj(matplotlib.text.Text)
                            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < plots.MIN_FONT})
            assert not small, f"{name}: text at {small} pt"
    finally:
        plt.close("all")
        matplotlib.rcdefaults()
