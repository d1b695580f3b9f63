"""What :func:`vaeas.runtime.keep_freed_memory` buys: glibc's default ``malloc`` against the tuned one.

Prints one table: milliseconds per call, each measured in a fresh process (the allocator's
settings are per process), with ``VAEAS_MALLOC=default`` (glibc's defaults: the reference) and
with the tuning that ``Trainer.fit`` and the command line apply, for

* ``lstm step``: one training step of the sequence VAE of chapter 7 (``B, T, V = 64, 11, 1000``);
* ``lstm encoder step``: one step of aggressive training's inner loop (decoder frozen);
* ``lstm iw-nll``: the importance-weighted NLL (``k = 500``) of 16 sentences;
* ``made step``: one training step of the MADE-decoder VAE of chapters 3-6 (MNIST, ``B = 100``).

Usage::

    python benchmarks/allocator.py [--repeats 5] [--calls 40]

Each number is the median of ``--repeats`` timed passes of ``--calls`` calls after a warm-up, on
one CPU thread. The tuning changes no number the package computes, only how memory is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ("lstm step", "lstm encoder step", "lstm iw-nll", "made step")


def _case(name: str):  # noqa: ANN202 -- returns a zero-argument callable
    import torch

    from vaeas.data import load_dataset
    from vaeas.metrics import iw_nll
    from vaeas.models import build_for_dataset

    torch.manual_seed(0)
    if name.startswith("lstm"):
        data = load_dataset("synthetic")
        model = build_for_dataset(data, model="vae", arch="lstm", latent_dim=2, embed_dim=50,
                                  lstm_hidden=50, dropout=0.5)
        x = data.train.x[:64]
    else:
        data = load_dataset("mnist")
        model = build_for_dataset(data, model="vae", arch="made", latent_dim=32)
        x = torch.bernoulli(data.train.x[:100].float(), generator=torch.Generator().manual_seed(0))
    if name == "lstm iw-nll":
        model.eval()
        return lambda: iw_nll(model, x[:16], k=500)
    params = model.encoder_parameters() if name == "lstm encoder step" else list(model.parameters())
    if name == "lstm encoder step":
        for p in model.decoder_parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=1e-3)

    def step() -> None:
        parts = model.loss(x)
        loss = (parts["rec"] + parts["kl"]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def child(name: str, repeats: int, calls: int) -> None:
    """Time ``name`` in this process and print ``{"ms": ..., "tuned": ...}`` as JSON."""
    import torch

    from vaeas.runtime import keep_freed_memory

    torch.set_num_threads(1)
    tuned = keep_freed_memory()
    f = _case(name)
    if name == "lstm iw-nll":  # ~0.7 s a call
        calls = max(2, calls // 10)
    for _ in range(max(3, calls // 4)):
        f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - t) / calls * 1e3)
    print(json.dumps({"ms": statistics.median(times), "tuned": tuned}))


def measure(name: str, malloc: str, repeats: int, calls: int) -> dict:
    env = {**os.environ, "VAEAS_MALLOC": malloc, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", name, "--repeats", str(repeats), "--calls", str(calls)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child, a.repeats, a.calls)
        return
    print(f"{'case':<20}{'glibc default ms':>18}{'vaeas (tuned) ms':>18}{'ratio':>8}")
    for name in CASES:
        ref = measure(name, "default", a.repeats, a.calls)
        new = measure(name, "tuned", a.repeats, a.calls)
        note = "" if new["tuned"] else "  (not glibc: nothing to tune)"
        print(f"{name:<20}{ref['ms']:>18.2f}{new['ms']:>18.2f}{ref['ms'] / new['ms']:>7.2f}x{note}")


if __name__ == "__main__":
    main()
