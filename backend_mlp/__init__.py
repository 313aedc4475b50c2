"""backend_mlp: a small, exact multilayer perceptron written once against the Python array API.

The same code runs on NumPy (CPU), CuPy (GPU), PyTorch or array-api-strict;
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
"""

from __future__ import annotations

from .backends import (
    Backend,
    backend_of,
    namespace_of,
    resolve_backend,
    to_backend,
    to_numpy,
    tree_to_backend,
    tree_to_numpy,
)
from .batchnorm import BatchNormConfig, apply_batchnorm, batchnorm_backward
from .checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from .data import (
    DATASETS,
    FASHION_MNIST,
    KMNIST,
    MNIST,
    Dataset,
    DatasetSpec,
    DataSplits,
    get_dataset,
    load_dataset,
    load_mnist,
    one_hot,
    prepare_splits,
    read_idx,
    split_train_validation,
    write_idx,
)
from .errors import (
    BackendMismatchError,
    BackendMLPError,
    BackendUnavailableError,
    CheckpointError,
    ChecksumError,
    DataError,
    DownloadError,
    InputValidationError,
    NotFittedError,
    TrainingDivergedError,
    TrainingInterrupted,
    UsageError,
)
from .estimator import MLPClassifier
from .initialization import initialize_batchnorm_state, initialize_parameters
from .layers import (
    linear_activation_backward,
    linear_activation_forward,
    linear_backward,
    linear_forward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
)
from .losses import compute_cost
from .network import (
    L_model_backward,
    L_model_forward,
    accuracy,
    predict,
    predict_proba,
    update_parameters,
)
from .optimizers import SGD, Optimizer, get_optimizer
from .training import (
    L_layer_model,
    ProgressEvent,
    StepOutput,
    TrainingConfig,
    TrainingResult,
    TrainingState,
    batch_indices,
    evaluate_accuracy,
    evaluate_cost,
    new_training_state,
    train,
    train_step,
)

__version__ = "0.2.0"

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "KMNIST",
    "MNIST",
    "SGD",
    "Backend",
    "BackendMLPError",
    "BackendMismatchError",
    "BackendUnavailableError",
    "BatchNormConfig",
    "CheckpointError",
    "ChecksumError",
    "DataError",
    "DataSplits",
    "Dataset",
    "DatasetSpec",
    "DownloadError",
    "InputValidationError",
    "L_layer_model",
    "L_model_backward",
    "L_model_forward",
    "MLPClassifier",
    "NotFittedError",
    "Optimizer",
    "ProgressEvent",
    "StepOutput",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "TrainingResult",
    "TrainingState",
    "accuracy",
    "apply_batchnorm",
    "backend_of",
    "batch_indices",
    "batchnorm_backward",
    "compute_cost",
    "evaluate_accuracy",
    "evaluate_cost",
    "get_dataset",
    "get_optimizer",
    "initialize_batchnorm_state",
    "initialize_parameters",
    "linear_activation_backward",
    "linear_activation_forward",
    "linear_backward",
    "linear_forward",
    "load_checkpoint",
    "load_dataset",
    "load_mnist",
    "load_model",
    "namespace_of",
    "new_training_state",
    "one_hot",
    "predict",
    "predict_proba",
    "prepare_splits",
    "read_idx",
    "relu",
    "relu_backward",
    "resolve_backend",
    "save_checkpoint",
    "save_model",
    "softmax",
    "softmax_backward",
    "split_train_validation",
    "to_backend",
    "to_numpy",
    "train",
    "train_step",
    "tree_to_backend",
    "tree_to_numpy",
    "update_parameters",
    "write_idx",
    "UsageError",
]
