"""Tests of vaeas.heads: the dense and two-level softmax heads (normalisation, sparse rows under a
lazy optimiser) and the weightless batch critic of VAE-AS (its bound against a known MI)."""

from __future__ import annotations

import math

import pytest
import torch

from vaeas.heads import Classifier, SoftmaxHead, TwoLevelSoftmaxHead
from vaeas.models import VAEAS, build_model, gaussian_log_density, reparameterize


def _small(model: str = "vae", arch: str = "mlp", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model, arch, latent_dim=3, hidden=(32,), decoder_hidden=(32,), **kw)


def _batch(b: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 784, generator=g) < 0.3).float()


# --------------------------------------------------------------------------- softmax heads
@pytest.mark.parametrize("num_classes", [2, 7, 10, 100, 1001])
def test_two_level_head_is_normalised_over_exactly_c_classes(num_classes):
    torch.manual_seed(0)
    head = TwoLevelSoftmaxHead(6, num_classes).double()
    with torch.no_grad():  # make the padding slots as attractive as possible: still no mass
        head.bias.fill_(0.0)
        head.bias[num_classes:] = 50.0
        head.group_fc.bias.normal_()
    h = torch.randn(9, 6, dtype=torch.float64) * 3
    log_p = head.log_prob_all(h)
    assert log_p.shape == (9, num_classes)
    total = torch.logsumexp(log_p.double(), dim=1).exp()
    torch.testing.assert_close(total, torch.ones(9, dtype=torch.float64), rtol=0, atol=1e-5)
    c = torch.arange(num_classes).repeat(2)[: 2 * num_classes]
    hh = h[torch.arange(len(c)) % 9]
    nll = head.nll(hh, c)
    ref = -head.log_prob_all(hh).gather(1, c[:, None]).squeeze(1)
    torch.testing.assert_close(nll, ref, rtol=1e-5, atol=1e-5)
    slots = head.groups * head.k
    assert head.k == math.ceil(math.sqrt(num_classes)) and slots >= num_classes
    assert slots - num_classes < head.k  # padding only in the last group


def test_two_level_head_gradient_reaches_only_the_used_rows():
    torch.manual_seed(0)
    head = TwoLevelSoftmaxHead(4, 30)  # k = 6, 5 groups
    h = torch.randn(3, 4)
    head.nll(h, torch.tensor([0, 1, 5])).sum().backward()  # all in group 0
    rows = head.weight.grad.abs().sum(1)
    assert torch.all(rows[:6] > 0) and torch.all(rows[6:] == 0)


def test_dense_head_matches_cross_entropy():
    torch.manual_seed(0)
    head = SoftmaxHead(4, 7)
    h = torch.randn(5, 4)
    c = torch.tensor([0, 6, 3, 3, 1])
    torch.testing.assert_close(head.nll(h, c), -head.log_prob_all(h)[torch.arange(5), c])
    torch.testing.assert_close(head.log_prob_all(h).exp().sum(1), torch.ones(5))


def test_classifier_head_auto_choice_and_errors():
    assert Classifier(3, 10).head_kind == "dense"
    assert Classifier(3, 2048).head_kind == "dense"
    assert Classifier(3, 2049).head_kind == "two_level"
    assert isinstance(Classifier(3, 5000).head, TwoLevelSoftmaxHead)
    assert isinstance(Classifier(3, 10, head="two_level").head, TwoLevelSoftmaxHead)
    assert isinstance(Classifier(3, 5000, head="dense").head, SoftmaxHead)
    with pytest.raises(ValueError):
        Classifier(3, 10, head="hierarchical")
    clf = Classifier(3, 10, hidden=16)
    assert clf.log_prob_all(torch.randn(2, 3)).shape == (2, 10)


# --------------------------------------------------------------------------- batch target
class _GaussianChannel(torch.nn.Module):
    """q(z|x) = N(a x, s2 I): for x ~ N(0, I_D), I(x; z) = D/2 log(1 + a^2 / s2) nats."""

    def __init__(self, a: float, s2: float = 1.0):
        super().__init__()
        self.a, self.s2 = a, s2
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        mu = self.a * x + 0 * self.dummy
        return mu, torch.full_like(mu, math.log(self.s2))


