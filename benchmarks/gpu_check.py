"""GPU check in one command: train, resume and evaluate the MADE-decoder VAE-AS on CUDA.

Usage::

    python benchmarks/gpu_check.py                      # on a CUDA machine (under 5 minutes on an H200)
    python benchmarks/gpu_check.py --device cpu --limit 2000 --epochs 1 --hidden 64 \\
        --decoder-hidden 64 --k 20 --iw-size 100 --fixed-n 100 --fixed-k 8   # CPU smoke test

Without a CUDA device (and without ``--device cpu``) it prints ``no CUDA device: skipped`` and exits 0.

The model is VAE-AS with the label target, lambda = 10, a MADE decoder (``--decoder-hidden``,
default 1000,1000, direct path) and a 32-dimensional latent, on MNIST (``--limit`` keeps the first
images of each split). The checks, each PASS or FAIL in the final table (exit code 1 on any FAIL):

1. **bf16** -- ``--epochs`` epochs with ``Trainer(amp=True)`` (bf16 autocast; on the CPU the trainer
   ignores ``amp``, so both runs are float32) end with a validation -ELBO within
   ``max(1 nat, 2 %)`` of the float32 run's.
2. **resume** -- ``--epochs`` epochs, stop, resume to ``--epochs + 1``: weights bit-identical and
   history identical (timings aside) to an uninterrupted run on the same device (deterministic
   algorithms on, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``).
3. **same-noise CPU vs device** -- the uninterrupted run's checkpoint is loaded on the CPU and on the
   device (float32 both, TF32 off) and scored on ``--fixed-n`` test images with the SAME noise
   (drawn on the CPU and copied): per image -ELBO (one z), KL and IW-NLL (``--fixed-k`` samples).
   Float32 kernels differ only in summation order (relative error ~1e-6), so per-image differences are
   ~1e-4 nats; tolerances: mean |diff| <= 0.005 nats and max |diff| <= 0.05 nats (KL: 0.001 / 0.01).
   TF32 (10-bit mantissa) would give differences of ~0.1 nats per image: the check catches it
   (the TF32 difference is also printed, for information).
4. **evaluate CPU vs device** -- :func:`vaeas.evaluate` on both (same checkpoint, same k and IW
   subset). Its noise is drawn on each device, so the two runs differ by Monte Carlo noise:
   KL (closed form) within 0.01 nats; active units within 1; -ELBO (one z per image) within
   ``max(0.05, 4 sd)`` with sd the Monte Carlo standard deviation of the difference of two
   independent means, estimated from the same-noise samples; IW-NLL within 0.1 nats.
5. **time** (CUDA, full data) -- the whole check under 300 s.

Epoch times (training and validation) of every run and evaluation times are printed in a table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# Deterministic cuBLAS for the resume check; must be set before CUDA is initialised.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

SKIP_LINE = "no CUDA device: skipped"
TIME_LIMIT_S = 300.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (default; skips without one) or cpu (a smoke test: CPU compared with CPU)")
    p.add_argument("--limit", type=int, default=None, help="keep the first N images of each split")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the fp32 and bf16 runs (resume: +1)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--hidden", type=_sizes, default=None, help="encoder hidden sizes (default 512,256)")
    p.add_argument("--decoder-hidden", type=_sizes, default=(1000, 1000), help="MADE hidden sizes")
    p.add_argument("--k", type=int, default=1000, help="importance samples of evaluate's IW-NLL")
    p.add_argument("--iw-size", type=int, default=1000, help="test images of evaluate's IW-NLL")
    p.add_argument("--fixed-n", type=int, default=1000, help="test images of the same-noise check")
    p.add_argument("--fixed-k", type=int, default=100, help="samples of the same-noise IW-NLL")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="keep the checkpoints here (default: temp)")
    return p.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


# --------------------------------------------------------------------------- model and runs
def make_model(args: argparse.Namespace, data):
    import vaeas

    torch.manual_seed(args.seed)  # the same initial weights for every run
    return vaeas.build_for_dataset(data, "vaeas", "made", target="label", lam=10,
                                   latent_dim=args.latent_dim, hidden=args.hidden,
                                   decoder_hidden=args.decoder_hidden, direct=True)


def train_runs(args: argparse.Namespace, data, device: str, out: Path) -> dict:
    """The four runs: fp32 (stopped after ``epochs``), its resumption, uninterrupted, bf16."""
    from vaeas import Trainer

    total = args.epochs + 1
    common = dict(batch_size=args.batch_size, seed=args.seed, device=device, progress=False)
    runs: dict = {}
    model = make_model(args, data)
    runs["fp32"] = Trainer(epochs=total, **common).fit(model, data, out / "resumed", stop_after=args.epochs)
    resumed = make_model(args, data)
    runs["resume"] = Trainer(epochs=total, **common).fit(resumed, data, out / "resumed", resume=True)
    full = make_model(args, data)
    runs["uninterrupted"] = Trainer(epochs=total, **common).fit(full, data, out / "full")
    bf16 = make_model(args, data)
    runs["bf16"] = Trainer(epochs=total, amp=True, **common).fit(bf16, data, stop_after=args.epochs)
    return {"histories": runs, "resumed": resumed, "full": full}


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "eval_seconds")} for row in history]


def check_resume(result: dict) -> tuple[bool, str]:
    a, b = result["resumed"].state_dict(), result["full"].state_dict()
    same_w = list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    same_h = _strip(result["histories"]["resume"]) == _strip(result["histories"]["uninterrupted"])
    differ = [k for k in a if k in b and not torch.equal(a[k], b[k])]
    detail = "weights and history bit-identical" if same_w and same_h else (
        f"weights identical: {same_w} ({len(differ)} tensors differ), history identical: {same_h}")
    return same_w and same_h, detail


def check_bf16(histories: dict, epochs: int) -> tuple[bool, str]:
    fp32 = histories["fp32"][epochs - 1]["val_neg_elbo"]
    bf16 = histories["bf16"][epochs - 1]["val_neg_elbo"]
    tol = max(1.0, 0.02 * abs(fp32))
    ok = math.isfinite(bf16) and abs(bf16 - fp32) <= tol
    return ok, f"val -ELBO fp32 {fp32:.3f}, bf16 {bf16:.3f} (|diff| {abs(bf16 - fp32):.3f} <= {tol:.2f})"


# --------------------------------------------------------------------------- CPU vs device
def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def load_on(args: argparse.Namespace, data, state: dict, device: str):
    model = make_model(args, data)
    model.load_state_dict(state)
    return model.to(device).eval()


@torch.no_grad()
def same_noise_terms(model, x: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image (on the CPU, float64): ``neg_elbo`` (first noise row), ``kl``, ``iw_nll`` (all
    ``k`` rows) and ``rec_var`` (variance over the rows of -log p(x|z)), with ``eps (k, n, D)``."""
    from vaeas.distributions import gaussian_log_density, kl_standard_normal, standard_normal_log_density

    device = next(model.parameters()).device
    x, eps = x.to(device), eps.to(device)
    mu, logvar = model.encode(x)
    kl = kl_standard_normal(mu, logvar).sum(-1)
    log_w, rec = [], []
    for e in eps:
        z = mu + torch.exp(0.5 * logvar) * e
        log_px = model.log_likelihood(model.decode(z, x), x)
        rec.append(-log_px)
        log_w.append(log_px + standard_normal_log_density(z) - gaussian_log_density(z, mu, logvar))
    rec_t, log_w_t = torch.stack(rec).double().cpu(), torch.stack(log_w).double().cpu()
    k = eps.shape[0]
    return {"neg_elbo": rec_t[0] + kl.double().cpu(), "kl": kl.double().cpu(),
            "iw_nll": -(torch.logsumexp(log_w_t, 0) - math.log(k)),
            "rec_var": rec_t.var(0) if k > 1 else torch.zeros_like(rec_t[0])}


