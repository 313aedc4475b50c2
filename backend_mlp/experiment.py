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

from .backend import Backend, resolve_backend, resolve_dtype_name
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
    """Load MNIST (see :func:`backend_mlp.mnist.load_mnist`), split it and place it on ``device`` once."""
    backend = resolve_backend(device)
    dtype = resolve_dtype_name(dtype)
    mnist = load_mnist(data_dir, dtype=dtype, download=download)
    te_x, te_y = mnist.test_images, mnist.test_labels
    tr_x, tr_y, va_x, va_y = split_train_validation(
        mnist.train_images, mnist.train_labels, validation_fraction, seed=split_seed
    )
    del mnist  # the unsplit 60,000 images are no longer needed: keep peak memory low
    return MnistSplits(
        train=Dataset.from_host(tr_x, tr_y, device=backend, dtype=dtype),
        val=Dataset.from_host(va_x, va_y, device=backend, dtype=dtype),
        test=Dataset.from_host(te_x, te_y, device=backend, dtype=dtype),
        backend=backend,
        dtype=dtype,
        split_seed=split_seed,
    )


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
