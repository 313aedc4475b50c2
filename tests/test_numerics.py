"""Numerical robustness: extreme logits, zero probabilities, degenerate batch norm,
running statistics, inference mode and initialisation.

Every test runs on each selected backend (conftest ``backend``) and checks that
its results live there; only the validation of :class:`BatchNormConfig`, which
holds no arrays, is host-only.
"""

from __future__ import annotations

import numpy as np
import pytest

import backend_mlp
from backend_mlp import (
    BatchNormConfig,
    InputValidationError,
    L_model_backward,
    L_model_forward,
    apply_batchnorm,
    batchnorm_backward,
    compute_cost,
    initialize_batchnorm_state,
    initialize_parameters,
    predict,
    predict_proba,
    softmax,
    softmax_backward,
    to_numpy,
)
from backend_mlp.initialization import initialize_parameters_host


def smallest_normal(dtype: str) -> float:
    return float(np.finfo(dtype).smallest_normal)


def assert_on(backend, *arrays) -> None:
    """Every array was computed by ``backend`` (not silently on the host)."""
    for a in arrays:
        assert backend_mlp.backend_of(a).name == backend.name, f"{type(a).__module__} array, expected {backend}"


# ----------------------------------------------------------------------------- softmax and cost


EXTREME_LOGITS = np.array(
    [
        [1e4, -1e4, 0.0, 1e4, -1e4],
        [-1e4, 1e4, 0.0, 1e4, -1e4],
        [0.0, 0.0, 0.0, -1e4, -1e4],
    ]
)
# probabilities in exact arithmetic (exp(-1e4) underflows to 0 in both dtypes)
EXTREME_PROBS = np.array(
    [
        [1.0, 0.0, 1 / 3, 0.5, 1 / 3],
        [0.0, 1.0, 1 / 3, 0.5, 1 / 3],
        [0.0, 0.0, 1 / 3, 0.0, 1 / 3],
    ]
)


def test_softmax_of_extreme_logits_is_finite(backend, dtype, tol):
    Z = backend.asarray(EXTREME_LOGITS, dtype)
    S, cache = softmax(Z)
    S_host = to_numpy(S)
    assert_on(backend, S)
    assert S.dtype == backend.dtype(dtype)
    assert np.all(np.isfinite(S_host))
    np.testing.assert_allclose(S_host, EXTREME_PROBS, **tol)
    np.testing.assert_allclose(S_host.sum(axis=0), 1.0, **tol)
    dZ = softmax_backward(backend.asarray(np.ones((3, 5)), dtype), cache)
    assert_on(backend, dZ)
    assert np.all(np.isfinite(to_numpy(dZ)))


def test_cost_of_extreme_logits_is_finite(backend, dtype, tol):
    labels = [2, 1, 0, 2, 0]  # columns 0 and 3 put probability exactly 0 on the true class
    Y = backend.asarray(np.eye(3)[:, labels], dtype)
    AL, _ = softmax(backend.asarray(EXTREME_LOGITS, dtype))
    cost = float(compute_cost(AL, Y))
    assert np.isfinite(cost)
    expected = (-2 * np.log(smallest_normal(dtype)) - 0.0 - np.log(1 / 3) - np.log(1 / 3)) / 5
    assert cost == pytest.approx(expected, rel=tol["rtol"])


@pytest.mark.parametrize("scale", [1e4, -1e4], ids=["plus1e4", "minus1e4"])
def test_network_with_huge_logits_stays_finite(backend, dtype, scale):
    # last-layer weights that produce logits of size ~1e4
    params = initialize_parameters([4, 3, 3], 0, device=backend, dtype=dtype)
    params["W2"] = backend.asarray(scale * np.eye(3), dtype)
    X = backend.asarray(np.abs(np.random.default_rng(0).standard_normal((4, 6))) + 0.5, dtype)
    Y = backend.asarray(np.eye(3)[:, [0, 1, 2, 0, 1, 2]], dtype)
    AL, caches = L_model_forward(X, params)
    cost = compute_cost(AL, Y, params, 0.7)
    grads = L_model_backward(AL, Y, caches, l2_lambda=0.7)
    assert_on(backend, AL, cost, *grads.values())
    assert np.all(np.isfinite(to_numpy(AL))) and np.isfinite(float(cost))
    assert all(np.all(np.isfinite(to_numpy(g))) for g in grads.values())
    # the logits really are extreme
    assert np.max(np.abs(to_numpy(caches[-1].activation))) > 1e3


