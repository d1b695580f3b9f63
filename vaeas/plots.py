"""The book's figures: one function per kind of figure, one style (:func:`use_style`).

Every function takes plain numbers, tensors or result data (a :func:`vaeas.results.load_results`
frame, result dicts; never a model or a trainer) and returns the matplotlib ``Figure`` (or draws
into the given ``ax``), so notebooks and the CLI share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

#: Paul Tol's "muted" scheme: nine colours that stay distinct for colour-blind readers and on white
#: (the method colours ``C0``..``C8`` once :func:`use_style` has run).
PALETTE = ["#332288", "#CC6677", "#117733", "#DDCC77", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499"]
#: The widest figure, in inches: a book column is about 7 in (672 CSS px), so a figure of at most this
#: width is shown at about its own size and its 10 pt text stays 10 pt on the page.
FIG_WIDTH = 7.0
#: The smallest font, in points, of any text of a figure.
MIN_FONT = 10


def use_style() -> None:
    """The book's plotting style: seaborn ``whitegrid``, :data:`PALETTE`, every text at least
    :data:`MIN_FONT` pt, images at 150 dpi (figures are at most :data:`FIG_WIDTH` inches wide)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook")
    plt.rcParams.update({"figure.dpi": 150, "savefig.dpi": 150, "axes.titleweight": "bold",
                         "font.size": MIN_FONT, "axes.titlesize": MIN_FONT + 1, "axes.labelsize": MIN_FONT,
                         "xtick.labelsize": MIN_FONT, "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT,
                         "legend.title_fontsize": MIN_FONT, "figure.titlesize": MIN_FONT + 1})


def _np(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def image_grid(images: Tensor | np.ndarray, nrow: int = 8, title: str | None = None,
               ax: plt.Axes | None = None, image_shape: tuple[int, int] = (28, 28)) -> plt.Figure:
    """Show ``images (N, 784)`` (values in [0, 1]) as a grid with ``nrow`` images per row."""
    imgs = _np(images).reshape(-1, *image_shape)
    n = len(imgs)
    rows = int(np.ceil(n / nrow))
    h, w = image_shape
    canvas = np.ones((rows * (h + 2) + 2, nrow * (w + 2) + 2))
    for i, img in enumerate(imgs):
        r, c = divmod(i, nrow)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = 1 - img
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(FIG_WIDTH, nrow * 0.45 + 0.3), rows * 0.45 + 0.5))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def save_image_grid(images: Tensor, path: str, nrow: int = 8) -> None:
    """Write ``images (N, 784)`` to a PNG grid (black strokes on white)."""
    from torchvision.utils import save_image

    imgs = 1 - images.detach().float().cpu().view(-1, 1, 28, 28).clamp(0, 1)
    save_image(imgs, path, nrow=nrow, padding=2, pad_value=1.0)


def reconstructions(x: Tensor, recon: Mapping[str, Tensor], n: int = 10) -> plt.Figure:
    """Rows: the inputs ``x (N, 784)``, then one row per model in ``recon`` (name -> (N, 784))."""
    rows = 1 + len(recon)
    fig, axes = plt.subplots(rows, 1, figsize=(min(FIG_WIDTH, n * 0.5 + 1.5), rows * 0.62 + 0.2))
    axes = np.atleast_1d(axes)
    image_grid(x[:n], nrow=n, ax=axes[0])
    axes[0].set_title("input", fontsize=MIN_FONT, loc="left")
    for ax, (name, r) in zip(axes[1:], recon.items(), strict=True):
        image_grid(r[:n], nrow=n, ax=ax)
        ax.set_title(name, fontsize=MIN_FONT, loc="left")
    fig.tight_layout()
    return fig


