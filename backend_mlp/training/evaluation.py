"""Cost and accuracy of a whole data set in inference mode (running batch-norm statistics)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .. import validation as V
from ..backends import backend_of, namespace_of
from ..errors import InputValidationError
from ..losses import _cross_entropy
from ..network import _accuracy, _forward, _hits
from ..ops import PURE
from .config import TrainingConfig

Array = Any


def _device_of(data: Any) -> AbstractContextManager[Any]:
    """The data's device made current (CuPy runs kernels on the current GPU); bad ``data`` is refused later."""
    X_rows = getattr(data, "X_rows", None)
    return nullcontext() if X_rows is None else backend_of(X_rows).device_context()


def _checked_namespace(data: Any, parameters: dict[str, Array], config: TrainingConfig) -> Any:
    """The namespace of an evaluation's arguments, refusing a bad ``config``, ``data`` or ``parameters``."""
    if not isinstance(config, TrainingConfig):
        raise InputValidationError(f"config: received {type(config).__name__}; expected a TrainingConfig")
    if not (hasattr(data, "X_rows") and hasattr(data, "Y_rows")):
        raise InputValidationError(f"data: received {type(data).__name__}; expected a Dataset")
    V.check_dict("parameters", parameters, "a dict of arrays")
    return namespace_of(data.X_rows, *parameters.values())


def _inference_probabilities(
    data: Any, parameters: dict[str, Array], config: TrainingConfig, bn_state: dict[str, Array] | None
) -> tuple[Any, Array]:
    xp = _checked_namespace(data, parameters, config)
    L = len(config.layer_dims) - 1
    AL, _, _ = _forward(xp, PURE, data.X, parameters, L, config.batchnorm, False, bn_state or {})
    return xp, AL


def evaluate_cost(
    data: Any, parameters: dict[str, Array], config: TrainingConfig, bn_state: dict[str, Array] | None = None
) -> float:
    """Cross-entropy of ``data`` (a :class:`~backend_mlp.data.Dataset`) in inference mode (host float)."""
    with _device_of(data):
        xp, AL = _inference_probabilities(data, parameters, config, bn_state)
        return float(_cross_entropy(xp, AL, data.Y))


def evaluate_accuracy(
    data: Any, parameters: dict[str, Array], config: TrainingConfig, bn_state: dict[str, Array] | None = None
) -> float:
    """Fraction of ``data`` classified correctly in inference mode."""
    with _device_of(data):
        xp, AL = _inference_probabilities(data, parameters, config, bn_state)
        return _accuracy(xp, xp.argmax(AL, axis=0), xp.argmax(data.Y, axis=0))


def evaluate(
    data: Any, parameters: dict[str, Array], config: TrainingConfig, bn_state: dict[str, Array] | None = None
) -> tuple[float, float]:
    """``(cost, accuracy)`` of ``data`` in inference mode from one forward pass (host floats)."""
    with _device_of(data):
        xp = _checked_namespace(data, parameters, config)
        Y = data.Y
        cost, hits = _cost_and_hits(xp, config, parameters, bn_state or {}, data.X, Y)
        return float(cost), int(hits) / int(Y.shape[1])


def _cost_and_hits(
    xp: Any, config: TrainingConfig, parameters: dict[str, Array], bn_state: dict[str, Array], X: Array, Y: Array
) -> tuple[Array, Array]:
    """``(cost, hits)`` as 0-d arrays: the inference cross-entropy and count of correct samples of ``X``
    (n_x, m), one-hot ``Y`` (n_classes, m), without checks or host transfers (:func:`evaluate` runs it
    eagerly, a compiled run's checks compiled)."""
    AL, _, _ = _forward(xp, PURE, X, parameters, len(config.layer_dims) - 1, config.batchnorm, False, bn_state)
    return _cross_entropy(xp, AL, Y), _hits(xp, xp.argmax(AL, axis=0), xp.argmax(Y, axis=0))
