"""Tests of vaeas.sequence and the LSTM VAE: exact teacher-forced likelihood, padding, sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vaeas.models import SequenceVAE, SequenceVAEAS, build_model, model_from_config
from vaeas.sequence import BOS, EOS, PAD, UNK, LSTMDecoder, build_lstm, count_tokens

V, D, MAX_LEN = 12, 2, 5
T = MAX_LEN + 2


def _x() -> torch.Tensor:
    """Three sentences of 5, 2 and 0 words, ``<bos> .. <eos>`` right-padded: ``(3, 7)``."""
    return torch.tensor([[BOS, 4, 5, 6, 7, 8, EOS],
                         [BOS, 9, 10, EOS, PAD, PAD, PAD],
                         [BOS, EOS, PAD, PAD, PAD, PAD, PAD]])


def _model(model: str = "vae", **kw) -> SequenceVAE:
    torch.manual_seed(0)
    return build_model(model, "lstm", latent_dim=D, vocab_size=V, max_len=MAX_LEN, embed_dim=6,
                       lstm_hidden=8, **kw)


def _stepwise_log_likelihood(dec: LSTMDecoder, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) with an LSTMCell carrying the same weights, one token at a time, stopping at <eos>."""
    lstm = dec.lstm
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, name + "_l0"))
    total = []
    for b in range(x.shape[0]):
        c = z[b : b + 1] @ dec.init_state.weight.T
        h, logp, t = torch.tanh(c), torch.zeros(()), 0
        while x[b, t] != EOS:
            inp = torch.cat([dec.embed.weight[x[b, t]][None], z[b : b + 1]], dim=1)
            h, c = cell(inp, (h, c))
            logp = logp + F.log_softmax(dec.out(h), -1)[0, x[b, t + 1]]
            t += 1
        total.append(logp)
    return torch.stack(total)


def test_teacher_forced_likelihood_equals_the_step_by_step_computation():
    model = _model()
    x = _x()
    z = torch.randn(3, D)
    logits = model.decode(z, x)
    assert logits.shape == (3, T - 1, V)
    torch.testing.assert_close(model.log_likelihood(logits, x), _stepwise_log_likelihood(model.decoder, z, x))


def test_padding_changes_neither_likelihood_nor_code_and_gets_no_gradient():
    model = _model()
    x = _x()
    longer = torch.cat([x, torch.full((3, 4), PAD)], dim=1)
    z = torch.randn(3, D)
    torch.testing.assert_close(model.log_likelihood(model.decode(z, longer), longer),
                               model.log_likelihood(model.decode(z, x), x))
    for a, b in zip(model.encode(longer), model.encode(x), strict=True):
        torch.testing.assert_close(a, b)
    logits = model.decode(z, longer).detach().requires_grad_()
    model.log_likelihood(logits, longer).sum().backward()
    scored = longer[:, 1:] != PAD
    assert torch.all(logits.grad[~scored] == 0) and torch.all(logits.grad[scored].abs().sum(-1) > 0)


def test_count_tokens_counts_words_and_eos():
    assert count_tokens(_x()).tolist() == [6, 3, 1]
    assert _model().count_tokens(_x()).tolist() == [6, 3, 1]


def test_loss_terms_and_metrics_style_calls():
    model = _model("vaeas", target="batch", lam=2.0)
    parts = model.loss(_x())
    assert set(parts) == {"rec", "kl", "kl_per_dim", "neg_elbo", "ce", "aux", "mi_bound"}
    assert (parts["rec"] > 0).all() and parts["kl_per_dim"].shape == (3, D)
    n, m = 3, 4  # IW-NLL in vaeas.metrics: z (n*m, D) against x repeated m times
    z = torch.randn(n * m, D)
    x_rep = _x().repeat_interleave(m, 0)
    assert model.log_likelihood(model.decode(z, x_rep), x_rep).shape == (n * m,)