def history(histories: Mapping[str, Sequence[Mapping[str, Any]]],
            keys: Sequence[str] = ("val_neg_elbo", "val_kl", "val_mi", "val_au"),
            labels: Mapping[str, str] | None = None) -> plt.Figure:
    """One panel per metric in ``keys`` (two per row), one line per run (name -> list of per-epoch
    dicts), one legend under the panels."""
    ncol = min(2, len(keys))
    rows = -(-len(keys) // ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(FIG_WIDTH if ncol == 2 else 3.6, 2.6 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        _history_panel(ax, histories, key, labels)
    _legend_below(fig, axes.flat[0], ncol=min(3, len(histories)))
    return fig


#: Panel titles of the history figures: history key -> title.
HISTORY_NAMES = {"val_neg_elbo": "-ELBO (nats)", "val_kl": "KL (nats)", "val_mi": "MI (nats)",
                 "val_au": "active units", "train_loss": "training loss (nats)", "train_ce": "CE (nats)",
                 "val_rec": "reconstruction (nats)", "kl_weight": "KL weight"}


def _history_panel(ax: plt.Axes, histories: Mapping[str, Sequence[Mapping[str, Any]]], key: str,
                   labels: Mapping[str, str] | None = None) -> None:
    """One metric's per-epoch curves, one per run, into ``ax`` (entries without the key skipped)."""
    for run, rows in histories.items():
        ep = [r["epoch"] for r in rows if key in r and r[key] not in ("", None)]
        val = [float(r[key]) for r in rows if key in r and r[key] not in ("", None)]
        ax.plot(ep, val, marker="o", ms=3, label=run)
    ax.set_xlabel("epoch")
    ax.set_title({**HISTORY_NAMES, **(labels or {})}.get(key, key), fontsize=10)


def kl_per_dim(kls: Mapping[str, Sequence[float] | Tensor], sort: bool = True,
               threshold: float | None = None) -> plt.Figure:
    """Bar chart of the KL per latent dimension (nats) for each model, sorted high to low."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    width = 0.8 / max(len(kls), 1)
    for i, (name, kl) in enumerate(kls.items()):
        v = _np(kl)
        if sort:
            v = np.sort(v)[::-1]
        ax.bar(np.arange(len(v)) + i * width, v, width=width, label=name)
    if threshold is not None:
        ax.axhline(threshold, color="k", lw=0.8, ls="--")
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("KL (nats)")
    ax.legend(fontsize=MIN_FONT, frameon=False)
    fig.tight_layout()
    return fig


def latent_scatter(z: Tensor, labels: Tensor, ax: plt.Axes | None = None, title: str | None = None,
                   max_points: int = 5000) -> plt.Figure:
    """Scatter of 2-D codes ``z (N, 2)`` coloured by ``labels (N,)``."""
    z, labels = _np(z)[:max_points], _np(labels)[:max_points]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4))
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = int(labels.max()) + 1  # one colour per class, a discrete colour bar
    colours = PALETTE if n <= len(PALETTE) else plt.get_cmap("tab20").colors
    cmap = ListedColormap(colours[:n]) if n <= 20 else "viridis"
    norm = BoundaryNorm(np.arange(-0.5, n + 0.5), n) if n <= 20 else None
    sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap=cmap, norm=norm, s=3, alpha=0.7)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(sc, ax=ax, ticks=range(n) if n <= 20 else None)
    return ax.figure


def latent_manifold(decode_mean: Any, n: int = 15, span: float = 2.5) -> plt.Figure:
    """Decode a regular grid of 2-D codes in ``[-span, span]^2`` (``decode_mean: (M, 2) -> (M, 784)``)."""
    g = torch.linspace(-span, span, n)
    zz = torch.stack(torch.meshgrid(g, -g, indexing="xy"), -1).view(-1, 2)
    imgs = decode_mean(zz)
    fig, ax = plt.subplots(figsize=(5, 5))
    image_grid(imgs, nrow=n, ax=ax)
    return fig


def rate_distortion(points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                    ax: plt.Axes | None = None) -> plt.Figure:
    """Rate (KL, nats) against distortion (reconstruction, nats), one colour per method.

    ``points``: name -> (rates, distortions), one entry per seed. The dashed lines are -ELBO
    iso-lines (rate + distortion = const).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    allr, alld = [], []
    for name, (r, d) in points.items():
        ax.scatter(r, d, label=name, s=28)
        allr += list(r)
        alld += list(d)
    if allr:
        lo, hi = min(r + d for r, d in zip(allr, alld, strict=True)), max(
            r + d for r, d in zip(allr, alld, strict=True))
        rr = np.linspace(0, max(allr) * 1.1 + 1, 50)
        for c in np.linspace(lo, hi, 3):
            ax.plot(rr, c - rr, color="grey", lw=0.6, ls="--")
        ax.set_ylim(min(alld) - 3, max(alld) + 3)
    ax.set_xlabel("rate: KL (nats)")
    ax.set_ylabel("distortion: reconstruction (nats)")
    ax.legend(fontsize=MIN_FONT, frameon=False)
    return ax.figure


def rd_frontier(frontier: Sequence[tuple[float, float, float]],
                paths: Mapping[str, Sequence[tuple[float, float, float]]], nll: float | None = None,
                zoom: tuple[float, float] | None = None) -> plt.Figure:
    """The rate–distortion plane of Alemi et al. (2018): a β sweep traces the frontier, each VAE-AS
    target is a path over its weight λ.

    ``frontier``: ``[(beta, rate, distortion), ...]``; ``paths``: target -> ``[(lam, rate,
    distortion), ...]``; all in nats. ``nll``: the best negative log-likelihood measured, an upper
    bound on the data entropy H: the dotted line R + D = ``nll`` is drawn, and every model lies on or
    above R + D = H (because H − D ≤ I ≤ R), which lies on or below it. ``zoom``: a range of rates
    shown again, enlarged, in a second panel.
    """
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(FIG_WIDTH, 3.6) if zoom else (4.6, 3.6),
                             squeeze=False)
    fb = sorted(frontier, key=lambda t: t[1])
    for ax in axes[0]:
        ax.plot([r for _, r, _ in fb], [d for *_, d in fb], color="k", marker="s", ms=4, lw=1.2,
                label="β sweep (frontier)", zorder=3)
        for i, (target, pts) in enumerate(paths.items()):
            pts = sorted(pts)
            ax.plot([r for _, r, _ in pts], [d for *_, d in pts], color=f"C{i}", marker="o", ms=4, lw=1.1,
                    label=f"VAE-AS {target}, over λ", zorder=2)
        if nll is not None:
            rr = np.linspace(0, max(r for _, r, _ in fb) * 1.05, 50)
            ax.plot(rr, nll - rr, color="grey", lw=0.8, ls=":", label=f"R + D = {nll:.1f} (≥ H)", zorder=1)
        ax.set(xlabel="rate R: KL (nats)", ylabel="distortion D: rec (nats)")
    ax0 = axes[0][0]
    for beta, r, d in fb:
        ax0.annotate(f"β={beta:g}", (r, d), textcoords="offset points", xytext=(4, 4), fontsize=MIN_FONT)
    ds = [d for *_, d in fb] + [d for pts in paths.values() for *_, d in pts]
    ax0.set_ylim(min(ds) - 5, max(ds) + 5)
    if zoom:
        lo, hi = zoom
        ax1 = axes[0][1]
        inside = [(r, d) for r, d in [(r, d) for _, r, d in fb] + [(r, d) for p in paths.values() for _, r, d in p]
                  if lo <= r <= hi]
        ax1.set_xlim(lo, hi)
        if inside:
            ax1.set_ylim(min(d for _, d in inside) - 1, max(d for _, d in inside) + 1)
        for beta, r, d in fb:
            if lo <= r <= hi:
                ax1.annotate(f"β={beta:g}", (r, d), textcoords="offset points", xytext=(4, 4), fontsize=MIN_FONT)
        for i, pts in enumerate(paths.values()):
            for lam, r, d in pts:
                if lo <= r <= hi:
                    ax1.annotate(f"{lam:g}", (r, d), textcoords="offset points", xytext=(3, -11),
                                 fontsize=MIN_FONT, color=f"C{i}")
        ax1.set_title("enlarged", fontsize=MIN_FONT)
    _legend_below(fig, ax0, ncol=3)
    return fig


