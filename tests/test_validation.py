"""Input validation at the public boundary: every failure mode gets a documented error type.

Each test asserts the exception type (a :class:`BackendMLPError` subclass, also
a ``ValueError``) and the key words of its message: the argument's name, what
was received and what was expected.

The checks of arrays run on every selected backend (conftest ``backend``), since
each library reports shapes, dtypes and values its own way.  Host-only, and
marked so by section: configurations, names, layer sizes and hyperparameters
(no arrays), the data layer's ``Dataset.from_host`` and the estimator's checks
of its inputs (both validate host NumPy data before anything is placed on a
backend).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import SELECTED_BACKENDS, foreign_backend, get_backend

import backend_mlp
from backend_mlp import (
    BackendMismatchError,
    BackendMLPError,
    InputValidationError,
    L_model_backward,
    L_model_forward,
    MLPClassifier,
    NotFittedError,
    compute_cost,
    initialize_batchnorm_state,
    initialize_parameters,
    linear_activation_backward,
    linear_activation_forward,
    linear_backward,
    linear_forward,
    predict,
    relu_backward,
    softmax,
    to_numpy,
    update_parameters,
)
from backend_mlp.data import Dataset
from backend_mlp.training import L_layer_model, TrainingConfig, train

DIMS = [4, 5, 3]


def expect(exc_type: type[Exception], call, *words: str) -> str:
    """Call ``call()``, require ``exc_type`` and every word of ``words`` in its message."""
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, BackendMLPError)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in message, f"{word!r} not in message {message!r}"
    return message


def problem(backend, m: int = 6, dtype: str = "float64", seed: int = 0, X_host: np.ndarray | None = None):
    """``X``, one-hot ``Y`` and parameters on ``backend`` (``X_host`` replaces the random X)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((DIMS[0], m)) if X_host is None else X_host
    labels = np.arange(m) % DIMS[-1]
    Y = np.eye(DIMS[-1])[:, labels]
    params = initialize_parameters(DIMS, 0, device=backend, dtype=dtype)
    return backend.asarray(X, dtype), backend.asarray(Y, dtype), params


def cast(backend, x, dtype: str):
    """``x`` (on ``backend``) converted to another dtype, on ``backend``."""
    return backend.asarray(to_numpy(x).astype(dtype))


# ----------------------------------------------------------------------------- shapes and lengths


def test_mismatched_x_y_lengths_in_training(backend):
    X, Y, _ = problem(backend, 10)
    message = expect(
        InputValidationError, lambda: L_layer_model(X, Y[:, :9], DIMS, num_iterations=1, batch_size=2), "X, Y"
    )
    assert "10" in message and "9" in message and "same m" in message


def test_mismatched_x_y_lengths_in_dataset_from_host():  # host-only: the data layer checks host arrays
    X = np.zeros((DIMS[0], 10))
    call = lambda: Dataset.from_host(X.T, np.zeros(9, int), n_classes=3)  # noqa: E731
    expect(InputValidationError, call, "labels", "(9,)", "(10,)")


def test_mismatched_shapes_in_cost_and_backward(backend):
    X, Y, params = problem(backend, 6)
    AL, caches = L_model_forward(X, params)
    expect(InputValidationError, lambda: compute_cost(AL, Y[:, :5]), "Y", "(3, 5)", "(3, 6)")
    expect(InputValidationError, lambda: L_model_backward(AL, Y[:, :5], caches), "Y", "(3, 5)", "(3, 6)")
    expect(InputValidationError, lambda: L_model_backward(AL[:, :5], Y[:, :5], caches), "AL", "(3, 5)", "(3, 6)")


def test_wrong_orientation_in_forward_suggests_transpose(backend):
    X, _, params = problem(backend, 6)
    message = expect(InputValidationError, lambda: L_model_forward(X.T, params), "X", "(6, 4)", "X.T")
    assert "samples must be columns" in message and "n_features=4" in message


def test_wrong_orientation_in_layer_model_suggests_transpose(backend):
    X, Y, _ = problem(backend, 6)
    expect(InputValidationError, lambda: L_layer_model(X.T, Y, DIMS, batch_size=2), "X", "(6, 4)", "X.T")
    expect(InputValidationError, lambda: L_layer_model(X, Y.T, DIMS, batch_size=2), "Y", "(6, 3)", "Y.T")


