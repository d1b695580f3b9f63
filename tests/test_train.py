"""Tests of vaeas.train: determinism, checkpoints and resume, failure handling, schedules."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaeas.data import batches as vaeas_batches
from vaeas.models import VAE, build_model
from vaeas.train import (
    CHECKPOINT,
    HISTORY,
    ResumeMismatch,
    Trainer,
    TrainingError,
    atomic_save,
    encoder_decoder_parameters,
    load_checkpoint,
    load_model,
    load_snapshot,
    resolve_device,
    snapshot_path,
    write_history_csv,
)

TIMING = ("seconds", "eval_seconds")
FAST = dict(batch_size=64, val_size=64, progress=False, device="cpu")


def _model(model="vae", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(model, "mlp", **{"latent_dim": 3, "hidden": (32,), **kw})


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture
def data(tiny_dataset):
    return tiny_dataset(n_train=256, n_val=64, n_test=64, num_classes=3)


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_history_and_weights(data):
    runs = []
    for init_seed in (0, 1):  # the trainer's seed governs training, not the caller's state
        model = _model(seed=0)
        torch.manual_seed(init_seed + 100)
        hist = Trainer(epochs=2, seed=5, **FAST).fit(model, data)
        runs.append((model, hist))
    (m1, h1), (m2, h2) = runs
    assert len(h1) == 2
    assert _strip(h1) == _strip(h2)
    _assert_same_weights(m1, m2)
    assert all(set(TIMING) <= set(row) for row in h1)
    m3 = _model(seed=0)
    h3 = Trainer(epochs=2, seed=6, **FAST).fit(m3, data)
    assert _strip(h3) != _strip(h1)


def test_history_columns_and_training_progress(data):
    model = _model()
    hist = Trainer(epochs=3, lr=3e-3, **FAST).fit(model, data)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert [r["step"] for r in hist] == [4, 8, 12]  # 256 / 64 batches per epoch
    for key in ("kl_weight", "train_loss", "train_rec", "train_kl", "val_neg_elbo", "val_rec",
                "val_kl", "val_mi", "val_au"):
        assert all(key in r for r in hist), key
    assert "train_ce" not in hist[0]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["val_neg_elbo"] < hist[0]["val_neg_elbo"]
    for r in hist:  # beta = 1: the training loss is rec + kl
        assert r["train_loss"] == pytest.approx(r["train_rec"] + r["train_kl"], rel=1e-5)
        assert r["val_neg_elbo"] == pytest.approx(r["val_rec"] + r["val_kl"], rel=1e-5)
        assert 0 <= r["val_au"] <= 3


# --------------------------------------------------------------------------- checkpoints, resume
def test_resume_equals_uninterrupted(data, tmp_path):
    trainer = Trainer(epochs=3, seed=2, **FAST)
    a = _model(seed=0)
    hist_a = trainer.fit(a, data, out_dir=tmp_path / "A")

    b = _model(seed=0)
    hist_b1 = trainer.fit(b, data, out_dir=tmp_path / "B", stop_after=1)  # "crash" after epoch 1
    assert len(hist_b1) == 1
    assert load_checkpoint(tmp_path / "B" / CHECKPOINT)["epoch"] == 1

    torch.manual_seed(12345)  # the resumed process starts from another RNG state
    b2 = _model(seed=7)  # and with other initial weights: all of it comes from the checkpoint
    hist_b = Trainer(epochs=3, seed=2, **FAST).fit(b2, data, out_dir=tmp_path / "B", resume=True)
    assert _strip(hist_b) == _strip(hist_a)
    _assert_same_weights(b2, a)
    ca = load_checkpoint(tmp_path / "A" / CHECKPOINT)
    cb = load_checkpoint(tmp_path / "B" / CHECKPOINT)
    assert ca["epoch"] == cb["epoch"] == 3
    assert torch.equal(ca["rng_torch"], cb["rng_torch"])
    assert torch.equal(ca["rng_data"], cb["rng_data"])


def test_resume_of_a_finished_run_adds_nothing(data, tmp_path):
    trainer = Trainer(epochs=2, **FAST)
    model = _model()
    hist = trainer.fit(model, data, out_dir=tmp_path)
    again = _model(seed=3)
    hist2 = trainer.fit(again, data, out_dir=tmp_path, resume=True)
    assert _strip(hist2) == _strip(hist) and len(hist2) == 2
    _assert_same_weights(again, model)


def test_resume_without_checkpoint_starts_fresh(data, tmp_path):
    a = _model()
    ha = Trainer(epochs=1, **FAST).fit(a, data, out_dir=tmp_path / "x", resume=True)
    b = _model()
    hb = Trainer(epochs=1, **FAST).fit(b, data)
    assert _strip(ha) == _strip(hb)


def test_checkpoint_contents_and_load_model(data, tmp_path):
    model = _model("vaeas", num_classes=3, lam=2.0, target_entropy=data.label_entropy())
    hist = Trainer(epochs=2, **FAST).fit(model, data, out_dir=tmp_path)
    ckpt = torch.load(tmp_path / CHECKPOINT, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert ckpt["model_config"] == model.config
    assert ckpt["trainer"]["epochs"] == 2 and ckpt["trainer"]["batch_size"] == 64
    assert _strip(ckpt["history"]) == _strip(hist)
    for path in (tmp_path, tmp_path / CHECKPOINT):
        loaded = load_model(path)
        assert type(loaded) is type(model) and loaded.lam == 2.0
        _assert_same_weights(loaded, model)
    assert not list(tmp_path.glob("*.tmp"))


def test_history_csv_one_row_per_epoch(data, tmp_path):
    hist = Trainer(epochs=3, **FAST).fit(_model(), data, out_dir=tmp_path)
    with open(tmp_path / HISTORY, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == set(hist[0])
    for row, ref in zip(rows, hist, strict=True):
        assert float(row["val_neg_elbo"]) == pytest.approx(ref["val_neg_elbo"])


def test_atomic_save_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"v": torch.tensor([1.0, 2.0])}, path)
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):  # vaeas.io hands torch.save an open file
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": torch.tensor([3.0])}, path)
    monkeypatch.setattr(torch, "save", real_save)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["v"], torch.tensor([1.0, 2.0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no .tmp leftovers
    atomic_save({"v": torch.tensor([4.0])}, path)  # and a later save works
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.tensor([4.0]))


def test_crash_while_saving_a_checkpoint_keeps_the_previous_epoch(data, tmp_path, monkeypatch):
    trainer = Trainer(epochs=2, **FAST)
    trainer.fit(_model(), data, out_dir=tmp_path, stop_after=1)
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        Trainer(epochs=2, **FAST).fit(_model(), data, out_dir=tmp_path, resume=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- failures
def _nan_after(model, calls):
    """Make ``model.loss`` return a NaN reconstruction term from call number ``calls`` on."""
    real = model.loss
    count = {"n": 0}

    def loss(x, y=None, index=None):
        parts = real(x, y, index)
        count["n"] += 1
        if count["n"] > calls:
            parts["rec"] = parts["rec"] * float("nan")
        return parts

    model.loss = loss
    return model


@pytest.mark.parametrize("check_every", [50, 1])
def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(data, tmp_path, check_every):
    model = _nan_after(_model(), calls=5)  # epoch 1 = 4 steps is fine, epoch 2 diverges
    trainer = Trainer(epochs=3, check_every=check_every, **FAST)
    with pytest.raises(TrainingError) as info:
        trainer.fit(model, data, out_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "epoch 2" in msg and "non-finite" in msg
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    with open(tmp_path / HISTORY) as f:
        assert len(f.read().strip().splitlines()) == 2  # header + epoch 1


def test_nan_from_a_huge_learning_rate_raises(data):
    model = _model()
    with pytest.raises(TrainingError):
        Trainer(epochs=2, lr=1e30, **FAST).fit(model, data)


def test_resume_with_another_model_config_raises(data, tmp_path):
    Trainer(epochs=1, **FAST).fit(_model(latent_dim=3), data, out_dir=tmp_path)
    with pytest.raises(TrainingError) as info:
        Trainer(epochs=2, **FAST).fit(_model(latent_dim=4), data, out_dir=tmp_path, resume=True)
    assert "different model" in str(info.value) and "\n" not in str(info.value)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1  # untouched


@pytest.mark.parametrize("kwargs", [
    dict(epochs=0), dict(epochs=-1), dict(batch_size=0), dict(lr=0.0), dict(lr=-1e-3),
    dict(lr=float("nan")), dict(free_bits=-0.1),
])
def test_trainer_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        Trainer(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(check_every=0), dict(val_size=0)])
def test_trainer_rejects_bad_check_every_and_val_size(kwargs):
    with pytest.raises(ValueError):
        Trainer(**kwargs)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


# --------------------------------------------------------------------------- schedules, VAE-AS
def test_linear_warmup_reaches_the_trainer(data):
    hist = Trainer(epochs=3, kl_schedule="linear", warmup_epochs=2, **FAST).fit(_model(), data)
    # 4 steps per epoch, warm-up over 8 steps; the column is the weight of the epoch's last step
    assert [r["kl_weight"] for r in hist] == [3 / 8, 7 / 8, 1.0]


def test_cyclical_and_beta_reach_the_trainer(data):
    hist = Trainer(epochs=4, kl_schedule="cyclical", cycles=2, ratio=0.5, beta=0.5,
                   **FAST).fit(_model(), data)
    # 16 steps, 2 cycles of 8: weights rise over 4 steps, so the last step of each epoch gives
    # w(3) = 0.375, w(7) = 0.5, w(11) = 0.375, w(15) = 0.5
    assert [r["kl_weight"] for r in hist] == pytest.approx([0.375, 0.5, 0.375, 0.5])


def test_beta_weights_the_kl_in_the_training_loss(data):
    hist = Trainer(epochs=1, beta=0.25, **FAST).fit(_model(), data)
    r = hist[0]
    assert r["kl_weight"] == 0.25
    assert r["train_loss"] == pytest.approx(r["train_rec"] + 0.25 * r["train_kl"], rel=1e-5)


def test_free_bits_change_training(data):
    a = Trainer(epochs=1, **FAST).fit(_model(), data)
    b = Trainer(epochs=1, free_bits=5.0, **FAST).fit(_model(), data)
    # with a floor of 5 nats per dimension the KL term is at least 3 * 5 = 15 nats
    assert b[0]["train_loss"] >= b[0]["train_rec"] + 15.0 - 1e-3
    assert _strip(a) != _strip(b)


def test_vaeas_trains_and_ce_decreases(data):
    model = _model("vaeas", num_classes=3, lam=1.0, target_entropy=data.label_entropy())
    hist = Trainer(epochs=4, lr=1e-2, **FAST).fit(model, data)
    ce = [r["train_ce"] for r in hist]
    assert ce[-1] < ce[0] - 0.1, ce
    assert ce[-1] < 0.5 * math.log(3), ce  # the classes are easy to tell apart
    for r in hist:  # lam = beta = 1: loss = rec + kl + ce
        assert r["train_loss"] == pytest.approx(r["train_rec"] + r["train_kl"] + r["train_ce"],
                                                rel=1e-5)


def test_vaeas_instance_target_trains(data):
    c = len(data.train)
    model = _model("vaeas", num_classes=c, target="instance", lam=0.5, target_entropy=math.log(c))
    hist = Trainer(epochs=2, **FAST).fit(model, data)
    for r in hist:  # the instance targets reach the classifier: ce is near log C at the start
        assert math.isfinite(r["train_ce"]) and r["train_ce"] > 0.5 * math.log(c)
        assert r["train_loss"] == pytest.approx(
            r["train_rec"] + r["train_kl"] + 0.5 * r["train_ce"], rel=1e-5)


def test_schedule_is_rebuilt_from_a_stored_config():
    trainer = Trainer(epochs=4, kl_schedule="linear", warmup_epochs=2.5, progress=False)
    rebuilt = Trainer(**trainer.config()).schedule(10)
    assert rebuilt(0) == 0.0 and rebuilt(12) == pytest.approx(12 / 25) and rebuilt(25) == 1.0 and rebuilt(39) == 1.0
    cyc = Trainer(epochs=4, kl_schedule="cyclical", cycles=2, ratio=0.5, beta=0.5, progress=False).schedule(10)
    assert cyc(0) == 0.0 and cyc(10) == 0.5 and cyc(20) == 0.0 and cyc(39) == 0.5


# --------------------------------------------------------------------------- resume mismatches, fit_or_load
def test_resume_mismatch_names_the_setting(data, tmp_path):
    Trainer(epochs=1, **FAST).fit(_model(latent_dim=3), data, out_dir=tmp_path)
    with pytest.raises(ResumeMismatch, match="latent_dim=3 there, 4 now"):
        Trainer(epochs=2, **FAST).fit(_model(latent_dim=4), data, out_dir=tmp_path, resume=True)
    with pytest.raises(ResumeMismatch, match="lr=0.001 there, 0.003 now"):
        Trainer(epochs=2, **{**FAST, "lr": 3e-3}).fit(_model(), data, out_dir=tmp_path, resume=True)
    # more epochs continue the run; device, progress and logging may change
    hist = Trainer(epochs=2, **{**FAST, "log": True}).fit(_model(), data, out_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in hist] == [1, 2]


def test_fit_or_load_loads_a_finished_run_without_training(data, tmp_path, monkeypatch):
    trainer = Trainer(epochs=2, seed=3, **FAST)
    model = _model()
    hist = trainer.fit_or_load(model, data, tmp_path / "run")  # nothing there: trains
    assert len(hist) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("fit_or_load trained a finished run")

    monkeypatch.setattr(Trainer, "fit", no_training)
    again = _model(seed=9)
    assert _strip(Trainer(epochs=2, seed=3, **FAST).fit_or_load(again, data, tmp_path / "run")) == _strip(hist)
    _assert_same_weights(again, model)
    with pytest.raises(ResumeMismatch, match="seed"):
        Trainer(epochs=2, seed=4, **FAST).fit_or_load(_model(), data, tmp_path / "run")
    with pytest.raises(ResumeMismatch, match="epochs"):
        Trainer(epochs=1, seed=3, **FAST).fit_or_load(_model(), data, tmp_path / "run")


def test_fit_or_load_finishes_an_interrupted_run(data, tmp_path):
    trainer = Trainer(epochs=3, **FAST)
    full = _model()
    ref = trainer.fit(full, data)
    part = _model()
    trainer.fit(part, data, out_dir=tmp_path, stop_after=1)
    resumed = _model(seed=5)
    assert _strip(trainer.fit_or_load(resumed, data, tmp_path)) == _strip(ref)
    _assert_same_weights(resumed, full)


def test_atomic_writers_are_the_io_helpers():
    from vaeas import io

    assert atomic_save is io.save_torch and write_history_csv is io.write_csv


# --------------------------------------------------------------------------- sparse parameters
class SparseRowsVAE(VAE):
    """A VAE with one sparse-gradient parameter per training image (as an instance head has)."""

    def __init__(self, base, n):
        super().__init__(base.encoder, base.decoder, base.latent_dim, {**base.config, "rows": n})
        self.rows = torch.nn.Embedding(n, 1, sparse=True)

    def loss(self, x, y=None, index=None):
        parts = super().loss(x, y, index)
        parts["aux"] = (self.rows(index).squeeze(-1) - 1.0) ** 2
        return parts

    def sparse_parameters(self):
        return [self.rows.weight]


def test_sparse_parameters_get_sparse_adam_and_resume_exactly(data, tmp_path):
    def make():
        return SparseRowsVAE(_model(), len(data.train))

    trainer = Trainer(epochs=2, **FAST)
    a = make()
    before = a.rows.weight.detach().clone()
    hist = trainer.fit(a, data, out_dir=tmp_path / "A")
    ckpt = load_checkpoint(tmp_path / "A" / CHECKPOINT)
    assert set(ckpt["optimizers"]) == {"adam", "sparse"}
    assert not torch.equal(a.rows.weight, before)  # the rows were trained
    assert all(math.isfinite(r["train_loss"]) for r in hist)
    b = make()
    trainer.fit(b, data, out_dir=tmp_path / "B", stop_after=1)
    b2 = make()
    hist_b = trainer.fit(b2, data, out_dir=tmp_path / "B", resume=True)
    assert _strip(hist_b) == _strip(hist)
    _assert_same_weights(b2, a)


# --------------------------------------------------------------------------- aggressive training
AGG = dict(aggressive=True, aggressive_max_inner=6, aggressive_check_every=2)


def _state(params):
    return [p.detach().clone() for p in params]


def test_encoder_inner_loop_touches_only_the_encoder(data):
    model = _model("vaeas", num_classes=3, target_entropy=data.label_entropy())
    trainer = Trainer(epochs=1, **AGG, **FAST)
    run = trainer._setup(model, data, None, resume=False)
    enc, dec = encoder_decoder_parameters(model)
    assert {id(p) for p in model.classifier.parameters()} <= {id(p) for p in dec}  # decoder side
    enc0, dec0 = _state(enc), _state(dec)
    steps = trainer._encoder_inner_loop(run, kl_weight=1.0)
    assert 2 * AGG["aggressive_check_every"] <= steps <= AGG["aggressive_max_inner"]
    assert all(torch.equal(p, q) for p, q in zip(dec, dec0, strict=True))  # bit-identical
    assert any(not torch.equal(p, q) for p, q in zip(enc, enc0, strict=True))
    assert all(p.requires_grad for p in model.parameters())  # the freeze of the decoder side is undone
    # and the decoder-side update leaves the encoder alone
    enc1 = _state(enc)
    batch = next(iter(vaeas_batches(data.train, 64, generator=run.gen)))
    trainer._step(run, batch, 1.0, ("decoder", "sparse"))
    assert all(torch.equal(p, q) for p, q in zip(enc, enc1, strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(dec, dec0, strict=True))


def test_inner_loop_skips_decoder_weight_gradients_and_restores_them_on_error(data, monkeypatch):
    model = _model()
    trainer = Trainer(epochs=1, **AGG, **FAST)
    run = trainer._setup(model, data, None, resume=False)
    enc, dec = encoder_decoder_parameters(model)
    seen = []
    step = trainer._step

    def spy(run_, batch, w, names):
        seen.append((all(p.requires_grad for p in enc), any(p.requires_grad for p in dec)))
        parts, loss = step(run_, batch, w, names)
        assert all(p.grad is None for p in dec)  # no decoder weight gradient was computed
        if len(seen) == 3:
            raise RuntimeError("boom")
        return parts, loss

    monkeypatch.setattr(trainer, "_step", spy)
    with pytest.raises(RuntimeError, match="boom"):
        trainer._encoder_inner_loop(run, kl_weight=1.0)
    assert seen == [(True, False)] * 3
    assert all(p.requires_grad for p in model.parameters())


def test_inner_loop_stops_when_the_block_mean_stops_falling(data, monkeypatch):
    trainer = Trainer(epochs=1, aggressive=True, aggressive_max_inner=100, aggressive_check_every=3, **FAST)
    run = trainer._setup(_model(), data, None, resume=False)
    losses = iter([5, 5, 5, 4, 4, 4, 4, 4, 4.5] + [0] * 100)  # blocks 5, 4, 4.17: stop after 9 steps

    def fake_step(run, batch, kl_weight, optimizers):
        assert optimizers == ("encoder",)
        return {}, torch.tensor(float(next(losses)))

    monkeypatch.setattr(trainer, "_step", fake_step)
    assert trainer._encoder_inner_loop(run, 1.0) == 9
    losses = iter([3.0] * 1000)  # equal blocks: "no longer decreases" after the second block
    assert trainer._encoder_inner_loop(run, 1.0) == 6
    losses = iter([100.0 - k for k in range(1000)])  # always falling: capped
    assert trainer._encoder_inner_loop(run, 1.0) == 100


def test_aggressive_switches_off_when_the_mi_did_not_rise(data, monkeypatch):
    mis = iter([1.0, 2.0, 2.0, 3.0, 4.0, 0.0])
    real = Trainer._validate

    def scripted(self, model, x):
        return {**real(self, model, x), "val_mi": next(mis)}

    monkeypatch.setattr(Trainer, "_validate", scripted)
    model = _model()
    hist = Trainer(epochs=5, **AGG, **FAST).fit(model, data)
    assert [r["aggressive"] for r in hist] == [1, 1, 1, 0, 0]  # epoch 3's MI did not rise: off
    assert all(r["inner_steps"] >= 4 * 4 for r in hist[:3])  # >= 2 blocks per outer step
    assert [r["inner_steps"] for r in hist[3:]] == [0, 0]
    assert [r["step"] for r in hist] == [4, 8, 12, 16, 20]
    plain = Trainer(epochs=1, **FAST).fit(_model(), data)
    assert "aggressive" not in plain[0] and "inner_steps" not in plain[0]


def test_aggressive_resume_equals_uninterrupted(data, tmp_path, monkeypatch):
    mis = {"A": [1.0, 2.0, 1.0, 5.0], "B": [1.0, 2.0, 1.0, 5.0]}
    real = Trainer._validate
    which = {"run": "A"}

    def scripted(self, model, x):
        return {**real(self, model, x), "val_mi": mis[which["run"]].pop(0)}

    monkeypatch.setattr(Trainer, "_validate", scripted)
    trainer = Trainer(epochs=4, seed=1, **AGG, **FAST)
    a = _model()
    hist_a = trainer.fit(a, data, out_dir=tmp_path / "A")
    assert [r["aggressive"] for r in hist_a] == [1, 1, 1, 0]
    which["run"] = "B"
    trainer.fit(_model(), data, out_dir=tmp_path / "B", stop_after=2)  # aggressive still on
    assert load_checkpoint(tmp_path / "B" / CHECKPOINT)["aggressive"] == {"on": True, "prev_mi": 2.0}
    torch.manual_seed(999)
    b = _model(seed=4)
    hist_b = Trainer(epochs=4, seed=1, **AGG, **FAST).fit(b, data, out_dir=tmp_path / "B", resume=True)
    assert _strip(hist_b) == _strip(hist_a)
    _assert_same_weights(a, b)
    ckpt = load_checkpoint(tmp_path / "B" / CHECKPOINT)
    assert set(ckpt["optimizers"]) == {"encoder", "decoder"}
    assert ckpt["aggressive"] == {"on": False, "prev_mi": 1.0}  # MI of the epoch that ended it


def test_aggressive_works_on_every_architecture(data):
    for arch in ("conv", "made"):
        torch.manual_seed(0)
        kw = {} if arch == "conv" else {"hidden": (16,), "decoder_hidden": (16,)}
        model = build_model("vae", arch, latent_dim=2, **kw)
        hist = Trainer(epochs=1, aggressive=True, aggressive_max_inner=2, aggressive_check_every=1,
                       **FAST).fit(model, data)
        assert hist[0]["aggressive"] == 1 and math.isfinite(hist[0]["train_loss"])


def test_instance_head_rows_use_sparse_adam_also_when_aggressive(data, tmp_path):
    c = len(data.train)
    model = _model("vaeas", num_classes=c, target="instance", head="two_level", target_entropy=math.log(c))
    sparse = {id(p) for p in model.sparse_parameters()}
    assert sparse
    _, dec = encoder_decoder_parameters(model)
    assert sparse <= {id(p) for p in dec}  # the rows are on the decoder side
    hist = Trainer(epochs=2, **AGG, **FAST).fit(model, data, out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert set(ckpt["optimizers"]) == {"encoder", "decoder", "sparse"}
    assert all(math.isfinite(r["train_ce"]) for r in hist)


# --------------------------------------------------------------------------- snapshots
def test_snapshots_keep_the_weights_of_those_epochs(data, tmp_path):
    model = _model(seed=0)
    init = _model(seed=0)
    trainer = Trainer(epochs=3, seed=1, snapshots=(2, 0), **FAST)
    trainer.fit(model, data, out_dir=tmp_path / "A")
    assert sorted(p.name for p in (tmp_path / "A").glob("snapshot-*.pt")) == ["snapshot-0.pt", "snapshot-2.pt"]
    _assert_same_weights(load_snapshot(_model(seed=9), tmp_path / "A", 0), init)
    at2 = _model(seed=0)
    Trainer(epochs=3, seed=1, **FAST).fit(at2, data, out_dir=tmp_path / "B", stop_after=2)
    _assert_same_weights(load_snapshot(_model(seed=9), tmp_path / "A", 2), at2)
    assert load_snapshot(_model(), tmp_path / "A", 1) is None  # not kept
    assert snapshot_path(tmp_path / "A", 2).is_file()
    with pytest.raises(ResumeMismatch):
        load_snapshot(_model(latent_dim=4), tmp_path / "A", 2)


def test_snapshots_do_not_change_training_and_may_change_on_resume(data, tmp_path):
    a = _model(seed=0)
    hist_a = Trainer(epochs=2, seed=3, **FAST).fit(a, data)
    b = _model(seed=0)
    Trainer(epochs=2, seed=3, snapshots=(1,), **FAST).fit(b, data, out_dir=tmp_path, stop_after=1)
    hist_b = Trainer(epochs=2, seed=3, snapshots=(1, 2), **FAST).fit(b, data, out_dir=tmp_path, resume=True)
    assert _strip(hist_b) == _strip(hist_a)
    _assert_same_weights(a, b)
    assert (tmp_path / "snapshot-1.pt").is_file() and (tmp_path / "snapshot-2.pt").is_file()


@pytest.mark.parametrize("snapshots", [(-1,), (4,)])
def test_snapshot_epochs_outside_the_run_are_refused(snapshots):
    with pytest.raises(ValueError, match="snapshot"):
        Trainer(epochs=3, snapshots=snapshots, **FAST)


def test_the_detached_batch_target_trains_exactly_the_vanilla_vae(data):
    """The batch critic has no weights, so its detached control has nothing to train: the sequence
    grid runs no separate control for it (results/configs/sequence.json)."""
    vae = _model("vae", seed=0)
    ctrl = _model("vaeas", seed=0, target="batch", lam=10.0, detach_aux=True, num_classes=3)
    live = _model("vaeas", seed=0, target="batch", lam=10.0, num_classes=3)
    def same(a, b):  # every weight of the VAE (VAE-AS adds a buffer, target_entropy, and nothing else)
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sb) - set(sa) == {"target_entropy"}
        return all(torch.equal(sa[k], sb[k]) for k in sa)

    assert same(vae, ctrl)  # the same initial weights (no classifier)
    trainer = Trainer(epochs=2, seed=4, **FAST)
    h_vae, h_ctrl = trainer.fit(vae, data), trainer.fit(ctrl, data)
    trainer.fit(live, data)
    assert same(vae, ctrl) and not same(vae, live)
    assert [r["val_kl"] for r in h_vae] == [r["val_kl"] for r in h_ctrl]


# --------------------------------------------------------------------------- the allocator setting
def _child_env(malloc: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, VAEAS_MALLOC=malloc)


def _glibc() -> bool:
    import ctypes
    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


def test_keep_freed_memory_applies_on_glibc_only_and_can_be_switched_off():
    code = "from vaeas.train import keep_freed_memory as k; print(k(), k())"
    for malloc, expected in (("tuned", _glibc()), ("default", False)):
        out = subprocess.run([sys.executable, "-c", code], env=_child_env(malloc), capture_output=True,
                             text=True, timeout=120, check=True).stdout.split()
        assert out == [str(expected)] * 2, (malloc, out)


def test_the_allocator_setting_changes_no_number(tmp_path):
    """Two runs of the same seed, glibc's defaults and the tuned allocator: identical weights."""
    corpus = tmp_path / "corpus.txt"
    words = "the cat dog sat ran on a mat log and big small red".split()
    corpus.write_text("".join(" ".join(words[(i * 5 + j) % len(words)] for j in range(2 + i % 6)) + "\n"
                              for i in range(400)))
    weights = {}
    for malloc in ("default", "tuned"):
        out = tmp_path / malloc
        subprocess.run([sys.executable, "-m", "vaeas", "train", "--dataset", "text", "--text-file", str(corpus),
                        "--out", str(out), "--epochs", "2", "--latent", "2", "--lstm-hidden", "16",
                        "--embed-dim", "8", "--k", "3", "--device", "cpu", "--no-probe", "--quiet"],
                       env=_child_env(malloc), capture_output=True, text=True, timeout=300, check=True)
        weights[malloc] = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert weights["default"].keys() == weights["tuned"].keys()
    for name, w in weights["default"].items():
        assert torch.equal(w, weights["tuned"][name]), name


