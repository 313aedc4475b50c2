"""Mini-batch SGD with the report's early stopping, resumable step by step.

Protocol (the report's Sections 4-6): each epoch visits the training set in a
fresh order drawn on the host by a seeded NumPy generator (the last batch of
an epoch may be smaller); one mini-batch is one step.  Every ``record_every``
steps the mini-batch cost is recorded and the validation cost (cross-entropy,
inference mode) is computed; training stops when it improved by less than
``min_improvement`` since the previous check, or after ``num_iterations``
steps.  The parameters of the best validation check are returned.

The dataset sits on the device once; inside the step loop nothing is copied
between host and device and nothing synchronises, except the cost read-back
at record steps and one small index upload per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np  # host-side RNG only

from . import validation as V
from .backends import backend_of, namespace_of
from .backends.blas_threads import BlasThreadLimit, check_blas_threads
from .config import BatchNormConfig, as_batchnorm_config
from .data import Dataset
from .errors import InputValidationError, TrainingDivergedError
from .initialization import check_layer_dims, initialize_batchnorm_state, initialize_parameters
from .losses import _cross_entropy, _l2_penalty
from .network import _backward, _forward

Array = Any


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one training run (the report's defaults)."""

    layer_dims: tuple[int, ...] = (784, 20, 7, 5, 10)
    learning_rate: float = 0.009
    num_iterations: int = 100_000
    batch_size: int = 256
    l2_lambda: float = 0.0
    batchnorm: BatchNormConfig | None = None
    seed: int = 0
    record_every: int = 100
    early_stopping: bool = True
    min_improvement: float = 1e-4

    def __post_init__(self) -> None:
        # validated and normalised to plain Python values (NumPy scalars accepted), so configs
        # compare, print and serialise alike
        checked = {
            "layer_dims": tuple(check_layer_dims(self.layer_dims)),
            "batchnorm": as_batchnorm_config(self.batchnorm),
            "learning_rate": V.check_positive_number("learning_rate", self.learning_rate, "0.009"),
            "num_iterations": V.check_positive_int("num_iterations", self.num_iterations),
            "batch_size": V.check_positive_int("batch_size", self.batch_size),
            "record_every": V.check_positive_int("record_every", self.record_every),
            "l2_lambda": V.check_nonnegative_number("l2_lambda", self.l2_lambda, " (0 disables L2)"),
            "min_improvement": V.check_nonnegative_number("min_improvement", self.min_improvement),
            "seed": V.check_seed("seed", self.seed),
            "early_stopping": V.check_bool("early_stopping", self.early_stopping),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped.

    ``order``/``position``: the current epoch's host permutation and how many
    of its samples were used; ``rng_state``: the shuffling generator's state
    after drawing ``order``.  ``costs``/``val_costs``: ``(step, cost)`` pairs.
    """

    parameters: dict[str, Array]
    bn_state: dict[str, Array]
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

    def epochs(self, n_samples: int) -> float:
        """Epochs done so far, fractional (samples seen / training set size)."""
        return self.epochs_completed + self.position / n_samples


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
    """The outcome of :func:`train`.  Unpacks like the report: ``parameters, costs = result``.

    ``parameters``/``bn_state``: best validation check (or last step without
    validation data); ``costs``: mini-batch costs every ``record_every`` steps.
    """

    parameters: dict[str, Array]
    bn_state: dict[str, Array]
    costs: list[float]
    config: TrainingConfig
    state: TrainingState
    n_train: int

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.parameters, self.costs))

    @property
    def steps(self) -> int:
        return self.state.step

    @property
    def epochs(self) -> float:
        return self.state.epochs(self.n_train)

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


class TrainingInterrupted(KeyboardInterrupt):
    """Raised on Ctrl-C between steps; ``.state`` is consistent and can be checkpointed."""

    def __init__(self, state: TrainingState) -> None:
        super().__init__("training interrupted")
        self.state = state


def new_training_state(config: TrainingConfig, train_data: Dataset) -> TrainingState:
    """Fresh parameters (seeded He init) and running statistics on the data's backend."""
    backend = backend_of(train_data.X_rows)
    dtype = V.dtype_name(train_data.X_rows.dtype)
    dims = config.layer_dims
    params = initialize_parameters(
        dims, config.seed, device=backend, dtype=dtype, use_batchnorm=config.batchnorm
    )
    bn_state = initialize_batchnorm_state(dims, device=backend, dtype=dtype) if config.batchnorm else {}
    return TrainingState(parameters=params, bn_state=bn_state)


def train(
    train_data: Dataset,
    config: TrainingConfig,
    val_data: Dataset | None = None,
    *,
    state: TrainingState | None = None,
    callback: Callable[[ProgressEvent], None] | None = None,
    checkpoint_callback: Callable[[TrainingState], None] | None = None,
    blas_threads: int | str | None = "auto",
) -> TrainingResult:
    """Train (or resume from ``state``) and return a :class:`TrainingResult`.

    ``blas_threads`` (NumPy-based backends): host BLAS threads during the
    steps; ``"auto"`` caps them for small matrices (see
    :mod:`backend_mlp.blas_threads`), an integer sets them, ``None`` leaves them.

    Raises :class:`TrainingDivergedError` (``.result`` holds the best
    parameters) on a non-finite cost and :class:`TrainingInterrupted`
    (``.state``) on Ctrl-C.  ``checkpoint_callback`` is called after each record.
    """
    blas_threads = check_blas_threads(blas_threads)
    _check_data(train_data, val_data, config)
    xp = namespace_of(train_data.X_rows, train_data.Y_rows)
    if state is None:
        state = new_training_state(config, train_data)
    else:
        _check_state(state, train_data, config)
    for name, fn in (("callback", callback), ("checkpoint_callback", checkpoint_callback)):
        if fn is not None and not callable(fn):
            raise InputValidationError(f"{name}: received {type(fn).__name__}; expected a callable or None")
    loop = _Loop(xp, train_data, val_data, config, state, callback, checkpoint_callback, blas_threads)
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
    V.common_namespace(named)
    V.check_same_dtype(named, "train_data.X_rows", train_data.X_rows.dtype)
    dims = config.layer_dims
    L = len(dims) - 1
    missing = [k for l in range(1, L + 1) for k in (f"W{l}", f"b{l}") if k not in state.parameters]
    if missing or V.check_parameter_shapes(state.parameters, L) != list(dims):
        raise InputValidationError(
            f"state.parameters: received keys {sorted(state.parameters)!r} whose shapes do not match "
            f"layer_dims {list(dims)!r}; expected the state of a run with the same architecture"
        )


def shuffle_generator(seed: int) -> np.random.Generator:
    """The host generator that draws each epoch's order (one ``permutation`` per epoch).

    Separate from the initialisation stream of the same seed; code that must
    replay the training order (benchmarks, tests) takes it from here.
    """
    return np.random.default_rng((seed, 1))


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
    ) -> None:
        self.xp = xp
        self.data = train_data
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
        self.blas_threads = BlasThreadLimit(self.backend, config.layer_dims, config.batch_size, blas_threads)

    def run(self) -> None:
        st = self.state
        start = time.perf_counter() - st.elapsed_seconds
        try:
            with self.blas_threads.steps():
                self._run_steps(start)
        except KeyboardInterrupt:
            st.elapsed_seconds = time.perf_counter() - start
            raise TrainingInterrupted(st) from None
        st.elapsed_seconds = time.perf_counter() - start

    def _run_steps(self, start: float) -> None:
        st, cfg = self.state, self.config
        xp, X_rows, Y_rows = self.xp, self.data.X_rows, self.data.Y_rows
        while st.step < cfg.num_iterations and st.stopped_reason is None:
            idx = self._next_batch_indices()
            Xb = xp.take(X_rows, idx, axis=0).T
            Yb = xp.take(Y_rows, idx, axis=0).T
            before = st.parameters
            params, bn_state, AL = self._step(Xb, Yb)
            costs = None
            if (st.step + 1) % cfg.record_every == 0:
                costs = self._measure(AL, Yb, before, params, bn_state)
            # commit the step only once it (and its record's measurements) is complete, so a
            # Ctrl-C anywhere before this line leaves the state as it was before the step
            st.parameters, st.bn_state = params, bn_state
            st.position += Xb.shape[1]
            st.step += 1
            if costs is not None:
                st.elapsed_seconds = time.perf_counter() - start
                self._record(*costs)
        if st.stopped_reason is None:
            st.stopped_reason = "num_iterations"

    def _next_batch_indices(self) -> Array:
        st = self.state
        n = self.data.n_samples
        if st.order is None or st.position >= n:
            if st.order is not None:
                st.epochs_completed += 1
            st.order = self.rng.permutation(n)
            st.rng_state = self.rng.bit_generator.state
            st.position = 0
            self.device_order = None
        if self.device_order is None:
            self.device_order = self.backend.asarray(st.order)
        end = min(st.position + self.config.batch_size, n)  # in-bounds slice stops (array API)
        return self.device_order[st.position : end]

    def _step(self, Xb: Array, Yb: Array) -> tuple[dict[str, Array], dict[str, Array], Array]:
        """One SGD step into NEW parameter/state dicts (``state`` itself is left untouched).

        ``_backward`` returns the increments ``-lr * d{p}`` as fresh arrays
        owned by this step, so each becomes its new parameter in place
        (``inc += p``), with no temporary.  Parameter arrays themselves are
        never modified, so earlier dicts (the best parameters, a caller's) stay
        valid and an interrupted step leaves the state untouched.  The result
        equals ``update_parameters`` up to rounding.
        """
        cfg = self.config
        params = self.state.parameters
        bn_state = dict(self.state.bn_state)
        AL, caches = _forward(self.xp, Xb, params, self.L, cfg.batchnorm, True, bn_state)
        increments = _backward(self.xp, AL, Yb, caches, cfg.l2_lambda, scale=-cfg.learning_rate)
        new_params = {}
        for k, p in params.items():
            inc = increments.get("d" + k)
            if inc is None:
                new_params[k] = p
            else:
                inc += p
                new_params[k] = inc
        return new_params, bn_state, AL

    def _measure(
        self, AL: Array, Yb: Array, before: dict[str, Array], params: dict[str, Array], bn_state: dict[str, Array]
    ) -> tuple[float, float | None]:
        """Host costs of a record step, changing nothing: the mini-batch cost (``AL`` was computed
        with ``before``, L2 term included) and the validation cost with the updated ``params``."""
        cfg, xp = self.config, self.xp
        cost = _cross_entropy(xp, AL, Yb)
        if cfg.l2_lambda:
            weights = [before[f"W{l}"] for l in range(1, self.L + 1)]
            cost = cost + _l2_penalty(xp, weights, cfg.l2_lambda, Yb.shape[1])
        val_cost = None if self.val is None else self.validation_cost(params, bn_state)
        return float(cost), val_cost

    def _record(self, train_cost: float, val_cost: float | None) -> None:
        """Record the measured costs of the step just committed; early stopping and callbacks."""
        st, cfg = self.state, self.config
        params = st.parameters
        st.costs.append((st.step, train_cost))
        if val_cost is not None:
            st.val_costs.append((st.step, val_cost))
        if not math.isfinite(train_cost) or (val_cost is not None and not math.isfinite(val_cost)):
            self._diverged(train_cost, val_cost)
        if val_cost is not None:
            if val_cost < st.best_val_cost:
                st.best_val_cost, st.best_step = val_cost, st.step
                st.best_parameters, st.best_bn_state = params, dict(st.bn_state)
            if cfg.early_stopping and len(st.val_costs) >= 2:
                improvement = st.val_costs[-2][1] - val_cost
                if improvement < cfg.min_improvement:
                    st.stopped_reason = "early_stopping"
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

    def validation_cost(self, params: dict[str, Array], bn_state: dict[str, Array]) -> float:
        """Cross-entropy on the whole validation set in inference mode (host float)."""
        assert self.val is not None
        with self.blas_threads.lifted():
            return evaluate_cost(self.val, params, self.config, bn_state)

    def _diverged(self, train_cost: float, val_cost: float | None) -> None:
        st = self.state
        st.stopped_reason = "diverged"
        result = self.result()
        error = TrainingDivergedError(
            f"training diverged at step {st.step}: the cost became non-finite "
            f"(train {train_cost}, validation {val_cost}); try a smaller learning rate than "
            f"{self.config.learning_rate}. The best parameters seen so far "
            f"(step {st.best_step}) are kept in the error's .result"
        )
        error.result = result  # type: ignore[attr-defined]
        raise error

    def result(self) -> TrainingResult:
        st = self.state
        params, bn_state = st.parameters, st.bn_state
        if st.best_parameters is not None:
            params, bn_state = st.best_parameters, st.best_bn_state or {}
        return TrainingResult(
            parameters=params,
            bn_state=bn_state,
            costs=[c for _, c in st.costs],
            config=self.config,
            state=st,
            n_train=self.data.n_samples,
        )