def test_wrong_orientation_in_linear_forward(backend):
    X, _, params = problem(backend, 6)
    expect(InputValidationError, lambda: linear_forward(X.T, params["W1"], params["b1"]), "A_prev", "A_prev.T")
    expect(InputValidationError, lambda: linear_forward(X, params["W1"], params["b1"].T), "b", "(1, 5)", "(5, 1)")


def test_wrong_ndim(backend):
    X, _, params = problem(backend, 6)
    expect(InputValidationError, lambda: L_model_forward(X[0, :], params), "X", "1-D", "2-D")
    expect(InputValidationError, lambda: softmax(backend.asarray(np.zeros(3))), "Z", "1-D", "2-D")


def test_empty_batch_in_cost(backend):
    AL = backend.asarray(np.zeros((3, 0)))
    expect(InputValidationError, lambda: compute_cost(AL, AL), "AL", "0 samples", "at least one")


def test_parameters_with_inconsistent_shapes(backend):
    X, _, params = problem(backend, 6)
    bad = {**params, "W2": backend.asarray(np.zeros((3, 4)))}
    expect(InputValidationError, lambda: L_model_forward(X, bad), "parameters['W2']", "(3, 4)", "(n_2, 5)")
    bad = {**params, "b1": backend.asarray(np.zeros((5,)))}
    expect(InputValidationError, lambda: L_model_forward(X, bad), "parameters['b1']", "(5,)", "(5, 1)")
    missing = {k: v for k, v in params.items() if k != "b2"}
    expect(InputValidationError, lambda: L_model_forward(X, missing), "parameters", "b2")


def test_gradients_must_match_parameters(backend):
    _, _, params = problem(backend)
    grads = {"dW1": backend.asarray(np.zeros((5, 3)))}
    expect(InputValidationError, lambda: update_parameters(params, grads, 0.1), "grads['dW1']", "(5, 3)", "(5, 4)")
    expect(InputValidationError, lambda: update_parameters(params, {"xW1": params["W1"]}, 0.1), "grads", "xW1")


# ----------------------------------------------------------------------------- labels / one-hot


@pytest.mark.parametrize(
    "Y",
    [
        np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]),  # two ones in a column
        np.array([[0.5, 0.0], [0.5, 1.0], [0.0, 0.0]]),  # soft labels
        np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),  # an empty column
        np.array([[2.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]),  # sums to one but not binary
    ],
    ids=["two-ones", "soft", "empty-column", "not-binary"],
)
def test_labels_not_one_hot(backend, Y):
    AL, Y = backend.asarray(np.full((3, 2), 1 / 3)), backend.asarray(Y)
    expect(InputValidationError, lambda: compute_cost(AL, Y), "Y", "not one-hot", "exactly one 1 per column")
    X, _, _ = problem(backend, 2)
    expect(InputValidationError, lambda: L_layer_model(X, Y, DIMS, batch_size=1), "Y", "one-hot")


def test_labels_not_one_hot_in_backward(backend):
    X, Y, params = problem(backend, 4)
    AL, caches = L_model_forward(X, params)
    expect(InputValidationError, lambda: L_model_backward(AL, 2 * Y, caches), "Y", "one-hot")


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (np.array([0, 1, 3]), ("labels", "[0, 3]", "0..2")),
        (np.array([0, -1, 2]), ("labels", "[-1, 2]", "0..2")),
        (np.array([0.0, 1.5, 2.0]), ("labels", "non-integer", "float64")),
        (np.array([0.0, np.nan, 2.0]), ("labels", "non-integer")),
        (np.array(["a", "b", "c"]), ("labels", "<U1", "integer class indices")),
    ],
    ids=["too-large", "negative", "fractional", "nan", "strings"],
)
def test_labels_out_of_range(labels, words):  # host-only: the data layer checks host labels
    expect(InputValidationError, lambda: Dataset.from_host(np.zeros((3, 2)), labels, n_classes=3), *words)


# ----------------------------------------------------------------------------- NaN / inf


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN through a matmul, on purpose
def test_non_finite_inputs(backend, bad):
    X_host = np.random.default_rng(0).standard_normal((DIMS[0], 6))
    X_host[2, 3] = bad
    X, Y, params = problem(backend, 6, X_host=X_host)
    # the per-step functional call reads metadata only (no pass over X): NaN comes out as NaN
    AL, _ = L_model_forward(X, params)
    assert np.isnan(to_numpy(AL)[:, 3]).all() and np.isfinite(np.delete(to_numpy(AL), 3, axis=1)).all()
    expect(InputValidationError, lambda: predict(X, params), "X", "NaN or infinity")
    expect(InputValidationError, lambda: L_layer_model(X, Y, DIMS, batch_size=2), "X", "NaN or infinity")
    # the data layer and the estimator check their host inputs before placing them
    call = lambda: Dataset.from_host(X_host.T, np.zeros(6, int), n_classes=3, device=backend)  # noqa: E731
    expect(InputValidationError, call, "images", "NaN")
    call = lambda: MLPClassifier(device=backend.name).fit(X_host.T, np.arange(6) % 3)  # noqa: E731
    expect(InputValidationError, call, "X", "NaN or infinity")


