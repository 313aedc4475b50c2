"""The training step compiled by the backend's library (``train(..., compile=True)``).

The very same pure array-API step (:func:`~backend_mlp.training.step._train_step`
under ``PURE``), together with the batch gather, handed to the backend's
compiler (:meth:`Backend.compile_step <backend_mlp.backends.Backend.compile_step>`:
:func:`jax.jit` on JAX, :func:`torch.compile` on PyTorch).  Libraries without a
compiler run the step eagerly; :func:`eager_notice` says so in one line.

The compiled function's arguments are arrays only, so nothing that changes
during a run is baked into it: ``(parameters, optimizer_state, bn_state,
X_rows, Y_rows, idx, learning_rate)`` with ``learning_rate`` a 0-d array (a
decaying rate recompiles nothing).  It is compiled once per configuration,
training data (shape and dtype) and batch size: the epoch's smaller last batch
adds one compile, and later :func:`~backend_mlp.training.train` calls with the
same settings and data reuse it (see :func:`compiled_step`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from ..backends import Backend
from ..errors import BackendUnavailableError
from ..ops import PURE
from .config import TrainingConfig
from .step import StepOutput, _train_step

Array = Any


class CompiledStep:
    """A compiled step and the batch sizes it has been compiled for (it is called like the step)."""

    def __init__(self, backend: Backend, fn: Callable[..., StepOutput]) -> None:
        self.backend = backend
        self.fn = fn
        self.batch_sizes: set[int] = set()  # those compiled so far

    def __call__(
        self,
        parameters: dict[str, Array],
        optimizer_state: dict[str, Array],
        bn_state: dict[str, Array],
        X_rows: Array,
        Y_rows: Array,
        idx: Array,
        learning_rate: Array,
    ) -> tuple[StepOutput, float]:
        """``(StepOutput, compile_seconds)``: the step, and the time its compilation took (0 once compiled).

        A call with new argument shapes compiles; it is timed to its end (the
        backend synchronised), so the seconds include that one step's arithmetic.
        A failure of that call (a compiler missing a C compiler, say) is one
        :class:`BackendUnavailableError` naming it, the library's own error chained.
        """
        size = int(idx.shape[0])  # everything else is fixed by compiled_step's cache key
        if size in self.batch_sizes:
            return self.fn(parameters, optimizer_state, bn_state, X_rows, Y_rows, idx, learning_rate), 0.0
        t0 = time.perf_counter()
        try:
            with self.backend.compiling():
                out = self.fn(parameters, optimizer_state, bn_state, X_rows, Y_rows, idx, learning_rate)
            self.backend.synchronize()
        except Exception as exc:  # noqa: BLE001 - the compiler's failure, said in one line (chained)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise BackendUnavailableError(
                f"compile: received True, but {self.backend.library} failed to compile and run the training step "
                f"on {self.backend.name} ({type(exc).__name__}: {first_line}); expected a working compiler there, "
                "or compile=False (the same numbers, eagerly)"
            ) from exc
        self.batch_sizes.add(size)
        return out, time.perf_counter() - t0


def compiled_step(backend: Backend, config: TrainingConfig, X_rows: Array) -> CompiledStep | None:
    """The compiled training step of ``config`` on ``backend`` for training data like ``X_rows``.

    ``None`` when the backend's library has no compiler.  Cached on what the
    compiled code depends on (layer sizes, batch norm, optimizer, L2, the
    data's shape and dtype), so runs that differ only in seed, learning rate or
    schedule share one compilation, and one compiled function only ever sees
    two batch shapes (PyTorch limits the recompilations of one function).  An
    optimizer that cannot be hashed (a custom one holding a list, say) gets a
    step of its own, compiled again by each call.
    """
    step_config = TrainingConfig(
        layer_dims=config.layer_dims,
        batchnorm=config.batchnorm,
        optimizer=config.optimizer,
        l2_lambda=config.l2_lambda,
    )
    key = (backend, step_config, tuple(X_rows.shape), str(X_rows.dtype))
    try:
        hash(key)
    except TypeError:
        return _compiled_step.__wrapped__(*key)
    return _compiled_step(*key)


@functools.lru_cache(maxsize=16)
def _compiled_step(backend: Backend, config: TrainingConfig, shape: tuple[int, ...], dtype: str) -> CompiledStep | None:
    xp = backend.compile_namespace()

    def step(
        parameters: dict[str, Array],
        optimizer_state: dict[str, Array],
        bn_state: dict[str, Array],
        X_rows: Array,
        Y_rows: Array,
        idx: Array,
        learning_rate: Array,
    ) -> StepOutput:
        Xb, Yb = backend.take_batch(X_rows, Y_rows, idx)
        return _train_step(xp, config, parameters, optimizer_state, bn_state, Xb, Yb, PURE, learning_rate)

    fn = backend.compile_step(step)
    return None if fn is None else CompiledStep(backend, fn)


def eager_notice(backend: Backend) -> str:
    """The one line said when ``compile=True`` meets a library without a compiler."""
    return f"compile: {backend.library} has no compiler; the training step runs eagerly"