def test_cost_with_exact_zero_probabilities_is_finite(backend, dtype, tol):
    AL = backend.asarray(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), dtype)
    Y = backend.asarray(np.eye(3), dtype)  # true class of columns 0 and 1 has probability 0
    cost = float(compute_cost(AL, Y))
    assert np.isfinite(cost)
    assert cost == pytest.approx(-2 * np.log(smallest_normal(dtype)) / 3, rel=tol["rtol"])
    # zeros where Y is 0 contribute nothing (no 0 * log(0) = nan)
    perfect = float(compute_cost(Y, Y))
    assert perfect == 0.0


def test_cost_with_all_zero_probabilities_and_l2(backend, dtype):
    params = initialize_parameters([3, 3], 0, device=backend, dtype=dtype)
    AL = backend.asarray(np.zeros((3, 4)), dtype)
    Y = backend.asarray(np.eye(3)[:, [0, 1, 2, 0]], dtype)
    cost = compute_cost(AL, Y, params, 0.7)
    assert np.isfinite(float(cost)) and not np.isinf(float(cost))


def test_softmax_columns_sum_to_one(backend, dtype, tol):
    Z = 10.0 * np.random.default_rng(3).standard_normal((10, 64))
    S, _ = softmax(backend.asarray(Z, dtype))
    S_host = to_numpy(S).astype(np.float64)
    assert np.all((S_host >= 0) & (S_host <= 1))
    np.testing.assert_allclose(S_host.sum(axis=0), 1.0, rtol=0, atol=10 * tol["atol"])
    expected = np.exp(Z - Z.max(axis=0)) / np.exp(Z - Z.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(S_host, expected, rtol=tol["rtol"], atol=tol["atol"])


def test_softmax_is_shift_invariant(backend, dtype, tol):
    Z = np.random.default_rng(4).standard_normal((4, 7))
    S1, _ = softmax(backend.asarray(Z, dtype))
    S2, _ = softmax(backend.asarray(Z + 1000.0, dtype))
    np.testing.assert_allclose(to_numpy(S1), to_numpy(S2), rtol=1e3 * tol["rtol"], atol=tol["atol"])


# ----------------------------------------------------------------------------- degenerate batch norm


@pytest.mark.parametrize("constant", [4.25, 4.2], ids=["exact-4.25", "inexact-4.2"])
def test_batchnorm_constant_feature_is_finite(backend, dtype, constant):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((3, 6))
    A[1] = constant  # a constant feature: zero batch variance
    gamma, beta = 1.0 + rng.random((3, 1)), rng.standard_normal((3, 1))
    dev = backend.asarray
    out, cache = apply_batchnorm(dev(A, dtype), dev(gamma, dtype), dev(beta, dtype))
    assert_on(backend, out)
    out_host = to_numpy(out).astype(np.float64)
    beta_host = to_numpy(dev(beta, dtype)).astype(np.float64)
    assert np.all(np.isfinite(out_host))
    # xhat = 0: exactly when the mean is exact (4.25), else up to rounding of the mean times 1/sqrt(eps)
    atol = 0.0 if constant == 4.25 else 10 * np.finfo(dtype).eps * constant / np.sqrt(1e-5) * gamma[1, 0]
    np.testing.assert_allclose(out_host[1], np.full(6, beta_host[1, 0]), rtol=0, atol=atol)
    dout = rng.standard_normal((3, 6))
    dA, dgamma, dbeta = batchnorm_backward(dev(dout, dtype), cache)
    assert_on(backend, dA, dgamma, dbeta)
    for g in (dA, dgamma, dbeta):
        assert np.all(np.isfinite(to_numpy(g)))
    if constant == 4.25:
        assert to_numpy(dgamma)[1, 0] == 0.0  # xhat of the constant feature is exactly 0
        # with var = 0 the backward is gamma / sqrt(eps) * (dout - mean(dout)): large but finite
        expected = gamma[1, 0] / np.sqrt(1e-5) * (dout[1] - dout[1].mean())
        np.testing.assert_allclose(to_numpy(dA)[1], expected, rtol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_batchnorm_batch_of_one_is_finite(backend, dtype, affine):
    rng = np.random.default_rng(6)
    dev = backend.asarray
    gamma = dev(1.0 + rng.random((4, 1)), dtype) if affine else None
    beta = dev(rng.standard_normal((4, 1)), dtype) if affine else None
    out, cache = apply_batchnorm(dev(rng.standard_normal((4, 1)), dtype), gamma, beta)
    expected = to_numpy(beta) if affine else np.zeros((4, 1))
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-6)
    dA, dgamma, dbeta = batchnorm_backward(dev(rng.standard_normal((4, 1)), dtype), cache)
    # with one sample the output does not depend on the input at all
    np.testing.assert_allclose(to_numpy(dA), 0.0, atol=1e-6)
    if affine:
        assert np.all(np.isfinite(to_numpy(dgamma))) and np.all(np.isfinite(to_numpy(dbeta)))


@pytest.mark.parametrize("position", ["after", "before"])
def test_network_batch_of_one_with_batchnorm(backend, dtype, position):
    dims = [5, 4, 3, 2]
    bn = BatchNormConfig(position=position)
    params = initialize_parameters(dims, 1, device=backend, dtype=dtype, use_batchnorm=bn)
    state = initialize_batchnorm_state(dims, device=backend, dtype=dtype)
    X = backend.asarray(np.random.default_rng(7).standard_normal((5, 1)), dtype)
    Y = backend.asarray(np.array([[1.0], [0.0]]), dtype)
    AL, caches = L_model_forward(X, params, bn, bn_state=state)
    grads = L_model_backward(AL, Y, caches, l2_lambda=0.7)
    assert_on(backend, AL, *grads.values(), *state.values())
    assert np.all(np.isfinite(to_numpy(AL))) and np.isfinite(float(compute_cost(AL, Y, params, 0.7)))
    for k, g in grads.items():
        assert np.all(np.isfinite(to_numpy(g))), k
    for k, s in state.items():
        assert np.all(np.isfinite(to_numpy(s))), k
    # m = 1: the batch variance 0 is used as is (no division by m - 1 = 0)
    np.testing.assert_allclose(to_numpy(state["running_var1"]), 0.9, rtol=1e-6)


# ----------------------------------------------------------------------------- running statistics


def hand_training_forward(X, params, bn, state):
    """NumPy transcription of one training forward; returns (AL, updated running statistics)."""
    L = sum(1 for k in params if k.startswith("W"))
    state = dict(state)
    A = X
    for l in range(1, L):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        V = np.maximum(Z, 0) if bn.position == "after" else Z
        m = V.shape[1]
        mean = V.mean(axis=1, keepdims=True)
        var = V.var(axis=1, keepdims=True)
        state[f"running_mean{l}"] = (1 - bn.momentum) * state[f"running_mean{l}"] + bn.momentum * mean
        state[f"running_var{l}"] = (1 - bn.momentum) * state[f"running_var{l}"] + bn.momentum * var * m / (m - 1)
        N = (V - mean) / np.sqrt(var + bn.eps)
        if bn.affine:
            N = params[f"gamma{l}"] * N + params[f"beta{l}"]
        A = N if bn.position == "after" else np.maximum(N, 0)
    ZL = params[f"W{L}"] @ A + params[f"b{L}"]
    E = np.exp(ZL - ZL.max(axis=0))
    return E / E.sum(axis=0), state


def hand_inference_forward(X, params, bn, state):
    L = sum(1 for k in params if k.startswith("W"))
    A = X
    for l in range(1, L):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        V = np.maximum(Z, 0) if bn.position == "after" else Z
        N = (V - state[f"running_mean{l}"]) / np.sqrt(state[f"running_var{l}"] + bn.eps)
        if bn.affine:
            N = params[f"gamma{l}"] * N + params[f"beta{l}"]
        A = N if bn.position == "after" else np.maximum(N, 0)
    ZL = params[f"W{L}"] @ A + params[f"b{L}"]
    E = np.exp(ZL - ZL.max(axis=0))
    return E / E.sum(axis=0)


BN_CONFIGS = {
    "after-mom0.1": BatchNormConfig(),
    "before-mom0.3": BatchNormConfig(position="before", momentum=0.3),
    "after-noaffine-mom0.5": BatchNormConfig(affine=False, momentum=0.5),
}
DIMS = [6, 5, 4, 3]


def _random_affine(params, backend, dtype, seed=8):
    """Parameters with non-trivial gamma/beta/b (host copies and backend arrays)."""
    rng = np.random.default_rng(seed)
    host = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    for k in host:
        if not k.startswith("W"):
            host[k] = host[k] + 0.3 * rng.standard_normal(host[k].shape)
    dev = {k: backend.asarray(v, dtype) for k, v in host.items()}
    return {k: to_numpy(v).astype(np.float64) for k, v in dev.items()}, dev


@pytest.mark.parametrize("bn", list(BN_CONFIGS.values()), ids=list(BN_CONFIGS))
def test_running_statistics_match_hand_computation(backend, dtype, bn):
    params = initialize_parameters(DIMS, 2, device=backend, dtype=dtype, use_batchnorm=bn)
    host_params, params = _random_affine(params, backend, dtype)
    state = initialize_batchnorm_state(DIMS, device=backend, dtype=dtype)
    host_state = backend_mlp.tree_to_numpy(state)
    np.testing.assert_array_equal(host_state["running_mean1"], 0.0)
    np.testing.assert_array_equal(host_state["running_var1"], 1.0)
    rng = np.random.default_rng(9)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for m in (7, 4, 10):  # three batches of different sizes
        X = rng.standard_normal((DIMS[0], m))
        AL, _ = L_model_forward(backend.asarray(X, dtype), params, bn, bn_state=state)
        AL_hand, host_state = hand_training_forward(
            to_numpy(backend.asarray(X, dtype)).astype(np.float64), host_params, bn, host_state
        )
        np.testing.assert_allclose(to_numpy(AL), AL_hand, rtol=rtol, atol=rtol)
        assert set(state) == set(host_state)
        assert_on(backend, AL, *state.values())
        for k in host_state:
            assert state[k].dtype == backend.dtype(dtype)
            np.testing.assert_allclose(to_numpy(state[k]), host_state[k], rtol=rtol, atol=rtol, err_msg=k)
    # the statistics really moved away from their initial values
    assert np.max(np.abs(host_state["running_mean2"])) > 1e-2
    assert np.max(np.abs(host_state["running_var2"] - 1.0)) > 1e-2


@pytest.mark.parametrize("bn", list(BN_CONFIGS.values()), ids=list(BN_CONFIGS))
def test_inference_uses_running_statistics(backend, dtype, bn):
    params = initialize_parameters(DIMS, 3, device=backend, dtype=dtype, use_batchnorm=bn)
    host_params, params = _random_affine(params, backend, dtype, seed=10)
    state = initialize_batchnorm_state(DIMS, device=backend, dtype=dtype)
    rng = np.random.default_rng(11)
    for _ in range(3):
        L_model_forward(backend.asarray(rng.standard_normal((DIMS[0], 8)), dtype), params, bn, bn_state=state)
    frozen = backend_mlp.tree_to_numpy(state)

    X = backend.asarray(rng.standard_normal((DIMS[0], 9)), dtype)
    AL_train, _ = L_model_forward(X, params, bn)  # batch statistics, no state
    AL_infer, _ = L_model_forward(X, params, bn, training=False, bn_state=state)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    expected = hand_inference_forward(to_numpy(X).astype(np.float64), host_params, bn, frozen)
    np.testing.assert_allclose(to_numpy(AL_infer), expected, rtol=rtol, atol=rtol)
    assert np.max(np.abs(to_numpy(AL_infer) - to_numpy(AL_train))) > 1e-3
    # inference leaves the running statistics alone
    for k, v in backend_mlp.tree_to_numpy(state).items():
        np.testing.assert_array_equal(v, frozen[k], err_msg=k)
    assert_on(backend, AL_infer, predict(X, params, bn, state), *state.values())
    # predict_proba / predict are the inference forward
    np.testing.assert_array_equal(to_numpy(predict_proba(X, params, bn, state)), to_numpy(AL_infer))
    np.testing.assert_array_equal(to_numpy(predict(X, params, bn, state)), np.argmax(to_numpy(AL_infer), axis=0))
    # inference of a single sample equals the corresponding column of the batch
    one, _ = L_model_forward(X[:, 2:3], params, bn, training=False, bn_state=state)
    np.testing.assert_allclose(to_numpy(one)[:, 0], to_numpy(AL_infer)[:, 2], rtol=rtol, atol=rtol)


def test_predict_without_bn_state_is_refused(backend):
    params = initialize_parameters([4, 3, 2], 0, device=backend, use_batchnorm=True)
    X = backend.asarray(np.ones((4, 3)))
    with pytest.raises(InputValidationError, match="bn_state"):
        predict(X, params, True)
    with pytest.raises(InputValidationError, match="bn_state"):
        predict_proba(X, params, BatchNormConfig(position="before"), None)
    with pytest.raises(InputValidationError, match="running_var1"):
        partial_state = {"running_mean1": backend.asarray(np.zeros((3, 1)))}
        L_model_forward(X, params, True, training=False, bn_state=partial_state)
    # without batch norm no state is needed
    assert to_numpy(predict(X, initialize_parameters([4, 3, 2], 0, device=backend))).shape == (3,)


# ----------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize(
    ("use_batchnorm", "expect_affine"),
    [(False, False), (True, True), (BatchNormConfig(affine=False), False), (BatchNormConfig(), True)],
    ids=["plain", "bn-default", "bn-noaffine", "bn-config"],
)
def test_batchnorm_parameters_present_only_with_affine(backend, use_batchnorm, expect_affine):
    dims = [5, 4, 3, 2]
    params = initialize_parameters(dims, 0, device=backend, use_batchnorm=use_batchnorm)
    affine_keys = {f"{p}{l}" for p in ("gamma", "beta") for l in (1, 2)}
    assert {k for k in params if k.startswith(("gamma", "beta"))} == (affine_keys if expect_affine else set())
    assert {f"{p}{l}" for p in ("W", "b") for l in (1, 2, 3)} <= set(params)
    if expect_affine:
        for l, n in ((1, 4), (2, 3)):
            np.testing.assert_array_equal(to_numpy(params[f"gamma{l}"]), np.ones((n, 1)))
            np.testing.assert_array_equal(to_numpy(params[f"beta{l}"]), np.zeros((n, 1)))
    if use_batchnorm is not False:
        X = backend.asarray(np.random.default_rng(0).standard_normal((5, 6)))
        Y = backend.asarray(np.eye(2)[:, [0, 1, 0, 1, 0, 1]])
        AL, caches = L_model_forward(X, params, use_batchnorm)
        grads = L_model_backward(AL, Y, caches)
        expected = {"d" + k for k in affine_keys} if expect_affine else set()
        assert {k for k in grads if k.startswith(("dgamma", "dbeta"))} == expected