def test_values_that_overflow_the_dtype():  # host-only: the data layer checks host images
    X = np.full((4, 3), 1e300)
    expect(
        InputValidationError,
        lambda: Dataset.from_host(X, np.zeros(4, int), n_classes=2, dtype="float32"),
        "images",
        "overflow float32",
    )


# ----------------------------------------------------------------------------- layer_dims


@pytest.mark.parametrize(
    ("layer_dims", "words"),
    [
        ([4, 0, 3], ("layer_dims", "entry 1 is 0", "positive")),
        ([4, -2, 3], ("layer_dims", "entry 1 is -2", "positive")),
        ([4, 2.5, 3], ("layer_dims", "entry 1 is 2.5", "positive integers")),
        ([4, True, 3], ("layer_dims", "entry 1 is True", "positive integers")),
        ([4], ("layer_dims", "[4]", "at least two")),
        ("4,3", ("layer_dims", "'4,3'", "positive integers")),
        (7, ("layer_dims", "7", "positive integers")),
    ],
    ids=["zero", "negative", "fraction", "bool", "too-short", "string", "scalar"],
)
def test_invalid_layer_dims(layer_dims, words):  # host-only: sizes, no arrays
    expect(InputValidationError, lambda: initialize_parameters(layer_dims), *words)
    expect(InputValidationError, lambda: initialize_batchnorm_state(layer_dims), *words)
    expect(InputValidationError, lambda: TrainingConfig(layer_dims=layer_dims), *words)


def test_layer_dims_first_entry_must_equal_number_of_features(backend):
    X, Y, _ = problem(backend, 6)
    expect(
        InputValidationError,
        lambda: L_layer_model(X, Y, [5, 3, 3], batch_size=2),
        "X",
        "(4, 6)",
        "n_features=5",
        "first entry of layers_dims",
    )
    expect(InputValidationError, lambda: L_layer_model(X, Y, [4, 3, 4], batch_size=2), "Y", "n_classes=4", "last")
    data = Dataset.from_columns(X, Y)
    expect(
        InputValidationError,
        lambda: train(data, TrainingConfig(layer_dims=(5, 3, 3), batch_size=2)),
        "layer_dims",
        "first entry is 5",
        "4 features",
    )


# ----------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize("lr", [0, -0.1, math.nan, math.inf, True, "0.1", None], ids=str)
def test_non_positive_learning_rate(backend, lr):
    X, Y, params = problem(backend)
    grads = {"dW1": params["W1"]}
    call = lambda: update_parameters(params, grads, lr)  # noqa: E731
    expect(InputValidationError, call, "learning_rate", repr(lr)[:3], "positive")
    expect(InputValidationError, lambda: TrainingConfig(learning_rate=lr), "learning_rate", "positive")
    expect(InputValidationError, lambda: L_layer_model(X, Y, DIMS, learning_rate=lr, batch_size=2), "learning_rate")


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, None], ids=str)
def test_non_positive_batch_size(backend, batch_size):
    expect(InputValidationError, lambda: TrainingConfig(batch_size=batch_size), "batch_size", "positive integer")
    X, Y, _ = problem(backend)
    expect(InputValidationError, lambda: L_layer_model(X, Y, DIMS, batch_size=batch_size), "batch_size")


def test_batch_size_larger_than_data(backend):
    X, Y, _ = problem(backend, 10)
    expect(
        InputValidationError,
        lambda: L_layer_model(X, Y, DIMS, batch_size=100, num_iterations=1),
        "batch_size",
        "100",
        "at most the 10",
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_iterations": 0}, "num_iterations"),
        ({"record_every": -1}, "record_every"),
        ({"l2_lambda": -0.5}, "l2_lambda"),
        ({"l2_lambda": math.nan}, "l2_lambda"),
        ({"min_improvement": -1.0}, "min_improvement"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"early_stopping": "yes"}, "early_stopping"),
        ({"batchnorm": "yes"}, "use_batchnorm"),
    ],
    ids=lambda v: str(v),
)
def test_training_config_refuses(kwargs, name):  # host-only: a configuration, no arrays
    expect(InputValidationError, lambda: TrainingConfig(**kwargs), name, "received", "expected")


