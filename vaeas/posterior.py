"""The model's true posterior ``p(z|x)`` of a 1- or 2-D latent, by brute force on a grid, in nats.

He et al. (2019, "Lagging inference networks and posterior collapse in variational autoencoders",
ICLR, Figs. 1 and 3) diagnose collapse with a 2-D latent: for a few hundred test points they plot
the mean of the approximate posterior ``q(z|x)`` against the mean of the model's true posterior
``p(z|x) ∝ p(x|z) p(z)``. When the encoder lags behind, the encoder's means collapse onto a point
or a line while the true posterior's means still spread out. With ``D <= 2`` the true posterior can
be computed by evaluating the decoder on every point of a regular grid, which is what this module
does. It reads only the decoder side of :class:`vaeas.metrics.LatentVariableModel` (``decode``,
``latent_dim``, optionally ``log_likelihood``), is deterministic (no random numbers at all), and
runs in eval mode without gradients.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .distributions import standard_normal_log_density
from .metrics import IW_MAX_ELEMENTS, _bar, _chunks, _device, _eval_mode, _log_px

__all__ = ["MAX_GRID_LATENT_DIM", "latent_grid", "true_posterior", "true_posterior_means"]

MAX_GRID_LATENT_DIM = 2  # the grid has grid**D points: 3,600 for D = 2 and grid = 60


def latent_grid(span: float, grid: int, dim: int, device: torch.device | str = "cpu") -> Tensor:
    """The ``grid**dim`` points of a regular grid over ``[-span, span]^dim``: ``(grid**dim, dim)``.

    ``grid`` points per axis (both ends included), spacing ``h = 2 span / (grid - 1)``; the first
    coordinate varies slowest (``meshgrid`` with ``indexing="ij"``).
    """
    axis = torch.linspace(-span, span, grid, device=device)
    mesh = torch.meshgrid(*([axis] * dim), indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def _border_mask(grid: int, dim: int, device: torch.device) -> Tensor:
    """``(grid**dim,)`` bool: the grid points with at least one coordinate at ``±span``."""
    edge = torch.zeros(grid, device=device)
    edge[[0, -1]] = 1.0
    mesh = torch.meshgrid(*([edge] * dim), indexing="ij")  # same order as latent_grid
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1).amax(-1) > 0


def _grid_chunks(model: Any, x: Tensor, points: Tensor, max_rows: int) -> tuple[int, int]:
    """(inputs per step, grid points per decoder call): at most ``max_rows`` rows per call, fewer
    when one row's output is larger than an image's 784 values (token logits), as in ``iw_nll``."""
    per_row = model.decode(points[:1], x[:1]).numel()
    rows = max(1, min(max_rows, IW_MAX_ELEMENTS // max(per_row, 1)))
    g = len(points)
    if g <= rows:
        return max(1, rows // g), g
    calls = math.ceil(g / rows)
    return 1, math.ceil(g / calls)  # equal chunks, not one full chunk and a small remainder


def _log_joint(model: Any, xb: Tensor, points: Tensor, log_prior: Tensor, per_call: int) -> Tensor:
    """``log p(x|z_g) + log p(z_g)`` for every input of ``xb`` and every grid point: ``(n, G)``."""
    n = len(xb)
    parts = []
    for gs in _chunks(len(points), per_call):
        m = gs.stop - gs.start
        z = points[gs][None].expand(n, m, -1).reshape(n * m, -1)
        xr = xb[:, None].expand(n, m, *xb.shape[1:]).reshape(n * m, *xb.shape[1:])
        parts.append(_log_px(model, model.decode(z, xr), xr).float().view(n, m))
    return torch.cat(parts, dim=1) + log_prior


def true_posterior(model: Any, x: Tensor, span: float = 4.0, grid: int = 60, progress: bool = False,
                   max_rows: int = 4096) -> dict[str, Tensor]:
    """Moments of the true posterior ``p(z|x) ∝ p(x|z) N(z; 0, I)`` on a grid, for ``D <= 2``.

    The posterior is replaced by the discrete distribution on the ``G = grid**D`` points ``z_g`` of
    :func:`latent_grid` over ``[-span, span]^D`` with weights ``w_g = softmax_g(log p(x|z_g) +
    log N(z_g; 0, I))``. Returns, for ``x`` of ``N`` inputs (``(N, P)`` images or ``(N, T)`` tokens
    on the model's device):

    * ``mean (N, D)`` -- ``sum_g w_g z_g``, the posterior mean (latent units, like ``mu`` of ``q``);
    * ``std (N, D)`` -- the posterior standard deviation per dimension on the grid;
    * ``border_mass (N,)`` -- the weight on the grid points with a coordinate at ``±span``. It is
      the check that ``span`` is large enough: a posterior whose mass reaches the border is cut off
      and its mean is pulled inside (the prior alone puts about ``1e-4`` of its mass on the border
      of the default grid); values above about ``1e-3`` call for a larger ``span``;
    * ``log_px (N,)`` -- the quadrature ``log sum_g h^D p(x|z_g) p(z_g)`` of ``log p(x)`` (nats),
      with ``h = 2 span / (grid - 1)``: comparable with ``-iw_nll`` for a 2-D model.

    Discretisation. For a smooth posterior whose standard deviation is a few times ``h`` (0.136 for
    the default grid), the grid sums are accurate to far better than ``h`` (for a Gaussian the
    error falls like ``exp(-2 pi^2 std^2 / h^2)``). A posterior sharper than ``h`` sits between
    grid points and its mean is off by up to ``h / 2``: when ``std`` comes out near or below ``h``,
    use a finer grid (or a smaller ``span`` if ``border_mass`` allows it).

    Cost: ``N * grid**D`` decoder evaluations, in calls of at most ``max_rows`` rows (fewer when a
    row's output exceeds an image's 784 values, e.g. token logits), so memory is bounded whatever
    ``N``. ``D > 2`` is refused (``grid**D`` grows too fast). ``progress`` shows a bar over inputs.
    """
    dim = int(model.latent_dim)
    if not 1 <= dim <= MAX_GRID_LATENT_DIM:
        raise ValueError(f"the grid posterior needs latent_dim 1 or 2, got {dim}: the grid has grid**D "
                         f"points ({grid}**{dim} here); use iw_nll or the encoder for larger D")
    if grid < 2 or not span > 0:
        raise ValueError("need grid >= 2 points per axis and span > 0")
    device = _device(model)
    points = latent_grid(float(span), int(grid), dim, device)
    log_prior = standard_normal_log_density(points)
    border = _border_mask(int(grid), dim, device)
    log_cell = dim * math.log(2 * span / (grid - 1))
    out: dict[str, list[Tensor]] = {"mean": [], "std": [], "border_mass": [], "log_px": []}
    with _eval_mode(model), _bar(progress, len(x), f"true posterior grid={grid}^{dim} n={len(x)}") as bar:
        per_x, per_call = _grid_chunks(model, x, points, max_rows) if len(x) else (1, 1)
        for s in _chunks(len(x), per_x):
            log_w = _log_joint(model, x[s], points, log_prior, per_call)  # (n, G)
            log_z = torch.logsumexp(log_w, dim=1)
            w = torch.exp(log_w - log_z[:, None])
            mean = w @ points
            var = (w[:, :, None] * (points[None] - mean[:, None]).pow(2)).sum(1)
            out["mean"].append(mean)
            out["std"].append(var.sqrt())
            out["border_mass"].append(w[:, border].sum(1))
            out["log_px"].append(log_z + log_cell)
            bar.update(s.stop - s.start)
    empty = {"mean": (0, dim), "std": (0, dim), "border_mass": (0,), "log_px": (0,)}
    return {k: torch.cat(v) if v else torch.zeros(empty[k], device=device) for k, v in out.items()}


def true_posterior_means(model: Any, x: Tensor, span: float = 4.0, grid: int = 60,
                         progress: bool = False, max_rows: int = 4096) -> Tensor:
    """``E_p(z|x)[z]`` on a grid of ``grid**D`` points over ``[-span, span]^D``: ``(N, D)``.

    The ``mean`` of :func:`true_posterior` (see it for the discretisation error, the cost of
    ``N * grid**D`` decoder evaluations and the ``border_mass`` check that ``span`` is large
    enough). Plotted against the encoder's ``mu(x)`` it is He et al.'s (2019) picture of a lagging
    inference network. Refuses ``latent_dim > 2``.
    """
    return true_posterior(model, x, span=span, grid=grid, progress=progress, max_rows=max_rows)["mean"]
