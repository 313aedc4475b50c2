"""One training step: (parameters, optimizer state, batch-norm state, batch) in, new ones out.

:func:`train_step` is pure: it returns new arrays and writes into none of its
inputs, so it is correct on every array-API library, immutable ones included.
With ``ops=INPLACE`` (the training loop's choice on backends whose
``mutable_arrays`` is true) the same code updates temporaries it has just
created instead of allocating new ones; the results agree with the pure step
to float rounding, and inputs are never written in either mode.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import validation as V
from ..backends import has_mutable_arrays
from ..errors import InputValidationError
from ..network import _backward, _check_forward_inputs, _forward
from ..ops import INPLACE, PURE, Ops
from .config import TrainingConfig

Array = Any
Tree = dict[str, Array]


class StepOutput(NamedTuple):
    """New parameters, optimizer state and batch-norm state; ``AL`` (n_classes, m) of the batch (old parameters)."""

    parameters: Tree
    optimizer_state: Tree
    bn_state: Tree
    AL: Array


def train_step(
    config: TrainingConfig,
    parameters: Tree,
    optimizer_state: Tree,
    bn_state: Tree,
    Xb: Array,
    Yb: Array,
    *,
    inplace: bool = False,
    learning_rate: float | None = None,
) -> StepOutput:
    """One training step on the batch ``Xb`` (n_x, m) with one-hot ``Yb`` (n_classes, m); nothing is mutated.

    ``parameters``/``optimizer_state``/``bn_state`` are those of a
    :class:`~backend_mlp.training.TrainingState` (e.g. from
    :func:`~backend_mlp.training.new_training_state`).  ``learning_rate``
    defaults to ``config.learning_rate`` (:func:`~backend_mlp.training.train`
    passes the decayed rate of the current epoch).  ``inplace=True`` lets
    the step update its own temporaries in place (backends with mutable arrays
    only).  Raises :class:`InputValidationError` or :class:`BackendMismatchError`
    for arguments that do not fit ``config`` or each other.
    """
    if not isinstance(config, TrainingConfig):
        raise InputValidationError(f"config: received {type(config).__name__}; expected a TrainingConfig")
    for name, tree in (("parameters", parameters), ("optimizer_state", optimizer_state), ("bn_state", bn_state)):
        V.check_dict(name, tree, "a dict of arrays, as in a TrainingState")
    L = len(config.layer_dims) - 1
    xp, dims = _check_forward_inputs(Xb, parameters, L, config.batchnorm, True, bn_state)
    if dims != list(config.layer_dims):
        raise InputValidationError(
            f"parameters: received layer sizes {dims!r}; expected config.layer_dims {list(config.layer_dims)!r}"
        )
    V.common_namespace({"Xb": Xb, "Yb": Yb, **{f"optimizer_state[{k!r}]": v for k, v in optimizer_state.items()}})
    V.check_same_dtype({"Yb": Yb}, "Xb", Xb.dtype)
    if V.shape_of(Yb) != (dims[-1], int(Xb.shape[1])):
        raise InputValidationError(
            f"Yb: received shape {V.shape_of(Yb)}; expected ({dims[-1]}, {Xb.shape[1]}), one-hot with one column "
            "per sample of Xb"
        )
    V.check_one_hot("Yb", Yb, xp)
    if V.check_bool("inplace", inplace) and not has_mutable_arrays(Xb):
        raise InputValidationError(
            "inplace: received True for arrays of a library whose arrays are immutable; expected inplace=False"
        )
    lr = config.learning_rate if learning_rate is None else V.check_positive_number("learning_rate", learning_rate)
    return _train_step(xp, config, parameters, optimizer_state, bn_state, Xb, Yb, INPLACE if inplace else PURE, lr)


def _train_step(
    xp: Any,
    config: TrainingConfig,
    parameters: Tree,
    optimizer_state: Tree,
    bn_state: Tree,
    Xb: Array,
    Yb: Array,
    ops: Ops = PURE,
    learning_rate: float | None = None,
) -> StepOutput:
    """Forward, backward and one optimizer update on the batch ``Xb`` (n_x, m), one-hot ``Yb`` (n_classes, m).

    Checks nothing (the loop validated its data and state once).  The
    optimizer's gradient scale is folded into the backward pass (see
    :mod:`backend_mlp.optimizers`); batch-norm running statistics come back
    updated in a new dict.
    """
    L = len(config.layer_dims) - 1
    optimizer = config.optimizer
    lr = config.learning_rate if learning_rate is None else learning_rate
    AL, caches, new_bn_state = _forward(xp, ops, Xb, parameters, L, config.batchnorm, True, bn_state)
    scale = optimizer.gradient_scale(lr)
    scaled_grads = _backward(xp, ops, AL, Yb, caches, config.l2_lambda, scale)
    new_parameters, new_optimizer_state = optimizer.update(parameters, scaled_grads, optimizer_state, lr, ops)
    return StepOutput(new_parameters, new_optimizer_state, new_bn_state or {}, AL)
