"""Tests of vaeas.models: loss terms, closed-form KL, MADE masks, VAE-AS targets (label, instance,
batch) and the detached control, parameter groups, factory (heads: test_heads; LSTM: test_sequence)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaeas import distributions
from vaeas.models import (
    VAEAS,
    LinearVAE,
    MADEDecoder,
    bernoulli_log_likelihood,
    build_for_dataset,
    build_model,
    gaussian_log_density,
    kl_standard_normal,
    log_q_matrix,
    model_from_config,
    reparameterize,
    standard_normal_log_density,
)

P = 784
SMALL = dict(latent_dim=3, hidden=(32,), decoder_hidden=(32,))


def _batch(b: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, P, generator=g) < 0.3).float()
    y = torch.randint(0, 10, (b,), generator=g)
    index = torch.randint(0, 50, (b,), generator=g)
    return x, y, index


def _small(model: str = "vae", arch: str = "mlp", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model, arch, **{**SMALL, **kw})


# --------------------------------------------------------------------------- loss dicts
@pytest.mark.parametrize("arch", ["mlp", "conv", "made"])
@pytest.mark.parametrize("variant", ["vae", "label", "instance", "batch"])
@pytest.mark.parametrize("detach", [False, True])
def test_loss_terms_shapes_and_identities(arch, variant, detach):
    b, d, lam = 5, 3, 0.7
    if variant == "vae":
        model = _small("vae", arch)
    else:
        num_classes = 10 if variant == "label" else 50
        model = _small("vaeas", arch, num_classes=num_classes, target=variant, lam=lam,
                       target_entropy=1.9, detach_aux=detach)
    h = math.log(b) if variant == "batch" else 1.9
    x, y, index = _batch(b)
    parts = model.loss(x, y, index)
    expected = {"rec", "kl", "kl_per_dim", "neg_elbo"}
    if variant != "vae":
        expected |= {"ce", "aux", "mi_bound"}
    assert set(parts) == expected
    for key, value in parts.items():
        assert value.shape == ((b, d) if key == "kl_per_dim" else (b,)), key
        assert torch.isfinite(value).all(), key
    assert (parts["rec"] > 0).all()  # -log of a probability of 784 pixels
    assert (parts["kl_per_dim"] >= 0).all()
    torch.testing.assert_close(parts["kl"], parts["kl_per_dim"].sum(-1))
    torch.testing.assert_close(parts["neg_elbo"], parts["rec"] + parts["kl"])
    if variant != "vae":
        assert (parts["ce"] > 0).all()
        torch.testing.assert_close(parts["aux"], lam * parts["ce"])
        torch.testing.assert_close(parts["mi_bound"], h - parts["ce"])
        assert model.aux_entropy(b) == pytest.approx(h)


@pytest.mark.parametrize("arch", ["mlp", "made"])
def test_rec_and_ce_use_the_same_reparameterised_z(arch):
    """rec = -log p(x|z) and ce = -log r(c|z) for one z = mu + sigma * eps, the same z for both."""
    model = _small("vaeas", arch, num_classes=10, target="label")
    x, y, _ = _batch(4)
    torch.manual_seed(123)
    parts = model.loss(x, y)
    torch.manual_seed(123)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = -bernoulli_log_likelihood(model.decode(z, x), x)
    ce = torch.nn.functional.cross_entropy(model.classifier.log_prob_all(z), y, reduction="none")
    torch.testing.assert_close(parts["rec"], rec)
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(parts["kl_per_dim"], kl_standard_normal(mu, logvar))


def test_aux_term_sends_gradient_into_the_encoder():
    model = _small("vaeas", num_classes=10, lam=1.0)
    x, y, _ = _batch(8)
    model.loss(x, y)["aux"].mean().backward()
    assert model.encoder.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.decoder.parameters())


def test_vaeas_lam_zero_gives_zero_aux_but_keeps_ce():
    model = _small("vaeas", num_classes=10, lam=0.0)
    x, y, _ = _batch()
    parts = model.loss(x, y)
    assert torch.all(parts["aux"] == 0) and torch.all(parts["ce"] > 0)


def test_vaeas_missing_targets_raise():
    x, y, index = _batch()
    with pytest.raises(ValueError, match="index"):
        _small("vaeas", num_classes=50, target="instance").loss(x, y)
    with pytest.raises(ValueError, match="y"):
        _small("vaeas", num_classes=10, target="label").loss(x, index=index)


def test_vae_ignores_targets():
    model = _small("vae")
    x, y, index = _batch()
    torch.manual_seed(1)
    a = model.loss(x)
    torch.manual_seed(1)
    b = model.loss(x, y, index)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


# --------------------------------------------------------------------------- KL
def test_kl_closed_form_matches_monte_carlo():
    mu = torch.tensor([[0.0, 1.5, -0.7, 0.3]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.8, -3.0]], dtype=torch.float64)
    kl = kl_standard_normal(mu, logvar)[0]
    n = 200_000
    g = torch.Generator().manual_seed(0)
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(n, 4, generator=g, dtype=torch.float64)
    log_q = Normal(mu, std).log_prob(z)
    log_p = Normal(0.0, 1.0).log_prob(z)
    terms = log_q - log_p  # (n, 4): per-dim log-ratio
    mc = terms.mean(0)
    se = terms.std(0) / math.sqrt(n)
    assert kl[0] == 0  # q = p in the first dim
    assert torch.all((mc - kl).abs() < 5 * se + 1e-12), (mc, kl, se)


def test_kl_closed_form_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(6, 5, generator=g, dtype=torch.float64) * 1.5
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_standard_normal(mu, logvar), ref, rtol=1e-10, atol=1e-12)


def test_bernoulli_log_likelihood_matches_distribution():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 11, generator=g) * 3
    x = (torch.rand(3, 11, generator=g) < 0.5).float()
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), ref)


# --------------------------------------------------------------------------- MADE
def _made_jacobian(dec: MADEDecoder, out_dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, out_dim, generator=g) < 0.5).float()
    z = torch.randn(1, 2, generator=g)
    jac = torch.autograd.functional.jacobian(lambda xx: dec(z, xx)[0], x, vectorize=True)
    return jac[:, 0, :]  # (out i, in j)


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_made_is_autoregressive(direct, activation):
    torch.manual_seed(0)
    dec = MADEDecoder(latent_dim=2, hidden=(48, 40), out_dim=P, activation=activation,
                      direct=direct)
    jac = _made_jacobian(dec, P)
    upper = torch.triu(torch.ones(P, P, dtype=torch.bool))  # j >= i
    assert torch.all(jac[upper] == 0)
    # the first pixel depends on no pixel at all; the others depend on some earlier pixel
    assert torch.all(jac[0] == 0)
    if activation == "tanh":  # tanh never has a zero derivative: every i > 0 sees some j < i
        assert torch.all((jac[1:] != 0).any(dim=1))
    else:
        assert (jac != 0).sum() > P
    if direct:  # the direct path connects every j < i
        assert torch.all(jac[~upper] != 0)


def _made_z_jacobian() -> torch.Tensor:
    torch.manual_seed(0)
    dec = MADEDecoder(latent_dim=2, hidden=(16,), out_dim=10, activation="tanh")
    x = torch.zeros(1, 10)
    jac = torch.autograd.functional.jacobian(lambda z: dec(z, x)[0], torch.zeros(1, 2))
    return jac.abs().sum((1, 2))  # (10,): how strongly each pixel's logit reads z


def test_made_logits_depend_on_z():
    assert torch.all(_made_z_jacobian()[1:] > 0)


def test_made_first_pixel_depends_on_z():
    assert _made_z_jacobian()[0] > 0


def test_made_needs_x_and_a_hidden_layer():
    dec = MADEDecoder(latent_dim=2, hidden=(8,), out_dim=10)
    with pytest.raises(ValueError):
        dec(torch.zeros(1, 2))
    with pytest.raises(ValueError):
        MADEDecoder(latent_dim=2, hidden=(), out_dim=10)


# --------------------------------------------------------------------------- factory
@pytest.mark.parametrize("kwargs", [
    dict(model="ae"), dict(arch="resnet"), dict(activation="swish"), dict(latent_dim=0),
    dict(latent_dim=0, arch="conv"), dict(latent_dim=0, arch="made", model="vaeas"), dict(latent_dim=-1),
    dict(hidden=(32, 0)), dict(arch="conv", in_dim=100), dict(model="vaeas", target="pixel"),
    dict(model="vaeas", lam=-1.0), dict(model="vaeas", head="flat"),
    dict(arch="lstm", hidden=None), dict(arch="lstm", hidden=None, vocab_size=10),
    dict(arch="lstm", hidden=None, vocab_size=4, max_len=5), dict(arch="lstm", vocab_size=10, max_len=5),
    dict(arch="lstm", hidden=None, vocab_size=10, max_len=5, word_dropout=1.0),
])
def test_build_model_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        build_model(**{"latent_dim": 2, "hidden": (8,), **kwargs})


@pytest.mark.parametrize("kwargs", [
    dict(model="vae", arch="mlp", hidden=(24, 12), activation="tanh"),
    dict(model="vaeas", arch="mlp", hidden=16, num_classes=40, target="instance", head="two_level",
         head_hidden=8, lam=3.0, target_entropy=math.log(40)),
    dict(model="vae", arch="made", hidden=(16,), decoder_hidden=(20,), direct=True),
    dict(model="vaeas", arch="conv", num_classes=10),
    dict(model="vaeas", arch="mlp", hidden=16, target="batch", lam=2.0),
    dict(model="vaeas", arch="mlp", hidden=16, num_classes=40, target="instance", detach_aux=True),
])
def test_model_from_config_rebuilds_the_same_network(kwargs):
    torch.manual_seed(0)
    model = build_model(latent_dim=3, **kwargs)
    torch.manual_seed(1)
    clone = model_from_config(model.config)
    assert type(clone) is type(model)
    assert clone.config == model.config
    sd, sd2 = model.state_dict(), clone.state_dict()
    assert list(sd) == list(sd2)
    assert all(sd[k].shape == sd2[k].shape for k in sd)
    assert any(not torch.equal(sd[k], sd2[k]) for k in sd)  # freshly initialised
    clone.load_state_dict(sd)
    x, y, index = _batch(3)
    index = index % 40
    torch.manual_seed(5)
    a = model.loss(x, y, index)
    torch.manual_seed(5)
    b = clone.loss(x, y, index)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    if isinstance(model, VAEAS):
        assert clone.lam == model.lam and clone.target == model.target
        assert clone.detach_aux == model.detach_aux
        assert clone.aux_entropy(7) == model.aux_entropy(7)


def test_default_target_entropy_is_log_c():
    model = build_model("vaeas", latent_dim=2, hidden=(8,), num_classes=37)
    assert float(model.target_entropy) == pytest.approx(math.log(37))


# --------------------------------------------------------------------------- sample / reconstruct
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_sample_and_reconstruct_factorised(arch):
    model = _small("vae", arch)
    s = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, P) and s.min() >= 0 and s.max() <= 1
    assert not torch.all((s == 0) | (s == 1))  # Bernoulli means, not samples
    s2 = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)
    x, _, _ = _batch(4)
    r = model.reconstruct(x)
    assert r.shape == (4, P) and r.min() >= 0 and r.max() <= 1
    mu, _ = model.encode(x)
    torch.testing.assert_close(r, torch.sigmoid(model.decode(mu)))


def test_sample_and_reconstruct_autoregressive_are_binary():
    model = _small("vae", "made", hidden=(16,), decoder_hidden=(24,))
    assert model.autoregressive
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, P) and torch.all((s == 0) | (s == 1))
    s2 = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)
    x, _, _ = _batch(2)
    r = model.reconstruct(x, generator=torch.Generator().manual_seed(0))
    assert r.shape == (2, P) and torch.all((r == 0) | (r == 1))


def test_made_sample_follows_its_own_conditionals():
    """Pixel i of a sample is drawn from sigmoid(logit_i(x_<i, z)): check it on a 3-pixel MADE
    whose logits are forced to huge values, so sampling is deterministic given the past."""
    torch.manual_seed(0)
    dec = MADEDecoder(latent_dim=1, hidden=(4,), out_dim=3)
    with torch.no_grad():
        for layer in [*dec.hidden_layers, dec.out]:
            layer.weight.zero_()
            layer.bias.zero_()
        dec.z_in.weight.zero_()
        dec.z_in.bias.zero_()
        dec.out.bias.copy_(torch.tensor([30.0, -30.0, 30.0]))
    s = dec.sample(torch.zeros(2, 1))
    assert torch.equal(s, torch.tensor([[1.0, 0.0, 1.0]] * 2))


# --------------------------------------------------------------------------- probability layer
def test_densities_are_those_of_vaeas_distributions():
    """models re-exports the one probability layer instead of keeping its own copies."""
    assert gaussian_log_density is distributions.gaussian_log_density
    assert standard_normal_log_density is distributions.standard_normal_log_density
    assert kl_standard_normal is distributions.kl_standard_normal
    assert bernoulli_log_likelihood is distributions.bernoulli_log_likelihood
    assert log_q_matrix is distributions.log_q_matrix and reparameterize is distributions.reparameterize
    from vaeas import heads, models
    for name in ("ACTIVATIONS", "Classifier", "SoftmaxHead", "TwoLevelSoftmaxHead", "batch_nll"):
        assert getattr(models, name) is getattr(heads, name)  # old import paths keep working
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    a = build_model.__globals__["VAE"].reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, reparameterize(mu, logvar, torch.Generator().manual_seed(3)))


# --------------------------------------------------------------------------- detached control
def _grads(params) -> list[float]:
    return [0.0 if p.grad is None else float(p.grad.abs().sum()) for p in params]


@pytest.mark.parametrize("target", ["label", "instance", "batch"])
def test_aux_gradient_reaches_the_encoder_unless_detached(target):
    x, y, index = _batch(8)
    for detach in (False, True):
        model = _small("vaeas", num_classes=50, target=target, detach_aux=detach)
        aux = model.loss(x, y, index)["aux"].mean()
        if detach and target == "batch":  # the batch control trains nothing: vanilla VAE + logged CE
            assert not aux.requires_grad
            continue
        aux.backward()
        enc = _grads(model.encoder_parameters())
        assert (sum(enc) == 0) == detach, (target, detach)
        if target != "batch":  # the classifier is trained in both cases
            assert sum(_grads(model.classifier.parameters())) > 0
        assert all(p.grad is None for p in model.decoder.parameters())


# --------------------------------------------------------------------------- parameter groups
@pytest.mark.parametrize("kwargs", [
    dict(model="vae", arch="mlp"), dict(model="vae", arch="made"), dict(model="vae", arch="conv"),
    dict(model="vaeas", arch="mlp", num_classes=10, head_hidden=8),
    dict(model="vaeas", arch="mlp", num_classes=100, target="instance", head="two_level"),
    dict(model="vaeas", arch="mlp", target="batch"),
])
def test_encoder_and_decoder_parameters_partition_the_model(kwargs):
    model = _small(**kwargs)
    enc, dec = model.encoder_parameters(), model.decoder_parameters()
    ids_enc, ids_dec = {id(p) for p in enc}, {id(p) for p in dec}
    assert len(ids_enc) == len(enc) and len(ids_dec) == len(dec)
    assert not ids_enc & ids_dec
    assert ids_enc | ids_dec == {id(p) for p in model.parameters()}
    assert ids_enc == {id(p) for p in model.encoder.parameters()}
    if hasattr(model, "classifier"):  # classifier heads are on the decoder side
        assert {id(p) for p in model.classifier.parameters()} <= ids_dec
    assert {id(p) for p in model.sparse_parameters()} <= ids_dec


def test_linear_vae_logvar_is_an_encoder_parameter():
    model = LinearVAE(5, 2, learn_sigma=True)
    assert any(p is model.enc_logvar for p in model.encoder_parameters())
    assert any(p is model.log_sigma2 for p in model.decoder_parameters())
    assert len(model.encoder_parameters()) + len(model.decoder_parameters()) == len(list(model.parameters()))
    assert model.sparse_parameters() == []


# --------------------------------------------------------------------------- build_for_dataset
class _Split:
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)


class _ImageData:
    num_classes = 3

    def __init__(self, n=30, p=20):
        self.train = _Split(torch.rand(n, p))

    def label_entropy(self):
        return 1.05


class _SequenceData(_ImageData):
    kind = "sequence"
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c"]

    def __init__(self):
        self.train = _Split(torch.tensor([[1, 4, 5, 6, 2], [1, 6, 2, 0, 0], [1, 2, 0, 0, 0]]))


@pytest.mark.parametrize("target", ["label", "instance", "batch"])
def test_build_for_dataset_derives_the_sizes(target):
    data = _ImageData()
    vae = build_for_dataset(data, latent_dim=2, hidden=(8,))
    assert vae.config["in_dim"] == 20 and type(vae).__name__ == "VAE"
    model = build_for_dataset(data, "vaeas", target=target, latent_dim=2, hidden=(8,))
    assert model.target == target and model.config["in_dim"] == 20
    expected = {"label": (3, 1.05), "instance": (30, math.log(30)), "batch": (None, math.log(16))}[target]
    assert model.config.get("num_classes") == expected[0]
    assert model.aux_entropy(16) == pytest.approx(expected[1])
    assert model.loss(torch.rand(4, 20).round(), torch.zeros(4, dtype=torch.long),
                      torch.arange(4))["ce"].shape == (4,)
    assert model_from_config(model.config).config == model.config


def test_build_for_dataset_on_sequences():
    data = _SequenceData()
    model = build_for_dataset(data, "vaeas", "lstm", target="instance", latent_dim=2, lstm_hidden=8)
    assert type(model).__name__ == "SequenceVAEAS"
    assert model.config["vocab_size"] == 7 and model.config["max_len"] == 3
    assert model.config["num_classes"] == 3
    assert model.count_tokens(data.train.x).tolist() == [4, 2, 1]
    assert torch.isfinite(model.loss(data.train.x, index=torch.arange(3))["neg_elbo"]).all()
    assert build_for_dataset(data, arch="lstm", max_len=9).config["max_len"] == 9  # kwargs win
    with pytest.raises(ValueError, match="lstm"):
        build_for_dataset(data)
    with pytest.raises(ValueError, match="image"):
        build_for_dataset(_ImageData(), arch="lstm")
    data.vocab = None
    with pytest.raises(ValueError, match="vocab"):
        build_for_dataset(data, arch="lstm")


def test_build_for_dataset_on_the_package_dataset():
    from conftest import make_tiny_dataset

    data = make_tiny_dataset(n_train=40, dim=30)
    model = build_for_dataset(data, "vaeas", target="label", latent_dim=2, hidden=(8,))
    assert model.config["in_dim"] == 30 and model.config["num_classes"] == 3
    assert model.aux_entropy(5) == pytest.approx(data.label_entropy())
    inst = build_for_dataset(data, "vaeas", target="instance", latent_dim=2, hidden=(8,))
    assert inst.config["num_classes"] == 40 and inst.aux_entropy(5) == pytest.approx(math.log(40))


# --------------------------------------------------------------------------- no latent code (D = 0)
def _no_code(arch: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if arch == "made":
        return build_model("vae", "made", latent_dim=0, hidden=(16,), decoder_hidden=(32,)), _batch(6)[0]
    x = torch.tensor([[1, 4, 5, 6, 2, 0], [1, 7, 2, 0, 0, 0], [1, 8, 9, 4, 5, 2]])  # <bos> .. <eos> <pad>
    return build_model("vae", "lstm", latent_dim=0, vocab_size=10, max_len=4, embed_dim=6, lstm_hidden=8), x


@pytest.mark.parametrize("arch", ["made", "lstm"])
def test_a_model_without_a_code_is_its_decoder_alone(arch):
    """D = 0: no encoder weights, KL = 0, -ELBO = -log p(x) exactly, so IW-NLL at any k equals it."""
    from vaeas import metrics

    model, x = _no_code(arch)
    model.eval()
    assert model.encoder_parameters() == [] and model.latent_dim == 0
    parts = model.loss(x)
    assert torch.equal(parts["kl"], torch.zeros(len(x)))
    exact = -model.log_likelihood(model.decode(torch.zeros(len(x), 0), x), x)
    assert torch.allclose(parts["neg_elbo"], exact)
    assert torch.allclose(metrics.iw_nll(model, x, k=64), exact, atol=1e-5)
    assert metrics.active_units(model, x) == 0
    assert metrics.mutual_information(model, x) == pytest.approx(0.0, abs=1e-6)
    rebuilt = model_from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())


def test_probe_without_a_code_predicts_the_training_prior():
    from vaeas import metrics

    model, x = _no_code("made")
    y_train = torch.tensor([2, 2, 2, 0, 1, 2])
    y_test = torch.tensor([2, 0, 2, 1, 2, 2])
    assert metrics.linear_probe(model, x, y_train, x, y_test) == pytest.approx(4 / 6)
