"""The probability layer agrees with closed forms and with torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, MultivariateNormal

from vaeas.distributions import (
    bernoulli_log_likelihood,
    categorical_log_likelihood,
    gaussian_log_density,
    kl_standard_normal,
    log_q_matrix,
    reparameterize,
    standard_normal_log_density,
)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_gaussian_log_density_matches_full_covariance_normal(gen):
    mu, logvar = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    z = torch.randn(5, 3, generator=gen)
    ref = MultivariateNormal(mu, torch.diag_embed(logvar.exp())).log_prob(z)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), ref)
    torch.testing.assert_close(standard_normal_log_density(z),
                               gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)))


def test_kl_is_the_closed_form_and_zero_only_at_the_prior(gen):
    mu, logvar = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    closed = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), closed)
    assert kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0
    assert (kl_standard_normal(mu, logvar) > 0).all()


def test_reparameterize_uses_only_its_generator(gen):
    mu, logvar = torch.zeros(1000, 2), torch.full((1000, 2), math.log(4.0))
    state = torch.get_rng_state()
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)           # global stream untouched
    assert torch.equal(a, b)                                   # reproducible
    assert abs(a.std().item() - 2.0) < 0.15                    # sd = exp(logvar / 2)
    mu.requires_grad_(True)
    reparameterize(mu, logvar).sum().backward()                # differentiable in mu
    assert torch.equal(mu.grad, torch.ones_like(mu))


def test_bernoulli_and_categorical_match_torch_distributions(gen):
    logits, x = torch.randn(4, 10, generator=gen), (torch.rand(4, 10, generator=gen) < 0.5).float()
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), Bernoulli(logits=logits).log_prob(x).sum(-1))
    logits, tok = torch.randn(3, 5, 7, generator=gen), torch.randint(7, (3, 5), generator=gen)
    mask = torch.rand(3, 5, generator=gen) < 0.6
    ref = (Categorical(logits=logits).log_prob(tok) * mask).sum(-1)
    torch.testing.assert_close(categorical_log_likelihood(logits, tok, mask), ref)
    torch.testing.assert_close(categorical_log_likelihood(logits, tok),
                               Categorical(logits=logits).log_prob(tok).sum(-1))


def test_log_q_matrix_equals_the_broadcast_density(gen):
    z = torch.randn(6, 4, generator=gen)
    mu, logvar = torch.randn(9, 4, generator=gen), torch.randn(9, 4, generator=gen) - 3  # sharp posteriors
    ref = gaussian_log_density(z[:, None].double(), mu[None].double(), logvar[None].double())
    torch.testing.assert_close(log_q_matrix(z, mu, logvar), ref.float(), rtol=1e-5, atol=1e-4)