def _inference_probabilities(
    data: Dataset, parameters: dict[str, Array], config: TrainingConfig, bn_state: dict[str, Array] | None
) -> tuple[Any, Array]:
    xp = namespace_of(data.X_rows, *parameters.values())
    L = len(config.layer_dims) - 1
    AL, _ = _forward(xp, data.X, parameters, L, config.batchnorm, False, bn_state or {})
    return xp, AL


def evaluate_cost(
    data: Dataset,
    parameters: dict[str, Array],
    config: TrainingConfig,
    bn_state: dict[str, Array] | None = None,
) -> float:
    """Cross-entropy of ``data`` in inference mode (host float)."""
    xp, AL = _inference_probabilities(data, parameters, config, bn_state)
    return float(_cross_entropy(xp, AL, data.Y))


def evaluate_accuracy(
    data: Dataset,
    parameters: dict[str, Array],
    config: TrainingConfig,
    bn_state: dict[str, Array] | None = None,
) -> float:
    """Fraction of ``data`` classified correctly in inference mode."""
    xp, AL = _inference_probabilities(data, parameters, config, bn_state)
    hits = xp.argmax(AL, axis=0) == xp.argmax(data.Y, axis=0)
    return float(xp.mean(xp.astype(hits, data.X_rows.dtype)))