SAME_NOISE_TOL = {"neg_elbo": (0.005, 0.05), "kl": (0.001, 0.01), "iw_nll": (0.005, 0.05)}


def compare_same_noise(args, data, state: dict, device: str) -> tuple[list, dict, dict]:
    """Rows (name, ok, detail) of the same-noise check, its timings and the CPU terms."""
    x = data.test.x[: args.fixed_n]
    g = torch.Generator().manual_seed(args.seed + 1)
    eps = torch.randn(args.fixed_k, len(x), args.latent_dim, generator=g)
    times, terms = {}, {}
    for name in ("cpu", device) if device != "cpu" else ("cpu", "cpu (again)"):
        dev = "cpu" if name.startswith("cpu") else device
        t = time.perf_counter()
        terms[name] = same_noise_terms(load_on(args, data, state, dev), x, eps)
        times[f"same-noise terms, {name}"] = time.perf_counter() - t
    a, b = terms.values()
    rows = []
    for key, (tol_mean, tol_max) in SAME_NOISE_TOL.items():
        diff = (a[key] - b[key]).abs()
        ok = diff.mean().item() <= tol_mean and diff.max().item() <= tol_max
        rows.append((f"same noise: {key}", ok, f"mean |diff| {diff.mean().item():.2e} <= {tol_mean}, "
                     f"max {diff.max().item():.2e} <= {tol_max} ({len(x)} images)"))
    if device == "cuda":  # for information: what TF32 would do to the same comparison
        set_tf32(True)
        tf32 = same_noise_terms(load_on(args, data, state, device), x, eps[:1])
        set_tf32(False)
        diff = (a["neg_elbo"] - tf32["neg_elbo"]).abs()
        rows.append(("info: same noise, TF32 on", None, f"-ELBO mean |diff| {diff.mean().item():.2e}, "
                     f"max {diff.max().item():.2e} (not a check)"))
    return rows, times, terms["cpu"]


