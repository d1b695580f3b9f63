"""Tests of vaeas.diagnose: the verdict on known cases, the report, the figure, any user model."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch
from torch import nn

from vaeas.diagnose import Diagnosis, diagnose
from vaeas.models import build_model
from vaeas.train import Trainer

# the module (vaeas.diagnose, the attribute, is the function of the same name)
dg = importlib.import_module("vaeas.diagnose")


class ConstantEncoderVAE(nn.Module):
    """A user's model whose encoder ignores x: q(z|x) = N(0, I) for every x (the prior)."""

    def __init__(self, in_dim=784, latent_dim=4):
        super().__init__()
        self.latent_dim = latent_dim
        self.dec = nn.Linear(latent_dim, in_dim)

    def encode(self, x):
        shape = (x.shape[0], self.latent_dim)
        return torch.zeros(shape, device=x.device), torch.zeros(shape, device=x.device)

    def decode(self, z, x=None):
        return self.dec(z)


class UserVAE(nn.Module):
    """A user-defined VAE with only encode / decode / latent_dim (no vaeas.models involved)."""

    def __init__(self, in_dim=784, latent_dim=3):
        super().__init__()
        self.latent_dim = latent_dim
        self.enc = nn.Sequential(nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, 2 * latent_dim))
        self.dec = nn.Sequential(nn.Linear(latent_dim, 32), nn.ReLU(), nn.Linear(32, in_dim))

    def encode(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z, x=None):
        return self.dec(z)


def test_an_encoder_that_ignores_x_is_total_collapse(tiny_dataset):
    data = tiny_dataset(n_train=64, n_val=16, n_test=200, num_classes=3)
    torch.manual_seed(0)
    d = diagnose(ConstantEncoderVAE(), data)
    assert d.verdict == "total collapse"
    assert d.active_units == 0 and d.kl_total == pytest.approx(0.0, abs=1e-6)
    assert abs(d.mi_dataset) < 1e-5 and abs(d.mi_minibatch) < 1e-5
    assert d.code_gain == 0.0  # common random numbers: exactly no gain
    assert d.n == 200 and d.latent_dim == 4


def test_a_trained_mlp_vae_is_not_collapsed(tiny_dataset):
    torch.set_num_threads(1)
    data = tiny_dataset(n_train=512, n_val=64, n_test=256, num_classes=3)
    torch.manual_seed(0)
    model = build_model("vae", "mlp", latent_dim=4, hidden=(64,))
    Trainer(epochs=4, batch_size=64, lr=3e-3, device="cpu", progress=False, val_size=64).fit(model, data)
    d = diagnose(model, data, seed=1)
    assert d.verdict != "total collapse", d.summary()
    assert d.code_gain > 10 and d.mi_dataset > math.log(3) - 0.3 and d.active_units >= 1, d.summary()
    # the same model with its encoder replaced by the prior is collapsed
    assert diagnose(ConstantEncoderVAE(latent_dim=4), data).verdict == "total collapse"


def test_summary_states_the_thresholds_and_settings(tiny_dataset):
    data = tiny_dataset(n_train=64, n_val=16, n_test=100, num_classes=3)
    torch.manual_seed(0)
    d = diagnose(UserVAE(), data, mi_batch=32, delta=0.02)
    text = d.summary()
    assert d.verdict in text and d.reason in text
    for piece in ("total collapse if (dataset MI < 0.1 and AU = 0) or code gain < 0.5",
                  "no collapse if dataset MI >= 0.9 x log n", "partial collapse otherwise",
                  "B = 32", "delta = 0.02", f"{math.log(100):.3f}", "nats"):
        assert piece in text, text
    assert d.thresholds == {"total_mi": 0.1, "total_gain": 0.5, "saturation": 0.9, "weak_mi": 1.0,
                            "delta": 0.02}
    assert len(text.splitlines()) <= 12


def test_a_user_module_and_a_tensor_work_without_build_model():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(150, 20, generator=g) < 0.3).float()
    torch.manual_seed(0)
    model = UserVAE(in_dim=20)
    model.train()
    state = torch.get_rng_state()
    d = diagnose(model, x, n=100, seed=2)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert isinstance(d, Diagnosis) and d.n == 100 and d.latent_dim == 3
    assert d.verdict in ("no collapse", "partial collapse", "total collapse")
    assert len(d.kl_per_dim) == len(d.posterior_mean_variance) == 3
    assert d.to_dict() == diagnose(model, x, n=100, seed=2).to_dict() | {"seconds": d.seconds}
    json.dumps(d.to_dict(), allow_nan=False)
    with pytest.raises(TypeError, match="encode"):
        diagnose(object(), x)
    with pytest.raises(TypeError, match="data_or_x"):
        diagnose(model, [1, 2, 3])


def _fake(**kw):
    base = dict(mi_dataset=9.2, mi_dataset_cap=math.log(10_000), active_units=21, latent_dim=32,
                code_gain=80.0)
    return dg._verdict({**base, **kw})


def test_verdict_rules():
    # a vanilla MLP VAE on MNIST: 21 of 32 active, MI at its cap -> no collapse, pruning reported
    verdict, reason = _fake()
    assert verdict == "no collapse" and "11 of 32 dimensions inactive" in reason
    assert _fake(mi_dataset=2.0, active_units=2)[0] == "partial collapse"  # the text-VAE pattern
    assert _fake(mi_dataset=0.5, active_units=32)[0] == "partial collapse"  # weak code, all active
    assert _fake(mi_dataset=3.0, active_units=32)[0] == "no collapse"
    assert _fake(mi_dataset=0.05, active_units=0, code_gain=2.0)[0] == "total collapse"
    assert _fake(code_gain=0.2)[0] == "total collapse"  # the decoder ignores an informative code


def test_figure_two_panels_readable():
    x = (torch.rand(80, 20, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    d = diagnose(UserVAE(in_dim=20), x)
    fig = d.figure()
    w, _ = fig.get_size_inches()
    assert w <= 7.0 and len(fig.axes) == 2
    for ax in fig.axes:
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
        assert all(t.get_fontsize() >= 10 for t in texts)
    assert any(line.get_linestyle() == "--" for line in fig.axes[1].get_lines())  # the delta line