def L_layer_model(
    X: Array,
    Y: Array,
    layers_dims: list[int],
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
    callback: Callable[[ProgressEvent], None] | None = None,
) -> TrainingResult:
    """The report's training function on ``X`` (n_x, m) and one-hot ``Y`` (n_classes, m).

    Returns a :class:`TrainingResult`; ``parameters, costs = L_layer_model(...)``
    works as in the report (costs every ``record_every`` steps).  Early stopping
    needs ``X_val``/``Y_val``; without them training runs ``num_iterations`` steps.
    """
    dims = V.check_layer_dims(layers_dims, "layers_dims")
    X_val, Y_val = _check_layer_model_arrays(X, Y, X_val, Y_val, dims)
    config = TrainingConfig(
        layer_dims=tuple(dims),
        learning_rate=learning_rate,
        num_iterations=num_iterations,
        batch_size=batch_size,
        l2_lambda=l2_lambda,
        batchnorm=as_batchnorm_config(use_batchnorm),
        seed=seed,
        record_every=record_every,
        early_stopping=early_stopping,
        min_improvement=min_improvement,
    )
    train_data = Dataset.from_columns(X, Y)
    val_data = None
    if X_val is not None:
        val_data = Dataset.from_columns(X_val, Y_val)
    return train(train_data, config, val_data, callback=callback)


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


__all__ = [
    "L_layer_model",
    "ProgressEvent",
    "TrainingConfig",
    "TrainingInterrupted",
    "TrainingResult",
    "TrainingState",
    "evaluate_accuracy",
    "evaluate_cost",
    "new_training_state",
    "train",
]