def _batch_bounds(model: VAEAS, b: int, n_total: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_total // b):
        mu, logvar = model.encode(torch.randn(b, d, generator=g))
        z = reparameterize(mu, logvar, g)
        out.append(model.aux_entropy(b) - model.aux_ce(z, mu, logvar).mean())
    return torch.stack(out).detach()


def test_batch_target_bound_is_below_the_true_mi_and_tight_for_large_batches():
    d, a = 2, 1.0
    true_mi = d * 0.5 * math.log(1 + a * a)  # 0.69 nats, small against log 1024 = 6.9
    model = VAEAS(_GaussianChannel(a), torch.nn.Linear(d, d), d, num_classes=1, target="batch")
    big = _batch_bounds(model, 1024, 20_480, d, seed=0)
    small = _batch_bounds(model, 8, 20_480, d, seed=1)
    se_big = float(big.std() / math.sqrt(len(big)))
    se_small = float(small.std() / math.sqrt(len(small)))
    assert float(big.mean()) <= true_mi + 4 * se_big
    assert float(big.mean()) > 0.95 * true_mi  # approaches I(x; z) when I << log B
    assert float(small.mean()) <= true_mi + 4 * se_small
    assert float(small.mean()) < float(big.mean()) - 4 * math.hypot(se_big, se_small)  # loose for B = 8


def test_batch_target_bound_reaches_but_never_exceeds_log_b():
    b, d = 16, 3
    model = VAEAS(_GaussianChannel(100.0, s2=1e-4), torch.nn.Linear(d, d), d, num_classes=1,
                  target="batch")
    g = torch.Generator().manual_seed(0)
    mu, logvar = model.encode(torch.randn(b, d, generator=g))
    z = reparameterize(mu, logvar, g)  # perfectly separated posteriors: CE = 0, bound = log B
    ce = model.aux_ce(z, mu, logvar)
    assert torch.all(ce >= 0)
    torch.testing.assert_close(model.aux_entropy(b) - ce, torch.full((b,), math.log(b)))
    model.encoder.a = 0.0  # identical posteriors: r(n|z_i) = 1/B, CE = log B, bound = 0
    mu, logvar = model.encode(torch.randn(b, d, generator=g))
    torch.testing.assert_close(model.aux_ce(reparameterize(mu, logvar, g), mu, logvar),
                               torch.full((b,), math.log(b)))


def test_batch_target_ce_is_the_softmax_of_the_posterior_matrix():
    model = _small("vaeas", target="batch")
    x = _batch(6)
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar)
    m = torch.stack([gaussian_log_density(z[i], mu, logvar) for i in range(6)])  # [i, n]
    ref = -(m.diagonal() - torch.logsumexp(m, 1))
    torch.testing.assert_close(model.aux_ce(z, mu, logvar), ref, rtol=1e-4, atol=1e-4)
    assert not hasattr(model, "classifier") and model.sparse_parameters() == []


# --------------------------------------------------------------------------- sparse instance head
def _sparse_model(num_classes: int = 100) -> VAEAS:
    return _small("vaeas", num_classes=num_classes, target="instance", head="two_level")


def _head_step(model: VAEAS, opts: list, x: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
    for opt in opts:
        opt.zero_grad()
    model.loss(x, None, index)["aux"].mean().backward()
    assert all(p.grad.is_sparse for p in model.sparse_parameters())
    for opt in opts:
        opt.step()
    return [p.detach().clone() for p in model.sparse_parameters()]


def test_sparse_head_moves_only_the_rows_that_got_a_gradient():
    """SparseAdam (the trainer's optimiser for sparse_parameters) is lazy: a row moves only on steps
    where it got a gradient, even though it still has Adam momentum from an earlier step."""
    model = _sparse_model()  # k = 10: classes 0..9 are group 0, 40..49 group 4
    head = model.classifier.head
    assert model.sparse_parameters() == [head.weight, head.bias]
    sparse_ids = {id(p) for p in model.sparse_parameters()}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    opts = [torch.optim.Adam(dense, lr=0.01), torch.optim.SparseAdam(model.sparse_parameters(), lr=0.01)]
    x = _batch(4)
    start = [p.detach().clone() for p in model.sparse_parameters()]
    first = _head_step(model, opts, x, torch.tensor([0, 3, 3, 9]))  # group 0 only
    second = _head_step(model, opts, x, torch.tensor([40, 41, 45, 49]))  # group 4 only
    for p0, p1, p2 in zip(start, first, second, strict=True):
        moved1 = (p1 != p0).flatten(1).any(1)
        assert moved1[:10].all() and not moved1[10:].any()
        assert torch.equal(p2[:40], p1[:40]) and torch.equal(p2[50:], p1[50:])  # bit-identical
        assert (p2[40:50] != p1[40:50]).flatten(1).any(1).all()
    with torch.no_grad():
        log_p = model.classifier.log_prob_all(torch.randn(7, 3) * 3)
    torch.testing.assert_close(torch.logsumexp(log_p.double(), 1), torch.zeros(7, dtype=torch.float64),
                               rtol=0, atol=1e-5)


def test_sparse_head_nll_matches_its_dense_log_probabilities():
    model = _sparse_model(5000)
    assert model.classifier.head_kind == "two_level" and model.classifier.head.sparse
    h = torch.randn(9, 3)
    c = torch.randint(0, 5000, (9,))
    head = model.classifier.head
    torch.testing.assert_close(head.nll(h, c), -head.log_prob_all(h)[torch.arange(9), c],
                               rtol=1e-5, atol=1e-5)
    assert not Classifier(3, 5000).head.sparse  # a classifier built on its own stays dense


def test_two_level_head_loads_a_one_dimensional_bias():
    head = TwoLevelSoftmaxHead(4, 30)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    slots = head.groups * head.k
    state["bias"] = torch.arange(slots, dtype=torch.float32)  # (slots,): checkpoints before the change
    head.load_state_dict(state)
    assert head.bias.shape == (slots, 1) and torch.equal(head.bias[:, 0], torch.arange(float(slots)))