@pytest.mark.parametrize("l2", [-1.0, math.nan, math.inf, "0.1"], ids=str)
def test_invalid_l2_lambda_in_cost_and_backward(backend, l2):
    X, Y, params = problem(backend)
    AL, caches = L_model_forward(X, params)
    expect(InputValidationError, lambda: compute_cost(AL, Y, params, l2), "l2_lambda", ">= 0")
    expect(InputValidationError, lambda: L_model_backward(AL, Y, caches, l2), "l2_lambda", ">= 0")


def test_l2_needs_parameters(backend):
    X, Y, params = problem(backend)
    AL, _ = L_model_forward(X, params)
    expect(InputValidationError, lambda: compute_cost(AL, Y, None, 0.5), "parameters", "None", "l2_lambda")
    expect(InputValidationError, lambda: compute_cost(AL, Y, {}, 0.5), "parameters", "W1")
    # l2_lambda = 0 needs no parameters
    assert np.isfinite(float(compute_cost(AL, Y)))


# ----------------------------------------------------------------------------- names of things
# (the device and dtype names are host-only: parsed before any array exists)


def test_unknown_activation(backend):
    X, _, params = problem(backend)
    expect(
        InputValidationError,
        lambda: linear_activation_forward(X, params["W1"], params["b1"], "sigmoid"),
        "activation",
        "'sigmoid'",
        "'relu'",
    )
    _, cache = linear_activation_forward(X, params["W1"], params["b1"], "relu")
    expect(InputValidationError, lambda: linear_activation_backward(X, cache, "tanh"), "activation", "'tanh'")


@pytest.mark.parametrize("device", ["tpu", "gpu:x", 3, ""], ids=str)
def test_unknown_device(device):
    expect(InputValidationError, lambda: initialize_parameters(DIMS, device=device), "device", "received")
    call = lambda: Dataset.from_host(np.zeros((2, 2)), [0, 1], n_classes=2, device=device)  # noqa: E731
    expect(InputValidationError, call, "device", repr(device))
    X = np.random.default_rng(0).standard_normal((20, 3))
    expect(InputValidationError, lambda: MLPClassifier(device=device).fit(X, np.arange(20) % 2), "device")


@pytest.mark.parametrize("dtype", ["float16", "int32", "double"], ids=str)
def test_unknown_dtype(dtype):
    expect(InputValidationError, lambda: initialize_parameters(DIMS, dtype=dtype), "dtype", repr(dtype), "float32")


# ----------------------------------------------------------------------------- backends, devices, dtypes


def test_two_libraries_in_one_call(backend):
    other = foreign_backend(backend)
    mine, theirs = backend.library, other.library
    X, Y, params = problem(backend)
    other_params = backend_mlp.tree_to_backend(params, other)
    message = expect(BackendMismatchError, lambda: L_model_forward(X, other_params), "X", mine, theirs)
    assert "parameters['W1']" in message and "to_backend" in message
    AL, caches = L_model_forward(X, params)
    Y_other = other.asarray(to_numpy(Y))
    expect(BackendMismatchError, lambda: compute_cost(AL, Y_other), "AL", "Y", mine, theirs)
    expect(BackendMismatchError, lambda: L_model_backward(AL, Y_other, caches), "AL", "Y")
    expect(BackendMismatchError, lambda: L_layer_model(X, Y_other, DIMS, batch_size=2), "X", "Y")
    grads = {"dW1": other.asarray(to_numpy(params["W1"]))}
    expect(BackendMismatchError, lambda: update_parameters(params, grads, 0.1), "grads['dW1']", theirs)


@pytest.mark.skipif(
    "array_api_strict" not in SELECTED_BACKENDS,
    reason="runs in the array_api_strict session: its second device is the one available everywhere",
)
def test_two_devices_in_one_call():
    strict = get_backend("array_api_strict")
    X, _, params = problem(strict)
    X_other = strict.xp.asarray(X, device=strict.xp.Device("device1"))
    expect(BackendMismatchError, lambda: L_model_forward(X_other, params), "X", "different devices", "device1")