def test_he_initialisation_statistics(backend):
    dims = [2000, 400, 10]
    params = backend_mlp.tree_to_numpy(initialize_parameters(dims, 123, device=backend))
    for l in (1, 2):
        W = params[f"W{l}"]
        assert W.shape == (dims[l], dims[l - 1])
        target = np.sqrt(2.0 / dims[l - 1])
        assert W.std() == pytest.approx(target, rel=0.05)
        assert abs(W.mean()) < 0.05 * target
        np.testing.assert_array_equal(params[f"b{l}"], np.zeros((dims[l], 1)))
    other = backend_mlp.tree_to_numpy(initialize_parameters(dims, 124, device=backend))
    assert not np.array_equal(other["W1"], params["W1"])


def test_initialisation_identical_on_every_backend(backend, dtype):
    dims = [7, 5, 4, 3]
    host = initialize_parameters_host(dims, 42, use_batchnorm=True)
    params = initialize_parameters(dims, 42, device=backend, dtype=dtype, use_batchnorm=True)
    reference = initialize_parameters(dims, 42, device="numpy", dtype=dtype, use_batchnorm=True)
    assert list(params) == list(host)
    assert_on(backend, *params.values())
    for k, v in params.items():
        assert v.dtype == backend.dtype(dtype)
        np.testing.assert_array_equal(to_numpy(v), host[k].astype(dtype), err_msg=k)
        np.testing.assert_array_equal(to_numpy(v), to_numpy(reference[k]), err_msg=k)


