"""The report's training function, ``L_layer_model``, on the report's (n_features, m) layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import validation as V
from ..batchnorm import BatchNormConfig, as_batchnorm_config
from ..data import Dataset
from ..errors import InputValidationError
from .config import configure
from .loop import train
from .state import ProgressEvent, TrainingResult

Array = Any


def L_layer_model(
    X: Array,
    Y: Array,
    layers_dims: list[int] | None = None,
    learning_rate: float = 0.009,
    num_iterations: int = 100_000,
    batch_size: int = 256,
    *,
    X_val: Array | None = None,
    Y_val: Array | None = None,
    use_batchnorm: bool | BatchNormConfig = False,
    l2_lambda: float = 0.0,
    seed: int = 0,
    record_every: int = 100,
    early_stopping: bool = True,
    min_improvement: float = 1e-4,
    patience: int = 1,
    lr_decay: float = 1.0,
    hidden: Any = None,
    optimizer: Any = "sgd",
    momentum: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    epsilon: float | None = None,
    callback: Callable[[ProgressEvent], None] | None = None,
    compile: bool = False,
) -> TrainingResult:
    """The report's training function on ``X`` (n_x, m) and one-hot ``Y`` (n_classes, m).

    Returns a :class:`TrainingResult`; ``parameters, costs = L_layer_model(...)``
    works as in the report (costs every ``record_every`` steps).  Early stopping
    needs ``X_val``/``Y_val``; without them training runs ``num_iterations`` steps.
    The network is ``layers_dims`` or, instead, ``hidden`` (the hidden sizes;
    the input and output sizes are then read from ``X`` and ``Y``).
    ``optimizer`` (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``) with
    ``momentum``/``beta1``/``beta2``/``epsilon`` (``None``: the rule's
    default) picks the update rule; ``patience`` is the number of stale
    validation checks that stop the run (see :class:`TrainingConfig`).
    ``compile=True`` compiles the step where the library can (see :func:`train`).
    """
    if (layers_dims is None) == (hidden is None):
        raise InputValidationError(
            "layers_dims, hidden: received "
            + ("neither" if hidden is None else "both")
            + "; expected exactly one (layers_dims=[784, 20, 7, 5, 10] or hidden=(20, 7, 5))"
        )
    sizes = (0, 0)  # the data's (n_features, n_classes), needed with ``hidden``
    if hidden is not None:
        V.common_namespace({"X": X, "Y": Y})
        V.check_ndim("X", X, 2, "(n_features, m) with one column per sample")
        V.check_ndim("Y", Y, 2, "(n_classes, m) with one column per sample")
        sizes = (int(X.shape[0]), int(Y.shape[0]))
    network = {"hidden": hidden} if layers_dims is None else {
        "layer_dims": tuple(V.check_layer_dims(layers_dims, "layers_dims"))}
    config = configure(
        n_features=sizes[0],
        n_classes=sizes[1],
        **network,
        learning_rate=learning_rate,
        num_iterations=num_iterations,
        batch_size=batch_size,
        l2_lambda=l2_lambda,
        batchnorm=as_batchnorm_config(use_batchnorm),
        seed=seed,
        record_every=record_every,
        early_stopping=early_stopping,
        min_improvement=min_improvement,
        patience=patience,
        lr_decay=lr_decay,
        optimizer=optimizer,
        momentum=momentum,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon,
    )
    X_val, Y_val = _check_layer_model_arrays(X, Y, X_val, Y_val, list(config.layer_dims))
    train_data = Dataset.from_columns(X, Y)
    val_data = None
    if X_val is not None:
        val_data = Dataset.from_columns(X_val, Y_val)
    return train(train_data, config, val_data, callback=callback, compile=compile)


def _check_layer_model_arrays(
    X: Array, Y: Array, X_val: Array | None, Y_val: Array | None, dims: list[int]
) -> tuple[Array | None, Array | None]:
    """Backends and orientation of :func:`L_layer_model`'s arrays against ``layers_dims``."""
    if (X_val is None) != (Y_val is None):
        given = "X_val" if X_val is not None else "Y_val"
        raise InputValidationError(f"X_val, Y_val: received only {given}; expected both or neither")
    V.common_namespace({"X": X, "Y": Y, "X_val": X_val, "Y_val": Y_val})
    for name, arr, rows, meaning in (
        ("X", X, dims[0], "n_features"),
        ("Y", Y, dims[-1], "n_classes"),
        ("X_val", X_val, dims[0], "n_features"),
        ("Y_val", Y_val, dims[-1], "n_classes"),
    ):
        if arr is None:
            continue
        V.check_ndim(name, arr, 2, f"({meaning}, m) with one column per sample")
        if arr.shape[0] != rows:
            hint = f"; samples must be columns: pass {name}.T" if arr.shape[1] == rows else ""
            source = "first" if meaning == "n_features" else "last"
            raise InputValidationError(
                f"{name}: received shape {V.shape_of(arr)}; expected ({meaning}={rows}, m) to match the "
                f"{source} entry of layers_dims {dims!r}{hint}"
            )
    return X_val, Y_val