def test_mixed_dtypes_are_refused(backend):
    X, Y, params = problem(backend, dtype="float64")
    X32, Y32 = cast(backend, X, "float32"), cast(backend, Y, "float32")
    expect(InputValidationError, lambda: L_model_forward(X32, params), "X", "float32", "float64", "up-casting")
    AL, caches = L_model_forward(X, params)
    expect(InputValidationError, lambda: compute_cost(AL, Y32), "Y", "float32", "float64")
    expect(InputValidationError, lambda: L_model_backward(AL, Y32, caches), "Y", "float32")
    grads = {"dW1": cast(backend, params["W1"], "float32")}
    expect(InputValidationError, lambda: update_parameters(params, grads, 0.1), "grads['dW1']", "float32")
    expect(InputValidationError, lambda: L_layer_model(X32, Y, DIMS, batch_size=2), "Y", "float64", "float32")


def test_integer_inputs_are_refused_by_the_functional_api(backend):
    X, _, params = problem(backend)
    expect(InputValidationError, lambda: L_model_forward(cast(backend, X, "int64"), params), "X", "int64")
    int_params = {k: cast(backend, v, "int64") for k, v in params.items()}
    expect(InputValidationError, lambda: L_model_forward(X, int_params), "parameters['W1']", "int64", "float32")
    Z = backend.asarray(np.zeros((3, 2), dtype=np.int64))
    expect(InputValidationError, lambda: softmax(Z), "Z", "int64")


def test_non_arrays_are_refused(backend):
    X, _, params = problem(backend)
    X_list = to_numpy(X).tolist()
    expect(InputValidationError, lambda: L_model_forward(X_list, params), "X", "list", "expected an array")
    expect(InputValidationError, lambda: L_model_forward(X, [1, 2]), "parameters", "list", "dict")
    expect(InputValidationError, lambda: relu_backward([1.0], backend.asarray(np.ones(1))), "dA", "list")
    call = lambda: linear_backward(backend.asarray(np.ones((5, 6))), "cache")  # noqa: E731
    expect(InputValidationError, call, "cache", "str", "tuple")


def test_train_refuses_mismatched_val_data_and_state(backend):
    X, Y, _ = problem(backend, 8)
    data = Dataset.from_columns(X, Y)
    config = TrainingConfig(layer_dims=tuple(DIMS), batch_size=2, num_iterations=1)
    val32 = Dataset.from_columns(cast(backend, X, "float32"), cast(backend, Y, "float32"))
    expect(InputValidationError, lambda: train(data, config, val32), "val_data.X_rows", "float32", "float64")
    expect(InputValidationError, lambda: train((X, Y), config), "train_data", "tuple", "Dataset")
    from backend_mlp.training import TrainingState

    state = TrainingState(parameters=initialize_parameters([4, 6, 3], device=backend), bn_state={})
    expect(InputValidationError, lambda: train(data, config, state=state), "state.parameters", "layer_dims")


# ----------------------------------------------------------------------------- estimator
# host-only except the one fit that trains: the estimator validates its host inputs and its
# hyperparameters before anything is placed on a backend


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    return rng.standard_normal((3, 5))[y] * 4 + rng.standard_normal((30, 5)), y


def test_estimator_not_fitted(blobs):
    X, y = blobs
    clf = MLPClassifier()
    for call in (lambda: clf.predict(X), lambda: clf.predict_proba(X), lambda: clf.score(X, y)):
        with pytest.raises(NotFittedError, match="not fitted yet") as info:
            call()
        assert isinstance(info.value, (ValueError, AttributeError, BackendMLPError))


def _fitted(blobs) -> MLPClassifier:
    X, y = blobs
    return MLPClassifier((4,), batch_size=8, max_steps=20, record_every=5).fit(X, y)


def test_estimator_wrong_number_of_features(blobs):
    clf = _fitted(blobs)
    X, y = blobs
    expect(InputValidationError, lambda: clf.predict(X[:, :3]), "X", "3 features", "expected 5")
    expect(InputValidationError, lambda: clf.score(X[:, :3], y), "X", "3 features")
    expect(InputValidationError, lambda: clf.predict(X[:4].T), "X", "4 features", "X.T", "rows")