def _check_layout(s: torch.Tensor, n: int, width: int) -> None:
    assert s.shape == (n, width) and s.dtype == torch.long
    assert torch.all(s[:, 0] == BOS) and not torch.any(s[:, 1:] == BOS)
    assert torch.all((s == EOS).sum(1) == 1)
    eos = (s == EOS).int().argmax(1)
    pos = torch.arange(width)[None]
    assert torch.all((s == PAD) == (pos > eos[:, None]))  # pads exactly after <eos>
    assert torch.all(s < V)


def test_sample_layout_reproducibility_and_reconstruct():
    model = _model()
    model.eval()
    s = model.sample(50, generator=torch.Generator().manual_seed(0))
    _check_layout(s, 50, T)
    assert torch.equal(s, model.sample(50, generator=torch.Generator().manual_seed(0)))
    r = model.reconstruct(_x(), generator=torch.Generator().manual_seed(1))
    _check_layout(r, 3, T)
    greedy = model.decoder.sample(torch.zeros(4, D), greedy=True, max_len=9)
    _check_layout(greedy, 4, 11)
    assert torch.all(greedy == greedy[0])  # same z, argmax decoding: same sentence


def test_sample_closes_sentences_that_reach_max_len():
    model = _model()
    with torch.no_grad():
        model.decoder.out.bias[EOS] = -1e4  # the decoder never ends a sentence by itself
    s = model.decoder.sample(torch.randn(6, D), generator=torch.Generator().manual_seed(0))
    _check_layout(s, 6, T)
    assert torch.all(s[:, -1] == EOS)
    assert count_tokens(s).tolist() == [MAX_LEN + 1] * 6


def test_word_dropout_replaces_inputs_by_unk_only_in_training():
    model = _model(word_dropout=0.5)
    dec = model.decoder
    x, z = _x(), torch.randn(3, D)
    torch.manual_seed(7)
    train_out = dec(z, x)
    torch.manual_seed(7)
    inp = x[:, :-1]
    drop = (torch.rand(inp.shape) < 0.5) & (inp != PAD) & (inp != BOS)
    assert drop.any() and (~drop & (inp > UNK)).any()
    manual = torch.cat([inp.masked_fill(drop, UNK), x[:, -1:]], dim=1)
    dec.eval()
    torch.testing.assert_close(train_out, dec(z, manual))
    torch.testing.assert_close(dec(z, x), dec(z, x))  # eval: no word dropout, deterministic
    assert not torch.allclose(dec(z, x), train_out)


def test_dropout_is_active_only_in_training():
    model = _model(dropout=0.5)
    z, x = torch.randn(3, D), _x()
    a, b = model.decode(z, x), model.decode(z, x)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model.decode(z, x), model.decode(z, x))


@pytest.mark.parametrize("kwargs", [dict(model="vae", word_dropout=0.25, dropout=0.5),
                                    dict(model="vaeas", target="label", num_classes=4, lam=3.0),
                                    dict(model="vaeas", target="batch", detach_aux=True)])
def test_model_from_config_rebuilds_the_lstm_vae(kwargs):
    model = _model(**kwargs)
    assert isinstance(model, SequenceVAEAS if kwargs["model"] == "vaeas" else SequenceVAE)
    clone = model_from_config(model.config)
    assert type(clone) is type(model) and clone.config == model.config
    clone.load_state_dict(model.state_dict())
    model.eval()
    clone.eval()
    torch.manual_seed(3)
    a = model.loss(_x(), torch.tensor([0, 1, 2]))
    torch.manual_seed(3)
    b = clone.loss(_x(), torch.tensor([0, 1, 2]))
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_lstm_parameter_groups_and_validation():
    model = _model("vaeas", target="label", num_classes=4)
    enc = {id(p) for p in model.encoder_parameters()}
    assert enc == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in model.decoder_parameters()} == {id(p) for p in model.parameters()} - enc
    with pytest.raises(ValueError):
        build_lstm(4, 5, 2)  # only the specials
    with pytest.raises(ValueError):
        build_lstm(10, 0, 2)
    with pytest.raises(ValueError):
        model.decode(torch.zeros(1, D))  # teacher forcing needs x
