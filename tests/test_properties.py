"""Property-based tests of the public boundary: success with sane outputs, or a documented error.

Hypothesis draws shapes (0 and mismatched included), dtypes (float32, float64,
int64) and values (moderate, huge, NaN, infinite).  Every call must either
succeed, and then keep shapes and dtype and (for finite, moderate inputs)
return finite numbers, or raise a :class:`backend_mlp.BackendMLPError`
subclass; any other exception is a bug.

Each property runs on every selected backend (conftest ``backend``): the drawn
host arrays are placed on it, results are checked to live there and are
compared through ``to_numpy``.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backend_mlp import (
    BackendMLPError,
    L_model_backward,
    L_model_forward,
    MLPClassifier,
    backend_of,
    compute_cost,
    initialize_parameters,
    to_numpy,
    update_parameters,
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    # the function-scoped ``backend`` fixture is an immutable Backend: sharing it between examples is safe
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)

DTYPES = ("float32", "float64", "int64")
MODERATE = 100.0

# value regimes: moderate numbers, huge numbers, or moderate with NaN / infinity sprinkled in
REGIMES = ("moderate", "huge", "nan", "inf")


def mostly(good: Any, *bad: Any) -> st.SearchStrategy[Any]:
    """``good`` about three times in four, else one of ``bad``: most draws reach the success path."""
    return st.sampled_from([good] * max(3, 3 * len(bad)) + list(bad))


@contextmanager
def quiet():
    """Overflow and invalid-value warnings are expected for huge or non-finite inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


@st.composite
def arrays(draw: Any, shape: tuple[int, ...], dtype: str | None = None, regime: str | None = None) -> np.ndarray:
    """An array of ``shape``; ``dtype`` and value ``regime`` drawn unless given."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    regime = regime or draw(mostly("moderate", "huge", "nan", "inf"))
    if dtype == "int64":
        bound = 10**12 if regime == "huge" else 50
        return draw(hnp.arrays(np.int64, shape, elements=st.integers(-bound, bound)))
    width = 32 if dtype == "float32" else 64
    if regime == "huge":
        bound = 2.0**100 if width == 32 else 2.0**1000  # exactly representable, near the top of the range
        elements = st.floats(-bound, bound, width=width)
    else:
        elements = st.floats(-MODERATE, MODERATE, width=width)
    arr = draw(hnp.arrays(dtype, shape, elements=elements))
    if regime in ("nan", "inf") and arr.size:
        index = draw(st.integers(0, arr.size - 1))
        arr.reshape(-1)[index] = np.nan if regime == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
    return arr


def is_clean(*arrs: np.ndarray) -> bool:
    """Every array is float, finite and moderate."""
    return all(
        a.dtype.kind == "f" and bool(np.all(np.isfinite(a))) and (a.size == 0 or float(np.max(np.abs(a))) <= MODERATE)
        for a in arrs
    )


@st.composite
def networks(draw: Any) -> tuple[list[int], dict[str, np.ndarray], bool]:
    """``(dims, parameters, consistent)``: parameters drawn directly (shapes sometimes broken)."""
    dims = draw(st.lists(st.sampled_from([1, 2, 3, 4] * 2 + [0]), min_size=2, max_size=4))
    dtype = draw(st.sampled_from(("float32", "float64") * 3 + ("int64",)))
    regime = draw(mostly("moderate", "huge", "nan"))
    params: dict[str, np.ndarray] = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = draw(arrays((dims[l], dims[l - 1]), dtype, regime))
        params[f"b{l}"] = draw(arrays((dims[l], 1), dtype, "moderate"))
    consistent = True
    corruption = draw(mostly("none", "transpose", "drop", "mixed-dtype", "flat-bias"))
    if corruption == "transpose" and dims[0] != dims[1]:
        params["W1"] = params["W1"].T
        consistent = False
    elif corruption == "drop":
        params.pop(draw(st.sampled_from(sorted(params))))
        consistent = False
    elif corruption == "mixed-dtype" and dtype != "float32":
        params["b1"] = params["b1"].astype(np.float32)
        consistent = False
    elif corruption == "flat-bias":
        params["b1"] = params["b1"].reshape(-1)
        consistent = False
    return dims, params, consistent


def one_hot(labels: np.ndarray, n_classes: int, dtype: str) -> np.ndarray:
    return np.eye(n_classes, dtype=dtype)[:, labels] if labels.size else np.zeros((n_classes, 0), dtype)


def place(backend: Any, tree: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every host array of ``tree`` on ``backend``, dtypes kept (so broken dtypes stay broken)."""
    return {k: backend.asarray(v) for k, v in tree.items()}