@pytest.mark.parametrize(
    ("X", "y", "words"),
    [
        (np.zeros((6, 2)), np.arange(5) % 2, ("X, y", "6 samples", "5 labels")),
        (np.zeros(6), np.arange(6) % 2, ("X", "1-D", "2-D", "reshape")),
        (np.zeros((6, 2, 1)), np.arange(6) % 2, ("X", "3-D", "2-D")),
        (np.array([["a", "b"]] * 6), np.arange(6) % 2, ("X", "<U1", "real numbers")),
        (np.zeros((6, 2)), np.zeros(6), ("y", "single class", "at least two")),
        (np.zeros((6, 2)), (np.arange(6) % 2).reshape(-1, 1), ("y", "(6, 1)", "ravel")),
        (np.zeros((6, 2)), np.array([0.0, 1.0, np.nan, 1.0, 0.0, 1.0]), ("y", "NaN")),
        (np.zeros((6, 0)), np.arange(6) % 2, ("X", "(6, 0)", "at least one feature")),
        (np.zeros((1, 2)), np.array([0]), ("y", "single class")),
    ],
    ids=["lengths", "1d", "3d", "strings", "one-class", "column-y", "nan-y", "no-features", "one-sample"],
)
def test_estimator_fit_refuses(X, y, words):
    expect(InputValidationError, lambda: MLPClassifier(max_steps=2).fit(X, y), *words)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"hidden_layer_sizes": (5, 0)}, ("hidden_layer_sizes", "[5, 0]", "positive integers")),
        ({"hidden_layer_sizes": "5"}, ("hidden_layer_sizes", "'5'",)),
        ({"learning_rate": 0.0}, ("learning_rate", "positive")),
        ({"batch_size": 0}, ("batch_size", "positive integer")),
        ({"max_steps": -1}, ("max_steps", "-1", "positive integer")),
        ({"record_every": 0}, ("record_every", "positive integer")),
        ({"l2": -1.0}, ("l2", "-1.0", ">= 0")),
        ({"validation_fraction": 1.5}, ("validation_fraction", "1.5", "between 0 and 1")),
        ({"early_stopping": "no"}, ("early_stopping", "True or False")),
        ({"random_state": -3}, ("random_state", "-3", "non-negative")),
        ({"dtype": "float16"}, ("dtype", "float16")),
        ({"batchnorm": "on"}, ("batchnorm", "'on'", "BatchNormConfig")),
    ],
    ids=lambda v: str(v),
)
def test_estimator_hyperparameters_refused_at_fit(blobs, params, words):
    X, y = blobs
    expect(InputValidationError, lambda: MLPClassifier(**{"max_steps": 2, "batch_size": 4, **params}).fit(X, y), *words)


def test_estimator_fits_two_samples_with_early_stopping(backend):
    X, y = np.array([[0.0], [1.0]]), np.array([0, 1])
    # two samples, two classes: one goes to validation, one to training
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier((2,), max_steps=2, batch_size=1, device=backend.name).fit(X, y)
    assert backend_mlp.backend_of(clf.parameters_["W1"]).name == backend.name


def test_estimator_set_params_refuses_unknown_names():
    call = lambda: MLPClassifier().set_params(alpha=0.1)  # noqa: E731
    expect(InputValidationError, call, "set_params", "'alpha'", "hidden_layer_sizes")


def test_more_bad_arguments_get_named_errors(backend):
    """Cases a first review found raising raw IndexError/TypeError/AttributeError/ValueError."""
    from backend_mlp import TrainingConfig, apply_batchnorm, batchnorm_backward, evaluate_accuracy, update_parameters

    A = backend.asarray(np.ones((3, 4)))
    col2 = backend.asarray(np.ones((2, 1)))
    expect(InputValidationError, lambda: update_parameters({}, {}, 0.1), "parameters", "empty")
    expect(InputValidationError, lambda: evaluate_accuracy((1, 2), {}, TrainingConfig()), "data", "tuple")
    expect(InputValidationError, lambda: evaluate_accuracy((1, 2), {}, None), "config", "NoneType")
    expect(InputValidationError, lambda: apply_batchnorm(A, col2, col2), "gamma", "(2, 1)", "(3, 1)")
    expect(InputValidationError, lambda: batchnorm_backward(A, "cache"), "cache", "str")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"momentum": "0.1"}, ("momentum", "'0.1'")), ({"eps": 0}, ("eps",)), ({"affine": "yes"}, ("affine",)),
     ({"position": "middle"}, ("position", "'middle'"))],
)
def test_batchnorm_config_names_the_bad_field(kwargs, words):  # host-only: a configuration holds no arrays
    from backend_mlp import BatchNormConfig

    expect(InputValidationError, lambda: BatchNormConfig(**kwargs), *words)


def test_split_refuses_a_bad_seed():  # host-only: the split runs on host arrays
    from backend_mlp import split_train_validation

    expect(InputValidationError, lambda: split_train_validation(np.zeros((10, 2)), np.zeros(10), 0.2, seed="x"),
           "seed", "'x'")
