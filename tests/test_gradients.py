"""Analytic gradients against finite differences, in float64, on every backend.

Finite differences use the fourth-order central stencil
``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / (12 h)`` with ``h = 1e-4``:
its truncation error (~h^4) and round-off error (~1e-16 / h) are both around
1e-11 here, whereas the plain two-point stencil with ``h = 1e-6`` has ~1e-9
round-off and would force a much larger floor in the relative error.  Every
entry of every parameter is perturbed (the nets are tiny); the perturbed
host copy is moved to the backend for each evaluation, so the cost is
evaluated by the backend under test.

Each entry must satisfy ``|a - n| / max(|a| + |n|, FLOOR) < 1e-7``; the floor
turns the check into ``|a - n| < 1e-10`` for gradients that are (nearly) zero,
e.g. the bias before a batch norm, whose exact gradient is 0.

ReLU kinks: data and parameters are drawn from a seeded generator; a problem
is used only if every ReLU input is at least ``KINK_MARGIN`` away from 0, and
every perturbed evaluation asserts that no ReLU changed side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import backend_mlp
from backend_mlp import (
    BatchNormConfig,
    L_model_backward,
    L_model_forward,
    apply_batchnorm,
    batchnorm_backward,
    compute_cost,
    linear_activation_backward,
    linear_activation_forward,
    linear_backward,
    linear_forward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
    to_numpy,
)

STEP = 1e-4
FLOOR = 1e-3
MAX_RELATIVE_ERROR = 1e-7
KINK_MARGIN = 5e-3

ARCHITECTURES = {
    "6-5-3_m7": ([6, 5, 3], 7),
    "5-4-4-3_m8": ([5, 4, 4, 3], 8),
    "7-6-5-4-3_m5": ([7, 6, 5, 4, 3], 5),
    "5-1-4-3_m9": ([5, 1, 4, 3], 9),  # a hidden layer of width 1
}

BATCHNORM_MODES = {
    "plain": None,
    "bn-after": BatchNormConfig(),  # the default: after the ReLU
    "bn-before": BatchNormConfig(position="before"),
    "bn-after-noaffine": BatchNormConfig(affine=False),
    "bn-before-noaffine": BatchNormConfig(position="before", affine=False),
}


# ----------------------------------------------------------------------------- helpers


def derivative(f: Callable[[float], float], h: float = STEP) -> float:
    """Fourth-order central difference of a scalar function at 0."""
    return (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Gradient of ``f`` at host array ``x``, entry by entry (``x`` is left unchanged)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):

        def shifted(s: float, idx: tuple[int, ...] = idx) -> float:
            y = x.copy()
            y[idx] += s
            return f(y)

        grad[idx] = derivative(shifted)
    return grad


def entrywise_relative_error(analytic: Any, numeric: np.ndarray) -> float:
    a = np.asarray(to_numpy(analytic), dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    assert a.shape == n.shape, f"gradient shape {a.shape}, expected {n.shape}"
    assert np.all(np.isfinite(a)), "analytic gradient is not finite"
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), FLOOR), initial=0.0))


def assert_gradient(error_log, check, backend, analytic, numeric, what) -> None:
    assert backend_mlp.backend_of(analytic).name == backend.name, f"{what} was not computed on {backend}"
    err = error_log.record(check, backend, "float64", entrywise_relative_error(analytic, numeric))
    assert err < MAX_RELATIVE_ERROR, (
        f"{what} on {backend}: max relative error {err:.3e} >= {MAX_RELATIVE_ERROR:.0e}\n"
        f"analytic:\n{to_numpy(analytic)}\nnumeric:\n{numeric}"
    )


@dataclass
class Problem:
    X: np.ndarray
    Y: np.ndarray
    params: dict[str, np.ndarray]
    bn: BatchNormConfig | None


def relu_inputs(caches) -> list[np.ndarray]:
    """The arrays the hidden layers' ReLUs were applied to."""
    return [to_numpy(c.activation) for c in caches[:-1]]


def make_problem(dims: list[int], m: int, bn: BatchNormConfig | None, seed: int) -> Problem:
    """Random data and (non-trivial) parameters whose ReLU inputs keep away from the kink.

    Built and screened on the host (NumPy), so every backend gets the identical problem; the
    tests then place it on the backend under test.
    """
    for attempt in range(50):
        rng = np.random.default_rng([seed, attempt])
        params = backend_mlp.initialize_parameters(dims, seed + attempt, device="numpy", use_batchnorm=bn or False)
        params = {k: np.array(v) for k, v in params.items()}
        for k, v in params.items():
            if k.startswith("b") and k[1:].isdigit():
                params[k] = 0.1 * rng.standard_normal(v.shape)
            elif k.startswith("gamma"):
                params[k] = 1.0 + 0.3 * rng.standard_normal(v.shape)
            elif k.startswith("beta"):
                params[k] = 0.2 * rng.standard_normal(v.shape)
        X = rng.standard_normal((dims[0], m))
        Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)]
        _, caches = L_model_forward(X, params, bn or False)
        inputs = relu_inputs(caches)
        alive = all(np.any(z > 0, axis=1).all() for z in inputs)  # no unit dead on the whole batch
        if alive and min(float(np.min(np.abs(z))) for z in inputs) > KINK_MARGIN:
            return Problem(X, Y, params, bn)
    raise RuntimeError(f"no kink-free problem found for {dims}, m={m}")


