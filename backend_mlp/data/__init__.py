"""Data sets: finding, downloading, verifying and loading them, and preparing them for training.

Modules:

- :mod:`~backend_mlp.data.sources`: :class:`DatasetSpec` (a named data set of four IDX files)
  and :data:`MNIST`;
- :mod:`~backend_mlp.data.download`: the one find-or-download-and-verify routine
  (``data_dir``, else ``$BACKEND_MLP_DATA``, else the per-user cache);
- :mod:`~backend_mlp.data.loading`: :func:`load_dataset` / :func:`load_mnist`, host arrays,
  one sample per row;
- :mod:`~backend_mlp.data.prep`: :func:`to_host`, :func:`one_hot`, :func:`split_train_validation`;
- :mod:`~backend_mlp.data.dataset`: :class:`Dataset`, data placed on a backend, sample-major;
- :mod:`~backend_mlp.data.splits`: :func:`prepare_mnist`, the report's train/validation/test protocol;
- :mod:`~backend_mlp.data.idx`: reading and writing IDX files.

Atomic file writing lives in :mod:`backend_mlp.files`.
"""

from __future__ import annotations

from .dataset import Dataset
from .download import CACHE_ENV, DATA_ENV, default_cache_dir, locate_dataset
from .idx import read_idx, write_idx
from .loading import ImageData, load_dataset, load_mnist
from .prep import one_hot, split_train_validation, to_host
from .sources import MNIST, DatasetSpec
from .splits import MnistSplits, prepare_mnist

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "MNIST",
    "Dataset",
    "DatasetSpec",
    "ImageData",
    "MnistSplits",
    "default_cache_dir",
    "load_dataset",
    "load_mnist",
    "locate_dataset",
    "one_hot",
    "prepare_mnist",
    "read_idx",
    "split_train_validation",
    "to_host",
    "write_idx",
]
