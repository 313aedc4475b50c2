"""Data sets: finding, downloading, verifying and loading them, and preparing them for training.

Modules:

- :mod:`~backend_mlp.data.sources`: :class:`DatasetSpec` (a named data set of four IDX files),
  :data:`MNIST`, :data:`FASHION_MNIST`, :data:`KMNIST`, the registry :data:`DATASETS` and
  :func:`get_dataset`, and :func:`folder_spec` (a bare folder of IDX files);
- :mod:`~backend_mlp.data.download`: the one find-or-download-and-verify routine
  (``data_dir``, else ``$BACKEND_MLP_DATA``, else the per-user cache, one sub-folder per data set);
- :mod:`~backend_mlp.data.loading`: :func:`load_dataset` / :func:`load_mnist`, host arrays,
  one sample per row;
- :mod:`~backend_mlp.data.prep`: :func:`to_host`, :func:`one_hot`, :func:`split_train_validation`;
- :mod:`~backend_mlp.data.dataset`: :class:`Dataset`, data placed on a backend, sample-major;
- :mod:`~backend_mlp.data.splits`: :func:`prepare_splits` (and :func:`prepare_mnist`), the report's
  train/validation/test protocol for any data set, returning :class:`DataSplits`;
- :mod:`~backend_mlp.data.idx`: reading and writing IDX files, within size limits (a file is checked
  against the size its header declares, at most ``MAX_IDX_BYTES``, 2 GiB; gzip data decompressed within it).

Atomic file writing lives in :mod:`backend_mlp.files`.
"""

from __future__ import annotations

from .dataset import Dataset
from .download import CACHE_ENV, DATA_ENV, default_cache_dir, locate_dataset
from .idx import read_idx, write_idx
from .loading import ImageData, load_dataset, load_mnist
from .prep import one_hot, split_train_validation, to_host
from .sources import DATASETS, FASHION_MNIST, KMNIST, MNIST, DatasetSpec, folder_spec, get_dataset
from .splits import DataSplits, MnistSplits, prepare_mnist, prepare_splits

__all__ = [
    "CACHE_ENV",
    "DATASETS",
    "DATA_ENV",
    "FASHION_MNIST",
    "KMNIST",
    "MNIST",
    "DataSplits",
    "Dataset",
    "DatasetSpec",
    "ImageData",
    "MnistSplits",
    "default_cache_dir",
    "folder_spec",
    "get_dataset",
    "load_dataset",
    "load_mnist",
    "locate_dataset",
    "one_hot",
    "prepare_mnist",
    "prepare_splits",
    "read_idx",
    "split_train_validation",
    "to_host",
    "write_idx",
]
