"""The report's data protocol for any data set: train split into train/validation, plus the test set, on one backend.

:func:`prepare_splits` loads a named data set (:data:`~backend_mlp.data.sources.DATASETS`)
or any folder of the four IDX files, splits the training images into
train/validation with exactly
:func:`~backend_mlp.data.prep.split_train_validation`'s seeded order and places
the three sets on the chosen backend once, as sample-major
:class:`~backend_mlp.data.dataset.Dataset` objects (``X_rows`` (m, rows*cols),
one-hot ``Y_rows`` (m, K)).  :func:`prepare_mnist` is ``prepare_splits(MNIST, ...)``
and :class:`MnistSplits` another name of :class:`DataSplits`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, resolve_backend, resolve_dtype_name
from .dataset import Dataset
from .loading import load_dataset
from .prep import split_train_validation
from .sources import MNIST, DatasetSpec, folder_spec, get_dataset, recognise

__all__ = ["DataSplits", "MnistSplits", "prepare_mnist", "prepare_splits"]


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test sets on one backend, plus what they are and where they came from.

    ``train``, ``val``, ``test``: :class:`Dataset` (``X_rows`` (m, rows*cols), one-hot ``Y_rows`` (m, K));
    ``spec``: the :class:`DatasetSpec` loaded; ``class_names``: K names, label k is ``class_names[k]``
    (``"0"``..``"K-1"`` when the data set names none); ``image_shape``: ``(rows, cols)``;
    ``source``: JSON-ready description of the files (see :class:`~backend_mlp.data.loading.ImageData`).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    backend: Backend
    dtype: str
    split_seed: int
    spec: DatasetSpec
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    source: Mapping[str, Any]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


#: The former name of :class:`DataSplits`.
MnistSplits = DataSplits


def prepare_splits(
    dataset: str | DatasetSpec | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | Backend = "cpu",
    dtype: str = "float64",
    split_seed: int = 0,
    validation_fraction: float = 0.2,
    download: bool = True,
    **options: Any,
) -> DataSplits:
    """Load a data set (see :func:`~backend_mlp.data.loading.load_dataset`), split it and place it on ``device`` once.

    Which data: ``dataset`` (a name in :data:`~backend_mlp.data.sources.DATASETS` such as
    ``"fashion-mnist"``, or a :class:`DatasetSpec`) read from ``data_dir``, else
    ``$BACKEND_MLP_DATA``, else its cache (downloaded there); with ``data_dir`` the
    spec's class names apply and every label must be one of its classes.  Without
    ``dataset``: ``data_dir`` is any folder of the four IDX files under MNIST's names
    (images of any size, K = largest label + 1 classes, nothing verified; ``source``
    says ``"idx folder"``), and without both, MNIST.  ``options`` go to
    :func:`~backend_mlp.data.loading.load_dataset` (``cache_dir``, ``mirrors``,
    ``checksums``, ``timeout``, ``progress``).

    The split is exactly :func:`~backend_mlp.data.prep.split_train_validation`'s
    (the first ``m - max(1, round(m * validation_fraction))`` rows of
    ``np.random.default_rng(split_seed).permutation(m)`` train, the rest
    validate), but it copies no images: the loaded rows are put in the split's
    order in place, and the training and validation images are two views of
    that one buffer (on the CPU the datasets share it), so peak host memory
    stays near the size of the loaded training images.
    """
    if dataset is None:
        spec = MNIST if data_dir is None else folder_spec(data_dir)
    else:
        spec = get_dataset(dataset)
    backend = resolve_backend(device)
    dtype = resolve_dtype_name(dtype)
    data = load_dataset(spec, data_dir, dtype=dtype, download=download, **options)
    images, labels = data.train_images, data.train_labels
    te_x, te_y = data.test_images, data.test_labels
    n_classes, class_names, image_shape, source = data.n_classes, data.class_names, data.image_shape, data.source
    del data
    if dataset is None and data_dir is not None:  # a bare folder holding a known data set is that data set
        known = recognise(source)
        if known is not None and len(known.class_names) == n_classes:
            files = {role: {**entry, "matches_published": True} for role, entry in source["files"].items()}
            spec, class_names = known, known.class_names
            source = {**source, "dataset": known.name, "title": known.title, "files": files}
    # the split's sample order, from split_train_validation itself (applied to row numbers)
    tr_rows, tr_y, va_rows, va_y = split_train_validation(
        np.arange(images.shape[0]), labels, validation_fraction, seed=split_seed
    )
    if not (images.flags.writeable and images.flags.c_contiguous):
        images = np.array(images, order="C")  # a writable, row-contiguous copy
    _permute_rows_in_place(images, np.concatenate([tr_rows, va_rows]))
    n_train = int(tr_rows.shape[0])
    tr_x, va_x = images[:n_train], images[n_train:]
    return DataSplits(
        train=Dataset.from_host(tr_x, tr_y, n_classes=n_classes, device=backend, dtype=dtype),
        val=Dataset.from_host(va_x, va_y, n_classes=n_classes, device=backend, dtype=dtype),
        test=Dataset.from_host(te_x, te_y, n_classes=n_classes, device=backend, dtype=dtype),
        backend=backend,
        dtype=dtype,
        split_seed=split_seed,
        spec=spec,
        class_names=class_names,
        image_shape=image_shape,
        source=source,
    )


def prepare_mnist(data_dir: str | os.PathLike[str] | None = None, **options: Any) -> DataSplits:
    """:func:`prepare_splits` for MNIST (same keyword options): ``X_rows`` (m, 784), ``Y_rows`` (m, 10)."""
    return prepare_splits(MNIST, data_dir, **options)


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
