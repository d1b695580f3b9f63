"""Tests of vaeas.metrics against cases whose answer is known analytically or numerically.

Most tests use small hand-built "models": any object with ``encode``, ``decode`` and
``latent_dim`` is accepted by the metrics, which lets us fix the posterior and the decoder.
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from vaeas import metrics
from vaeas.distributions import (
    bernoulli_log_likelihood,
    categorical_log_likelihood,
    gaussian_log_density,
    log_q_matrix,
)
from vaeas.models import Classifier, build_model


# --------------------------------------------------------------------------- hand-built models
class FixedDecoderModel:
    """q(z|x) = N(mu, diag(exp(logvar))) with constant ``mu``, ``logvar``; the decoder ignores z."""

    def __init__(self, logits: torch.Tensor, latent_dim: int = 2, mu: float = 0.0,
                 logvar: float = 0.0):
        self.logits, self.latent_dim, self.mu, self.logvar = logits, latent_dim, mu, logvar

    def encode(self, x):
        shape = (x.shape[0], self.latent_dim)
        return torch.full(shape, self.mu), torch.full(shape, self.logvar)

    def decode(self, z, x=None):
        return self.logits.expand(z.shape[0], -1)


class LinearGaussianEncoder:
    """``mu = scale * x`` (per dimension), ``logvar = 2 log s``: z = scale * x + s * eps."""

    def __init__(self, scale, s: float):
        self.scale = torch.as_tensor(scale, dtype=torch.float32)
        self.logvar = 2 * math.log(s)
        self.latent_dim = int(self.scale.numel()) if self.scale.dim() else None

    def encode(self, x):
        mu = self.scale * x
        return mu, torch.full_like(mu, self.logvar)

    def decode(self, z, x=None):  # pragma: no cover - not used by the MI/AU/probe metrics
        raise AssertionError("decode must not be called")


def _binary(n, p, seed, prob=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, p, generator=g) < prob).float()


def _random_vae(in_dim=20, seed=0):
    """A small random VAE whose decoder depends strongly on z (so IW-NLL is far below -ELBO)."""
    torch.manual_seed(seed)
    model = build_model("vae", "mlp", latent_dim=2, hidden=(16,), in_dim=in_dim)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(4)
    return model


# --------------------------------------------------------------------------- IW-NLL
def test_iw_nll_below_neg_elbo_and_k1_is_neg_elbo():
    model = _random_vae()
    x = _binary(300, 20, seed=1)
    neg_elbo = metrics.elbo_terms(model, x)["neg_elbo"]
    k1 = metrics.iw_nll(model, x, k=1, seed=3)
    k500 = metrics.iw_nll(model, x, k=500, seed=3)
    assert k1.shape == k500.shape == (300,)
    # k = 1 is an unbiased single-sample estimate of -ELBO
    diff = k1 - neg_elbo
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(x)) + 1e-6
    # the importance-weighted bound is much tighter on average, and tighter per point
    assert k500.mean() < neg_elbo.mean() - 5.0


def test_iw_nll_non_increasing_in_k():
    model = _random_vae()
    x = _binary(300, 20, seed=1)
    means = [metrics.iw_nll(model, x, k=k, seed=2).mean().item() for k in (1, 10, 100, 1000)]
    for a, b in zip(means[:-1], means[1:], strict=True):
        assert b <= a + 0.05, means
    assert means[0] - means[-1] > 5.0, means


@pytest.mark.parametrize("k,max_rows", [(1, 50_000), (7, 3), (7, 50_000), (1000, 999), (1000, 50)])
def test_iw_nll_exact_when_posterior_is_prior_and_decoder_ignores_z(k, max_rows):
    """Every importance weight is p(x): the estimate is exactly -log p(x) for any k and chunking."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 30, generator=g) * 2
    model = FixedDecoderModel(logits, latent_dim=3)
    x = _binary(11, 30, seed=4)
    exact = -bernoulli_log_likelihood(logits.expand(11, -1), x)
    est = metrics.iw_nll(model, x, k=k, max_rows=max_rows)
    torch.testing.assert_close(est, exact, rtol=0, atol=1e-4)


