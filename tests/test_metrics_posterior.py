"""vaeas.posterior: the true posterior p(z|x) of a 1- or 2-D latent on a grid (He et al. 2019).

The reference is the linear-Gaussian model (vaeas.models.LinearVAE), whose posterior is Gaussian
in closed form: with p(z) = N(0, I) and p(x|z) = N(W z + b, s2 I),
p(z|x) = N(A^-1 W^T (x - b), s2 A^-1) with A = W^T W + s2 I, and p(x) = N(b, W W^T + s2 I).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from vaeas.models import LinearVAE, build_model
from vaeas.posterior import latent_grid, true_posterior, true_posterior_means

SIGMA2 = 0.5
P = 5


def _linear(dim: int, seed: int = 0) -> LinearVAE:
    g = torch.Generator().manual_seed(seed)
    model = LinearVAE(P, dim, sigma2=SIGMA2)
    with torch.no_grad():
        model.decoder.weight.copy_(0.5 * torch.randn(P, dim, generator=g))
        model.decoder.bias.copy_(0.3 * torch.randn(P, generator=g))
    return model


def _analytic(model: LinearVAE, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact posterior mean (N, D), std (N, D) and log p(x) (N,), float64."""
    w = model.decoder.weight.detach().double()
    b = model.decoder.bias.detach().double()
    a = w.T @ w + SIGMA2 * torch.eye(w.shape[1], dtype=torch.float64)
    mean = torch.linalg.solve(a, w.T @ (x.double() - b).T).T
    std = (SIGMA2 * torch.linalg.inv(a)).diagonal().sqrt().expand_as(mean)
    marg = torch.distributions.MultivariateNormal(b, w @ w.T + SIGMA2 * torch.eye(P, dtype=torch.float64))
    return mean, std, marg.log_prob(x.double())


def _data(model: LinearVAE, n: int = 6, seed: int = 1) -> Tensor:
    """Inputs drawn from the model itself, so the posteriors sit well inside the grid."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=g)
    with torch.no_grad():
        return model.decode(z) + math.sqrt(SIGMA2) * torch.randn(n, P, generator=g)


@pytest.mark.parametrize("dim", [1, 2])
def test_grid_posterior_matches_the_linear_gaussian_posterior(dim):
    model = _linear(dim)
    x = _data(model)
    mean, std, log_px = _analytic(model, x)
    assert (std > 0.3).all()  # a few grid spacings (h = 8 / 59 = 0.136): the grid resolves it
    res = true_posterior(model, x)  # span 4, 60 points per axis
    assert res["mean"].shape == (len(x), dim) and res["std"].shape == (len(x), dim)
    assert res["border_mass"].shape == (len(x),) and res["log_px"].shape == (len(x),)
    assert mean.abs().max() > 0.5  # the posterior means differ from the prior's
    torch.testing.assert_close(res["mean"].double(), mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(res["std"].double(), std, atol=1e-4, rtol=0)
    torch.testing.assert_close(res["log_px"].double(), log_px, atol=1e-3, rtol=0)
    assert (res["border_mass"] < 1e-3).all()
    torch.testing.assert_close(true_posterior_means(model, x), res["mean"])


def test_a_coarse_grid_is_less_accurate_but_still_close():
    model = _linear(2)
    x = _data(model)
    mean, _, _ = _analytic(model, x)
    err_fine = (true_posterior_means(model, x, grid=60).double() - mean).abs().max()
    err_coarse = (true_posterior_means(model, x, grid=9).double() - mean).abs().max()  # h = 1
    assert err_fine < err_coarse < 0.1


def test_chunking_does_not_change_the_result():
    model = _linear(2)
    x = _data(model, n=5)
    whole = true_posterior(model, x, grid=20)
    for max_rows in (1, 7, 400, 401):  # one point per call; ragged chunks; one or several inputs per call
        part = true_posterior(model, x, grid=20, max_rows=max_rows)
        for key in whole:
            torch.testing.assert_close(part[key], whole[key], atol=1e-5, rtol=1e-5)


class _IgnoresZ(nn.Module):
    """A Bernoulli decoder whose logits do not depend on z: p(z|x) = p(z) for every x."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.linspace(-2, 2, 8))

    def encode(self, x):
        return torch.zeros(len(x), 2), torch.zeros(len(x), 2)

    def decode(self, z, x=None):
        return self.logits.expand(len(z), -1) + 0 * z.sum(-1, keepdim=True)