def assert_on(backend: Any, *arrays: Any) -> None:
    for a in arrays:
        assert backend_of(a).name == backend.name, f"result is a {type(a).__module__} array, expected {backend}"


# ----------------------------------------------------------------------------- forward


@SETTINGS
@given(net=networks(), m=st.integers(0, 5), x_rows=mostly(None, 0, 1, 2, 5), same_dtype=mostly(True, False),
       data=st.data())  # fmt: skip
def test_forward_succeeds_or_raises_documented_error(backend, net, m, x_rows, same_dtype, data):
    dims, params, consistent = net
    rows = dims[0] if x_rows is None else x_rows
    X = data.draw(arrays((rows, m), str(params["W1"].dtype) if same_dtype and "W1" in params else None))
    try:
        with quiet():
            AL, caches = L_model_forward(backend.asarray(X), place(backend, params))
    except BackendMLPError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    assert consistent and rows == dims[0] and all(d > 0 for d in dims)
    assert X.dtype == params["W1"].dtype and X.dtype.kind == "f"
    assert_on(backend, AL)
    AL = to_numpy(AL)
    assert AL.shape == (dims[-1], m) and AL.dtype == X.dtype
    assert len(caches) == len(dims) - 1
    if is_clean(X, *params.values()):
        assert np.all(np.isfinite(AL))
        if m:
            np.testing.assert_allclose(AL.sum(axis=0), 1.0, rtol=1e-4)


# ----------------------------------------------------------------------------- cost


@SETTINGS
@given(
    n_classes=mostly(3, 0, 1, 2, 4),
    m=mostly(4, 0, 1, 2, 5),
    y_shape_delta=mostly((0, 0), (1, 0), (0, -1)),
    y_kind=mostly("one-hot", "garbage"),
    y_dtype=mostly(None, *DTYPES),
    al_dtype=mostly("float64", "float32", "int64"),
    l2=mostly(0.0, 0.5, 7.0, -1.0, math.nan, math.inf, True),
    with_params=st.booleans(),
    data=st.data(),
)
def test_cost_succeeds_or_raises_documented_error(backend, n_classes, m, y_shape_delta, y_kind, y_dtype, al_dtype,
                                                  l2, with_params, data):  # fmt: skip
    AL = data.draw(arrays((n_classes, m), al_dtype))
    y_dtype = y_dtype or al_dtype
    y_rows, y_cols = n_classes + y_shape_delta[0], max(0, m + y_shape_delta[1])
    if y_kind == "one-hot" and y_rows > 0:
        labels = np.asarray(data.draw(st.lists(st.integers(0, y_rows - 1), min_size=y_cols, max_size=y_cols)), int)
        Y = one_hot(labels, y_rows, y_dtype)
    else:
        Y = data.draw(arrays((y_rows, y_cols), y_dtype))
    params = None
    if with_params:
        params = {"W1": data.draw(arrays((n_classes, 3), al_dtype)), "b1": np.zeros((n_classes, 1), al_dtype)}
    try:
        with quiet():
            cost = compute_cost(backend.asarray(AL), backend.asarray(Y), params and place(backend, params), l2)
    except BackendMLPError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    assert AL.shape == Y.shape and m > 0 and AL.dtype == Y.dtype and AL.dtype.kind == "f"
    assert_on(backend, cost)
    cost = to_numpy(cost)
    assert np.ndim(cost) == 0 and cost.dtype == AL.dtype
    assert isinstance(l2, float) and math.isfinite(l2) and l2 >= 0
    if is_clean(AL) and (not l2 or is_clean(params["W1"])):
        assert np.isfinite(cost)


