"""Shared fixtures: tiny synthetic datasets built directly from tensors (no files, no download)."""

from __future__ import annotations

import pytest
import torch

from vaeas.data import Dataset, Split, binarize_fixed

# The tests run tiny models on a small, shared CPU: one intra-op thread avoids the OpenMP
# synchronisation that makes thousands of tiny ops orders of magnitude slower on busy cores.
torch.set_num_threads(1)


def make_tiny_dataset(n_train: int = 256, n_val: int = 64, n_test: int = 64, num_classes: int = 3,
                      dim: int = 784, seed: int = 0) -> Dataset:
    """A small class-structured :class:`~vaeas.data.Dataset` of random "images".

    Every class has a prototype of pixel probabilities near 0.08 or 0.92; an image of class ``c``
    is its prototype with a little grey jitter. The training split stays grey (binarized per batch
    by the trainer), validation and test are binarized once, like the real datasets. Labels are
    balanced (``i % num_classes``) and are easy to predict from the images.
    """
    g = torch.Generator().manual_seed(seed)
    protos = torch.where(torch.rand(num_classes, dim, generator=g) < 0.3, 0.92, 0.08)

    def split(n: int, binarize_seed: int | None) -> Split:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = (protos[y] + 0.05 * torch.rand(n, dim, generator=g)).clamp(0, 1)
        if binarize_seed is not None:
            x = binarize_fixed(x, binarize_seed)
        return Split(x=x.contiguous(), y=y.contiguous(), index=torch.arange(n),
                     binarized=binarize_seed is not None)

    return Dataset(name="tiny", train=split(n_train, None), val=split(n_val, 11),
                   test=split(n_test, 12), num_classes=num_classes, source="synthetic")


@pytest.fixture
def tiny_dataset():
    """Factory: ``tiny_dataset(n_train=256, n_val=64, n_test=64, num_classes=3, dim=784)``."""
    return make_tiny_dataset
