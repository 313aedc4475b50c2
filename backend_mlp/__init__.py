"""backend_mlp: a small, exact multilayer perceptron written once against the Python array API.

The same code runs on NumPy (CPU), CuPy (GPU), PyTorch or array-api-strict;
the backend is chosen by the arrays you pass (see :mod:`backend_mlp.backends`).
The report's functional API is kept by name: ``initialize_parameters``,
``L_model_forward``, ``compute_cost``, ``L_model_backward``,
``update_parameters``, ``predict`` and their building blocks.
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
from .batchnorm import apply_batchnorm, batchnorm_backward
from .config import BatchNormConfig
from .errors import (
    BackendMismatchError,
    BackendMLPError,
    BackendUnavailableError,
    CheckpointError,
    ChecksumError,
    DataError,
    DownloadError,
    InputValidationError,
    TrainingDivergedError,
)
from .estimator import MLPClassifier, NotFittedError
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

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendMLPError",
    "BackendMismatchError",
    "BackendUnavailableError",
    "BatchNormConfig",
    "CheckpointError",
    "ChecksumError",
    "DataError",
    "DownloadError",
    "InputValidationError",
    "L_model_backward",
    "L_model_forward",
    "MLPClassifier",
    "NotFittedError",
    "TrainingDivergedError",
    "accuracy",
    "apply_batchnorm",
    "backend_of",
    "batchnorm_backward",
    "compute_cost",
    "initialize_batchnorm_state",
    "initialize_parameters",
    "linear_activation_backward",
    "linear_activation_forward",
    "linear_backward",
    "linear_forward",
    "namespace_of",
    "predict",
    "predict_proba",
    "relu",
    "relu_backward",
    "resolve_backend",
    "softmax",
    "softmax_backward",
    "to_backend",
    "to_numpy",
    "tree_to_backend",
    "tree_to_numpy",
    "update_parameters",
]