def relu_pattern(caches) -> list[np.ndarray]:
    return [z > 0 for z in relu_inputs(caches)]


# ----------------------------------------------------------------------------- full network


# every architecture with every batch-norm mode; L2 on for half of them in a checkerboard
# pattern, so each architecture and each mode is checked both with and without L2
GRADIENT_CASES = [
    pytest.param(dims, m, bn, l2, id=f"{arch}-{mode}-{'l2' if l2 else 'nol2'}")
    for i, (arch, (dims, m)) in enumerate(ARCHITECTURES.items())
    for j, (mode, bn) in enumerate(BATCHNORM_MODES.items())
    for l2 in [0.7 if (i + j) % 2 == 0 else 0.0]
]


@pytest.mark.parametrize(("dims", "m", "bn", "l2"), GRADIENT_CASES)
def test_L_model_backward_matches_finite_differences(backend, error_log, dims, m, bn, l2):
    problem = make_problem(dims, m, bn, seed=len(dims) * 100 + m)
    X, Y = backend.asarray(problem.X), backend.asarray(problem.Y)
    base = {k: backend.asarray(v) for k, v in problem.params.items()}
    use_bn = bn or False

    AL, caches = L_model_forward(X, base, use_bn)
    grads = L_model_backward(AL, Y, caches, l2_lambda=l2)
    pattern = relu_pattern(caches)

    expected_keys = {"d" + k for k in problem.params}
    assert set(grads) == expected_keys
    if bn is not None and bn.affine:
        assert any(k.startswith("dgamma") for k in grads) and any(k.startswith("dbeta") for k in grads)

    def cost_with(key: str) -> Callable[[np.ndarray], float]:
        def cost(value: np.ndarray) -> float:
            params = dict(base)
            params[key] = backend.asarray(value)
            AL_, caches_ = L_model_forward(X, params, use_bn)
            for before, after in zip(pattern, relu_pattern(caches_), strict=True):
                assert np.array_equal(before, after), f"perturbing {key} crossed a ReLU kink"
            return float(compute_cost(AL_, Y, params, l2))

        return cost

    for key, value in problem.params.items():
        numeric = numerical_gradient(cost_with(key), value)
        kind = key.rstrip("0123456789")
        assert_gradient(error_log, f"grad network d{kind}", backend, grads["d" + key], numeric, f"d{key}")


def test_cost_matches_hand_formula_with_l2(backend):
    problem = make_problem([4, 3, 2], 5, None, seed=3)
    params = {k: backend.asarray(v) for k, v in problem.params.items()}
    AL, _ = L_model_forward(backend.asarray(problem.X), params)
    cost_array = compute_cost(AL, backend.asarray(problem.Y), params, 0.7)
    assert backend_mlp.backend_of(cost_array).name == backend.name and cost_array.ndim == 0
    cost = float(cost_array)
    AL_host = to_numpy(AL)
    expected = -np.sum(problem.Y * np.log(AL_host)) / 5 + 0.7 / (2 * 5) * sum(
        np.sum(problem.params[k] ** 2) for k in ("W1", "W2")
    )
    assert cost == pytest.approx(expected, rel=1e-13)


def test_check_detects_gradient_that_ignores_batch_statistics(backend):
    # The ablation switch backprop_statistics=False gives a wrong dW1 (forward unchanged): the
    # finite-difference check must reject it, while accepting the exact one.
    bn = BatchNormConfig()
    problem = make_problem([5, 4, 3], 6, bn, seed=11)
    X, Y = backend.asarray(problem.X), backend.asarray(problem.Y)
    params = {k: backend.asarray(v) for k, v in problem.params.items()}

    def cost(W1: np.ndarray) -> float:
        AL_, _ = L_model_forward(X, {**params, "W1": backend.asarray(W1)}, bn)
        return float(compute_cost(AL_, Y))

    numeric = numerical_gradient(cost, problem.params["W1"])
    AL, caches = L_model_forward(X, params, bn)
    exact = L_model_backward(AL, Y, caches)
    AL, caches = L_model_forward(X, params, BatchNormConfig(backprop_statistics=False))
    wrong = L_model_backward(AL, Y, caches)
    assert backend_mlp.backend_of(wrong["dW1"]).name == backend_mlp.backend_of(exact["dW1"]).name == backend.name
    assert entrywise_relative_error(exact["dW1"], numeric) < MAX_RELATIVE_ERROR
    assert entrywise_relative_error(wrong["dW1"], numeric) > 1e-3
    np.testing.assert_array_equal(to_numpy(wrong["dW2"]), to_numpy(exact["dW2"]))


# ----------------------------------------------------------------------------- building blocks
# Scalar test functions F = sum(out * R) / m for a fixed random R: the per-sample
# upstream gradient is then R, parameter gradients are dF/dparam, and input
# gradients (per sample) are m * dF/dinput.


