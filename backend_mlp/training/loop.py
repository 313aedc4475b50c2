"""Mini-batch training with the report's early stopping, resumable step by step.

Protocol (the report's Sections 4-6): each epoch visits the training set in a
fresh order drawn on the host by a seeded NumPy generator (the last batch of
an epoch may be smaller); one mini-batch is one step (:func:`train_step`).
Every ``record_every`` steps, and at the last step, the mini-batch cost is
recorded and the validation cost (cross-entropy, inference mode) is
computed; training stops after ``patience`` checks in a row that were not
at least ``min_improvement`` below the best earlier check (with the
default ``patience=1``, the report's "improved by less than
``min_improvement`` since the previous check"), or after ``num_iterations``
steps.  A check off the ``record_every`` grid (the last step) can hold the
best parameters but does not count towards early stopping, so a run
extended with a larger ``num_iterations`` stops where a longer run would.
The parameters of the best validation check are returned.

Divergence (:class:`TrainingDivergedError`) is declared at a check whose cost
is non-finite or more than :data:`EXPLOSION` times the initial network's cost,
or at the second check in a row whose cost is more than
:data:`CHANCE_EXPLOSION` times it while the accuracy is at chance level (at
most ``1/K + 0.05``).  Checks measure, in inference mode, the validation set,
or without one a fixed reference of the first training samples; the initial
cost is that of the network training starts from on the same data (a fresh
state's own parameters, which are the seeded initialisation; on resume the
seeded initialisation is drawn again, and the last check recomputed, so
resuming decides alike).  The parameters kept
are the best check's, else the last check's that did not diverge, else the
initial ones: never non-finite ones.

The dataset sits on the device once; inside the step loop nothing is copied
between host and device and nothing synchronises, except the cost read-back
at record steps and one small index upload per epoch.  With ``compile=True``
the gather and the step run as one function compiled by the backend's library
(:mod:`.compiled`; on JAX it takes each batch's host indices, copied in by the
call itself, and the learning rate is a 0-d device array, uploaded again when
it decays); where the library compiles loops (JAX), the steps between checks
run :data:`~.compiled.FUSED_STEPS` at a time as one call.  The checks' forward
pass, cost and accuracy are compiled too; the first
call for each shape compiles and synchronises, to time the compilation
apart.  The numbers agree with the eager step to rounding, and checkpoints,
resume and early stopping are the same.

A Ctrl-C raises :class:`TrainingInterrupted` carrying a state that a resumed
run continues bit for bit: a step becomes the state's only once it is complete,
in one indivisible update (``_Loop._commit``), and a record step's commit and
its record (costs, best check, verdicts) run with Ctrl-C held until both are
made (:func:`_signals_held`); the callbacks run after, interruptible.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np  # host-side RNG only

from .. import validation as V
from ..backends import backend_of, dtype_name, namespace_of
from ..backends.blas_threads import BlasThreadLimit, check_blas_threads
from ..data import Dataset
from ..errors import InputValidationError, TrainingDivergedError, TrainingInterrupted
from ..losses import _cross_entropy, _l2_penalty
from .compiled import FUSED_STEPS, CompiledStep, compiled_evaluation, compiled_step, compiled_steps, eager_notice
from .config import TrainingConfig, configure
from .evaluation import evaluate
from .state import ProgressEvent, TrainingResult, TrainingState, new_training_state, state_shapes
from .step import _train_step

Array = Any
Tree = dict[str, Array]

#: a check whose cost exceeds this multiple of the initial network's cost diverged
EXPLOSION = 10.0
#: ... or this multiple while its accuracy is at chance level
CHANCE_EXPLOSION = 1.5
#: samples of the training set that measure the initial cost when there is no validation set
_REFERENCE_SAMPLES = 4096


def train(
    train_data: Dataset,
    config: TrainingConfig | None = None,
    val_data: Dataset | None = None,
    *,
    state: TrainingState | None = None,
    callback: Callable[[ProgressEvent], None] | None = None,
    checkpoint_callback: Callable[[TrainingState], None] | None = None,
    blas_threads: int | str | None = "auto",
    compile: bool = False,
    **settings: Any,
) -> TrainingResult:
    """Train (or resume from ``state``) and return a :class:`TrainingResult`.

    ``config`` defaults to the report's settings sized for the data; keyword
    ``settings`` adjust it (see :func:`~backend_mlp.training.config.configure`):
    ``train(data, val_data=val, hidden=(256, 128), optimizer="adam",
    learning_rate=1e-3, patience=5)``.  The result's ``config`` is the one used.

    ``blas_threads`` (NumPy-based backends): host BLAS threads during the
    steps; ``"auto"`` caps them for small matrices (see
    :mod:`backend_mlp.backends.blas_threads`), an integer sets them, ``None`` leaves them.

    ``compile=True`` runs the gather and the step, and the validation checks,
    compiled by the data's library (:func:`jax.jit` on JAX, :func:`torch.compile`
    on PyTorch; eagerly, with a :class:`UserWarning`, elsewhere).  The time spent
    compiling is ``result.compile_seconds``, apart from ``result.step_seconds``.

    A given ``state`` is advanced in place (``result.state`` is that object),
    so a :class:`TrainingInterrupted`'s ``.state`` is where to resume from;
    to resume twice from one checkpoint, load it twice.

    Raises :class:`TrainingDivergedError` (``.result`` holds the best
    parameters) on a non-finite cost and :class:`TrainingInterrupted`
    (``.state``) on Ctrl-C.  ``checkpoint_callback`` is called after each record.
    """
    blas_threads = check_blas_threads(blas_threads)
    compile = V.check_bool("compile", compile)
    if config is None or settings:
        if not isinstance(train_data, Dataset):
            raise InputValidationError(
                f"train_data: received {type(train_data).__name__}; expected a Dataset (Dataset.from_host or "
                "Dataset.from_columns)"
            )
        config = configure(config, n_features=train_data.n_features, n_classes=train_data.n_classes, **settings)
    _check_data(train_data, val_data, config)
    xp = namespace_of(train_data.X_rows, train_data.Y_rows)
    if state is None:
        state = new_training_state(config, train_data.X_rows)
    else:
        _check_state(state, train_data, config)
    for name, fn in (("callback", callback), ("checkpoint_callback", checkpoint_callback)):
        if fn is not None and not callable(fn):
            raise InputValidationError(f"{name}: received {type(fn).__name__}; expected a callable or None")
    with backend_of(train_data.X_rows).device_context():  # CuPy: kernels run on the current GPU
        loop = _Loop(xp, train_data, val_data, config, state, callback, checkpoint_callback, blas_threads, compile)
        if compile and loop.compiled is None:
            warnings.warn(eager_notice(loop.backend), UserWarning, stacklevel=2)
        loop.run()
        return loop.result()


def _check_data(train_data: Dataset, val_data: Dataset | None, config: TrainingConfig) -> None:
    if not isinstance(config, TrainingConfig):
        raise InputValidationError(f"config: received {type(config).__name__}; expected a TrainingConfig")
    dims = config.layer_dims
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is None:
            continue
        if not isinstance(data, Dataset):
            raise InputValidationError(
                f"{name}: received {type(data).__name__}; expected a Dataset (Dataset.from_host or "
                "Dataset.from_columns)"
            )
        if data.n_samples == 0:
            raise InputValidationError(f"{name}: received 0 samples; expected at least one")
        if data.n_features != dims[0]:
            raise InputValidationError(
                f"layer_dims: first entry is {dims[0]} but {name} has {data.n_features} features; "
                "expected them to be equal"
            )
        if data.n_classes != dims[-1]:
            raise InputValidationError(
                f"layer_dims: last entry is {dims[-1]} but {name} has {data.n_classes} classes; "
                "expected them to be equal"
            )
    if config.batch_size > train_data.n_samples:
        raise InputValidationError(
            f"batch_size: received {config.batch_size}; expected at most the {train_data.n_samples} "
            "training samples"
        )
    if val_data is not None:
        V.common_namespace({"train_data.X_rows": train_data.X_rows, "val_data.X_rows": val_data.X_rows})
        V.check_same_dtype({"val_data.X_rows": val_data.X_rows}, "train_data.X_rows", train_data.X_rows.dtype)


def _check_state(state: TrainingState, train_data: Dataset, config: TrainingConfig) -> None:
    """A state to resume from must match the data's backend, dtype and the configured architecture."""
    if not isinstance(state, TrainingState):
        raise InputValidationError(
            f"state: received {type(state).__name__}; expected a TrainingState (new_training_state or a checkpoint)"
        )
    V.check_dict("state.parameters", state.parameters, "a dict of arrays")
    named = {"train_data.X_rows": train_data.X_rows}
    named.update({f"state.parameters[{k!r}]": v for k, v in state.parameters.items()})
    V.check_dict("state.optimizer_state", state.optimizer_state, "a dict of arrays (the optimizer's init_state)")
    named.update({f"state.optimizer_state[{k!r}]": v for k, v in state.optimizer_state.items()})
    V.common_namespace(named)
    V.check_same_dtype(named, "train_data.X_rows", train_data.X_rows.dtype)
    expected = config.optimizer.init_state(state.parameters)
    if sorted(expected) != sorted(state.optimizer_state):
        raise InputValidationError(
            f"state.optimizer_state: received keys {sorted(state.optimizer_state)!r}; expected "
            f"{sorted(expected)!r}, the state of the configured optimizer {config.optimizer.name!r}"
        )
    param_shapes, stat_shapes = state_shapes(config)
    for name, tree, shapes in (
        ("state.parameters", state.parameters, param_shapes),
        ("state.bn_state", state.bn_state, stat_shapes),
    ):
        got = {k: V.shape_of(v) for k, v in tree.items()}
        if got != shapes:
            raise InputValidationError(
                f"{name}: received {got!r}; expected {shapes!r}, the state of a run with layer_dims "
                f"{list(config.layer_dims)!r} and batchnorm {config.batchnorm!r}"
            )