def test_iw_nll_converges_to_log_px_with_a_mismatched_posterior():
    """q = N(0.3, 1.5^2) != p(z): k = 1 pays KL(q||p) on average, large k recovers -log p(x)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 30, generator=g)
    model = FixedDecoderModel(logits, latent_dim=2, mu=0.3, logvar=2 * math.log(1.5))
    x = _binary(2000, 30, seed=5)
    exact = -bernoulli_log_likelihood(logits.expand(len(x), -1), x)
    kl = 2 * 0.5 * (0.3**2 + 1.5**2 - 1 - math.log(1.5**2))
    gap1 = metrics.iw_nll(model, x, k=1) - exact
    assert abs(gap1.mean() - kl) < 4 * gap1.std() / math.sqrt(len(x))
    gap = metrics.iw_nll(model, x[:20], k=5000) - exact[:20]
    assert gap.abs().max() < 0.02
    assert gap.mean() > -0.005  # an upper bound in expectation


def test_iw_nll_reproducible_and_rng_neutral():
    model = _random_vae()
    x = _binary(20, 20, seed=1)
    state = torch.get_rng_state()
    a = metrics.iw_nll(model, x, k=50, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)
    b = metrics.iw_nll(model, x, k=50, seed=7)
    assert torch.equal(a, b)
    c = metrics.iw_nll(model, x, k=50, seed=8)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError):
        metrics.iw_nll(model, x, k=0)
    # Note: the same seed with a different max_rows draws z in a different arrangement
    # (randn(n, m, D) per chunk), so chunking invariance holds only in distribution; the exact
    # case above checks the chunked log-sum-exp itself.


def test_iw_nll_restores_train_mode():
    model = _random_vae()
    model.train()
    metrics.iw_nll(model, _binary(4, 20, seed=1), k=3)
    assert model.training


# --------------------------------------------------------------------------- mutual information
def test_mi_linear_gaussian_matches_closed_form():
    """x ~ N(0, I_2), z = x + 0.5 eps: I(x; z) = (D/2) log(1 + a^2/s^2) = log 5."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(4000, 2, generator=g)
    enc = LinearGaussianEncoder([1.0, 1.0], 0.5)
    truth = math.log(5.0)
    ds = metrics.mutual_information(enc, x, "dataset")
    mb = metrics.mutual_information(enc, x, "minibatch", batch_size=128)
    assert ds == pytest.approx(truth, abs=0.1)
    assert mb == pytest.approx(truth, abs=0.15)
    # with a = 0.5 the truth is 0.5 * 2 * log 2
    enc = LinearGaussianEncoder([0.5, 0.5], 0.5)
    assert metrics.mutual_information(enc, x, "dataset") == pytest.approx(math.log(2), abs=0.1)


def test_mi_is_zero_for_a_collapsed_encoder():
    x = torch.randn(500, 3)
    enc = LinearGaussianEncoder([0.0, 0.0, 0.0], 1.0)
    for est in ("dataset", "minibatch"):
        assert abs(metrics.mutual_information(enc, x, est)) < 1e-5


def test_mi_estimators_are_capped_and_reach_the_cap():
    """Huge true MI (8 log 401 = 48 nats): minibatch <= log B, dataset <= log N, both at the caps.

    (Float32 evaluation: the caps hold to about 1e-5; B divides N so every batch has cap log B.)
    """
    g = torch.Generator().manual_seed(123)
    n, b = 4096, 128
    x = torch.randn(n, 16, generator=g)
    enc = LinearGaussianEncoder([1.0] * 16, 0.05)
    mb = metrics.mutual_information(enc, x, "minibatch", batch_size=b)
    ds = metrics.mutual_information(enc, x, "dataset")
    assert math.log(b) - 1e-3 < mb <= math.log(b) + 1e-4
    assert math.log(n) - 1e-3 < ds <= math.log(n) + 1e-4
    # a last, smaller batch has the smaller cap log(len): N = 4000 = 31 * 128 + 32
    mb = metrics.mutual_information(enc, x[:4000], "minibatch", batch_size=b)
    cap = (31 * 128 * math.log(128) + 32 * math.log(32)) / 4000
    assert cap - 1e-3 < mb <= cap + 1e-4


def test_mi_caps_hold_with_many_sharp_dimensions():
    g = torch.Generator().manual_seed(123)
    n, b = 4096, 128
    x = torch.randn(n, 32, generator=g)
    enc = LinearGaussianEncoder([3.0] * 32, 1e-3)
    assert metrics.mutual_information(enc, x, "minibatch", batch_size=b) <= math.log(b) + 1e-3
    assert metrics.mutual_information(enc, x, "dataset") <= math.log(n) + 1e-3


