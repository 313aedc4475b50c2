"""The report's MNIST protocol as one reusable function: load, split, train, evaluate.

The data half (loading, the 80/20 train/validation split, placing the sets on
a backend once) is :func:`backend_mlp.data.prepare_mnist`, which returns
:class:`~backend_mlp.data.MnistSplits`.  ``run_experiment`` trains one
:class:`~backend_mlp.training.TrainingConfig` on them and returns the result
with a metrics dict (everything ``metrics.json`` holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .batchnorm import BatchNormConfig
from .data import Dataset, MnistSplits
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


#: The fields of :func:`summarize`, in order (``metrics.json`` of a run holds them all).
SUMMARY_KEYS = ("steps", "epochs", "best_step", "stopped_reason", "train_accuracy", "val_accuracy", "test_accuracy",
                "final_train_cost", "final_minibatch_cost", "best_val_cost", "train_seconds", "device", "backend",
                "dtype", "seed", "split_seed", "n_train", "n_val", "n_test", "hyperparameters", "recorded_steps",
                "costs", "val_costs")


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
        "backend": splits.backend.library,
        "dtype": splits.dtype,
        "seed": config.seed,
        "split_seed": splits.split_seed,
        "n_train": splits.train.n_samples,
        "n_val": splits.val.n_samples,
        "n_test": splits.test.n_samples,
        "hyperparameters": config.to_json(),
        "recorded_steps": result.recorded_steps,
        "costs": result.costs,
        "val_costs": result.val_costs,
    }