# ----------------------------------------------------------------------------- backward


@SETTINGS
@given(
    net=networks(),
    m=st.integers(0, 5),
    y_kind=mostly("one-hot", "garbage", "wrong-shape"),
    l2=mostly(0.0, 0.3, 10.0, -1.0, math.nan),
    data=st.data(),
)
def test_backward_succeeds_or_raises_documented_error(backend, net, m, y_kind, l2, data):
    dims, params, _ = net
    X = data.draw(
        arrays((dims[0], m), str(params["W1"].dtype) if "W1" in params else None, data.draw(mostly("moderate", "huge")))
    )
    on_backend = place(backend, params)
    try:
        with quiet():
            AL, caches = L_model_forward(backend.asarray(X), on_backend)
    except BackendMLPError as exc:
        event(f"forward refused: {type(exc).__name__}")
        return
    AL_host = to_numpy(AL)
    n_classes = dims[-1]
    if y_kind == "one-hot":
        labels = np.asarray(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=m, max_size=m)), int)
        Y = one_hot(labels, n_classes, str(AL_host.dtype))
    elif y_kind == "garbage":
        Y = data.draw(arrays((n_classes, m), str(AL_host.dtype)))
    else:
        Y = one_hot(np.zeros(m + 1, int), n_classes, str(AL_host.dtype))
    try:
        with quiet():
            grads = L_model_backward(AL, backend.asarray(Y), caches, l2)
    except BackendMLPError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    assert m > 0 and math.isfinite(l2) and l2 >= 0
    assert set(grads) == {"d" + k for k in params}
    assert_on(backend, *grads.values())
    for k, g in grads.items():
        assert tuple(g.shape) == params[k[1:]].shape and g.dtype == on_backend[k[1:]].dtype
    if is_clean(X, *params.values()):
        assert all(np.all(np.isfinite(to_numpy(g))) for g in grads.values())


# ----------------------------------------------------------------------------- update


@SETTINGS
@given(
    net=networks(),
    lr=st.one_of(
        st.floats(1e-4, 1.0), st.floats(1e-4, 1.0), st.sampled_from([0.0, -0.1, math.nan, math.inf, True, None, "0.1"])
    ),
    grad_dtype=mostly(None, *DTYPES),
    shape_change=mostly(False, True),
    data=st.data(),
)
def test_update_succeeds_or_raises_documented_error(backend, net, lr, grad_dtype, shape_change, data):
    _, params, _ = net
    assume(params)
    grads = {}
    for k, v in params.items():
        if data.draw(st.booleans()):
            shape = (v.shape[0] + 1,) + v.shape[1:] if shape_change else v.shape
            grads["d" + k] = data.draw(arrays(shape, grad_dtype or str(v.dtype), "moderate"))
    on_backend = place(backend, params)
    try:
        with quiet():
            new = update_parameters(on_backend, place(backend, grads), lr)
    except BackendMLPError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    assert isinstance(lr, float) and math.isfinite(lr) and lr > 0
    assert set(new) == set(params)
    assert_on(backend, *new.values())
    for k, v in new.items():
        assert tuple(v.shape) == params[k].shape and v.dtype == on_backend[k].dtype
        if "d" + k not in grads:
            assert v is on_backend[k]
        elif is_clean(params[k], grads["d" + k]):
            assert np.all(np.isfinite(to_numpy(v)))


# ----------------------------------------------------------------------------- initialisation


