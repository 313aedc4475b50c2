"""A scikit-learn style classifier around the functional network and :func:`~backend_mlp.training.train`.

>>> clf = MLPClassifier(hidden_layer_sizes=(20, 7, 5), device="cpu").fit(X, y)   # doctest: +SKIP
>>> clf.predict(X[:3]), clf.score(X_test, y_test)                                  # doctest: +SKIP

Unlike the functional API, the estimator takes scikit-learn's orientation:
``X`` is ``(n_samples, n_features)`` (a NumPy array, anything NumPy can read,
or an array of any supported backend) and ``y`` holds one label per sample,
of any kind NumPy can sort (integers, strings, ...); ``classes_`` maps them to
the network's outputs.  Results (``predict``, ``predict_proba``) come back as
host NumPy arrays.  No scikit-learn is needed; ``get_params``/``set_params``
follow its conventions, so ``sklearn.base.clone`` and grid searches work.

Errors: :class:`NotFittedError` before ``fit``; :class:`~backend_mlp.errors.InputValidationError`
for bad arguments or data (wrong number of features included);
:class:`~backend_mlp.errors.TrainingDivergedError` when the cost becomes non-finite.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any

import numpy as np

from . import validation as V
from .backends import Backend, resolve_backend, to_numpy, tree_to_backend
from .batchnorm import BatchNormConfig, as_batchnorm_config
from .data import Dataset, split_train_validation, to_host
from .errors import InputValidationError, NotFittedError, TrainingDivergedError
from .files import json_ready
from .network import predict_proba as _network_predict_proba
from .optimizers import OPTIMIZERS, make_optimizer
from .training import ProgressEvent, TrainingConfig, TrainingResult, TrainingState, train

Array = Any

#: samples per forward pass in predict/predict_proba (bounds device memory)
PREDICT_CHUNK = 65_536


_PARAM_NAMES = (
    "hidden_layer_sizes",
    "device",
    "dtype",
    "batchnorm",
    "l2",
    "learning_rate",
    "lr_decay",
    "batch_size",
    "max_steps",
    "early_stopping",
    "validation_fraction",
    "min_improvement",
    "patience",
    "record_every",
    "optimizer",
    "momentum",
    "beta1",
    "beta2",
    "epsilon",
    "random_state",
    "verbose",
    "compile",
)


class MLPClassifier:
    """Multilayer perceptron classifier: [LINEAR -> RELU (-> BATCHNORM)] x H -> LINEAR -> SOFTMAX.

    Parameters
    ----------
    hidden_layer_sizes : sequence of positive ints (or one int)
        Units per hidden layer; ``()`` gives softmax regression.
    device : str
        ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"torch"``, ``"array_api_strict"``, ... (see
        :func:`~backend_mlp.backends.resolve_backend`).
    dtype : ``"float32"`` or ``"float64"``
        Precision of parameters and data on the device (``X`` is converted to it).
    batchnorm : bool or BatchNormConfig
        Batch normalisation in every hidden layer.
    l2 : float >= 0
        L2 penalty ``lambda`` on the weights.
    learning_rate, batch_size, max_steps : step size, mini-batch size, maximum number of steps.
        ``batch_size`` larger than the training set is an :class:`InputValidationError`.
    lr_decay : float in (0, 1]
        The learning rate is multiplied by it after every epoch (1: constant).
    early_stopping : bool
        Hold out ``validation_fraction`` of the data (seeded shuffle) and check the
        validation cost every ``record_every`` steps and at the last one; stop after
        ``patience`` checks in a row not at least ``min_improvement`` below the best
        earlier one (``patience=1``: the report's rule); the best checked parameters are kept.
        Without it, all data is used for training for ``max_steps`` steps.
    optimizer : ``"sgd"``, ``"momentum"``, ``"nesterov"`` or ``"adam"``
        The update rule (PyTorch's definitions; :mod:`backend_mlp.optimizers`), with
        ``momentum`` (momentum, nesterov), ``beta1``, ``beta2``, ``epsilon`` (adam):
        ``None`` means the rule's default (0.9; 0.9, 0.999, 1e-8).
    random_state : int >= 0 or None
        Seeds the split, the initialisation and the shuffling (``None``: a fresh random seed).
    verbose : bool
        Print the costs at every record step.
    compile : bool
        Compile the training step (``jax.jit`` on JAX, ``torch.compile`` on PyTorch; other
        libraries run it eagerly, with a warning); see :func:`~backend_mlp.training.train`.

    Attributes (after ``fit``)
    --------------------------
    classes_, class_names_ (a name per class: ``str`` of the class, or a data set's names after
    ``load`` of a ``backend-mlp train`` model), n_features_in_, parameters_ (dict of backend arrays), bn_state_,
    loss_curve_ (mini-batch costs at record steps), val_costs_ (validation costs at the
    same steps, empty without early stopping), recorded_steps_, best_step_, n_steps_,
    n_epochs_, stopped_reason_, layer_dims_, config_ (TrainingConfig), backend_,
    training_result_ (the :class:`~backend_mlp.training.TrainingResult`, ``None`` after ``load``).
    """

    def __init__(
        self,
        hidden_layer_sizes: Any = (20, 7, 5),
        *,
        device: str = "cpu",
        dtype: str = "float64",
        batchnorm: bool | BatchNormConfig = False,
        l2: float = 0.0,
        learning_rate: float = 0.009,
        lr_decay: float = 1.0,
        batch_size: int = 256,
        max_steps: int = 100_000,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        min_improvement: float = 1e-4,
        patience: int = 1,
        record_every: int = 100,
        optimizer: str = "sgd",
        momentum: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        epsilon: float | None = None,
        random_state: int | None = 0,
        verbose: bool = False,
        compile: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.device = device
        self.dtype = dtype
        self.batchnorm = batchnorm
        self.l2 = l2
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.min_improvement = min_improvement
        self.patience = patience
        self.record_every = record_every
        self.optimizer = optimizer
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.random_state = random_state
        self.verbose = verbose
        self.compile = compile

    # ------------------------------------------------------------------ scikit-learn protocol

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments as a dict (``deep`` is accepted for scikit-learn compatibility)."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def set_params(self, **params: Any) -> MLPClassifier:
        """Set constructor arguments by name; unknown names raise :class:`InputValidationError`."""
        unknown = sorted(set(params) - set(_PARAM_NAMES))
        if unknown:
            raise InputValidationError(
                f"set_params: received unknown parameter(s) {', '.join(map(repr, unknown))}; expected names "
                f"among {', '.join(_PARAM_NAMES)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = MLPClassifier().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "parameters_")

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,); returns ``self``."""
        hidden = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        backend = resolve_backend(self.device)
        dtype = backend.check_dtype(self.dtype)  # also refuses a dtype the device lacks
        if not isinstance(self.batchnorm, (bool, np.bool_, BatchNormConfig)):
            raise InputValidationError(
                f"batchnorm: received {self.batchnorm!r}; expected True, False or a BatchNormConfig"
            )
        bn = as_batchnorm_config(
            self.batchnorm if isinstance(self.batchnorm, BatchNormConfig) else bool(self.batchnorm)
        )
        V.check_positive_number("learning_rate", self.learning_rate, "0.009")
        V.check_positive_int("max_steps", self.max_steps)
        V.check_positive_int("record_every", self.record_every)
        V.check_nonnegative_number("l2", self.l2, " (0 disables L2)")
        V.check_nonnegative_number("min_improvement", self.min_improvement)
        early = V.check_bool("early_stopping", self.early_stopping)
        V.check_bool("verbose", self.verbose)
        fraction = V.check_fraction("validation_fraction", self.validation_fraction) if early else 0.0
        seed = self._seed()

        X_host = _check_X(X, dtype)
        y_host = _check_y(y, X_host.shape[0])
        classes, y_index = _encode_labels(y_host)
        n_samples, n_features = X_host.shape

        if early:
            if n_samples < 2:
                raise InputValidationError(
                    f"X: received {n_samples} sample(s); expected at least 2 when early_stopping=True "
                    f"(validation_fraction={fraction} holds out at least one); pass more data or early_stopping=False"
                )
            # the data layer's one split, on its own stream of the seed (initialisation uses the seed itself)
            X_train, y_train, X_val, y_val = split_train_validation(X_host, y_index, fraction, seed=(seed, 2))
        else:
            X_train, y_train, X_val, y_val = X_host, y_index, None, None
        n_train = X_train.shape[0]

        batch_size = V.check_positive_int("batch_size", self.batch_size)
        if batch_size > n_train:
            held_out = f" after holding out {n_samples - n_train} for validation" if early else ""
            raise InputValidationError(
                f"batch_size: received {batch_size}; expected at most the {n_train} training samples{held_out}"
            )
        dims = (n_features, *hidden, len(classes))
        config = TrainingConfig(
            layer_dims=dims,
            learning_rate=self.learning_rate,
            lr_decay=self.lr_decay,
            num_iterations=self.max_steps,
            batch_size=batch_size,
            l2_lambda=self.l2,
            batchnorm=bn,
            seed=seed,
            record_every=self.record_every,
            early_stopping=early,
            min_improvement=self.min_improvement,
            patience=self.patience,
            optimizer=make_optimizer(
                self.optimizer, momentum=self.momentum, beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon
            ),
        )
        k = len(classes)
        train_data = Dataset.from_host(X_train, y_train, n_classes=k, device=backend, dtype=dtype)
        val_data = None
        if X_val is not None:
            val_data = Dataset.from_host(X_val, y_val, n_classes=k, device=backend, dtype=dtype)
        result = train(train_data, config, val_data, callback=_print_progress if self.verbose else None,
                       compile=self.compile)
        _check_finite_parameters(result)

        self.classes_ = classes
        self.class_names_ = [str(c) for c in classes.tolist()]
        self.n_features_in_ = int(n_features)
        self.layer_dims_ = tuple(dims)
        self.config_ = config
        self.backend_ = backend
        self.dtype_ = dtype
        self.training_result_: TrainingResult | None = result
        self._set_fitted_state(result.parameters, result.bn_state, result.state, float(result.epochs))
        return self

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.default_rng().integers(2**31))
        return V.check_seed("random_state", self.random_state)

    def _set_fitted_state(
        self, parameters: dict[str, Array], bn_state: dict[str, Array], state: Any, n_epochs: float | None
    ) -> None:
        self.parameters_ = parameters
        self.bn_state_ = bn_state
        self.loss_curve_ = [float(c) for _, c in state.costs]
        self.val_costs_ = [float(c) for _, c in state.val_costs]
        self.recorded_steps_ = [int(s) for s, _ in state.costs]
        self.best_step_ = int(state.best_step)
        self.n_steps_ = int(state.step)
        self.n_epochs_ = n_epochs
        self.stopped_reason_ = state.stopped_reason

    # ------------------------------------------------------------------ inference

    def _check_fitted(self) -> None:
        if not hasattr(self, "parameters_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) (or MLPClassifier.load) "
                "before predict, predict_proba, score or save"
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, a host array (n_samples, n_classes) in the order of ``classes_``."""
        self._check_fitted()
        X_host = _check_X(X, self.dtype_, n_features=self.n_features_in_, allow_empty=True)
        n = X_host.shape[0]
        if n == 0:
            return np.zeros((0, len(self.classes_)), dtype=self.dtype_)
        parts = []
        with self.backend_.device_context():  # CuPy: kernels run on the current GPU
            for start in range(0, n, PREDICT_CHUNK):
                chunk = self.backend_.asarray(np.ascontiguousarray(X_host[start : start + PREDICT_CHUNK].T))
                AL = _network_predict_proba(chunk, self.parameters_, self.config_.batchnorm or False, self.bn_state_)
                parts.append(to_numpy(AL).T)
        return np.ascontiguousarray(np.concatenate(parts, axis=0))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (n_samples,), elements of ``classes_``, as a host NumPy array."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy: the fraction of samples whose predicted label equals ``y``."""
        self._check_fitted()
        X_host = _check_X(X, self.dtype_, n_features=self.n_features_in_)
        y_host = _check_y(y, X_host.shape[0])
        return float(np.mean(self.predict(X_host) == y_host))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Any:
        """Write the fitted model (parameters, statistics, ``classes_``, hyperparameters) to one ``.npz`` file.

        Uses :func:`backend_mlp.checkpoint.save_model`; returns the path written.
        """
        self._check_fitted()
        from .checkpoint import save_model

        classes = self.classes_
        if classes.dtype.kind not in "biufUO":
            raise InputValidationError(
                f"classes_: received labels of dtype {classes.dtype}; expected integer, float, boolean or string "
                "labels to save a model"
            )
        params = self.get_params()
        optimizer = self.config_.optimizer  # an Optimizer instance is saved as its name and keywords
        params.update({"optimizer": optimizer.name, **{k: v for k, v in optimizer.to_json().items() if k != "name"}})
        params = {k: json_ready(v) for k, v in params.items()}
        params["batchnorm"] = _batchnorm_to_json(self.batchnorm)
        params["device"] = self.device if isinstance(self.device, str) else self.backend_.name
        params["dtype"] = self.dtype_
        extra = {
            "estimator": type(self).__name__,
            "classes": [json_ready(c) for c in classes.tolist()],
            "classes_dtype": classes.dtype.str,
            "class_names": [str(c) for c in classes.tolist()],
            "n_features_in": self.n_features_in_,
            "params": params,
            "best_step": self.best_step_,
            "n_epochs": self.n_epochs_,
        }
        state = self.training_result_.state if self.training_result_ is not None else None
        if state is None:
            state = TrainingState(parameters={}, bn_state={})
            state.step, state.best_step, state.stopped_reason = self.n_steps_, self.best_step_, self.stopped_reason_
            state.costs = list(zip(self.recorded_steps_, self.loss_curve_, strict=False))
            state.val_costs = list(zip(self.recorded_steps_, self.val_costs_, strict=False))
        return save_model(path, self.config_, self.parameters_, self.bn_state_, extra=extra, state=state)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | Backend | None = None) -> MLPClassifier:
        """Load a model file: one written by :meth:`save`, or a ``model.npz`` of ``backend-mlp train`` / ``save_model``.

        ``device`` defaults to the one an estimator was trained on, and to ``"cpu"``
        for files without estimator metadata.  Those get ``classes_`` ``0..K-1``
        (the labels of the IDX data they were trained on, as :func:`backend_mlp.predict`
        returns them), ``class_names_`` from the file's ``extra["class_names"]``
        when present, and their hyperparameters from the file's training
        configuration.  Every refusal of the file, its estimator metadata included (classes and
        their dtype, parameters, batch-norm options, number of features), is one
        :class:`~backend_mlp.errors.CheckpointError` line; without ``device``, a file whose device
        is not available here raises :class:`~backend_mlp.errors.BackendUnavailableError` (pass
        ``device="cpu"``).
        """
        from .checkpoint import load_model
        from .errors import CheckpointError

        loaded = load_model(path, "cpu")  # host arrays; placed on the target device below
        extra = loaded.extra or {}
        dims = tuple(loaded.config.layer_dims)
        if "estimator" in extra or "classes" in extra:
            if extra.get("estimator") != cls.__name__ or "classes" not in extra:
                raise CheckpointError(
                    f"{path}: received a model file of estimator {V.short_repr(extra.get('estimator'))}; expected one "
                    f"written by {cls.__name__}.save or by backend-mlp train (use backend_mlp.checkpoint.load_model "
                    "otherwise)"
                )
            params = _saved_params(path, extra.get("params"), loaded)
            classes = classes_from_metadata(path, extra, dims[-1])
            names = [str(c) for c in classes.tolist()]
            n_features = extra.get("n_features_in", dims[0])
            if type(n_features) is not int or n_features != dims[0]:
                raise CheckpointError(
                    f"{path}: the metadata's n_features_in is {V.short_repr(n_features)}; expected {dims[0]}, the "
                    "network's number of inputs"
                )
            default_device: Any = params.get("device", "cpu")
        else:  # a model of the functional API or of backend-mlp train
            params = _params_from_config(loaded.config, loaded.dtype)
            names = _check_class_names(path, extra.get("class_names"), dims[-1])
            classes = np.arange(dims[-1], dtype=np.int64)
            n_features = dims[0]
            default_device = "cpu"
        n_epochs = extra.get("n_epochs", _epochs_from_extra(loaded.state, extra))
        if n_epochs is not None and not (_is_number(n_epochs) and n_epochs >= 0):
            raise CheckpointError(
                f"{path}: the metadata's n_epochs is {V.short_repr(n_epochs)}; expected a finite number >= 0 or null"
            )
        best_step = extra.get("best_step", loaded.state.best_step)
        if type(best_step) is not int or not 0 <= best_step <= loaded.state.step:
            raise CheckpointError(
                f"{path}: the metadata's best_step is {V.short_repr(best_step)}; expected an integer from 0 to "
                f"{loaded.state.step} (the steps taken)"
            )
        known = {k: v for k, v in params.items() if k in _PARAM_NAMES}
        if isinstance(known.get("hidden_layer_sizes"), list):
            known["hidden_layer_sizes"] = tuple(known["hidden_layer_sizes"])
        est = cls(**known)
        target = device if device is not None else default_device
        if device is None:  # the file's device: a name that is no device is the file's fault
            try:
                backend = resolve_backend(target)
            except InputValidationError as exc:
                raise CheckpointError(f"{path}: the metadata's params.device is invalid ({exc})") from None
        else:
            backend = resolve_backend(target)
        est.device = target if isinstance(target, str) else backend.name
        est.classes_ = classes
        est.class_names_ = names
        est.n_features_in_ = int(n_features)
        est.layer_dims_ = dims
        est.config_ = loaded.config
        est.backend_ = backend
        est.dtype_ = loaded.dtype
        est.training_result_ = None
        est._set_fitted_state(
            tree_to_backend(loaded.parameters, backend),
            tree_to_backend(loaded.bn_state, backend),
            loaded.state,
            None if n_epochs is None else float(n_epochs),
        )
        est.best_step_ = best_step
        if len(est.classes_) != est.layer_dims_[-1]:
            raise CheckpointError(
                f"{path}: {len(est.classes_)} classes in the metadata but the network has {est.layer_dims_[-1]} outputs"
            )
        return est

# ---------------------------------------------------------------------------- helpers


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and odd objects: show them
        return False


def _print_progress(event: ProgressEvent) -> None:
    val = "" if event.val_cost is None else f"  val cost {event.val_cost:.6f}"
    print(f"step {event.step}/{event.num_iterations}  epoch {event.epoch:.2f}  cost {event.train_cost:.6f}{val}")


def _check_hidden_layer_sizes(value: Any) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InputValidationError(
            f"hidden_layer_sizes: received {value!r}; expected a sequence of positive integers such as (20, 7, 5)"
        )
    sizes = list(value)
    try:
        return tuple(V.check_layer_dims([1, *sizes, 1], "hidden_layer_sizes")[1:-1])
    except InputValidationError:
        raise InputValidationError(
            f"hidden_layer_sizes: received {sizes!r}; expected a sequence of positive integers such as (20, 7, 5)"
        ) from None


def _check_X(X: Any, dtype: str, *, n_features: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Host copy of ``X`` (n_samples, n_features): 2-D, real numbers, finite in ``dtype``."""
    X_host = to_host("X", X)
    if X_host.ndim != 2:
        hint = ""
        if X_host.ndim == 1:
            hint = " (reshape(-1, 1) for a single feature, or reshape(1, -1) for a single sample)"
        raise InputValidationError(
            f"X: received an array of shape {X_host.shape} ({X_host.ndim}-D); expected a 2-D array "
            f"(n_samples, n_features), one row per sample{hint}"
        )
    if not V.is_real_host_dtype(X_host.dtype):
        raise InputValidationError(
            f"X: received dtype {X_host.dtype}; expected real numbers (an integer or float dtype)"
        )
    if n_features is not None and X_host.shape[1] != n_features:
        hint = ""
        if X_host.shape[0] == n_features:
            hint = "; samples are rows for MLPClassifier (scikit-learn's orientation): pass X.T"
        raise InputValidationError(
            f"X: received {X_host.shape[1]} features (shape {X_host.shape}); expected {n_features} features, "
            f"as seen in fit{hint}"
        )
    if X_host.shape[0] == 0 and not allow_empty:
        raise InputValidationError(f"X: received shape {X_host.shape}; expected at least one sample")
    if X_host.shape[1] == 0:
        raise InputValidationError(f"X: received shape {X_host.shape}; expected at least one feature")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = X_host.astype(dtype, copy=False)
    if not np.all(np.isfinite(converted)):
        raise InputValidationError(
            f"X: received values that include NaN or infinity, or that overflow {dtype}; expected finite numbers"
        )
    return converted


def _check_y(y: Any, n_samples: int) -> np.ndarray:
    y_host = to_host("y", y)
    if y_host.ndim != 1:
        hint = " (pass y.ravel() for a column vector)" if y_host.ndim == 2 and y_host.shape[1:] == (1,) else ""
        raise InputValidationError(
            f"y: received an array of shape {y_host.shape}; expected a 1-D array of labels (n_samples,){hint}"
        )
    if y_host.shape[0] != n_samples:
        raise InputValidationError(
            f"X, y: received {n_samples} samples in X and {y_host.shape[0]} labels in y; expected one label per "
            "sample (row of X)"
        )
    if y_host.dtype.kind == "f" and not np.all(np.isfinite(y_host)):
        raise InputValidationError("y: received labels that include NaN or infinity; expected finite labels")
    if y_host.dtype.kind not in "biufUSO":
        raise InputValidationError(
            f"y: received dtype {y_host.dtype}; expected labels such as integers or strings"
        )
    return y_host


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        classes, index = np.unique(y, return_inverse=True)
    except TypeError as exc:
        raise InputValidationError(
            f"y: received labels that cannot be sorted ({exc}); expected labels of one kind, e.g. all "
            "integers or all strings"
        ) from None
    if len(classes) < 2:
        raise InputValidationError(
            f"y: received a single class {classes.tolist()!r}; expected at least two classes to classify"
        )
    return classes, index.reshape(-1)


def _check_finite_parameters(result: TrainingResult) -> None:
    for k, v in result.parameters.items():
        if not np.all(np.isfinite(to_numpy(v))):
            error = TrainingDivergedError(
                f"training diverged: parameter {k} is not finite after {result.steps} steps; try a smaller "
                f"learning_rate than {result.config.learning_rate} or scale the features of X"
            )
            error.result = result  # type: ignore[attr-defined]
            raise error


def _batchnorm_to_json(value: Any) -> Any:
    return dataclasses.asdict(value) if isinstance(value, BatchNormConfig) else bool(value)


def _batchnorm_from_json(value: Any) -> bool | BatchNormConfig:
    if isinstance(value, dict):
        return BatchNormConfig(**value)
    return bool(value)


# ---------------------------------------------------------------------------- loading files without estimator metadata

#: estimator parameter <- TrainingConfig field, where the names differ
_PARAM_OF_CONFIG_FIELD = {"l2_lambda": "l2", "num_iterations": "max_steps", "seed": "random_state"}


def _params_from_config(config: TrainingConfig, dtype: str) -> dict[str, Any]:
    """The estimator parameters a file's training configuration implies (only those the estimator has are used)."""
    fields = config.to_json()
    params: dict[str, Any] = {_PARAM_OF_CONFIG_FIELD.get(k, k): v for k, v in fields.items()}
    params.pop("layer_dims", None)
    params["hidden_layer_sizes"] = tuple(config.layer_dims[1:-1])
    params["batchnorm"] = config.batchnorm if config.batchnorm is not None else False
    optimizer = config.optimizer.to_json()
    params["optimizer"] = optimizer.pop("name")
    for name, value in optimizer.items():  # momentum, beta1, ...: where the estimator has them
        params.setdefault(name, value)
    params["dtype"] = dtype
    return params


def _check_class_names(path: Any, names: Any, n_outputs: int) -> list[str]:
    """``class_names_`` of a file without estimator metadata: its ``class_names``, else ``"0"..``."""
    from .errors import CheckpointError

    if names is None:
        return [str(k) for k in range(n_outputs)]
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
        or len(names) != n_outputs
    ):
        raise CheckpointError(
            f"{path}: the metadata's class_names are {names!r}; expected {n_outputs} distinct strings, one per "
            "output of the network"
        )
    return list(names)


def _is_number(value: Any) -> bool:
    if type(value) is int:
        return -(2**63) <= value < 2**63
    return type(value) is float and math.isfinite(value)


def _is_positive_int(value: Any) -> bool:
    return type(value) is int and value > 0


#: what each saved estimator parameter must be (JSON values), and how to say so
_PARAM_CHECKS: dict[str, tuple[Any, str]] = {
    "device": (lambda v: isinstance(v, str) and 0 < len(v) <= 100, "a device name such as 'cpu'"),
    "l2": (_is_number, "a finite number"),
    "learning_rate": (_is_number, "a finite number"),
    "lr_decay": (_is_number, "a finite number"),
    "min_improvement": (_is_number, "a finite number"),
    "validation_fraction": (_is_number, "a finite number"),
    "batch_size": (_is_positive_int, "a positive integer"),
    "max_steps": (_is_positive_int, "a positive integer"),
    "patience": (_is_positive_int, "a positive integer"),
    "record_every": (_is_positive_int, "a positive integer"),
    "early_stopping": (lambda v: isinstance(v, bool), "true or false"),
    "verbose": (lambda v: isinstance(v, bool), "true or false"),
    "compile": (lambda v: isinstance(v, bool), "true or false"),
    "optimizer": (lambda v: isinstance(v, str) and v in OPTIMIZERS, f"one of {', '.join(map(repr, OPTIMIZERS))}"),
    "momentum": (lambda v: v is None or _is_number(v), "null or a finite number"),
    "beta1": (lambda v: v is None or _is_number(v), "null or a finite number"),
    "beta2": (lambda v: v is None or _is_number(v), "null or a finite number"),
    "epsilon": (lambda v: v is None or _is_number(v), "null or a finite number"),
    "random_state": (lambda v: v is None or (type(v) is int and 0 <= v < 2**63), "null or an integer >= 0"),
}


def _saved_params(path: Any, raw: Any, loaded: Any) -> dict[str, Any]:
    """The estimator parameters a file of :meth:`MLPClassifier.save` records, each checked for its type and,
    where the network depends on it, against the file's training configuration.

    Names this version does not know (written by a newer one) are ignored.
    """
    from .errors import CheckpointError

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: the metadata's params are {V.short_repr(raw)}; expected an object")
    dims = tuple(loaded.config.layer_dims)
    params = {k: v for k, v in raw.items() if k in _PARAM_NAMES}

    def refuse(name: str, expected: str) -> CheckpointError:
        return CheckpointError(
            f"{path}: the metadata's params.{name} is {V.short_repr(params.get(name))}; expected {expected}"
        )

    for name, (ok, expected) in _PARAM_CHECKS.items():
        if name in params and not ok(params[name]):
            raise refuse(name, expected)
    if "hidden_layer_sizes" in params:
        try:
            hidden = _check_hidden_layer_sizes(params["hidden_layer_sizes"])
        except (InputValidationError, ArithmeticError):
            hidden = None
        if hidden != dims[1:-1]:
            raise refuse("hidden_layer_sizes", f"{list(dims[1:-1])!r}, the network's hidden layers")
        if isinstance(params["hidden_layer_sizes"], list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if "dtype" in params and params["dtype"] != loaded.dtype:
        raise refuse("dtype", f"{loaded.dtype!r}, the dtype of the file's arrays")
    if "batchnorm" in params:
        value = params["batchnorm"]
        try:
            batchnorm = _batchnorm_from_json(value) if isinstance(value, (bool, dict)) else None
        except (TypeError, InputValidationError):
            batchnorm = None
        if batchnorm is None or as_batchnorm_config(batchnorm) != loaded.config.batchnorm:
            want = loaded.config.batchnorm
            raise refuse("batchnorm", "false, the network has no batch norm" if want is None else
                         f"true or the options {dataclasses.asdict(want)!r} of the network's batch norm")
        params["batchnorm"] = batchnorm
    else:
        params["batchnorm"] = loaded.config.batchnorm or False
    return params


def classes_from_metadata(path: Any, extra: dict[str, Any], n_outputs: int) -> np.ndarray:
    """``classes_`` from a file's ``classes`` (JSON labels) and ``classes_dtype``, checked before any conversion."""
    from .errors import CheckpointError

    raw, dtype_text = extra["classes"], extra.get("classes_dtype")
    if (
        not isinstance(raw, list)
        or len(raw) != n_outputs
        or not all(type(c) in (str, int, float, bool) for c in raw)
    ):
        raise CheckpointError(
            f"{path}: the metadata's classes are {V.short_repr(raw)}; expected a list of {n_outputs} labels "
            "(strings or numbers), one per output of the network"
        )
    bad_dtype = CheckpointError(
        f"{path}: the metadata's classes_dtype is {V.short_repr(dtype_text)}; expected the NumPy dtype of the labels "
        "(integer, float, boolean, string or object)"
    )
    if dtype_text is None:
        dtype = np.asarray(raw).dtype
    else:
        if not isinstance(dtype_text, str) or len(dtype_text) > 32:
            raise bad_dtype
        try:
            dtype = np.dtype(dtype_text)
        except (TypeError, ValueError, SyntaxError):
            raise bad_dtype from None
    if dtype.kind not in "biufUO" or dtype.fields is not None or dtype.subdtype is not None:
        raise bad_dtype
    longest = max((len(c) for c in raw if isinstance(c, str)), default=0)
    if dtype.kind == "U" and dtype.itemsize > 4 * max(longest, 64) and n_outputs * dtype.itemsize > 2**24:
        raise bad_dtype  # a string dtype far wider than its labels: memory for nothing
    kinds = {"b": (bool,), "i": (int,), "u": (int,), "f": (int, float), "U": (str,), "O": (str, int, float, bool)}
    if not all(type(c) in kinds[dtype.kind] for c in raw) or (
        dtype.kind == "f" and not all(_is_number(c) for c in raw)
    ):
        raise CheckpointError(
            f"{path}: the metadata's classes {V.short_repr(raw)} are not all {dtype} labels (classes_dtype)"
        )
    try:
        classes = np.asarray(raw, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{path}: the metadata's classes are invalid for classes_dtype {dtype} ({exc})") from None
    if classes.shape != (n_outputs,) or len(set(classes.tolist())) != n_outputs:
        raise CheckpointError(
            f"{path}: the metadata's classes {V.short_repr(raw)} are not {n_outputs} distinct labels"
        )
    return classes


def _epochs_from_extra(state: TrainingState, extra: dict[str, Any]) -> float | None:
    n_train = extra.get("n_train")
    if isinstance(n_train, int) and not isinstance(n_train, bool) and n_train > 0:
        return float(state.epochs(n_train))
    return None

__all__ = ["MLPClassifier", "NotFittedError"]
