"""backend_mlp: a small, exact multilayer perceptron written once against the Python array API.

The same code runs on NumPy (CPU), CuPy (GPU), PyTorch, JAX or array-api-strict;
the backend is chosen where data and parameters are created (``device=``) and
numeric functions follow their input arrays (see :mod:`backend_mlp.backends`).

``import backend_mlp as bm`` gives:

* the report's functional API, by name: ``initialize_parameters``,
  ``L_model_forward``, ``compute_cost``, ``L_model_backward``,
  ``update_parameters``, ``predict``, ``accuracy``, ``L_layer_model`` and
  their building blocks (``linear_forward``/``linear_backward``, ...);
* data: ``load_mnist``, ``load_dataset``, ``prepare_splits``, named data sets (``DATASETS``,
  ``get_dataset``), ``one_hot``, ``split_train_validation``, ``Dataset``, ``read_idx``/``write_idx``;
* training: ``TrainingConfig``, ``train``, ``train_step`` (pure), optimizers;
* ``MLPClassifier`` (scikit-learn style), checkpoints and models;
* backends: ``resolve_backend``, ``to_numpy``, ``to_backend``, ...;
* every error type (all derive from :class:`BackendMLPError`).

The names are imported on first use (PEP 562), so ``import backend_mlp`` and the
command line start without loading NumPy, matplotlib or an array library until
they are needed; ``from backend_mlp import X`` and ``bm.X`` work as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> the module of this package that defines it
_EXPORTS: dict[str, str] = {
    "Backend": "backends",
    "backend_of": "backends",
    "namespace_of": "backends",
    "resolve_backend": "backends",
    "to_backend": "backends",
    "to_numpy": "backends",
    "tree_to_backend": "backends",
    "tree_to_numpy": "backends",
    "BatchNormConfig": "batchnorm",
    "apply_batchnorm": "batchnorm",
    "batchnorm_backward": "batchnorm",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "save_model": "checkpoint",
    "DATASETS": "data",
    "DataSplits": "data",
    "Dataset": "data",
    "DatasetSpec": "data",
    "FASHION_MNIST": "data",
    "KMNIST": "data",
    "MNIST": "data",
    "get_dataset": "data",
    "load_dataset": "data",
    "load_mnist": "data",
    "one_hot": "data",
    "prepare_splits": "data",
    "read_idx": "data",
    "split_train_validation": "data",
    "write_idx": "data",
    "BackendMLPError": "errors",
    "BackendMismatchError": "errors",
    "BackendUnavailableError": "errors",
    "CheckpointError": "errors",
    "ChecksumError": "errors",
    "DataError": "errors",
    "DownloadError": "errors",
    "InputValidationError": "errors",
    "NotFittedError": "errors",
    "TrainingDivergedError": "errors",
    "TrainingInterrupted": "errors",
    "UsageError": "errors",
    "MLPClassifier": "estimator",
    "initialize_batchnorm_state": "initialization",
    "initialize_parameters": "initialization",
    "linear_activation_backward": "layers",
    "linear_activation_forward": "layers",
    "linear_backward": "layers",
    "linear_forward": "layers",
    "relu": "layers",
    "relu_backward": "layers",
    "softmax": "layers",
    "softmax_backward": "layers",
    "compute_cost": "losses",
    "L_model_backward": "network",
    "L_model_forward": "network",
    "accuracy": "network",
    "predict": "network",
    "predict_proba": "network",
    "update_parameters": "network",
    "Optimizer": "optimizers",
    "SGD": "optimizers",
    "get_optimizer": "optimizers",
    "L_layer_model": "training",
    "ProgressEvent": "training",
    "StepOutput": "training",
    "TrainingConfig": "training",
    "TrainingResult": "training",
    "TrainingState": "training",
    "batch_indices": "training",
    "evaluate_accuracy": "training",
    "evaluate_cost": "training",
    "new_training_state": "training",
    "train": "training",
    "train_step": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
