"""Training throughput: the vaeas trainer against a pytorch/examples-style reference loop.

Prints one table: training samples/s and seconds per MNIST epoch (55,000 images) for

* ``reference``: a loop written the way pytorch/examples ``vae/main.py`` trains --
  ``torchvision.datasets.MNIST`` + ``ToTensor`` + ``DataLoader(batch_size=128, shuffle=True)``,
  one ``model(x)`` per batch, ``torch.optim.Adam`` -- on the **same** model (built by
  ``vaeas.build_for_dataset``); the instance head's rows have sparse gradients
  (``model.sparse_parameters()``), so, as in the trainer, they get ``torch.optim.SparseAdam``;
* ``vaeas``: :class:`vaeas.Trainer` (preloaded tensors on the device, batches drawn by index,
  binarised on the device, fused Adam + SparseAdam for the sparse rows) for VAE, VAE-AS (label)
  and VAE-AS (instance, exact two-level softmax), plus VAE-AS (instance) with a dense
  55,000-way softmax for comparison (vaeas loop only);
* ``floor``: the matmul FLOPs of one training step divided by the measured matmul throughput of
  this machine -- no implementation of this model can beat it on this device.

Usage::

    python benchmarks/throughput.py [--batches 150] [--device cpu] [--hidden 400 --latent 20]

Only training steps are timed (no validation). Each number is the median of ``--repeats`` timed
passes over ``--batches`` batches after one warm-up pass.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch


def matmul_gflops(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    """Measured dense float32 matmul throughput (GFLOP/s) on ``device``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):  # best of 5: the machine's peak, not a moment of contention
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model: torch.nn.Module, batch: int) -> float:
    """Matmul FLOPs of one training step: 3 x (2 x MACs of the linear layers) (forward + backward).

    Counted for the layers a step actually uses: the two-level softmax touches one group's rows.
    """
    from vaeas.models import SoftmaxHead, TwoLevelSoftmaxHead

    macs = 0
    for mod in model.modules():
        if isinstance(mod, TwoLevelSoftmaxHead):
            macs += mod.group_fc.in_features * (mod.groups + mod.k)
        elif isinstance(mod, torch.nn.Linear) and not _inside(model, mod, TwoLevelSoftmaxHead):
            macs += mod.in_features * mod.out_features
        elif isinstance(mod, SoftmaxHead):
            pass  # its Linear is counted above
    return 3 * 2 * macs * batch


def _inside(root: torch.nn.Module, child: torch.nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) and any(c is child for c in m.modules()) for m in root.modules())


def reference_epoch_time(model: torch.nn.Module, root: str, batches: int, device: torch.device,
                         batch_size: int) -> float:
    """Seconds for ``batches`` steps of a DataLoader + ToTensor loop (pytorch/examples style)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from vaeas.objectives import total_loss

    ds = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True)
    sparse = list(model.sparse_parameters())
    dense = [p for p in model.parameters() if all(p is not q for q in sparse)]
    opts = [torch.optim.Adam(dense, lr=1e-3)] + ([torch.optim.SparseAdam(sparse, lr=1e-3)] if sparse else [])
    model.train()
    t = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == batches:
            break
        x = torch.bernoulli(x.view(-1, 784)).to(device)
        y = y.to(device)
        index = torch.arange(i * batch_size, i * batch_size + len(x), device=device) % 55_000
        for opt in opts:
            opt.zero_grad()
        loss = total_loss(model.loss(x, y, index))
        loss.backward()
        for opt in opts:
            opt.step()
    _sync(device)
    return time.perf_counter() - t


def vaeas_epoch_time(model: torch.nn.Module, data, batches: int, device: torch.device,
                     batch_size: int) -> float:
    """Seconds for ``batches`` steps of :class:`vaeas.Trainer` (timed from its history)."""
    from vaeas import Trainer
    from vaeas.data import Dataset

    n = batches * batch_size
    sub = Dataset(data.name, _head(data.train, n), data.val, data.test, data.num_classes, data.source)
    trainer = Trainer(epochs=1, batch_size=batch_size, device=str(device), progress=False,
                      val_size=2, check_every=10**9)
    return trainer.fit(model, sub)[0]["seconds"]


def _head(split, n):
    from vaeas.data import Split

    return Split(split.x[:n], split.y[:n], split.index[:n], split.binarized,
                 {k: v[:n] for k, v in split.extra.items()})


def main() -> None:
    from vaeas import build_for_dataset, load_dataset
    from vaeas.data import find_root
    from vaeas.train import resolve_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batches", type=int, default=150, help="timed steps per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    root = str(find_root("mnist"))
    data = load_dataset("mnist", device=device)
    n_train = len(data.train)
    epoch_steps = math.ceil(n_train / a.batch_size)

    def make(kind: str) -> torch.nn.Module:
        torch.manual_seed(0)
        kw = dict(latent_dim=a.latent, hidden=(a.hidden,))
        if kind == "vae":
            return build_for_dataset(data, "vae", "mlp", **kw).to(device)
        if kind == "label":
            return build_for_dataset(data, "vaeas", "mlp", target="label", **kw).to(device)
        head = "dense" if kind == "instance-dense" else "two_level"
        return build_for_dataset(data, "vaeas", "mlp", target="instance", head=head, **kw).to(device)

    gflops = matmul_gflops(device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"matmul {gflops:.1f} GFLOP/s; MLP 784-{a.hidden}-{a.latent}, batch {a.batch_size}, "
          f"{a.batches} steps x {a.repeats} repeats (median)\n")
    rows = []
    for kind in ("vae", "label", "instance", "instance-dense"):
        model = make(kind)
        flops = step_flops(model, a.batch_size)
        floor = flops * epoch_steps / (gflops * 1e9)
        loops = [("vaeas", lambda m=model: vaeas_epoch_time(m, data, a.batches, device, a.batch_size))]
        if kind in ("vae", "label", "instance"):
            loops.insert(0, ("reference", lambda m=model: reference_epoch_time(
                m, root, a.batches, device, a.batch_size)))
        for loop, fn in loops:
            fn()  # warm-up
            t = statistics.median(fn() for _ in range(a.repeats))
            sps = a.batches * a.batch_size / t
            rows.append((kind, loop, sps, n_train / sps, floor))
    ref = {k: s for k, loop, s, _, _ in rows if loop == "reference"}
    vae = next(s for k, loop, s, _, _ in rows if k == "vae" and loop == "vaeas")
    print("| model | loop | samples/s | s/epoch | vs reference | vs VAE (vaeas) | FLOP floor s/epoch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    names = {"vae": "VAE", "label": "VAE-AS label", "instance": "VAE-AS instance (two-level)",
             "instance-dense": "VAE-AS instance (dense softmax)"}
    for kind, loop, sps, spe, floor in rows:
        r = f"{sps / ref[kind]:.2f}x" if kind in ref and loop == "vaeas" else ""
        v = f"{sps / vae:.2f}x" if loop == "vaeas" else ""
        print(f"| {names[kind]} | {loop} | {sps:,.0f} | {spe:.2f} | {r} | {v} | {floor:.2f} |")


if __name__ == "__main__":
    main()
