"""Optimizers: one object per update rule, holding its hyperparameters; its state is data.

The seam every trainer uses (the training step, :func:`update_parameters`,
the estimator and checkpoints):

* ``init_state(parameters)``: the optimizer's state as a flat dict of arrays
  (``{}`` for plain SGD; e.g. ``{"velocity.W1": ...}`` for momentum), saved in
  checkpoints and restored on resume;
* ``gradient_scale(learning_rate)``: the factor the backward pass multiplies
  every gradient by (folded into the output layer's small ``dZ`` once: the
  backward is linear in it), e.g. ``-learning_rate`` for SGD;
* ``update(parameters, scaled_grads, state, learning_rate, ops)``: new
  parameters and state.  ``scaled_grads`` are ``d{name}`` arrays already
  multiplied by ``gradient_scale`` and owned by the update (it may combine
  into them through ``ops``, see :mod:`backend_mlp.ops`); parameters and state
  arrays are never written, so earlier snapshots stay valid.

Adding an update rule is one subclass here plus one entry in :data:`OPTIMIZERS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import InputValidationError
from .ops import Ops

Array = Any
Tree = dict[str, Array]


@dataclass(frozen=True)
class Optimizer:
    """Base class: hyperparameters are dataclass fields; ``name`` is the registry key."""

    name: ClassVar[str] = ""

    def init_state(self, parameters: Tree) -> Tree:
        """The state before the first step (host-independent: arrays on the parameters' backend)."""
        return {}

    def gradient_scale(self, learning_rate: float) -> float:
        """What the backward pass multiplies the gradients by before :meth:`update`."""
        return 1.0

    def update(
        self, parameters: Tree, scaled_grads: Tree, state: Tree, learning_rate: float, ops: Ops
    ) -> tuple[Tree, Tree]:
        """One step: ``(new_parameters, new_state)``; parameters without a gradient are carried over."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """``{"name": ..., <hyperparameters>}``, the form configs and checkpoints store."""
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class SGD(Optimizer):
    """Plain stochastic gradient descent: ``p <- p - learning_rate * dp`` (the report's rule)."""

    name: ClassVar[str] = "sgd"

    def gradient_scale(self, learning_rate: float) -> float:
        return -learning_rate

    def update(
        self, parameters: Tree, scaled_grads: Tree, state: Tree, learning_rate: float, ops: Ops
    ) -> tuple[Tree, Tree]:
        # scaled_grads are the increments -learning_rate * dp, fresh and ours: p + increment
        new = {k: ops.add(scaled_grads["d" + k], p) if ("d" + k) in scaled_grads else p for k, p in parameters.items()}
        return new, state


#: every update rule by name
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD}


def get_optimizer(value: Any = None) -> Optimizer:
    """An :class:`Optimizer` from ``None`` (SGD), a name (``"sgd"``), an instance, or its ``to_json()`` dict."""
    if value is None:
        return SGD()
    if isinstance(value, Optimizer):
        return value
    if isinstance(value, str) and value in OPTIMIZERS:
        return OPTIMIZERS[value]()
    if isinstance(value, dict) and value.get("name") in OPTIMIZERS:
        cls = OPTIMIZERS[value["name"]]
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - fields - {"name"})
        if unknown:
            raise InputValidationError(
                f"optimizer: received unknown hyperparameters {unknown!r} for {value['name']!r}; "
                f"expected some of {sorted(fields)!r}"
            )
        return cls(**{k: v for k, v in value.items() if k != "name"})
    raise InputValidationError(
        f"optimizer: received {value!r:.80}; expected one of {', '.join(map(repr, OPTIMIZERS))} "
        "or an Optimizer instance"
    )