def test_a_decoder_that_ignores_z_has_the_prior_as_posterior():
    model = _IgnoresZ()
    x = (torch.arange(4 * 8).view(4, 8) % 3 == 0).float()
    res = true_posterior(model, x)
    assert res["mean"].abs().max() < 1e-5  # the prior's mean, for every x
    torch.testing.assert_close(res["std"], torch.ones(4, 2), atol=2e-3, rtol=0)
    # log p(x) = log p(x|z) for any z, the prior integrating to 1 on the grid
    log_px = -nn.functional.binary_cross_entropy_with_logits(model.logits.expand(4, -1), x,
                                                             reduction="none").sum(-1)
    torch.testing.assert_close(res["log_px"], log_px.detach(), atol=1e-3, rtol=0)
    # the prior's own mass on the border of [-4, 4]^2: 2 axes x 2 ends x h phi(4) ~ 7e-5
    expected = 4 * (8 / 59) * math.exp(-8) / math.sqrt(2 * math.pi)
    assert res["border_mass"].allclose(torch.full((4,), expected), rtol=0.05)


def test_latent_dimensions_above_two_are_refused():
    with pytest.raises(ValueError, match="latent_dim 1 or 2"):
        true_posterior_means(_linear(3), torch.zeros(2, P))
    with pytest.raises(ValueError, match="grid >= 2"):
        true_posterior_means(_linear(1), torch.zeros(2, P), grid=1)


def test_border_mass_flags_a_span_that_is_too_small():
    model = _linear(2)
    w, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    x = (b + w @ torch.tensor([2.5, -2.5]))[None]  # a posterior centred far from the origin
    mean, _, _ = _analytic(model, x)
    assert mean.abs().min() > 1.0
    small = true_posterior(model, x, span=0.5, grid=21)
    large = true_posterior(model, x, span=5.0, grid=81)
    assert small["border_mass"].item() > 0.1  # the docstring calls for a larger span above 1e-3
    assert large["border_mass"].item() < 1e-4
    assert (small["mean"].abs() <= 0.5).all()  # cut off: pulled inside the grid
    torch.testing.assert_close(large["mean"].double(), mean, atol=1e-4, rtol=0)


def test_deterministic_eval_mode_no_global_rng_and_grid_layout():
    model = _linear(2)
    model.train()
    x = _data(model, n=3)
    state = torch.get_rng_state()
    a = true_posterior_means(model, x, grid=15)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    assert torch.equal(a, true_posterior_means(model, x, grid=15))
    pts = latent_grid(2.0, 3, 2)
    assert pts.tolist() == [[-2, -2], [-2, 0], [-2, 2], [0, -2], [0, 0], [0, 2], [2, -2], [2, 0], [2, 2]]
    empty = true_posterior(model, x[:0], grid=5)
    assert empty["mean"].shape == (0, 2) and empty["log_px"].shape == (0,)


def test_sentence_model_teacher_forced_posterior():
    torch.manual_seed(0)  # network initialisation only
    model = build_model("vae", "lstm", latent_dim=2, vocab_size=30, max_len=6)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, 30, (3, 8), generator=g)
    x[:, 0], x[:, -1] = 1, 2  # <bos> ... <eos>
    res = true_posterior(model, x, grid=7)
    assert res["mean"].shape == (3, 2) and torch.isfinite(res["mean"]).all()
    assert (res["mean"].abs() < 4).all() and (res["log_px"] < 0).all()
    chunked = true_posterior(model, x, grid=7, max_rows=5)
    for key in res:
        torch.testing.assert_close(chunked[key], res[key], atol=1e-4, rtol=1e-5)


def test_posterior_module_reads_only_the_protocol():
    path = Path(__file__).resolve().parents[1] / "vaeas" / "posterior.py"
    imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert imported <= {"distributions", "metrics"}
