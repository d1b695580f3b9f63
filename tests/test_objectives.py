"""Tests of vaeas.objectives: KL-weight schedules, free bits, the total loss."""

from __future__ import annotations

import pytest
import torch

from vaeas.objectives import (
    Constant,
    Cyclical,
    LinearWarmup,
    free_bits_kl,
    make_schedule,
    schedule_to_dict,
    total_loss,
)


def test_constant():
    assert Constant()(0) == 1.0
    w = Constant(0.25)
    assert [w(s) for s in (0, 1, 10**6)] == [0.25, 0.25, 0.25]


def test_linear_warmup_exact_values():
    w = LinearWarmup(steps=10)
    assert w(0) == 0.0
    assert w(5) == 0.5
    assert w(3) == pytest.approx(0.3, abs=1e-15)
    assert w(10) == 1.0
    assert w(11) == 1.0 and w(10**6) == 1.0
    assert w(-4) == 0.0
    v = LinearWarmup(steps=4, start=0.2, end=0.6)
    assert [v(s) for s in range(6)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.6])
    assert LinearWarmup(steps=0, end=0.7)(0) == 0.7  # no warm-up: the final weight at once


def test_cyclical_fu_et_al():
    """total 100, 4 cycles of 25 steps, ratio 0.5: 0 -> 1 over 12.5 steps, then 1 to the end."""
    w = Cyclical(total_steps=100, cycles=4, ratio=0.5)
    for c in range(4):
        s = 25 * c
        assert w(s) == 0.0  # every cycle starts at 0
        assert w(s + 5) == pytest.approx(5 / 12.5)
        assert w(s + 10) == pytest.approx(10 / 12.5)
        assert w(s + 12) == pytest.approx(12 / 12.5)
        assert w(s + 13) == 1.0
        assert w(s + 24) == 1.0  # stays 1 to the cycle's end
    values = [w(s) for s in range(100)]
    assert max(values) == 1.0 and min(values) == 0.0
    assert sum(v == 1.0 for v in values) == 4 * 12  # steps 13..24 of each cycle
    # half-integer steps hit the turning point exactly
    assert w(12.5) == 1.0 and w(6.25) == 0.5


def test_cyclical_start_end_and_ratio_one():
    w = Cyclical(total_steps=40, cycles=2, ratio=1.0, start=0.1, end=0.5)
    assert w(0) == pytest.approx(0.1)
    assert w(10) == pytest.approx(0.3)
    assert w(19) == pytest.approx(0.1 + 0.4 * 19 / 20)
    assert w(20) == pytest.approx(0.1)


def test_make_schedule():
    assert make_schedule("constant", beta=0.3) == Constant(0.3)
    assert make_schedule("linear", beta=2.0, warmup_steps=7) == LinearWarmup(7, 0.0, 2.0)
    cyc = make_schedule("cyclical", beta=1.5, total_steps=80, cycles=2, ratio=0.25)
    assert cyc == Cyclical(80, 2, 0.25, 0.0, 1.5)
    assert cyc(10) == pytest.approx(1.5) and cyc(5) == pytest.approx(0.75) and cyc(40) == 0.0
    assert make_schedule("cyclical", total_steps=0)(0) == 0.0  # total clamped to >= 1
    d = schedule_to_dict(make_schedule("linear", beta=1.0, warmup_steps=3))
    assert d == {"kind": "LinearWarmup", "steps": 3, "start": 0.0, "end": 1.0}


@pytest.mark.parametrize("kwargs", [
    dict(kind="sigmoid"), dict(kind="constant", beta=-0.1), dict(kind="linear", warmup_steps=-1),
    dict(kind="cyclical", cycles=0), dict(kind="cyclical", ratio=0.0),
    dict(kind="cyclical", ratio=1.5),
])
def test_make_schedule_errors(kwargs):
    with pytest.raises(ValueError):
        make_schedule(**kwargs)


def test_free_bits_value():
    kl = torch.tensor([[0.1, 2.0, 0.0, 0.6], [0.3, 4.0, 0.0, 0.2]])  # dim means 0.2, 3.0, 0, 0.4
    assert free_bits_kl(kl, 0.5).item() == pytest.approx(0.5 + 3.0 + 0.5 + 0.5)
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(kl.mean(0).sum().item())
    g = torch.Generator().manual_seed(0)
    kl = torch.rand(16, 6, generator=g) * 2
    ref = torch.maximum(kl.mean(0), torch.tensor(0.9)).sum()
    torch.testing.assert_close(free_bits_kl(kl, 0.9), ref)


def test_free_bits_gradient_only_above_the_floor():
    kl = torch.tensor([[0.1, 2.0, 0.05], [0.3, 4.0, 0.1]], requires_grad=True)
    free_bits_kl(kl, 0.5).backward()
    grad = kl.grad
    assert torch.all(grad[:, 0] == 0) and torch.all(grad[:, 2] == 0)  # means 0.2, 0.075 < 0.5
    torch.testing.assert_close(grad[:, 1], torch.full((2,), 0.5))  # d mean_b / d KL_bd = 1/B


def _parts(b=6, d=3, aux=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    parts = {"rec": torch.rand(b, generator=g) * 100, "kl_per_dim": torch.rand(b, d, generator=g)}
    parts["kl"] = parts["kl_per_dim"].sum(-1)
    if aux:
        parts["aux"] = torch.rand(b, generator=g) * 3
    return parts


def test_total_loss():
    p = _parts(aux=False)
    torch.testing.assert_close(total_loss(p), p["rec"].mean() + p["kl"].mean())
    torch.testing.assert_close(total_loss(p, kl_weight=0.3), p["rec"].mean() + 0.3 * p["kl"].mean())
    p = _parts(aux=True)
    ref = p["rec"].mean() + 0.3 * p["kl"].mean() + p["aux"].mean()
    torch.testing.assert_close(total_loss(p, kl_weight=0.3), ref)
    fb = p["rec"].mean() + 2.0 * free_bits_kl(p["kl_per_dim"], 0.4) + p["aux"].mean()
    torch.testing.assert_close(total_loss(p, kl_weight=2.0, free_bits=0.4), fb)
    # the ce and mi_bound entries of VAE-AS must not leak into the loss
    p["ce"] = torch.full((6,), 1e6)
    p["mi_bound"] = torch.full((6,), -1e6)
    torch.testing.assert_close(total_loss(p, kl_weight=0.3), ref)