#: the signals :func:`_signals_held` holds: Ctrl-C, and SIGTERM where a handler raises for it (the CLI's)
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Run the block with Ctrl-C (and SIGTERM) held: one that arrives inside is handled, by its own handler, when
    the block ends, so what the block changes lands whole.

    Only handlers set from Python are held (the default Ctrl-C handler, which raises ``KeyboardInterrupt``,
    and the CLI's SIGTERM); outside the main thread, where Python runs no signal handler, the block runs as
    it is.  If the block raises, that exception is the one seen (unless a signal lands while the handlers are
    put back), and a signal held meanwhile is dropped: the run ends either way.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = {sig: signal.getsignal(sig) for sig in _HELD_SIGNALS}
    previous = {sig: handler for sig, handler in previous.items() if callable(handler)}
    holding = True

    def hold(signum: int, frame: Any) -> None:  # once the block is over, a leftover one only passes signals on
        if holding:
            received.append((signum, frame))
        else:
            previous[signum](signum, frame)

    try:
        for sig in previous:
            signal.signal(sig, hold)
        yield
    finally:
        holding = False  # from here a signal reaches its own handler, even while they are put back
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum, frame in received[:1]:
        previous[signum](signum, frame)


def stale_checks(val_costs: list[tuple[int, float]], min_improvement: float) -> int:
    """How many of the last validation checks in a row were not ``min_improvement`` below every earlier one."""
    best, stale = math.inf, 0
    for _, cost in val_costs:
        stale = 0 if best - cost >= min_improvement else stale + 1
        best = min(best, cost)
    return stale


def shuffle_generator(seed: int) -> np.random.Generator:
    """The host generator that draws each epoch's order (one ``permutation`` per epoch).

    Separate from the initialisation stream of the same seed.
    """
    return np.random.default_rng((seed, 1))


def batch_indices(n_samples: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """The host index arrays of every step, in the order :func:`train` visits them (endless).

    Each epoch is a fresh permutation from :func:`shuffle_generator`; its last
    batch may be smaller.  Code that must replay the training order
    (benchmarks, tests, a user's own loop) takes it from here.
    """
    rng = shuffle_generator(seed)
    epochs = _EpochOrder()
    while True:
        start, stop, _ = next_span(epochs, rng, n_samples, batch_size)
        epochs.position = stop
        yield epochs.order[start:stop]


class _EpochOrder:
    """Where a walk through the epochs stands (the same fields as :class:`TrainingState`)."""

    order: np.ndarray | None = None
    position: int = 0
    rng_state: dict[str, Any] | None = None
    epochs_completed: int = 0


def next_span(
    st: TrainingState | _EpochOrder, rng: np.random.Generator, n_samples: int, batch_size: int
) -> tuple[int, int, bool]:
    """``(start, stop, new_epoch)`` of the next batch in ``st.order``, drawing a new epoch's order when due.

    The one definition of the training order: a fresh permutation of
    ``n_samples`` per epoch from ``rng``, batches of ``batch_size``, the
    last one smaller.  Updates ``order``, ``rng_state``, ``epochs_completed``
    and resets ``position`` at an epoch boundary; the caller advances ``position``.
    """
    new_epoch = st.order is None or st.position >= n_samples
    if new_epoch:
        order = rng.permutation(n_samples)
        # as one, like a step's commit (_Loop._commit): a Ctrl-C finds the old epoch or the new, never a mix
        vars(st).update(
            order=order,
            rng_state=rng.bit_generator.state,
            position=0,
            epochs_completed=st.epochs_completed + (0 if st.order is None else 1),
        )
    return st.position, min(st.position + batch_size, n_samples), new_epoch


class _Loop:
    """The step loop of :func:`train`; one instance per call."""

    def __init__(
        self,
        xp: Any,
        train_data: Dataset,
        val_data: Dataset | None,
        config: TrainingConfig,
        state: TrainingState,
        callback: Callable[[ProgressEvent], None] | None,
        checkpoint_callback: Callable[[TrainingState], None] | None,
        blas_threads: int | str | None,
        compile: bool = False,
    ) -> None:
        self.xp = xp
        self.data = train_data
        self.n_samples = train_data.n_samples  # read once: a property of the device array's shape
        self.val = val_data
        self.config = config
        self.state = state
        self.callback = callback
        self.checkpoint_callback = checkpoint_callback
        self.backend = backend_of(train_data.X_rows)
        self.L = len(config.layer_dims) - 1
        self.rng = shuffle_generator(config.seed)
        if state.rng_state is not None:
            self.rng.bit_generator.state = state.rng_state
        self.device_order: Array | None = None
        self.initial_cost = math.nan  # of the network training started from (seeded): the divergence reference
        self.strikes = 0  # checks in a row at chance level with an exploding cost
        self.last_good: tuple[int, dict[str, Array], dict[str, Array]] | None = None  # (step, params, bn_state)
        # pure, or in place on fresh temporaries; with the backend's own products where it has them
        self.ops = self.backend.kernel_ops(self.backend.mutable_arrays)
        self.step_xp = self.backend.step_namespace()  # the eager step's namespace (xp, or its faster twin)
        self.blas_threads = BlasThreadLimit(self.backend, config.layer_dims, config.batch_size, blas_threads)
        # the compiled step (None: eager), its learning rate on the device, and whether it takes host indices
        self.compiled: CompiledStep | None = compiled_step(self.backend, config, train_data.X_rows) if compile else None
        # several steps as one compiled call, where the library compiles loops (None: one call per step)
        self.fused = compiled_steps(self.backend, config, train_data.X_rows) if self.compiled is not None else None
        # the data of the checks: the validation set, else the first training samples; compiled with the step
        k = min(train_data.n_samples, _REFERENCE_SAMPLES)
        self.check_data = (
            val_data if val_data is not None else Dataset(train_data.X_rows[:k, ...], train_data.Y_rows[:k, ...])
        )
        self.compiled_evaluation = (
            compiled_evaluation(self.backend, config, self.check_data.X_rows) if self.compiled is not None else None
        )
        self.lr_array: tuple[float, Array] | None = None
        self.host_indices = self.compiled is not None and self.backend.compiled_takes_host_indices

    def run(self) -> None:
        st = self.state
        start = time.perf_counter() - st.elapsed_seconds
        try:
            if st.step == 0 and not st.costs:  # a fresh state is the initial network: no second initialisation
                self.initial_cost = self._check_data_cost(st.parameters, st.bn_state)[0]
            else:
                initial = new_training_state(self.config, self.data.X_rows)
                self.initial_cost = self._check_data_cost(initial.parameters, initial.bn_state)[0]
                del initial
            if st.costs and st.costs[-1][0] == st.step:  # resuming right after a check: redo its verdict
                cost, accuracy = self._check_data_cost(st.parameters, st.bn_state)
                self.strikes = int(self._chance_explosion(cost, accuracy))
            with self.blas_threads.steps():
                self._run_steps(start)
        except KeyboardInterrupt:
            raise TrainingInterrupted(st) from None
        finally:  # however the run ends, the state's wall time covers its compile time
            st.elapsed_seconds = time.perf_counter() - start

    def _run_steps(self, start: float) -> None:
        st, cfg, backend, compiled = self.state, self.config, self.backend, self.compiled
        xp, X_rows, Y_rows = self.step_xp, self.data.X_rows, self.data.Y_rows
        while st.step < cfg.num_iterations and st.stopped_reason is None:
            if self.fused is not None and self._run_fused():
                continue
            idx = self._next_batch_indices()
            before = st.parameters
            lr = cfg.learning_rate_at(st.epochs_completed)
            if compiled is None:
                Xb, Yb = backend.take_batch(X_rows, Y_rows, idx)
                out = _train_step(xp, cfg, st.parameters, st.optimizer_state, st.bn_state, Xb, Yb, self.ops, lr)
            else:
                out, seconds = compiled(
                    st.parameters, st.optimizer_state, st.bn_state, X_rows, Y_rows, idx, self._lr_on_device(lr)
                )
                st.compile_seconds += seconds
            m = int(idx.shape[0])
            if self._steps_before_record() > 0:
                self._commit(out.parameters, out.optimizer_state, out.bn_state, 1, m)
                continue
            if compiled is not None:  # the batch's labels (the compiled step gathered its own)
                Yb = backend.take_columns(Y_rows, idx)
            costs = self._measure(out.AL, Yb, before, out.parameters, out.bn_state)
            with _signals_held():  # the step and its record land together, or neither does
                self._commit(out.parameters, out.optimizer_state, out.bn_state, 1, m)
                st.elapsed_seconds = time.perf_counter() - start
                self._record(*costs)
            self._notify(*costs[:2])
        if st.stopped_reason is None:
            st.stopped_reason = "num_iterations"

    def _steps_before_record(self) -> int:
        """How many steps from the next one on come before a record step (0: the next step records).

        Step ``s`` (0-based) records when ``s + 1`` is a multiple of ``record_every`` or the last step."""
        st, cfg = self.state, self.config
        return min(cfg.record_every - 1 - st.step % cfg.record_every, cfg.num_iterations - 1 - st.step)

    def _run_fused(self) -> bool:
        """Run the next :data:`FUSED_STEPS` steps as one compiled call, if they are full batches of one epoch
        and none is a record step; ``False`` (and nothing run) otherwise."""
        st, cfg, k = self.state, self.config, FUSED_STEPS
        if self._steps_before_record() < k:
            return False
        start, _, new_epoch = next_span(st, self.rng, self.n_samples, cfg.batch_size)  # the step would draw it too
        if new_epoch:
            self.device_order = None  # a single step after this one uploads the new order
        m = cfg.batch_size
        if self.n_samples - start < k * m:
            return False
        idx = st.order[start : start + k * m].reshape(k, m)
        if not self.host_indices:
            idx = self.backend.asarray(idx)
        lr = self._lr_on_device(cfg.learning_rate_at(st.epochs_completed))
        (parameters, optimizer_state, bn_state), seconds = self.fused(
            st.parameters, st.optimizer_state, st.bn_state, self.data.X_rows, self.data.Y_rows, idx, lr
        )
        st.compile_seconds += seconds
        self._commit(parameters, optimizer_state, bn_state, k, m)  # a Ctrl-C during the call: none of the k steps
        return True

    def _commit(self, parameters: Tree, optimizer_state: Tree, bn_state: Tree, steps: int, batch_size: int) -> None:
        """Make ``steps`` finished steps of ``batch_size`` samples the state's, as one.

        Called only once the steps (and a record's measurements) are complete, so a Ctrl-C anywhere before
        leaves the state at the previous complete step.  The five fields change in one C-level
        ``dict.update``, which no Python signal handler can split (they run between bytecodes), so a Ctrl-C
        never finds half a step."""
        st = self.state
        vars(st).update(
            parameters=parameters,
            optimizer_state=optimizer_state,
            bn_state=bn_state,
            position=st.position + steps * batch_size,
            step=st.step + steps,
        )

    def _lr_on_device(self, lr: float) -> Array:
        """``lr`` as a 0-d array of the data's dtype (an argument of the compiled step, re-made when it changes)."""
        if self.lr_array is None or self.lr_array[0] != lr:
            host = np.asarray(lr, dtype=dtype_name(self.data.X_rows.dtype))
            self.lr_array = (lr, self.backend.asarray(host))
        return self.lr_array[1]

    def _next_batch_indices(self) -> Array:
        start, stop, new_epoch = next_span(self.state, self.rng, self.n_samples, self.config.batch_size)
        if self.host_indices:
            return self.state.order[start:stop]
        if new_epoch or self.device_order is None:
            self.device_order = self.backend.asarray(self.state.order)  # one small upload per epoch
        return self.device_order[start:stop]  # in-bounds slice stops (array API)

    def _measure(
        self, AL: Array, Yb: Array, before: dict[str, Array], params: dict[str, Array], bn_state: dict[str, Array]
    ) -> tuple[float, float | None, float, float]:
        """Host numbers of a record step, changing nothing: the mini-batch cost (``AL`` was computed
        with ``before``, L2 term included), the validation cost with the updated ``params`` (``None``
        without validation data), and the checked cost and accuracy (see the module)."""
        cfg, xp = self.config, self.xp
        cost = _cross_entropy(xp, AL, Yb)
        if cfg.l2_lambda:
            weights = [before[f"W{l}"] for l in range(1, self.L + 1)]
            cost = cost + _l2_penalty(xp, weights, cfg.l2_lambda, Yb.shape[1])
        check_cost, check_accuracy = self._check_data_cost(params, bn_state)
        return float(cost), None if self.val is None else check_cost, check_cost, check_accuracy

    def _check_data_cost(self, params: dict[str, Array], bn_state: dict[str, Array]) -> tuple[float, float]:
        """``(cost, accuracy)`` in inference mode on the validation set, else on the first training samples."""
        data = self.check_data
        if self.compiled_evaluation is not None:
            (cost, hits), seconds = self.compiled_evaluation(params, bn_state, data.X_rows, data.Y_rows)
            self.state.compile_seconds += seconds
            return float(cost), int(hits) / data.n_samples
        with self.blas_threads.lifted():
            return evaluate(data, params, self.config, bn_state)

    def _record(self, train_cost: float, val_cost: float | None, check_cost: float, check_accuracy: float) -> None:
        """Record the measured costs of the step just committed: costs, divergence, best check, early stopping."""
        st, cfg = self.state, self.config
        params = st.parameters
        st.costs.append((st.step, train_cost))
        if val_cost is not None:
            st.val_costs.append((st.step, val_cost))
        if not math.isfinite(train_cost) or (val_cost is not None and not math.isfinite(val_cost)):
            self._diverged(f"the cost became non-finite (train {train_cost}, validation {val_cost})")
        explosion = self._explosion(check_cost, check_accuracy)
        if explosion is not None:
            self._diverged(explosion)
        if self.strikes == 0:
            self.last_good = (st.step, params, dict(st.bn_state))
        if val_cost is not None:
            if val_cost < st.best_val_cost:
                st.best_val_cost, st.best_step = val_cost, st.step
                st.best_parameters, st.best_bn_state = params, dict(st.bn_state)
            # checks off the record_every grid (the last step of a shorter run) keep the best parameters
            # but do not count, so extending a run with a larger num_iterations stops where a longer one would
            on_grid = [(s, c) for s, c in st.val_costs if s % cfg.record_every == 0]
            if cfg.early_stopping and st.step % cfg.record_every == 0 and (
                stale_checks(on_grid, cfg.min_improvement) >= cfg.patience
            ):
                st.stopped_reason = "early_stopping"

    def _notify(self, train_cost: float, val_cost: float | None) -> None:
        """Hand the record just made to the callbacks (progress, then checkpoint); a Ctrl-C here finds it made."""
        st, cfg = self.state, self.config
        if self.callback is not None:
            self.callback(
                ProgressEvent(
                    st.step,
                    st.epochs(self.data.n_samples),
                    train_cost,
                    val_cost,
                    st.elapsed_seconds,
                    cfg.num_iterations,
                )
            )
        if self.checkpoint_callback is not None:
            self.checkpoint_callback(st)

    def _chance_explosion(self, cost: float, accuracy: float) -> bool:
        """At chance-level accuracy with a cost above :data:`CHANCE_EXPLOSION` times the initial one."""
        c0 = self.initial_cost
        return math.isfinite(c0) and accuracy <= 1.0 / self.data.n_classes + 0.05 and cost > CHANCE_EXPLOSION * c0

    def _explosion(self, cost: float, accuracy: float) -> str | None:
        """Why the checked ``cost``/``accuracy`` mean divergence (see the module), or ``None``."""
        c0, k = self.initial_cost, self.data.n_classes
        if math.isfinite(c0) and c0 > 0 and cost > EXPLOSION * c0:
            return f"the cost {cost:.4g} grew past {EXPLOSION:g}x that of the initial network ({c0:.4g})"
        self.strikes = self.strikes + 1 if self._chance_explosion(cost, accuracy) else 0
        if self.strikes >= 2:
            return (
                f"the cost {cost:.4g} is {cost / c0:.1f}x that of the initial network ({c0:.4g}) and the accuracy "
                f"{accuracy:.3f} is at chance level (1/{k}), for two checks in a row"
            )
        return None

    def _diverged(self, why: str) -> None:
        st = self.state
        st.stopped_reason = "diverged"
        result = self.result()
        kept = result.state.best_step if st.best_parameters is not None else (
            self.last_good[0] if self.last_good is not None else 0)
        error = TrainingDivergedError(
            f"training diverged at step {st.step}: {why}; try a smaller learning rate than "
            f"{self.config.learning_rate:.3g}, e.g. {self.config.learning_rate / 10:.3g}. The parameters kept "
            f"are those of step {kept}" + (" (the initial ones)" if kept == 0 else "")
        )
        error.result = result  # type: ignore[attr-defined]
        raise error

    def result(self) -> TrainingResult:
        st = self.state
        params, bn_state = st.parameters, st.bn_state
        if st.best_parameters is not None:
            params, bn_state = st.best_parameters, st.best_bn_state or {}
        elif st.stopped_reason == "diverged":  # never the diverged parameters
            if self.last_good is not None:
                params, bn_state = self.last_good[1], self.last_good[2]
            else:
                initial = new_training_state(self.config, self.data.X_rows)
                params, bn_state = initial.parameters, initial.bn_state
        return TrainingResult(
            parameters=params,
            bn_state=bn_state,
            costs=[c for _, c in st.costs],
            config=self.config,
            state=st,
            n_train=self.data.n_samples,
            compiled=self.compiled is not None,
        )