def compare_evaluate(args, data, state: dict, device: str, rec_var: torch.Tensor) -> tuple[list, dict]:
    """Rows (name, ok, detail) of :func:`vaeas.evaluate` on the CPU and on ``device``, and timings."""
    import vaeas

    results, times = [], {}
    for name, dev in (("cpu", "cpu"), (device if device != "cpu" else "cpu (again)", device)):
        model = load_on(args, data, state, dev)
        t = time.perf_counter()
        results.append(vaeas.evaluate(model, data.to(dev), k=args.k, iw_size=args.iw_size,
                                      probe=False, seed=args.seed))
        times[f"evaluate, {name}"] = time.perf_counter() - t
    cpu, other = results
    n = len(data.test)
    sd = math.sqrt(2 * rec_var.mean().item() / n)  # sd of the difference of two independent means
    tols = {"neg_elbo": max(0.05, 4 * sd), "kl": 0.01, "iw_nll": 0.1, "au": 1}
    rows = []
    for key, tol in tols.items():
        diff = abs(cpu[key] - other[key])
        note = f" (4 sd = {4 * sd:.3f})" if key == "neg_elbo" else ""
        rows.append((f"evaluate: {key}", diff <= tol,
                     f"cpu {cpu[key]:.4f}, {device} {other[key]:.4f}, |diff| {diff:.4g} <= {tol:.3g}{note}"))
    return rows, times


# --------------------------------------------------------------------------- report
def print_times(histories: dict, extra: dict, epochs: int) -> None:
    """Every epoch a run trained (the resumed run's history also holds the epochs it loaded)."""
    print(f"\n{'run':<16}{'epoch':>6}{'train s':>10}{'val s':>9}{'val -ELBO':>11}")
    for name, hist in histories.items():
        for row in hist[epochs:] if name == "resume" else hist:
            print(f"{name:<16}{row['epoch']:>6}{row['seconds']:>10.2f}{row['eval_seconds']:>9.2f}"
                  f"{row['val_neg_elbo']:>11.3f}")
    for name, sec in extra.items():
        print(f"{name:<40}{sec:>8.2f} s")


def print_checks(rows: list) -> bool:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'check':<{width}}  result  detail")
    for name, ok, detail in rows:
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<{width}}  {verdict:<6}  {detail}")
    passed = all(ok is not False for _, ok, _ in rows)
    print(f"\n{'PASS' if passed else 'FAIL'}: {sum(ok is True for _, ok, _ in rows)} of "
          f"{sum(ok is not None for _, ok, _ in rows)} checks passed")
    return passed


def run(args: argparse.Namespace, out: Path) -> bool:
    import vaeas

    start = time.perf_counter()
    device = args.device
    torch.use_deterministic_algorithms(True, warn_only=True)
    set_tf32(False)
    data = vaeas.load_dataset("mnist", limit=args.limit)
    print(f"gpu_check: {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
          + f", torch {torch.__version__}, MNIST train {len(data.train)} / test {len(data.test)}, "
          f"MADE decoder {args.decoder_hidden}, {args.epochs} epoch(s)", flush=True)
    t = time.perf_counter()
    result = train_runs(args, data, device, out)
    extra = {"training, all runs": time.perf_counter() - t}
    rows = [("bf16 training", *check_bf16(result["histories"], args.epochs)),
            ("resume == uninterrupted", *check_resume(result))]
    state = {k: v.detach().cpu() for k, v in result["full"].state_dict().items()}
    same_rows, same_times, cpu_terms = compare_same_noise(args, data, state, device)
    eval_rows, eval_times = compare_evaluate(args, data, state, device, cpu_terms["rec_var"])
    rows += same_rows + eval_rows
    extra.update(same_times)
    extra.update(eval_times)
    total = time.perf_counter() - start
    extra["total"] = total
    if device == "cuda" and args.limit is None:
        rows.append(("time", total <= TIME_LIMIT_S, f"{total:.0f} s <= {TIME_LIMIT_S:.0f} s"))
    print_times(result["histories"], extra, args.epochs)
    return print_checks(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_LINE)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        return 0 if run(args, args.out) else 1
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        return 0 if run(args, Path(tmp)) else 1


if __name__ == "__main__":
    sys.exit(main())
