"""The training step and the checks' evaluation compiled by the backend's library (``train(..., compile=True)``).

The very same pure array-API step (:func:`~backend_mlp.training.step._train_step`,
pure, with the backend's own products: ``Backend.kernel_ops(False)``), together
with the batch gather, handed to the backend's
compiler (:meth:`Backend.compile_step <backend_mlp.backends.Backend.compile_step>`:
:func:`jax.jit` on JAX, :func:`torch.compile` on PyTorch).  Libraries without a
compiler run the step eagerly; :func:`eager_notice` says so in one line.

The checks of a compiled run (the inference cost and accuracy of the
validation data, else of the first training samples) are compiled the same
way (:func:`compiled_evaluation`).

The compiled step's arguments are arrays only, so nothing that changes
during a run is baked into it: ``(parameters, optimizer_state, bn_state,
X_rows, Y_rows, idx, learning_rate)`` with ``learning_rate`` a 0-d array (a
decaying rate recompiles nothing).  It is compiled once per configuration,
training data (shape and dtype) and batch size: the epoch's smaller last batch
adds one compile, and later :func:`~backend_mlp.training.train` calls with the
same settings and data reuse it (see :func:`compiled_step`).

Where the library can also compile a loop (JAX: :func:`jax.lax.scan`), the
steps between two checks run :data:`FUSED_STEPS` at a time as one call
(:func:`compiled_steps`), so the cost of a call is paid once per
:data:`FUSED_STEPS` steps; a record step, and the steps that do not fill a
fused call within one epoch, run alone.  The fused call is one more compile
(once per configuration, data and batch size, like the step).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from ..backends import Backend
from ..errors import BackendUnavailableError
from .config import TrainingConfig
from .evaluation import _cost_and_hits
from .step import StepOutput, _train_step

Array = Any


class Compiled:
    """A compiled function of arrays and the sizes (of its varying argument) it has been compiled for."""

    #: what it computes, as the error of a failed compilation says it
    what = "the training step"

    def __init__(self, backend: Backend, fn: Callable[..., Any]) -> None:
        self.backend = backend
        self.fn = fn
        self.batch_sizes: set[Any] = set()  # those compiled so far

    def call(self, size: Any, *args: Any) -> tuple[Any, float]:
        """``(fn(*args), compile_seconds)``: the result, and the time its compilation took (0 once compiled).

        A call with a new ``size`` compiles; it is timed to its end (the backend
        synchronised), so the seconds include that one call's arithmetic.  A failure
        of that call (a compiler missing a C compiler, say) is one
        :class:`BackendUnavailableError` naming it, the library's own error chained.
        """
        if size in self.batch_sizes:
            return self.fn(*args), 0.0
        t0 = time.perf_counter()
        try:
            with self.backend.compiling():
                out = self.fn(*args)
            self.backend.synchronize()
        except Exception as exc:  # noqa: BLE001 - the compiler's failure, said in one line (chained)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise BackendUnavailableError(
                f"compile: received True, but {self.backend.library} failed to compile and run {self.what} "
                f"on {self.backend.name} ({type(exc).__name__}: {first_line}); expected a working compiler there, "
                "or compile=False (the same numbers, eagerly)"
            ) from exc
        self.batch_sizes.add(size)
        return out, time.perf_counter() - t0


class CompiledStep(Compiled):
    """A compiled training step (it is called like the step, with the batch's indices)."""

    def __call__(
        self,
        parameters: dict[str, Array],
        optimizer_state: dict[str, Array],
        bn_state: dict[str, Array],
        X_rows: Array,
        Y_rows: Array,
        idx: Array,
        learning_rate: Array,
    ) -> tuple[Any, float]:
        """``(StepOutput, compile_seconds)`` of the step on the rows ``idx`` (see :meth:`Compiled.call`)."""
        args = (parameters, optimizer_state, bn_state, X_rows, Y_rows, idx, learning_rate)
        return self.call(self.size_of(idx), *args)  # everything else is fixed by the cache key

    @staticmethod
    def size_of(idx: Array) -> Any:
        """What a new compile depends on: the batch size."""
        return int(idx.shape[0])


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
    return _cached(_compiled_step, backend, config, X_rows)


def compiled_steps(backend: Backend, config: TrainingConfig, X_rows: Array) -> CompiledSteps | None:
    """:data:`FUSED_STEPS` training steps as one compiled call (``Backend.compile_steps``: a
    :func:`jax.lax.scan` on JAX), or ``None`` where the backend compiles single steps only.  Cached as
    :func:`compiled_step` is."""
    return _cached(_compiled_steps, backend, config, X_rows)


def _cached(make: Any, backend: Backend, config: TrainingConfig, X_rows: Array) -> Any:
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
        return make.__wrapped__(*key)
    return make(*key)


def _step_function(backend: Backend, config: TrainingConfig) -> Callable[..., StepOutput]:
    """The gather and the pure step as one function of arrays, what the backend's compiler is handed."""
    xp = backend.compile_namespace()
    ops = backend.kernel_ops(False)  # pure, with the backend's own products

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
        return _train_step(xp, config, parameters, optimizer_state, bn_state, Xb, Yb, ops, learning_rate)

    return step


@functools.lru_cache(maxsize=16)
def _compiled_step(backend: Backend, config: TrainingConfig, shape: tuple[int, ...], dtype: str) -> CompiledStep | None:
    fn = backend.compile_step(_step_function(backend, config))
    return None if fn is None else CompiledStep(backend, fn)


#: the steps one fused call runs (:func:`compiled_steps`): on the report network on a CPU, 8 steps in one
#: ``jax.lax.scan`` measured about as fast per step as 16 or 32, and each further length would compile
#: again (``docs/benchmarks.md``, "Round 7")
FUSED_STEPS = 8


class CompiledSteps(CompiledStep):
    """Consecutive training steps as one compiled call; called like the step with ``idx`` (k, m), it returns
    ``((parameters, optimizer_state, bn_state), compile_seconds)``, the state after the k steps."""

    what = "the training steps fused into one call"

    @staticmethod
    def size_of(idx: Array) -> Any:
        return tuple(int(n) for n in idx.shape)


@functools.lru_cache(maxsize=16)
def _compiled_steps(
    backend: Backend, config: TrainingConfig, shape: tuple[int, ...], dtype: str
) -> CompiledSteps | None:
    fn = backend.compile_steps(_step_function(backend, config))
    return None if fn is None else CompiledSteps(backend, fn)


class CompiledEvaluation(Compiled):
    """The inference cost and hit count of a whole data set, compiled: ``(cost, hits)`` 0-d arrays."""

    what = "the evaluation of the checks (inference cost and accuracy)"

    def __call__(
        self, parameters: dict[str, Array], bn_state: dict[str, Array], X_rows: Array, Y_rows: Array
    ) -> tuple[tuple[Array, Array], float]:
        return self.call(int(X_rows.shape[0]), parameters, bn_state, X_rows, Y_rows)


def compiled_evaluation(backend: Backend, config: TrainingConfig, X_rows: Array) -> CompiledEvaluation | None:
    """The compiled :func:`~backend_mlp.training.evaluation.evaluate` of ``config``'s network on ``backend``
    for data like ``X_rows`` (what the checks of a compiled run use); ``None`` without a compiler.  Cached
    on the network and the data's shape and dtype, so one compiled function sees one shape."""
    return _compiled_evaluation(backend, config.layer_dims, config.batchnorm, tuple(X_rows.shape), str(X_rows.dtype))


@functools.lru_cache(maxsize=16)
def _compiled_evaluation(
    backend: Backend, layer_dims: tuple[int, ...], batchnorm: Any, shape: tuple[int, ...], dtype: str
) -> CompiledEvaluation | None:
    xp = backend.compile_namespace()
    config = TrainingConfig(layer_dims=layer_dims, batchnorm=batchnorm)

    def evaluation(
        parameters: dict[str, Array], bn_state: dict[str, Array], X_rows: Array, Y_rows: Array
    ) -> tuple[Array, Array]:
        return _cost_and_hits(xp, config, parameters, bn_state, X_rows.T, Y_rows.T)

    fn = backend.compile_step(evaluation)
    return None if fn is None else CompiledEvaluation(backend, fn)


def eager_notice(backend: Backend) -> str:
    """The one line said when ``compile=True`` meets a library without a compiler."""
    return f"compile: {backend.library} has no compiler; the training step runs eagerly"
