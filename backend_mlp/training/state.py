"""What a run carries from step to step (:class:`TrainingState`) and what it reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np  # host-side epoch order only

from ..backends import backend_of, dtype_name
from ..initialization import (
    batchnorm_state_shapes,
    initialize_batchnorm_state,
    initialize_parameters,
    parameter_shapes,
)
from .config import TrainingConfig

Array = Any


@dataclass  # neither frozen nor slotted: the loop updates several fields as one with vars(state).update
class TrainingState:
    """Everything needed to continue a run exactly where it stopped.

    ``parameters``/``optimizer_state``/``bn_state``: the arrays the step
    updates (the optimizer's state as its :meth:`init_state` names it);
    ``order``/``position``: the current epoch's host permutation and how many
    of its samples were used; ``rng_state``: the shuffling generator's state
    after drawing ``order``.  ``costs``/``val_costs``: ``(step, cost)`` pairs.
    ``elapsed_seconds``: wall time of the run so far (all sessions of it);
    ``compile_seconds``: the part of it spent compiling the step and the
    checks (``train(..., compile=True)``; all sessions, as ``elapsed_seconds``).
    """

    parameters: dict[str, Array]
    bn_state: dict[str, Array]
    optimizer_state: dict[str, Array] = field(default_factory=dict)
    step: int = 0
    epochs_completed: int = 0
    order: np.ndarray | None = None
    position: int = 0
    rng_state: dict[str, Any] | None = None
    costs: list[tuple[int, float]] = field(default_factory=list)
    val_costs: list[tuple[int, float]] = field(default_factory=list)
    best_val_cost: float = math.inf
    best_step: int = 0
    best_parameters: dict[str, Array] | None = None
    best_bn_state: dict[str, Array] | None = None
    stopped_reason: str | None = None
    elapsed_seconds: float = 0.0
    compile_seconds: float = 0.0

    def epochs(self, n_samples: int) -> float:
        """Epochs done so far, fractional (samples seen / training set size)."""
        return self.epochs_completed + self.position / n_samples


def new_training_state(config: TrainingConfig, like: Array) -> TrainingState:
    """Fresh parameters (seeded He init), optimizer state and running statistics on ``like``'s backend and dtype.

    ``like`` is an array of the training data (or a :class:`~backend_mlp.data.Dataset`).
    """
    like = getattr(like, "X_rows", like)
    backend, dtype = backend_of(like), dtype_name(like.dtype)
    dims = config.layer_dims
    params = initialize_parameters(dims, config.seed, device=backend, dtype=dtype, use_batchnorm=config.batchnorm)
    bn_state = initialize_batchnorm_state(dims, device=backend, dtype=dtype) if config.batchnorm else {}
    return TrainingState(parameters=params, bn_state=bn_state, optimizer_state=config.optimizer.init_state(params))


def state_shapes(config: TrainingConfig) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """The keys and shapes of a run's ``parameters`` and ``bn_state`` (empty without batch norm), drawing nothing."""
    stats = batchnorm_state_shapes(config.layer_dims) if config.batchnorm is not None else {}
    return parameter_shapes(config.layer_dims, config.batchnorm), stats


@dataclass(frozen=True)
class ProgressEvent:
    """Reported at every record step: costs are host floats."""

    step: int
    epoch: float
    train_cost: float
    val_cost: float | None
    elapsed_seconds: float
    num_iterations: int


@dataclass
class TrainingResult:
    """The outcome of :func:`~backend_mlp.training.train`.  Unpacks like the report: ``parameters, costs = result``.

    ``parameters``/``bn_state``: best validation check (or last step without
    validation data); ``costs``: mini-batch costs every ``record_every`` steps;
    ``compiled``: whether the steps ran compiled (``train(..., compile=True)`` on
    a library with a compiler).
    """

    parameters: dict[str, Array]
    bn_state: dict[str, Array]
    costs: list[float]
    config: TrainingConfig
    state: TrainingState
    n_train: int
    compiled: bool = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.parameters, self.costs))

    @property
    def steps(self) -> int:
        return self.state.step

    @property
    def epochs(self) -> float:
        return self.state.epochs(self.n_train)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling the step and the checks, all sessions (part of ``state.elapsed_seconds``)."""
        return self.state.compile_seconds

    @property
    def step_seconds(self) -> float:
        """Wall time of the run without the compilation: ``state.elapsed_seconds - compile_seconds``."""
        return max(self.state.elapsed_seconds - self.state.compile_seconds, 0.0)

    @property
    def best_step(self) -> int:
        return self.state.best_step

    @property
    def val_costs(self) -> list[float]:
        return [c for _, c in self.state.val_costs]

    @property
    def recorded_steps(self) -> list[int]:
        return [s for s, _ in self.state.costs]

    @property
    def stopped_reason(self) -> str | None:
        return self.state.stopped_reason