def test_mi_dataset_chunking_and_validation():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 2, generator=g)
    enc = LinearGaussianEncoder([1.0, 0.3], 0.5)
    a = metrics.mutual_information(enc, x, "dataset", chunk=1024)
    b = metrics.mutual_information(enc, x, "dataset", chunk=7)
    assert a == pytest.approx(b, abs=1e-5)
    state = torch.get_rng_state()
    assert metrics.mutual_information(enc, x, "dataset", seed=0) == a
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="estimator"):
        metrics.mutual_information(enc, x, "knn")


def test_log_q_matrix_matches_direct_density():
    g = torch.Generator().manual_seed(0)
    z, mu = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    logvar = torch.randn(4, 3, generator=g) * 0.5
    m = log_q_matrix(z, mu, logvar)  # the matrix both MI estimators are built on
    ref = gaussian_log_density(z[:, None], mu[None], logvar[None])
    torch.testing.assert_close(m, ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- active units
def test_active_units_and_posterior_mean_variance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 4, generator=g)
    enc = LinearGaussianEncoder([0.0, 0.05, 0.2, 1.0], 0.1)
    var = metrics.posterior_mean_variance(enc, x)
    assert var.shape == (4,)
    assert var[0] == 0
    torch.testing.assert_close(var[1:], torch.tensor([0.0025, 0.04, 1.0]), rtol=0.05, atol=0)
    assert metrics.active_units(enc, x, delta=0.01) == 2
    assert metrics.active_units(enc, x, delta=0.001) == 3
    assert metrics.active_units(enc, x, delta=0.5) == 1
    assert metrics.active_units(enc, x, delta=2.0) == 0
    # unbiased variance over x
    torch.testing.assert_close(var, (x * enc.scale).var(0))


# --------------------------------------------------------------------------- classifier bound
C_POINTS, S_POINTS = 8, 0.45


class DiscreteEncoder(nn.Module):
    """x is one of 8 points (one-hot); q(z|x_j) = N(e_j, s^2 I) with e_j on the unit circle."""

    latent_dim = 2

    def __init__(self, head: str):
        super().__init__()
        ang = torch.arange(C_POINTS, dtype=torch.float64) * 2 * math.pi / C_POINTS
        self.register_buffer("emb", torch.stack([ang.cos(), ang.sin()], 1))
        self.classifier = Classifier(2, C_POINTS, head=head)
        self.register_buffer("target_entropy", torch.tensor(math.log(C_POINTS)))

    def encode(self, x):
        mu = x @ self.emb.float()
        return mu, torch.full_like(mu, 2 * math.log(S_POINTS))

    def aux_ce(self, z, mu, logvar, c):
        return self.classifier.nll(z, c)

    def aux_entropy(self, batch_size):
        return float(self.target_entropy)


def _mixture_mi(emb: torch.Tensor, n: int = 200_000) -> tuple[float, float]:
    """I(x; z) = E[log q(z|x) - log (1/C) sum_j q(z|x_j)] by Monte Carlo with the exact mixture."""
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, C_POINTS, (n,), generator=g)
    z = emb[c] + S_POINTS * torch.randn(n, 2, generator=g, dtype=torch.float64)
    logvar = torch.full((C_POINTS, 2), 2 * math.log(S_POINTS), dtype=torch.float64)
    m = gaussian_log_density(z[:, None], emb[None], logvar[None])
    terms = m[torch.arange(n), c] - (torch.logsumexp(m, 1) - math.log(C_POINTS))
    return terms.mean().item(), terms.std().item() / math.sqrt(n)


