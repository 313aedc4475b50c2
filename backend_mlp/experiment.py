"""The report's MNIST protocol as one reusable function: load, split, train, evaluate.

``prepare_mnist`` loads the 60,000 training and 10,000 test images, splits the
training images 80/20 into train/validation with a seeded shuffle and places
the three sets on the chosen backend once.  ``run_experiment`` trains one
:class:`~backend_mlp.training.TrainingConfig` on them and returns the result
with a metrics dict (everything ``metrics.json`` holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .backends import Backend, resolve_backend, resolve_dtype_name
from .config import BatchNormConfig
from .dataset import Dataset
from .mnist import load_mnist, split_train_validation
from .training import (
    ProgressEvent,
    TrainingConfig,
    TrainingResult,
    TrainingState,
    evaluate_accuracy,
    evaluate_cost,
    train,
)

#: The report's three experiments, by section number, with its hyperparameters.
SECTIONS: dict[str, TrainingConfig] = {
    "4": TrainingConfig(),
    "5": TrainingConfig(batchnorm=BatchNormConfig()),
    "6": TrainingConfig(l2_lambda=1.0),
}

#: What the report measured, per section.
REPORT_RESULTS: dict[str, dict[str, float]] = {
    "4": {"steps": 15_900, "train_accuracy": 0.9136, "val_accuracy": 0.9098, "test_accuracy": 0.9092},
    "5": {"steps": 28_700, "train_accuracy": 0.8581, "val_accuracy": 0.8568, "test_accuracy": 0.8578},
    "6": {"steps": 13_400, "train_accuracy": 0.8854, "val_accuracy": 0.8854, "test_accuracy": 0.8877},
}


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
    data_dir: str | None = None,
    *,
    device: str | Backend = "cpu",
    dtype: str = "float64",
    split_seed: int = 0,
    validation_fraction: float = 0.2,
    download: bool = True,
) -> MnistSplits:
    """Load MNIST (see :func:`backend_mlp.mnist.load_mnist`), split it and place it on ``device`` once.

    The split is exactly :func:`~backend_mlp.mnist.split_train_validation`'s,
    but it copies no images: the loaded rows are put in the split's order in
    place, and the training and validation images are two views of that one
    buffer (on the CPU the datasets share it), so peak host memory stays near
    the size of the 60,000 loaded images.
    """
    backend = resolve_backend(device)
    dtype = resolve_dtype_name(dtype)
    mnist = load_mnist(data_dir, dtype=dtype, download=download)
    images, labels = mnist.train_images, mnist.train_labels
    te_x, te_y = mnist.test_images, mnist.test_labels
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
        train=Dataset.from_host(tr_x, tr_y, device=backend, dtype=dtype),
        val=Dataset.from_host(va_x, va_y, device=backend, dtype=dtype),
        test=Dataset.from_host(te_x, te_y, device=backend, dtype=dtype),
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


def config_to_dict(config: TrainingConfig) -> dict[str, Any]:
    """Every hyperparameter as plain JSON-ready values."""
    out = asdict(config)
    out["layer_dims"] = list(config.layer_dims)
    return out


def run_experiment(
    splits: MnistSplits,
    config: TrainingConfig,
    *,
    callback: Callable[[ProgressEvent], None] | None = None,
    checkpoint_callback: Callable[[TrainingState], None] | None = None,
    state: TrainingState | None = None,
) -> tuple[TrainingResult, dict[str, Any]]:
    """Train ``config`` on ``splits`` and evaluate; returns ``(result, metrics)``."""
    start = time.perf_counter()
    result = train(
        splits.train, config, splits.val, state=state, callback=callback, checkpoint_callback=checkpoint_callback
    )
    splits.backend.synchronize()
    train_seconds = time.perf_counter() - start
    return result, summarize(result, splits, train_seconds)


def summarize(result: TrainingResult, splits: MnistSplits, train_seconds: float) -> dict[str, Any]:
    """The metrics of a finished run (accuracies in inference mode with the returned parameters)."""
    config = result.config
    params, bn_state = result.parameters, result.bn_state

    def acc(data: Dataset) -> float:
        return evaluate_accuracy(data, params, config, bn_state)

    return {
        "steps": result.steps,
        "epochs": result.epochs,
        "best_step": result.best_step,
        "stopped_reason": result.stopped_reason,
        "train_accuracy": acc(splits.train),
        "val_accuracy": acc(splits.val),
        "test_accuracy": acc(splits.test),
        "final_train_cost": evaluate_cost(splits.train, params, config, bn_state),
        "final_minibatch_cost": result.costs[-1] if result.costs else None,
        "best_val_cost": result.state.best_val_cost,
        "train_seconds": train_seconds,
        "device": splits.backend.name,
        "backend": splits.backend.name.split(":", 1)[0],
        "dtype": splits.dtype,
        "seed": config.seed,
        "split_seed": splits.split_seed,
        "n_train": splits.train.n_samples,
        "n_val": splits.val.n_samples,
        "n_test": splits.test.n_samples,
        "hyperparameters": config_to_dict(config),
        "recorded_steps": result.recorded_steps,
        "costs": result.costs,
        "val_costs": result.val_costs,
    }
