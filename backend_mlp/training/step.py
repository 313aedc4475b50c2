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

from ..network import _backward, _forward
from ..ops import PURE, Ops
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
    xp: Any,
    config: TrainingConfig,
    parameters: Tree,
    optimizer_state: Tree,
    bn_state: Tree,
    Xb: Array,
    Yb: Array,
    ops: Ops = PURE,
) -> StepOutput:
    """Forward, backward and one optimizer update on the batch ``Xb`` (n_x, m), one-hot ``Yb`` (n_classes, m).

    Checks nothing (the loop validated its data and state once).  The
    optimizer's gradient scale is folded into the backward pass (see
    :mod:`backend_mlp.optimizers`); batch-norm running statistics come back
    updated in a new dict.
    """
    L = len(config.layer_dims) - 1
    optimizer = config.optimizer
    AL, caches, new_bn_state = _forward(xp, ops, Xb, parameters, L, config.batchnorm, True, bn_state)
    scale = optimizer.gradient_scale(config.learning_rate)
    scaled_grads = _backward(xp, ops, AL, Yb, caches, config.l2_lambda, scale)
    new_parameters, new_optimizer_state = optimizer.update(
        parameters, scaled_grads, optimizer_state, config.learning_rate, ops
    )
    return StepOutput(new_parameters, new_optimizer_state, new_bn_state or {}, AL)