@pytest.mark.parametrize("head,tight", [("dense", 0.9), ("two_level", 0.8)])
def test_classifier_bound_is_below_mi_and_tight_after_training(head, tight):
    torch.manual_seed(0)
    model = DiscreteEncoder(head)
    mi, mi_se = _mixture_mi(model.emb)
    assert 0.8 < mi < 1.6  # well inside (0, log 8): the bound has room to be wrong both ways
    ids = torch.arange(20_000) % C_POINTS
    x = nn.functional.one_hot(ids, C_POINTS).float()
    before = metrics.classifier_bound(model, x, ids)
    assert before["mi_bound"] < 0.5 * mi
    opt = torch.optim.Adam(model.classifier.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(5)
    for _ in range(300):
        c = torch.randint(0, C_POINTS, (256,), generator=g)
        mu, logvar = model.encode(nn.functional.one_hot(c, C_POINTS).float())
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
        loss = model.classifier.nll(z, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = metrics.classifier_bound(model, x, ids, batch_size=3000)
    assert res["target_entropy"] == pytest.approx(math.log(C_POINTS))
    assert res["mi_bound"] == pytest.approx(res["target_entropy"] - res["ce"])
    tol = 4 * math.sqrt(mi_se**2 + (1.5 / math.sqrt(len(x))) ** 2)  # ce std < 1.5 nats
    assert res["mi_bound"] <= mi + tol, (res, mi)
    assert res["mi_bound"] > tight * mi, (res, mi)


# --------------------------------------------------------------------------- linear probe
def test_linear_probe_separable_and_noise():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=g)
    x_tr, x_te = torch.randn(600, 5, generator=g), torch.randn(1000, 5, generator=g)
    enc = LinearGaussianEncoder([2.0, 1.0, 1.0, 0.5, 1.0], 0.1)  # a linear map keeps separability
    y_tr, y_te = (x_tr @ w).argmax(1), (x_te @ w).argmax(1)
    acc = metrics.linear_probe(enc, x_tr, y_tr, x_te, y_te)
    assert acc > 0.95
    noise_tr = torch.randint(0, 3, (600,), generator=g)
    noise_te = torch.randint(0, 3, (1000,), generator=g)
    acc = metrics.linear_probe(enc, x_tr, noise_tr, x_te, noise_te)
    assert abs(acc - 1 / 3) < 0.06


# --------------------------------------------------------------------------- subsets, shuffling
def test_subset_indices_random_seeded_and_stratified():
    y = torch.arange(24_000) // 15  # 1,600 classes of 15, in file order (like Omniglot's drawers)
    first = y[:10_000].unique().numel()
    assert first < 700  # the first 10,000 points miss more than half of the classes
    idx = metrics.subset_indices(len(y), 10_000, seed=0, labels=y)
    assert len(idx) == 10_000 == idx.unique().numel()
    assert y[idx].unique().numel() == 1_600  # every class present
    assert not torch.equal(idx, torch.arange(10_000))
    assert torch.equal(idx, metrics.subset_indices(len(y), 10_000, seed=0, labels=y))
    assert not torch.equal(idx, metrics.subset_indices(len(y), 10_000, seed=1, labels=y))
    plain = metrics.subset_indices(len(y), 100, seed=0)
    assert len(plain) == 100 == plain.unique().numel() and not torch.equal(plain, torch.arange(100))
    assert torch.equal(metrics.subset_indices(50, None, seed=3), torch.arange(50))
    assert torch.equal(metrics.subset_indices(50, 80, seed=3, labels=torch.zeros(50)), torch.arange(50))
    few = metrics.subset_indices(len(y), 10, seed=0, labels=y)  # fewer points than classes
    assert y[few].unique().numel() == 10
    state = torch.get_rng_state()
    metrics.subset_indices(len(y), 500, seed=0, labels=y)
    assert torch.equal(torch.get_rng_state(), state)


def test_minibatch_mi_shuffles_an_ordered_split():
    """32 points repeated 128 times in a row: every consecutive batch holds one posterior (MI 0)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g).repeat_interleave(128, dim=0)
    enc = LinearGaussianEncoder([1.0] * 4, 0.05)
    ordered = metrics.mutual_information(enc, x, "minibatch", batch_size=128, shuffle=False)
    shuffled = metrics.mutual_information(enc, x, "minibatch", batch_size=128)
    assert abs(ordered) < 1e-5
    assert shuffled > 2.5  # close to log 32 = 3.47 minus the batch's own duplicates
    assert shuffled <= metrics.minibatch_mi_cap(len(x), 128) + 1e-4
    assert metrics.minibatch_mi_cap(4000, 128) == pytest.approx(
        (31 * 128 * math.log(128) + 32 * math.log(32)) / 4000)


def test_mi_codes_are_the_documented_private_draw():
    """The dataset estimator's codes are reparameterize(mu, logvar, make_generator(seed))."""
    from vaeas.distributions import reparameterize

    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 3, generator=g)
    enc = LinearGaussianEncoder([1.0, 0.5, 0.2], 0.4)
    mu, logvar = enc.encode(x)
    z = reparameterize(mu, logvar, metrics.make_generator(5))
    m = log_q_matrix(z, mu, logvar)
    ref = (m.diagonal() - (torch.logsumexp(m, 1) - math.log(200))).mean().item()
    assert metrics.mutual_information(enc, x, "dataset", seed=5) == pytest.approx(ref, abs=1e-5)