@pytest.mark.parametrize(
    "kwargs",
    [{"position": "middle"}, {"momentum": 1.5}, {"momentum": -0.1}, {"eps": 0.0}],
    ids=["position", "momentum-high", "momentum-low", "eps"],
)
def test_batchnorm_config_validation(kwargs):  # host-only: a configuration, no arrays
    with pytest.raises(InputValidationError, match=next(iter(kwargs))):
        BatchNormConfig(**kwargs)


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_takes_labels_one_hot_or_host_labels(backend):
    import backend_mlp as bm

    labels = np.array([0, 2, 1, 1, 0, 2])
    predictions = backend.asarray(np.array([0, 2, 2, 1, 1, 2]))  # 4 of 6 right
    one_hot = backend.asarray(np.eye(3)[labels].T.copy())
    for Y in (backend.asarray(labels), one_hot, labels, labels.astype(np.float64)):
        assert bm.accuracy(predictions, Y) == pytest.approx(4 / 6)
    with pytest.raises(bm.InputValidationError, match="non-integer"):
        bm.accuracy(predictions, backend.asarray(labels + 0.5))
    with pytest.raises(bm.InputValidationError, match="one prediction per sample"):
        bm.accuracy(predictions, backend.asarray(labels[:4]))
    with pytest.raises(bm.InputValidationError, match="one-hot"):
        bm.accuracy(predictions, backend.asarray(2 * np.eye(3)[labels].T))