# ----------------------------------------------------------------------------- the comparison chapters
def _seed_runs(results: Any, seed: int | None) -> Mapping[str, Mapping[str, Any]]:
    from .results import seed_runs

    return results if isinstance(results, Mapping) else seed_runs(results, seed)


def _legend_below(fig: plt.Figure, ax: plt.Axes, ncol: int = 4) -> None:
    """One legend for the whole figure, under its panels, outside the data (entries taken from
    ``ax``); lays the panels out above the room its rows need. Call it last."""
    handles, labels = ax.get_legend_handles_labels()
    rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=MIN_FONT, frameon=False)
    fig.tight_layout(rect=(0, (0.1 + 0.25 * rows) / fig.get_figheight(), 1, 1))


def rate_and_likelihood(df: Any, title: str | None = None) -> plt.Figure:
    """Two panels for the runs of one dataset, one colour per method, one dot per seed: rate
    against distortion with -ELBO iso-lines (:func:`rate_distortion`), and the IW-NLL against the
    same rate.

    ``df``: a :func:`vaeas.results.load_results` frame with ``method``, ``kl``, ``rec``,
    ``iw_nll`` and ``iw_k`` (the number of importance samples, shown on the axis); methods in
    order of appearance. ``title``: the figure's title (e.g. the dataset).
    """
    by_method = list(df.groupby("method", sort=False))
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 3.7))
    rate_distortion({m: (g["kl"].tolist(), g["rec"].tolist()) for m, g in by_method}, ax=axes[0])
    axes[0].get_legend().remove()
    axes[0].set_ylabel("distortion: rec (nats)")
    axes[0].set_title("rate vs distortion", fontsize=10)
    for i, (m, g) in enumerate(by_method):
        axes[1].scatter(g["kl"], g["iw_nll"], color=f"C{i}", label=m, s=28)
    axes[1].set_xlabel("rate: KL (nats)")
    ks = sorted({int(k) for k in df["iw_k"].dropna()}) if "iw_k" in df else []
    axes[1].set_ylabel(f"IW-NLL, k={', '.join(map(str, ks))} (nats)" if ks else "IW-NLL (nats)")
    axes[1].set_title("what the rate buys in likelihood", fontsize=10)
    if title:
        fig.suptitle(f"{title}: test rate, distortion and likelihood (each dot a seed)", fontsize=11)
    _legend_below(fig, axes[0])
    return fig