# --------------------------------------------------------------------------- latent R^2
def test_latent_r2_recovers_a_linear_code_and_rejects_noise():
    g = torch.Generator().manual_seed(0)
    x_tr, x_te = torch.randn(500, 3, generator=g), torch.randn(400, 3, generator=g)
    enc = LinearGaussianEncoder([2.0, -1.0, 0.5], 0.1)
    res = metrics.latent_r2(enc, x_tr, 3 * x_tr[:, :2] + 1, x_te, 3 * x_te[:, :2] + 1)
    assert res["latent_r2"] == pytest.approx(1.0, abs=1e-6) and len(res["latent_r2_per_dim"]) == 2
    noise_tr, noise_te = torch.randn(500, 2, generator=g), torch.randn(400, 2, generator=g)
    res = metrics.latent_r2(enc, x_tr, noise_tr, x_te, noise_te)
    assert -0.05 < res["latent_r2"] < 0.02


# --------------------------------------------------------------------------- evaluate()
EVAL_KW = dict(k=20, iw_size=10, mi_batch=16, delta=0.02, probe_size=100, bound_size=50, seed=3)
EVAL_KEYS = {"split", "n", "seed", "subset_seed", "neg_elbo", "rec", "kl", "kl_per_dim", "code_gain",
             "mi_minibatch", "mi_batch_size", "mi_minibatch_cap", "mi_dataset", "mi_dataset_cap", "au",
             "au_delta", "au_variance", "probe_acc", "probe_train_size", "probe_train_classes",
             "train_classes", "iw_nll", "iw_nll_se", "neg_elbo_iw", "iw_k", "iw_n", "iw_size",
             "probe", "probe_size", "bound_size", "seconds_total"}


def _fixed_x(self, seed, idx=None):
    """``Split.fixed_x`` for the stand-in split class below."""
    from vaeas.data import binarize_fixed

    x = self.x if idx is None else self.x[idx.to(self.x.device)]
    return x if self.binarized else binarize_fixed(x, seed)