# --------------------------------------------------------------------------- early stopping
SCRIPT = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 2.0, 1.0]  # validation -ELBO by epoch: best at 2, then 3 worse


@pytest.fixture
def scripted_validation(monkeypatch):
    """Replace each epoch's validation -ELBO by SCRIPT[epoch - 1] (the rest of the loop is real)."""
    real = Trainer._end_epoch

    def end_epoch(self, run, row, bar):
        row["val_neg_elbo"] = SCRIPT[run.epoch]
        return real(self, run, row, bar)

    monkeypatch.setattr(Trainer, "_end_epoch", end_epoch)


def test_patience_stops_and_keeps_the_best_epochs_weights(data, tmp_path, scripted_validation):
    trainer = Trainer(epochs=8, patience=3, snapshots=(2, 5), **FAST)
    model = _model()
    hist = trainer.fit(model, data, out_dir=tmp_path)
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4, 5]  # epochs 3, 4, 5 brought no new best
    assert [r["best_epoch"] for r in hist] == [1, 2, 2, 2, 2]
    best, last = _model(seed=9), _model(seed=9)
    load_snapshot(best, tmp_path, 2)
    load_snapshot(last, tmp_path, 5)
    _assert_same_weights(model, best)
    _assert_same_weights(load_model(tmp_path), best)  # what `vaeas evaluate` loads
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["early_stopping"]["stopped"] and ckpt["early_stopping"]["best_epoch"] == 2
    assert all(torch.equal(v, last.state_dict()[k]) for k, v in ckpt["model"].items())  # resume goes on from here
    again = _model(seed=4)  # a finished run: nothing more is trained, the best weights are loaded
    assert len(trainer.fit_or_load(again, data, tmp_path)) == 5
    _assert_same_weights(again, best)


def test_patience_resume_equals_uninterrupted(data, tmp_path, scripted_validation):
    trainer = Trainer(epochs=8, patience=3, seed=1, **FAST)
    a = _model()
    hist_a = trainer.fit(a, data, out_dir=tmp_path / "A")
    b = _model()
    trainer.fit(b, data, out_dir=tmp_path / "B", stop_after=3)  # "crash" after epoch 3: best still 2
    b2 = _model(seed=5)
    hist_b = trainer.fit(b2, data, out_dir=tmp_path / "B", resume=True)
    assert _strip(hist_b) == _strip(hist_a) and len(hist_b) == 5
    _assert_same_weights(b2, a)


def test_without_patience_every_epoch_runs_and_the_last_weights_are_kept(data, scripted_validation):
    model = _model()
    hist = Trainer(epochs=6, **FAST).fit(model, data)
    assert len(hist) == 6 and "best_epoch" not in hist[0]
    with pytest.raises(ValueError, match="patience"):
        Trainer(patience=-1)