def kl_schedules(results: Any, seed: int | None = None, offset: float = 0.012) -> plt.Figure:
    """The KL weight each method trains with, update by update, in epochs: the schedule that the
    run's own ``Trainer`` config builds (:func:`vaeas.results.kl_weight_curve`).

    ``results``: result dicts (each method's run of ``seed``, default the smallest, is drawn) or a
    mapping method -> result dict. Curve ``i`` is raised by ``i * offset`` so equal schedules stay
    visible side by side.
    """
    from .results import kl_weight_curve, steps_per_epoch

    fig, ax = plt.subplots(figsize=(7, 2.6))
    for i, (m, r) in enumerate(_seed_runs(results, seed).items()):
        ep, w = kl_weight_curve(r["trainer"], steps_per_epoch(r))
        ax.plot(ep, w + offset * i, label=m, lw=1.4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("KL weight")
    ax.legend(fontsize=MIN_FONT, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("the KL weight each method trains with (curves offset slightly)", fontsize=10)
    fig.tight_layout()
    return fig


def run_kl_per_dim(results: Any, seed: int | None = None, threshold: float | None = None) -> plt.Figure:
    """:func:`kl_per_dim` of each method's run of one seed: the test KL per latent dimension from
    its result's ``kl_per_dim`` metric, sorted high to low.

    ``results``: result dicts (each method's run of ``seed``, default the smallest) or a mapping
    method -> result dict; ``threshold``: a dashed line at that KL (nats).
    """
    runs = _seed_runs(results, seed)
    return kl_per_dim({m: r["metrics"]["kl_per_dim"] for m, r in runs.items()}, threshold=threshold)


def method_histories(results: Any, keys: Sequence[str] = ("val_kl", "val_au", "val_mi", "val_neg_elbo"),
                     seed: int | None = None, title: str | None = None) -> plt.Figure:
    """Each method's per-epoch history for one seed, one panel per key in ``keys`` (two per row),
    one line per method, one legend under the panels.

    ``results``: result dicts (each method's run of ``seed``, default the smallest) or a mapping
    method -> result dict. ``title``: the figure's title.
    """
    histories = {m: r["history"] for m, r in _seed_runs(results, seed).items()}
    rows = int(np.ceil(len(keys) / 2))
    height = 2.4 * rows + 0.6
    fig, axes = plt.subplots(rows, 2, figsize=(6.8, height), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        _history_panel(ax, histories, key)
    for ax in axes.flat[len(keys):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    _legend_below(fig, axes.flat[0])
    return fig


def trajectories(histories: Any, keys: Sequence[str] = ("val_kl", "val_neg_elbo"), reference: str | None = None,
                 relative: Sequence[str] = ("val_neg_elbo",), start: int = 1, title: str | None = None) -> plt.Figure:
    """Long runs epoch by epoch, one panel per key (two per row): each method's mean over its seeds
    as a line, every seed as a faint line; one colour per method in order of appearance.

    ``histories``: a :func:`vaeas.results.load_histories` frame (``method``, ``seed``, ``epoch`` and
    the keys) of one dataset. A method's mean is drawn up to the last epoch that all of its seeds
    reached (an early-stopped seed ends its own faint line). With ``reference``, the keys in
    ``relative`` are drawn minus the reference method's mean at the same epoch (a dashed zero line),
    so that differences of a nat stay visible beside values of a hundred. ``start``: the first
    epoch drawn (the first epochs' values can dwarf the rest).
    """
    df = histories[histories["epoch"] >= start]
    methods = list(dict.fromkeys(df["method"]))
    ref = None
    if reference is not None:
        if reference not in methods:
            raise ValueError(f"trajectories: no runs of the reference method {reference!r}")
        ref = df[df["method"] == reference].groupby("epoch")[list(keys)].mean()
    rows = -(-len(keys) // 2)
    fig, axes = plt.subplots(rows, 2 if len(keys) > 1 else 1, figsize=(6.8, 2.7 * rows + 0.9), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        shift = ref is not None and key in relative
        for i, m in enumerate(methods):
            g = df[df["method"] == m]
            curves = g.pivot_table(index="epoch", columns="seed", values=key)
            if shift:
                curves = curves.sub(ref[key], axis=0)
            for seed in curves.columns:
                ax.plot(curves.index, curves[seed], color=f"C{i}", lw=0.6, alpha=0.3)
            last = int(g.groupby("seed")["epoch"].max().min())
            mean = curves.loc[curves.index <= last].mean(axis=1)
            ax.plot(mean.index, mean.values, color=f"C{i}", lw=1.8, label=m)
        name = HISTORY_NAMES.get(key, key)
        ax.set_title(f"{name} minus {reference}'s" if shift else name, fontsize=10)
        if shift:
            ax.axhline(0, color="0.3", ls="--", lw=1)
        ax.set_xlabel("epoch")
    for ax in axes.flat[len(keys):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    _legend_below(fig, axes.flat[0], ncol=3)
    return fig


def posterior_mean_space(q_mean: Tensor | np.ndarray, p_mean: Tensor | np.ndarray,
                         axes: Sequence[plt.Axes] | None = None, title: str | None = None,
                         span: float | None = None) -> plt.Figure:
    """He et al.'s (2019) *posterior-mean space*: encoder mean against the true posterior mean.

    ``q_mean (N, D)`` is ``E_q(z|x)[z] = mu(x)`` and ``p_mean (N, D)`` the mean of the model's own
    posterior ``p(z|x)`` (from :func:`vaeas.posterior.true_posterior_means`), for ``D`` of 1 or 2;
    one panel per latent coordinate, with the line ``y = x`` on which an encoder that has caught up
    with the model lies. Collapse shows as points squeezed onto ``x = 0`` (the encoder returns the
    prior's mean) while the true posterior means still spread along ``y``. Returns the figure (7 in
    wide for two panels).
    """
    q, p = _np(q_mean), _np(p_mean)
    if q.ndim == 1:
        q, p = q[:, None], p[:, None]
    if q.shape != p.shape or q.shape[1] not in (1, 2):
        raise ValueError(f"q_mean and p_mean must both be (N, 1) or (N, 2), got {q.shape} and {p.shape}")
    d = q.shape[1]
    if axes is None:
        fig, axes = plt.subplots(1, d, figsize=(3.5 * d, 3.4), squeeze=False)
        axes = list(axes[0])
    fig = axes[0].figure
    lim = span if span is not None else float(max(np.abs(q).max(), np.abs(p).max(), 1e-3)) * 1.05
    for k, ax in enumerate(axes):
        ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=1, ls="--", zorder=0)
        ax.scatter(q[:, k], p[:, k], s=6, alpha=0.5, color="C0")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
               xlabel=f"approximate posterior mean, $z_{k + 1}$",
               ylabel=f"true posterior mean, $z_{k + 1}$" if k == 0 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def posterior_mean_grid(studies: Mapping[str, Mapping[int, Mapping[str, Any]]], coord: int = 0,
                        span: float | None = None, epoch_label: str = "epoch {e}") -> plt.Figure:
    """:func:`posterior_mean_space` for several methods (rows) at several points of training
    (columns), one latent coordinate ``coord``: ``studies[method][epoch]`` holds ``q_mean`` and
    ``p_mean`` (``(N, D)``, as from :func:`vaeas.sweep.posterior_means`). Shared axes, 7 in wide."""
    methods = list(studies)
    epochs = sorted({e for m in methods for e in studies[m]})
    if not methods or not epochs:
        raise ValueError("posterior_mean_grid needs at least one method and one epoch")
    lim = span if span is not None else 1.05 * max(
        float(np.abs(_np(d[k])[:, coord]).max()) for m in methods for d in studies[m].values()
        for k in ("q_mean", "p_mean"))
    ncol = len(epochs)
    fig, axes = plt.subplots(len(methods), ncol, figsize=(7, 7 / ncol * len(methods) + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    for i, m in enumerate(methods):
        for j, e in enumerate(epochs):
            ax = axes[i, j]
            ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=1, ls="--", zorder=0)
            if e in studies[m]:
                q, p = _np(studies[m][e]["q_mean"]), _np(studies[m][e]["p_mean"])
                ax.scatter(q[:, coord], p[:, coord], s=4, alpha=0.4, color="C0", rasterized=True)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
            if i == 0:
                ax.set_title("before training" if e == 0 else epoch_label.format(e=e), fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{m}\ntrue mean")
            if i == len(methods) - 1:
                ax.set_xlabel("encoder mean")
    fig.tight_layout()
    return fig


def lambda_paths(df: Any, baselines: Sequence[str], paths: Mapping[str, Sequence[tuple[float, str]]],
                 title: str | None = None) -> plt.Figure:
    """Every method on the rate–distortion plane and against the likelihood, with each VAE-AS target
    drawn as a path over its weight λ.

    ``df``: a :func:`vaeas.results.load_results` frame (``method``, ``kl``, ``rec``, ``iw_nll``) of
    one dataset. ``baselines``: methods drawn as one marker each (their mean over seeds, seeds as
    small dots); ``paths``: target -> ``[(lam, method), ...]``, drawn as a line through the means in
    order of ``lam`` with each point labelled by its λ. Left: rate against distortion with dashed
    −ELBO iso-lines; right: rate against IW-NLL. At most 10 colours (baselines, then paths).
    """
    n_colours = len(baselines) + len(paths)
    if n_colours > len(PALETTE):
        raise ValueError(f"lambda_paths draws at most {len(PALETTE)} methods and paths (one colour each), "
                         f"got {n_colours}")
    means = df.groupby("method", sort=False)[["kl", "rec", "iw_nll"]].mean()
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.9))
    markers = "osD^vP*Xhp"
    for i, m in enumerate(baselines):
        g = df[df["method"] == m]
        for ax, y in zip(axes, ("rec", "iw_nll"), strict=True):
            ax.scatter(g["kl"], g[y], color=f"C{i}", s=8, alpha=0.35)
            ax.scatter(means.loc[m, "kl"], means.loc[m, y], color=f"C{i}", marker=markers[i], s=46,
                       edgecolor="k", linewidth=0.5, label=m, zorder=3)
    for j, (target, pts) in enumerate(paths.items(), start=len(baselines)):
        pts = sorted((float(lam), m) for lam, m in pts if m in means.index)
        for ax, y in zip(axes, ("rec", "iw_nll"), strict=True):
            xs = [means.loc[m, "kl"] for _, m in pts]
            ys = [means.loc[m, y] for _, m in pts]
            ax.plot(xs, ys, color=f"C{j}", marker="o", ms=4, lw=1.4, label=f"VAE-AS {target}", zorder=2)
            if ax is axes[0]:
                for (lam, _), xx, yy in zip(pts, xs, ys, strict=True):
                    ax.annotate(f"{lam:g}", (xx, yy), textcoords="offset points", xytext=(3, 3), fontsize=MIN_FONT,
                                color=f"C{j}")
    rates, recs = means["kl"].to_numpy(), means["rec"].to_numpy()
    rr = np.linspace(0, rates.max() * 1.05 + 0.5, 50)
    for c in np.linspace((rates + recs).min(), (rates + recs).max(), 3):
        axes[0].plot(rr, c - rr, color="grey", lw=0.6, ls="--", zorder=0)
    axes[0].set_ylim(recs.min() - 0.5, recs.max() + 0.5)
    axes[0].set(xlabel="rate: KL (nats)", ylabel="distortion: rec (nats)")
    ks = sorted({int(k) for k in df["iw_k"].dropna()}) if "iw_k" in df else []
    k_text = f", k={', '.join(map(str, ks))}" if ks else ""
    axes[1].set(xlabel="rate: KL (nats)", ylabel=f"IW-NLL{k_text} (nats)")
    if title:
        fig.suptitle(title, fontsize=11)
    _legend_below(fig, axes[0], ncol=4)
    return fig


# ----------------------------------------------------------------------------- the VAE-AS chapter
def vaeas_diagram() -> plt.Figure:
    """VAE-AS as a block diagram: the VAE's encoder, sample ``z`` and MADE decoder, the branch VAE-AS
    adds (a classifier on the same ``z`` and its target), and the three terms of the loss."""
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 5.6))
    ax.set(xlim=(0, FIG_WIDTH), ylim=(-0.35, 5.25))
    ax.set_axis_off()
    grey, (pink, orange, blue, green) = "#dddddd", (PALETTE[i] for i in (1, 3, 4, 6))   # the style's colours
    boxes = {  # name: (x centre, y centre, width, text, colour), in inches
        "x": (0.75, 4.3, 1.3, "image $x$\n784 bits", grey),
        "enc": (2.65, 4.3, 2.1, "encoder\nMLP 784–512–256", blue),
        "post": (4.95, 4.3, 2.1, r"$\mu(x)$, $\log\sigma^2(x)$", blue),
        "kl": (1.85, 2.9, 3.1, r"KL$(q(z \mid x)\,\|\,\mathcal{N}(0, I))$", orange),
        "z": (4.95, 2.9, 2.1, "$z = \\mu + \\sigma \\odot \\varepsilon$\n"
                              "$\\varepsilon \\sim \\mathcal{N}(0, I)$", "white"),
        "c": (0.75, 1.5, 1.3, "target\n$c = f(x)$", grey),
        "clf": (2.75, 1.5, 2.1, "classifier $r(c \\mid z)$\nlinear + softmax", pink),
        "dec": (5.6, 1.5, 2.4, "MADE decoder\n$p(x_i \\mid x_{<i}, z)$", green),
        "ce": (2.75, 0.1, 2.1, r"CE $= -\log r(c \mid z)$", orange),
        "rec": (5.6, 0.1, 2.4, r"rec $= -\log p(x \mid z)$", orange),
    }
    half = 0.36                                            # half height of a box
    for xc, yc, w, text, colour in boxes.values():
        ax.add_patch(FancyBboxPatch((xc - w / 2, yc - half), w, 2 * half, boxstyle="round,pad=0.03",
                                    fc=colour, ec="k", lw=1))
        ax.text(xc, yc, text, ha="center", va="center", fontsize=MIN_FONT)

    def side(name: str, where: str) -> tuple[float, float]:
        xc, yc, w, *_ = boxes[name]
        return {"left": (xc - w / 2 - 0.04, yc), "right": (xc + w / 2 + 0.04, yc),
                "top": (xc, yc + half + 0.04), "bottom": (xc, yc - half - 0.04),
                "bottom-left": (xc - w / 4, yc - half - 0.04)}[where]

    arrows = [("x", "right", "enc", "left"), ("enc", "right", "post", "left"), ("post", "bottom", "z", "top"),
              ("post", "bottom-left", "kl", "right"), ("z", "bottom", "clf", "top"), ("z", "bottom", "dec", "top"),
              ("c", "right", "clf", "left"), ("clf", "bottom", "ce", "top"), ("dec", "bottom", "rec", "top")]
    for a, sa, b, sb in arrows:
        ax.annotate("", xy=side(b, sb), xytext=side(a, sa),
                    arrowprops=dict(arrowstyle="-|>", lw=1.4, color="k", mutation_scale=14))
    ax.text(FIG_WIDTH / 2, 5.1, "loss $=$ rec $+$ KL $+\\;\\lambda\\,\\cdot$ CE", ha="center", va="center",
            fontsize=MIN_FONT + 2, weight="bold")
    ax.text(6.95, 2.9, "one $z$,\nread by\nboth", ha="right", va="center", fontsize=MIN_FONT, color="0.3")
    fig.tight_layout()
    return fig
