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

The rules follow PyTorch's definitions exactly (``torch.optim.SGD`` with
``momentum``/``nesterov`` and no dampening, ``torch.optim.Adam`` without
AMSGrad); the L2 penalty is part of the gradient (the loss's), never a
separate ``weight_decay``.  ``tests/test_optimizers.py`` checks each against
``torch.optim`` on identical inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from . import validation as V
from .backends import namespace_of
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


def _fraction_below_one(name: str, value: Any, example: str) -> float:
    """A real number in ``[0, 1)``."""
    if not V.is_real_number(value) or not (0.0 <= value < 1.0):
        raise InputValidationError(
            f"{name}: received {V.short_repr(value)}; expected a number in [0, 1) such as {example}"
        )
    return float(value)


def _grads_of(parameters: Tree, scaled_grads: Tree) -> list[tuple[str, Array, Array]]:
    """``(name, parameter, gradient)`` for every parameter that has a gradient."""
    return [(k, p, scaled_grads["d" + k]) for k, p in parameters.items() if ("d" + k) in scaled_grads]


@dataclass(frozen=True)
class Momentum(Optimizer):
    """Heavy-ball momentum, ``torch.optim.SGD(momentum=m)``: ``v <- m v + g``; ``p <- p - lr v``.

    The velocity starts at zero (so the first step is ``v = g``, as PyTorch's
    buffer initialised with the first gradient).  State: ``velocity.<name>``,
    the shape of each parameter.
    """

    name: ClassVar[str] = "momentum"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", _fraction_below_one("momentum", self.momentum, "0.9"))
        if self.momentum == 0.0:
            raise InputValidationError("momentum: received 0; expected a number in (0, 1) such as 0.9 (0 is plain SGD)")

    def init_state(self, parameters: Tree) -> Tree:
        return {f"velocity.{k}": namespace_of(p).zeros_like(p) for k, p in parameters.items()}

    def update(
        self, parameters: Tree, scaled_grads: Tree, state: Tree, learning_rate: float, ops: Ops
    ) -> tuple[Tree, Tree]:
        new_params, new_state = dict(parameters), dict(state)
        for k, p, g in _grads_of(parameters, scaled_grads):
            v = ops.add(state[f"velocity.{k}"] * self.momentum, g)  # m v + g
            new_state[f"velocity.{k}"] = v
            new_params[k] = ops.add(self._increment(g, v, learning_rate, ops), p)
        return new_params, new_state

    def _increment(self, g: Array, v: Array, learning_rate: float, ops: Ops) -> Array:
        """``-lr * v``, a fresh array (``g`` is ours to reuse, ``v`` is state and never written)."""
        return v * -learning_rate


@dataclass(frozen=True)
class Nesterov(Momentum):
    """Nesterov momentum, ``torch.optim.SGD(momentum=m, nesterov=True)``.

    ``v <- m v + g``; ``p <- p - lr (g + m v)``.
    """

    name: ClassVar[str] = "nesterov"

    def _increment(self, g: Array, v: Array, learning_rate: float, ops: Ops) -> Array:
        return ops.mul(ops.add(g, v * self.momentum), -learning_rate)


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba), ``torch.optim.Adam`` without AMSGrad or weight decay.

    With ``t`` the step number (1 at the first step)::

        m <- m + (1 - beta1) (g - m)            v <- beta2 v + (1 - beta2) g*g
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + epsilon)

    State: ``exp_avg.<name>`` (m), ``exp_avg_sq.<name>`` (v), each the shape of
    its parameter, and ``step`` (t, shape ``(1,)``, the parameters' dtype and
    device: the bias corrections are computed on the device, so a compiled step
    never sees a changing Python number).  In float32 they are rounded to float32
    (PyTorch computes them in Python doubles): about 1e-5 relative in the first
    steps' rate, where 0.999 itself is inexact; float64 agrees to rounding.
    """

    name: ClassVar[str] = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta1", _fraction_below_one("beta1", self.beta1, "0.9"))
        object.__setattr__(self, "beta2", _fraction_below_one("beta2", self.beta2, "0.999"))
        object.__setattr__(self, "epsilon", V.check_positive_number("epsilon", self.epsilon, "1e-8"))

    def init_state(self, parameters: Tree) -> Tree:
        state: Tree = {}
        for k, p in parameters.items():
            xp = namespace_of(p)
            state[f"exp_avg.{k}"] = xp.zeros_like(p)
            state[f"exp_avg_sq.{k}"] = xp.zeros_like(p)
        if parameters:
            p = next(iter(parameters.values()))
            state["step"] = namespace_of(p).zeros((1,), dtype=p.dtype, device=_device(p))
        return state

    def update(
        self, parameters: Tree, scaled_grads: Tree, state: Tree, learning_rate: float, ops: Ops
    ) -> tuple[Tree, Tree]:
        b1, b2 = self.beta1, self.beta2
        t = state["step"] + 1.0
        xp = namespace_of(t)
        step_size = learning_rate / (1.0 - b1**t)  # shape (1,): bias corrections on the device
        sqrt_bc2 = xp.sqrt(1.0 - b2**t)
        new_params, new_state = dict(parameters), {**state, "step": t}
        for k, p, g in _grads_of(parameters, scaled_grads):
            m, v = state[f"exp_avg.{k}"], state[f"exp_avg_sq.{k}"]
            v = ops.add(v * b2, ops.mul(g * g, 1.0 - b2))
            m = ops.add(ops.mul(ops.sub(g, m), 1.0 - b1), m)  # g is ours: reused for (g - m)
            denom = ops.add(ops.div(xp.sqrt(v), sqrt_bc2), self.epsilon)
            new_params[k] = ops.add(ops.mul(m / denom, -step_size), p)
            new_state[f"exp_avg.{k}"], new_state[f"exp_avg_sq.{k}"] = m, v
        return new_params, new_state


def _device(x: Array) -> Any:
    from array_api_compat import device

    return device(x)


#: every update rule by name
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam}

#: the hyperparameter keywords the command line, ``train``, ``L_layer_model`` and the estimator share
OPTIMIZER_KEYWORDS = ("momentum", "beta1", "beta2", "epsilon")


def make_optimizer(name: Any = "sgd", **hyperparameters: Any) -> Optimizer:
    """An optimizer from its name and the shared keywords (``None`` values mean the rule's default).

    A keyword the rule does not have is an :class:`InputValidationError`
    (``make_optimizer("adam", momentum=0.9)`` is a mistake, not ignored).
    """
    unknown = sorted(set(hyperparameters) - set(OPTIMIZER_KEYWORDS))
    if unknown:
        raise InputValidationError(
            f"make_optimizer: received unknown keywords {unknown!r}; expected some of {list(OPTIMIZER_KEYWORDS)!r}"
        )
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    if isinstance(name, Optimizer):
        if not given:
            return name
        current = name.to_json()
        name = current.pop("name")
        given = {**current, **given}
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise InputValidationError(
            f"optimizer: received {V.short_repr(name)}; expected one of {', '.join(map(repr, OPTIMIZERS))}"
        )
    cls = OPTIMIZERS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in given:
        if key not in fields:
            owners = [n for n, c in OPTIMIZERS.items() if key in {f.name for f in dataclasses.fields(c)}]
            raise InputValidationError(
                f"{key}: received {V.short_repr(given[key])} but optimizer {name!r} has no {key}; "
                f"expected it only with {' or '.join(map(repr, owners))}"
            )
    return cls(**given)


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