def _host(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def test_linear_backward(backend, error_log):
    m = 5
    A, W, b, R = _host(1, (4, m), (3, 4), (3, 1), (3, m))
    dev = backend.asarray

    def F(A_, W_, b_):
        Z, _ = linear_forward(dev(A_), dev(W_), dev(b_))
        return float(backend.xp.sum(Z * dev(R))) / m

    _, cache = linear_forward(dev(A), dev(W), dev(b))
    dA, dW, db = linear_backward(dev(R), cache)
    assert_gradient(error_log, "grad linear_backward", backend, dW, numerical_gradient(lambda w: F(A, w, b), W), "dW")
    assert_gradient(error_log, "grad linear_backward", backend, db, numerical_gradient(lambda c: F(A, W, c), b), "db")
    numeric_dA = m * numerical_gradient(lambda a: F(a, W, b), A)
    assert_gradient(error_log, "grad linear_backward", backend, dA, numeric_dA, "dA_prev")


def test_relu_backward(backend, error_log):
    (Z, R) = _host(2, (4, 6), (4, 6))
    Z = np.where(np.abs(Z) < 0.05, 0.5, Z)  # keep away from the kink
    dev = backend.asarray

    def F(z):
        A, _ = relu(dev(z))
        return float(backend.xp.sum(A * dev(R)))

    A, cache = relu(dev(Z))
    np.testing.assert_array_equal(to_numpy(A), np.maximum(Z, 0))
    dZ = relu_backward(dev(R), cache)
    assert_gradient(error_log, "grad relu_backward", backend, dZ, numerical_gradient(F, Z), "dZ")


def test_softmax_backward(backend, error_log):
    Z, R = _host(3, (4, 5), (4, 5))
    Z = 3.0 * Z
    dev = backend.asarray

    def F(z):
        S, _ = softmax(dev(z))
        return float(backend.xp.sum(S * dev(R)))

    _, cache = softmax(dev(Z))
    dZ = softmax_backward(dev(R), cache)
    assert_gradient(error_log, "grad softmax_backward", backend, dZ, numerical_gradient(F, Z), "dZ")


@pytest.mark.parametrize("activation", ["relu", "softmax"])
def test_linear_activation_backward(backend, error_log, activation):
    m = 6
    A, W, b, R = _host(4, (5, m), (3, 5), (3, 1), (3, m))
    b = b + 0.3
    Z = W @ A + b
    assert np.min(np.abs(Z)) > KINK_MARGIN  # seed chosen away from the ReLU kink
    dev = backend.asarray

    def F(A_, W_, b_):
        out, _ = linear_activation_forward(dev(A_), dev(W_), dev(b_), activation)
        return float(backend.xp.sum(out * dev(R))) / m

    _, cache = linear_activation_forward(dev(A), dev(W), dev(b), activation)
    dA, dW, db = linear_activation_backward(dev(R), cache, activation)
    check = f"grad linear_activation_backward[{activation}]"
    assert_gradient(error_log, check, backend, dW, numerical_gradient(lambda w: F(A, w, b), W), "dW")
    assert_gradient(error_log, check, backend, db, numerical_gradient(lambda c: F(A, W, c), b), "db")
    assert_gradient(error_log, check, backend, dA, m * numerical_gradient(lambda a: F(a, W, b), A), "dA_prev")


@pytest.mark.parametrize("m", [2, 3, 8], ids=lambda m: f"m{m}")
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_batchnorm_backward(backend, error_log, m, affine, training):
    n = 4
    A, R, gamma, beta, rmean, rvar = _host(5 + m, (n, m), (n, m), (n, 1), (n, 1), (n, 1), (n, 1))
    A = A * np.array([[0.5], [1.0], [2.0], [0.1]]) + 0.3  # features of different scales
    gamma, beta = 1.0 + 0.3 * gamma, 0.2 * beta
    rvar = 0.5 + np.abs(rvar)
    dev = backend.asarray
    stats = {"running_mean": dev(rmean), "running_var": dev(rvar), "training": training}

    def F(A_, gamma_, beta_):
        g_, b_ = (dev(gamma_), dev(beta_)) if affine else (None, None)
        out, _ = apply_batchnorm(dev(A_), g_, b_, **stats)
        return float(backend.xp.sum(out * dev(R))) / m

    g, bt = (dev(gamma), dev(beta)) if affine else (None, None)
    _, cache = apply_batchnorm(dev(A), g, bt, **stats)
    dA, dgamma, dbeta = batchnorm_backward(dev(R), cache)
    check = f"grad batchnorm_backward[{'train' if training else 'infer'}]"
    assert_gradient(error_log, check, backend, dA, m * numerical_gradient(lambda a: F(a, gamma, beta), A), "dA")
    if affine:
        num_dgamma = numerical_gradient(lambda gm: F(A, gm, beta), gamma)
        assert_gradient(error_log, check, backend, dgamma, num_dgamma, "dgamma")
        num_dbeta = numerical_gradient(lambda bt_: F(A, gamma, bt_), beta)
        assert_gradient(error_log, check, backend, dbeta, num_dbeta, "dbeta")
    else:
        assert dgamma is None and dbeta is None
