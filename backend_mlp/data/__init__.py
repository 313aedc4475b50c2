"""Data sets: finding, downloading, verifying and loading them, and preparing them for training.

Temporary: re-exports from the modules being moved here.
"""

from __future__ import annotations

from typing import Any

from ..dataset import Dataset
from ..idx import read_idx, write_idx
from ..mnist import load_mnist, one_hot, split_train_validation


def __getattr__(name: str) -> Any:
    if name in ("prepare_mnist", "MnistSplits"):
        from .. import experiment

        return getattr(experiment, name)
    raise AttributeError(name)


__all__ = [
    "Dataset",
    "MnistSplits",
    "load_mnist",
    "one_hot",
    "prepare_mnist",
    "read_idx",
    "split_train_validation",
    "write_idx",
]