@dataclass
class StandInSplit:
    """A split for what main's Split cannot hold yet: token ids and ``extra["true_z"] (N, K)``."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    binarized: bool = True
    extra: dict = field(default_factory=dict)
    fixed_x = _fixed_x

    def __len__(self):
        return len(self.x)


def _numbers(res):
    return {k: v for k, v in res.items() if not k.startswith("seconds")}


@pytest.fixture
def eval_setup(tiny_dataset):
    data = tiny_dataset(n_train=128, n_val=32, n_test=64, num_classes=3)
    torch.manual_seed(0)
    model = build_model("vae", "mlp", latent_dim=3, hidden=(16,))
    return model, data


def test_evaluate_keys_settings_and_consistency(eval_setup):
    model, data = eval_setup
    res = metrics.evaluate(model, data, **EVAL_KW)
    assert EVAL_KEYS <= set(res)
    json.dumps(res, allow_nan=False)  # JSON-able, numbers as numbers
    assert res["split"] == "test" and res["n"] == 64 and res["seed"] == res["subset_seed"] == 3
    assert res["iw_k"] == 20 and res["iw_n"] == 10 and res["mi_batch_size"] == 16
    assert res["au_delta"] == 0.02 and res["probe_train_size"] == 100 and res["probe_size"] == 100
    assert res["probe_train_classes"] == res["train_classes"] == 3
    assert res["mi_minibatch_cap"] == pytest.approx(math.log(16))
    assert res["mi_dataset_cap"] == pytest.approx(math.log(64))
    assert len(res["kl_per_dim"]) == 3 and len(res["au_variance"]) == 3
    assert "ce" not in res and "mi_bound" not in res and "ppl_iw" not in res and "latent_r2" not in res
    x = data.test.x
    assert res["neg_elbo"] == pytest.approx(res["rec"] + res["kl"], rel=1e-6)
    assert res["kl"] == pytest.approx(sum(res["kl_per_dim"]), rel=1e-5)
    idx = metrics.subset_indices(64, 10, seed=3)
    assert not torch.equal(idx, torch.arange(10))  # a random subset, not the first 10
    iw = metrics.iw_nll(model, x[idx], k=20, seed=3)
    assert res["iw_nll"] == pytest.approx(iw.mean().item(), rel=1e-6)
    assert res["iw_nll_se"] == pytest.approx(iw.std().item() / math.sqrt(10), rel=1e-5)
    sub = metrics.elbo_terms(model, x, seed=3)["neg_elbo"][idx].mean().item()
    assert res["neg_elbo_iw"] == pytest.approx(sub, rel=1e-6)  # -ELBO of the IW images themselves
    assert res["iw_nll"] <= res["neg_elbo_iw"] + 0.5  # k = 20 cannot be much worse than k = 1
    assert res["mi_dataset"] == pytest.approx(metrics.mutual_information(model, x, seed=3), rel=1e-6)
    mb = metrics.mutual_information(model, x, "minibatch", batch_size=16, seed=3)
    assert res["mi_minibatch"] == pytest.approx(mb, rel=1e-6)  # shuffled batches
    assert res["au"] == metrics.active_units(model, x, delta=0.02)
    assert 0.0 <= res["probe_acc"] <= 1.0
    assert res["mi_minibatch"] <= res["mi_minibatch_cap"] + 1e-5
    assert res["mi_dataset"] <= res["mi_dataset_cap"] + 1e-5
    # k = 0 skips IW-NLL, probe=False skips the probe; iw_size=None uses the whole split
    res = metrics.evaluate(model, data, k=0, probe=False)
    assert "iw_nll" not in res and "probe_acc" not in res
    assert metrics.evaluate(model, data, k=2, probe=False)["iw_n"] == 64


def test_evaluate_binarizes_a_grey_split(eval_setup):
    model, data = eval_setup
    res = metrics.evaluate(model, data, split="train", k=2, probe=False, seed=0)
    ref = metrics.elbo_terms(model, data.train.fixed_x(0), seed=0)["neg_elbo"].mean().item()
    assert res["n"] == 128 and res["neg_elbo"] == pytest.approx(ref, rel=1e-6)


def test_evaluate_probe_covers_every_training_class(tiny_dataset):
    data = tiny_dataset(n_train=120, n_val=8, n_test=40, num_classes=12, dim=20)
    order = torch.argsort(data.train.y, stable=True)  # a class-sorted file: first n miss classes
    data.train = type(data.train)(x=data.train.x[order], y=data.train.y[order],
                                  index=torch.arange(120), binarized=False)
    torch.manual_seed(0)
    model = build_model("vae", "mlp", latent_dim=2, hidden=(8,), in_dim=20)
    res = metrics.evaluate(model, data, k=0, probe_size=24, seed=0)
    assert data.train.y[:24].unique().numel() == 3
    assert res["probe_train_size"] == 24 and res["probe_train_classes"] == res["train_classes"] == 12


def test_evaluate_is_reproducible_and_independent_of_the_global_seed(eval_setup):
    model, data = eval_setup
    torch.manual_seed(1)
    a = metrics.evaluate(model, data, **EVAL_KW)
    torch.manual_seed(2)  # a different global state must not matter
    b = metrics.evaluate(model, data, **EVAL_KW)
    assert _numbers(a) == _numbers(b)
    c = metrics.evaluate(model, data, **{**EVAL_KW, "seed": 4})
    assert c["iw_nll"] != a["iw_nll"]


@pytest.mark.parametrize("probe", [False, True])
def test_evaluate_leaves_the_global_rng_alone(eval_setup, probe):
    model, data = eval_setup
    state = torch.get_rng_state()
    metrics.evaluate(model, data, **{**EVAL_KW, "probe": probe})
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluate_progress_bars_name_what_they_estimate(eval_setup, capsys):
    model, data = eval_setup
    metrics.evaluate(model, data, **EVAL_KW)
    assert capsys.readouterr().err == ""
    metrics.evaluate(model, data, **EVAL_KW, progress=True)
    err = capsys.readouterr().err
    for name in ("IW-NLL k=20 n=10", "MI dataset n=64", "MI minibatch B=16 n=64", "probe n_train=100"):
        assert name in err, err


# --------------------------------------------------------------------------- VAE-AS bound, all targets
class AuxStub(nn.Module):
    """A VAE-AS stand-in with h6's interface: ``target``, ``aux_ce`` and ``aux_entropy``."""

    def __init__(self, target, num_classes=3, label_entropy=1.0986, in_dim=784):
        super().__init__()
        self.vae = build_model("vae", "mlp", latent_dim=3, hidden=(16,), in_dim=in_dim)
        self.latent_dim, self.target, self.h = 3, target, label_entropy
        self.head = nn.Linear(3, num_classes)

    def encode(self, x):
        return self.vae.encode(x)

    def decode(self, z, x=None):
        return self.vae.decode(z, x)

    def aux_ce(self, z, mu, logvar, c):
        if self.target == "batch":  # critic log q(z_i | x_n) over the batch, c = position
            return -torch.log_softmax(log_q_matrix(z, mu, logvar), 1)[torch.arange(len(c)), c]
        return nn.functional.cross_entropy(self.head(z), c, reduction="none")

    def aux_entropy(self, batch_size):
        return math.log(batch_size) if self.target == "batch" else self.h


