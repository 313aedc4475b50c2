"""The report's data protocol: MNIST split 80/20 into train/validation, plus the test set, on one backend.

:func:`prepare_mnist` loads the 60,000 training and 10,000 test images, splits
the training images into train/validation with exactly
:func:`~backend_mlp.data.prep.split_train_validation`'s seeded order and
places the three sets on the chosen backend once, as sample-major
:class:`~backend_mlp.data.dataset.Dataset` objects (``X_rows`` (m, 784),
one-hot ``Y_rows`` (m, 10)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..backends import Backend, resolve_backend, resolve_dtype_name
from .dataset import Dataset
from .loading import load_mnist
from .prep import split_train_validation

__all__ = ["MnistSplits", "prepare_mnist"]


@dataclass(frozen=True)
class MnistSplits:
    """Train / validation / test sets on one backend, plus where they came from."""

    train: Dataset
    val: Dataset
    test: Dataset
    backend: Backend
    dtype: str
    split_seed: int


def prepare_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | Backend = "cpu",
    dtype: str = "float64",
    split_seed: int = 0,
    validation_fraction: float = 0.2,
    download: bool = True,
) -> MnistSplits:
    """Load MNIST (see :func:`~backend_mlp.data.loading.load_mnist`), split it and place it on ``device`` once.

    The split is exactly :func:`~backend_mlp.data.prep.split_train_validation`'s
    (the first ``m - max(1, round(m * validation_fraction))`` rows of
    ``np.random.default_rng(split_seed).permutation(m)`` train, the rest
    validate), but it copies no images: the loaded rows are put in the split's
    order in place, and the training and validation images are two views of
    that one buffer (on the CPU the datasets share it), so peak host memory
    stays near the size of the 60,000 loaded images.
    """
    backend = resolve_backend(device)
    dtype = resolve_dtype_name(dtype)
    mnist = load_mnist(data_dir, dtype=dtype, download=download)
    images, labels = mnist.train_images, mnist.train_labels
    te_x, te_y = mnist.test_images, mnist.test_labels
    n_classes = mnist.n_classes
    del mnist
    # the split's sample order, from split_train_validation itself (applied to row numbers)
    tr_rows, tr_y, va_rows, va_y = split_train_validation(
        np.arange(images.shape[0]), labels, validation_fraction, seed=split_seed
    )
    if not (images.flags.writeable and images.flags.c_contiguous):
        images = np.array(images, order="C")  # a writable, row-contiguous copy
    _permute_rows_in_place(images, np.concatenate([tr_rows, va_rows]))
    n_train = int(tr_rows.shape[0])
    tr_x, va_x = images[:n_train], images[n_train:]
    return MnistSplits(
        train=Dataset.from_host(tr_x, tr_y, n_classes=n_classes, device=backend, dtype=dtype),
        val=Dataset.from_host(va_x, va_y, n_classes=n_classes, device=backend, dtype=dtype),
        test=Dataset.from_host(te_x, te_y, n_classes=n_classes, device=backend, dtype=dtype),
        backend=backend,
        dtype=dtype,
        split_seed=split_seed,
    )


def _permute_rows_in_place(x: np.ndarray, order: np.ndarray) -> None:
    """``x[:] = x[order]`` for a permutation ``order`` of the rows, with one row of scratch memory."""
    n = int(order.shape[0])
    target = order.tolist()
    visited = bytearray(n)
    scratch = np.empty_like(x[0])
    for start in range(n):  # follow each cycle of the permutation once
        if visited[start]:
            continue
        visited[start] = 1
        if target[start] == start:
            continue
        scratch[...] = x[start]
        i = start
        while True:
            j = target[i]
            if j == start:
                x[i] = scratch
                break
            x[i] = x[j]
            visited[j] = 1
            i = j