@SETTINGS
@given(
    layer_dims=st.one_of(
        st.lists(st.integers(1, 6), min_size=2, max_size=5),
        st.lists(st.integers(1, 6), min_size=2, max_size=5),
        st.lists(st.integers(-2, 6), min_size=0, max_size=5),
        st.lists(st.one_of(st.integers(1, 4), st.floats(0, 5), st.booleans(), st.text(max_size=2)), max_size=4),
        st.text(max_size=4),
        st.integers(-3, 3),
        st.none(),
    ),
    seed=st.one_of(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(-2, -1), st.floats(0, 3), st.none()),
    dtype=mostly("float64", "float32", np.float32, "float16", "int32", ""),
    bad_device=mostly(None, "tpu", "torch:nope", ""),
    use_batchnorm=mostly(False, True, "yes"),
)
def test_initialize_parameters_succeeds_or_raises_documented_error(
    backend, layer_dims, seed, dtype, bad_device, use_batchnorm
):
    device = backend.name if bad_device is None else bad_device
    try:
        params = initialize_parameters(layer_dims, seed, device=device, dtype=dtype, use_batchnorm=use_batchnorm)
    except BackendMLPError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    dims = [int(d) for d in layer_dims]
    assert len(dims) >= 2 and all(d > 0 and d == float(e) for d, e in zip(dims, layer_dims, strict=True))
    assert isinstance(seed, int) and seed >= 0
    assert device == backend.name
    assert_on(backend, *params.values())
    name = np.dtype(dtype).name
    for l in range(1, len(dims)):
        W, b = to_numpy(params[f"W{l}"]), to_numpy(params[f"b{l}"])
        assert W.shape == (dims[l], dims[l - 1]) and b.shape == (dims[l], 1)
        assert W.dtype.name == name and np.all(np.isfinite(W)) and np.all(b == 0)
    if use_batchnorm is True and len(dims) > 2:
        assert to_numpy(params["gamma1"]).shape == (dims[1], 1)


# ----------------------------------------------------------------------------- estimator


@settings(SETTINGS, max_examples=40)
@given(
    n_samples=st.integers(0, 8),
    n_features=mostly(2, 0, 1, 3),
    y_len_delta=mostly(0, -1, 1),
    n_labels=st.integers(1, 3),
    label_kind=st.sampled_from(["int", "str", "float"]),
    early_stopping=st.booleans(),
    batch_size=st.integers(1, 4),
    max_steps=st.integers(1, 4),
    record_every=st.integers(1, 3),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_estimator_fit_succeeds_or_raises_documented_error(
    backend, n_samples, n_features, y_len_delta, n_labels, label_kind, early_stopping, batch_size, max_steps,
    record_every, dtype, data,
):  # fmt: skip
    X = data.draw(arrays((n_samples, n_features), data.draw(mostly("float64", "float32", "int64"))))
    n_y = max(0, n_samples + y_len_delta)
    labels = np.asarray(data.draw(st.lists(st.integers(0, n_labels - 1), min_size=n_y, max_size=n_y)), dtype=int)
    y = {"int": labels * 3 + 1, "str": np.array(["a", "b", "c"])[labels], "float": labels.astype(float) / 2}[label_kind]
    clf = MLPClassifier(
        (3,),
        dtype=dtype,
        batch_size=batch_size,
        max_steps=max_steps,
        record_every=record_every,
        early_stopping=early_stopping,
        learning_rate=0.01,
        device=backend.name,
    )
    try:
        with quiet():
            clf.fit(X, y)
    except BackendMLPError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    classes = np.unique(y)
    assert n_samples == len(y) and n_features > 0 and len(classes) >= 2 and np.all(np.isfinite(X))
    np.testing.assert_array_equal(clf.classes_, classes)
    assert clf.n_features_in_ == n_features and clf.n_steps_ <= max_steps
    assert clf.backend_.name == backend.name
    assert_on(backend, *clf.parameters_.values())
    with quiet():
        proba = clf.predict_proba(X)
        pred = clf.predict(X)
    assert proba.shape == (n_samples, len(classes)) and proba.dtype == np.dtype(dtype)
    assert pred.shape == (n_samples,) and set(pred.tolist()) <= set(classes.tolist())
    if is_clean(X.astype(np.float64)):
        assert np.all(np.isfinite(proba))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    with pytest.raises(BackendMLPError):
        clf.predict(np.zeros((2, n_features + 1)))