@pytest.mark.parametrize("target", ["label", "instance", "batch"])
def test_evaluate_vaeas_adds_the_bound_for_every_target(tiny_dataset, target):
    data = tiny_dataset(n_train=128, n_val=32, n_test=64, num_classes=3)
    torch.manual_seed(0)
    c = 3 if target == "label" else len(data.train)
    model = AuxStub(target, num_classes=c, label_entropy=data.label_entropy() if c == 3 else math.log(c))
    res = metrics.evaluate(model, data, **EVAL_KW)
    assert {"ce", "mi_bound", "target_entropy", "bound_split", "bound_n", "seconds_bound"} <= set(res)
    assert res["mi_bound"] == pytest.approx(res["target_entropy"] - res["ce"])
    expected = {"label": ("test", 64), "instance": ("train", 50), "batch": ("test", 64)}[target]
    assert (res["bound_split"], res["bound_n"]) == expected
    if target == "batch":
        assert res["bound_batch_size"] == 16 and res["target_entropy"] == pytest.approx(math.log(16))
        assert res["mi_bound"] <= math.log(16) + 1e-5
    json.dumps(res, allow_nan=False)


def test_batch_target_bound_is_the_minibatch_mi_estimator():
    """With the critic log q(z|x), log B - CE over shuffled batches estimates what He et al.'s does."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(4096, 2, generator=g)
    enc = LinearGaussianEncoder([1.0, 1.0], 0.5)
    enc.aux_ce = AuxStub.aux_ce.__get__(types.SimpleNamespace(target="batch"))
    enc.aux_entropy = math.log
    order = torch.randperm(4096, generator=g)
    res = metrics.classifier_bound(enc, x[order], torch.arange(4096) % 128, batch_size=128)
    mb = metrics.mutual_information(enc, x, "minibatch", batch_size=128)
    assert res["target_entropy"] == pytest.approx(math.log(128))
    assert res["mi_bound"] == pytest.approx(mb, abs=0.05)
    assert res["mi_bound"] == pytest.approx(math.log(5.0), abs=0.15)


@pytest.mark.parametrize("target", ["label", "instance", "batch"])
def test_evaluate_real_vaeas_when_it_has_the_aux_interface(tiny_dataset, target):
    from vaeas.models import VAEAS

    if not hasattr(VAEAS, "aux_ce"):
        pytest.skip("VAEAS.aux_ce / aux_entropy (h6-models) are not merged yet")
    from vaeas.models import build_for_dataset

    data = tiny_dataset(n_train=128, n_val=32, n_test=64, num_classes=3)
    torch.manual_seed(0)
    model = build_for_dataset(data, model="vaeas", target=target, latent_dim=3, hidden=(16,))
    res = metrics.evaluate(model, data, **EVAL_KW)
    assert res["mi_bound"] == pytest.approx(res["target_entropy"] - res["ce"])
    assert res["bound_split"] == ("train" if target == "instance" else "test")


# --------------------------------------------------------------------------- sequences, known latents
class TokenStub(nn.Module):
    """A sequence "VAE": mean-pooled embeddings -> q(z|x); z -> the same logits at every position."""

    def __init__(self, vocab=12, latent_dim=2):
        super().__init__()
        self.latent_dim = latent_dim
        self.emb = nn.Embedding(vocab, 8)
        self.enc = nn.Linear(8, 2 * latent_dim)
        self.dec = nn.Linear(latent_dim, vocab)

    def encode(self, x):
        h = self.enc(self.emb(x).mean(1))
        return h.chunk(2, dim=-1)

    def decode(self, z, x=None):
        return self.dec(z)[:, None].expand(-1, x.shape[1], -1)

    def log_likelihood(self, out, x):
        return categorical_log_likelihood(out, x, mask=x != 0)

    def count_tokens(self, x):
        return (x != 0).sum(1)


def _sequence_data(n_train=80, n_test=40, t=7, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)

    def split(n):
        lengths = torch.randint(2, t + 1, (n,), generator=g)
        x = torch.randint(1, vocab, (n, t), generator=g) * (torch.arange(t) < lengths[:, None])
        y = torch.arange(n) % 4
        true_z = torch.randn(n, 2, generator=g) + y[:, None].float()
        return StandInSplit(x=x, y=y, index=torch.arange(n), extra={"true_z": true_z})

    return types.SimpleNamespace(train=split(n_train), val=split(8), test=split(n_test))


def test_evaluate_sequence_model_reports_perplexity_and_latent_r2():
    data = _sequence_data()
    torch.manual_seed(0)
    model = TokenStub()
    res = metrics.evaluate(model, data, k=30, iw_size=15, mi_batch=8, probe_size=40, seed=1)
    json.dumps(res, allow_nan=False)
    x = data.test.x
    tokens = (x != 0).sum().item()
    neg = metrics.elbo_terms(model, x, seed=1)["neg_elbo"]
    assert res["tokens"] == tokens
    assert res["ppl_elbo"] == pytest.approx(math.exp(neg.sum().item() / tokens), rel=1e-5)
    idx = metrics.subset_indices(40, 15, seed=1)
    iw = metrics.iw_nll(model, x[idx], k=30, seed=1)
    assert res["iw_tokens"] == (x[idx] != 0).sum().item()
    assert res["ppl_iw"] == pytest.approx(math.exp(iw.sum().item() / res["iw_tokens"]), rel=1e-5)
    assert res["ppl_iw"] <= res["ppl_elbo_iw"] * 1.05
    assert {"latent_r2", "latent_r2_per_dim", "r2_train_size"} <= set(res)
    assert res["r2_train_size"] == 40 and len(res["latent_r2_per_dim"]) == 2 and res["latent_r2"] <= 1


def test_iw_nll_bounds_memory_by_decoder_output_size():
    model = TokenStub(vocab=5000)
    x = torch.randint(1, 5000, (3, 40))
    rows = metrics._rows_per_call(model, x, 50_000)
    assert rows == metrics.IW_MAX_ELEMENTS // (40 * 5000)
    assert metrics._rows_per_call(_random_vae(in_dim=784), _binary(2, 784, 0), 50_000) == 50_000


# --------------------------------------------------------------------------- code gain
def test_code_gain_is_exactly_zero_without_a_code_and_large_with_one():
    x = _binary(200, 20, seed=2)
    torch.manual_seed(0)
    model = _random_vae()
    collapsed = FixedDecoderModel(torch.zeros(1, 20), latent_dim=2)
    assert metrics.code_gain(collapsed, x) == 0.0

    class PriorEncoder:  # q(z|x) = p(z) for every x, with a decoder that depends on z
        latent_dim = 2

        def encode(self, x):
            return torch.zeros(len(x), 2), torch.zeros(len(x), 2)

        def decode(self, z, x=None):
            return model.decode(z, x)

    assert metrics.code_gain(PriorEncoder(), x) == 0.0  # common random numbers: no noise
    assert metrics.code_gain(model, x, seed=1) == metrics.code_gain(model, x, seed=1)


def test_metrics_and_diagnose_read_only_the_protocol():
    """Neither module imports vaeas.models nor vaeas.data / vaeas.datasets (one direction of imports)."""
    import ast
    import pathlib

    import vaeas

    for name in ("metrics.py", "diagnose.py"):
        tree = ast.parse((pathlib.Path(vaeas.__file__).parent / name).read_text())
        found = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        found |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert not {m for m in found if m.split(".")[-1] in ("models", "data", "datasets")}, (name, found)
    assert isinstance(LinearGaussianEncoder([1.0], 0.5), metrics.LatentVariableModel)
