"""Every backend computes the same numbers as NumPy.

Parameters come from ``initialize_parameters`` with one seed on each backend
(identical bits), batches from one host NumPy generator.  Compared with the
NumPy backend: forward probabilities, cost, every gradient, the running
statistics, and a 50-step mini-batch SGD trajectory (costs, final parameters
and running statistics).  Relative error ``max|a - b| / max|b|`` must be at
most 1e-10 in float64 and 1e-4 in float32 (``agreement_rtol``).  For
gradients and parameters the denominator is at least 1% of the largest entry
of the whole set: the bias of a layer followed by batch norm has gradient 0
exactly, so it and its parameter only collect rounding noise.  The forward
pass is also checked against an independent NumPy transcription of the
formulas, so the NumPy backend is not only compared with itself.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import backend_mlp
from backend_mlp import (
    BatchNormConfig,
    L_model_backward,
    L_model_forward,
    compute_cost,
    initialize_batchnorm_state,
    initialize_parameters,
    to_numpy,
    update_parameters,
)

DIMS = [8, 7, 5, 3]
N_SAMPLES = 60
BATCH_SIZE = 12  # 5 batches per epoch, the trajectory spans 10 epochs
STEPS = 50
LEARNING_RATE = 0.1
SEED = 7

# name -> (batch-norm setting, l2_lambda)
MODES = {
    "plain-l2": (None, 0.7),
    "plain-nol2": (None, 0.0),
    "bn-after-l2": (BatchNormConfig(), 0.7),
    "bn-before-l2": (BatchNormConfig(position="before", momentum=0.2), 0.7),
    "bn-after-noaffine-nol2": (BatchNormConfig(affine=False), 0.0),
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


# ----------------------------------------------------------------------------- data and helpers


@functools.cache
def host_dataset() -> tuple[np.ndarray, np.ndarray]:
    """A learnable 3-class problem: labels from a random linear map of Gaussian inputs."""
    rng = np.random.default_rng(2024)
    X = rng.standard_normal((DIMS[0], N_SAMPLES))
    labels = np.argmax(rng.standard_normal((DIMS[-1], DIMS[0])) @ X, axis=0)
    return X, np.eye(DIMS[-1])[:, labels]


def host_batches(steps: int) -> list[np.ndarray]:
    """Column indices of each mini-batch: a fresh permutation per epoch, from a seeded host RNG."""
    rng = np.random.default_rng(99)
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        perm = rng.permutation(N_SAMPLES)
        batches.extend(perm[i : i + BATCH_SIZE] for i in range(0, N_SAMPLES, BATCH_SIZE))
    return batches[:steps]


def setup(backend: Any, dtype: str, mode: str) -> tuple[dict, dict | None, Any, Any, Any, float]:
    bn, l2 = MODES[mode]
    params = initialize_parameters(DIMS, SEED, device=backend, dtype=dtype, use_batchnorm=bn or False)
    state = initialize_batchnorm_state(DIMS, device=backend, dtype=dtype) if bn else None
    X, Y = host_dataset()
    return params, state, backend.asarray(X, dtype), backend.asarray(Y, dtype), bn, l2


def one_step(backend: Any, dtype: str, mode: str) -> dict[str, Any]:
    """Forward, cost and backward on the first mini-batch, as host arrays."""
    params, state, X, Y, bn, l2 = setup(backend, dtype, mode)
    idx = host_batches(1)[0]
    Xb = backend.asarray(to_numpy(X)[:, idx])
    Yb = backend.asarray(to_numpy(Y)[:, idx])
    AL, caches = L_model_forward(Xb, params, bn or False, bn_state=state)
    cost = compute_cost(AL, Yb, params, l2)
    grads = L_model_backward(AL, Yb, caches, l2_lambda=l2)
    assert all(backend_mlp.backend_of(a).name == backend.name for a in (AL, cost, *grads.values()))
    return {
        "AL": to_numpy(AL),
        "cost": to_numpy(cost),
        "grads": backend_mlp.tree_to_numpy(grads),
        "state": backend_mlp.tree_to_numpy(state or {}),
    }


def train(backend: Any, dtype: str, mode: str, steps: int = STEPS) -> dict[str, Any]:
    """``steps`` of mini-batch SGD; returns host copies of costs, parameters and running statistics."""
    params, state, X_all, Y_all, bn, l2 = setup(backend, dtype, mode)
    X_host, Y_host = host_dataset()
    costs = []
    for idx in host_batches(steps):
        X = backend.asarray(X_host[:, idx], dtype)
        Y = backend.asarray(Y_host[:, idx], dtype)
        AL, caches = L_model_forward(X, params, bn or False, bn_state=state)
        costs.append(float(compute_cost(AL, Y, params, l2)))
        grads = L_model_backward(AL, Y, caches, l2_lambda=l2)
        params = update_parameters(params, grads, LEARNING_RATE)
    AL_eval, _ = L_model_forward(X_all, params, bn or False, training=False, bn_state=state)
    assert all(backend_mlp.backend_of(a).name == backend.name for a in (AL_eval, *params.values()))
    return {
        "costs": np.array(costs),
        "params": backend_mlp.tree_to_numpy(params),
        "state": backend_mlp.tree_to_numpy(state or {}),
        "AL_eval": to_numpy(AL_eval),
    }


@functools.cache
def reference_step(dtype: str, mode: str) -> dict[str, Any]:
    return one_step(backend_mlp.resolve_backend("numpy"), dtype, mode)


@functools.cache
def reference_training(dtype: str, mode: str) -> dict[str, Any]:
    return train(backend_mlp.resolve_backend("numpy"), dtype, mode)


def hand_forward(X: np.ndarray, params: dict[str, np.ndarray], bn: BatchNormConfig | None) -> np.ndarray:
    """The network's forward pass (training mode) written out directly in NumPy."""
    L = sum(1 for k in params if k.startswith("W"))
    A = X
    for l in range(1, L):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]

        def norm(V: np.ndarray, l: int = l) -> np.ndarray:
            out = (V - V.mean(axis=1, keepdims=True)) / np.sqrt(V.var(axis=1, keepdims=True) + bn.eps)
            return params[f"gamma{l}"] * out + params[f"beta{l}"] if bn.affine else out

        if bn is None:
            A = np.maximum(Z, 0)
        elif bn.position == "after":
            A = norm(np.maximum(Z, 0))
        else:
            A = np.maximum(norm(Z), 0)
    ZL = params[f"W{L}"] @ A + params[f"b{L}"]
    E = np.exp(ZL - ZL.max(axis=0))
    return E / E.sum(axis=0)


# ----------------------------------------------------------------------------- agreement


def test_initial_parameters_are_identical(backend, dtype, mode):
    bn, _ = MODES[mode]
    params = backend_mlp.tree_to_numpy(
        initialize_parameters(DIMS, SEED, device=backend, dtype=dtype, use_batchnorm=bn or False)
    )
    ref = backend_mlp.tree_to_numpy(
        initialize_parameters(DIMS, SEED, device="numpy", dtype=dtype, use_batchnorm=bn or False)
    )
    assert params.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)


def test_forward_matches_hand_formula(backend, dtype, mode, agreement_rtol, error_log):
    bn, _ = MODES[mode]
    params, _, X, _, _, _ = setup(backend, dtype, mode)
    host = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    if bn is not None and bn.affine:  # make scale and shift non-trivial
        rng = np.random.default_rng(5)
        for k in host:
            if k.startswith(("gamma", "beta")):
                host[k] = host[k] + 0.3 * rng.standard_normal(host[k].shape)
        params = {k: backend.asarray(v, dtype) for k, v in host.items()}
        host = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    AL, _ = L_model_forward(X, params, bn or False)
    expected = hand_forward(to_numpy(X).astype(np.float64), host, bn)
    error_log.check("agree forward vs hand formula", backend, dtype, AL, expected, agreement_rtol)


def test_one_step_agrees_with_numpy(backend, dtype, mode, agreement_rtol, error_log):
    got, ref = one_step(backend, dtype, mode), reference_step(dtype, mode)
    error_log.check("agree forward AL", backend, dtype, got["AL"], ref["AL"], agreement_rtol)
    error_log.check("agree cost", backend, dtype, got["cost"], ref["cost"], agreement_rtol)
    assert got["grads"].keys() == ref["grads"].keys()
    floor = error_log.tree_floor(ref["grads"])  # db before a batch norm is zero up to rounding
    for k in ref["grads"]:
        error_log.check("agree gradients", backend, dtype, got["grads"][k], ref["grads"][k], agreement_rtol, k, floor)
    assert got["state"].keys() == ref["state"].keys()
    for k in ref["state"]:
        error_log.check(
            "agree running stats (1 step)", backend, dtype, got["state"][k], ref["state"][k], agreement_rtol, k
        )


def test_sgd_trajectory_agrees_with_numpy(backend, dtype, mode, agreement_rtol, error_log):
    got, ref = train(backend, dtype, mode), reference_training(dtype, mode)
    # training made progress, so the trajectory is not trivially constant
    assert ref["costs"][-5:].mean() < 0.8 * ref["costs"][:5].mean()
    error_log.check("agree SGD costs", backend, dtype, got["costs"], ref["costs"], agreement_rtol)
    assert got["params"].keys() == ref["params"].keys()
    floor = error_log.tree_floor(ref["params"])  # b before a batch norm only collects rounding noise
    for k in ref["params"]:
        error_log.check(
            "agree SGD final params", backend, dtype, got["params"][k], ref["params"][k], agreement_rtol, k, floor
        )
    assert got["state"].keys() == ref["state"].keys()
    if MODES[mode][0] is not None:
        assert set(ref["state"]) == {f"running_{s}{l}" for s in ("mean", "var") for l in (1, 2)}
    for k in ref["state"]:
        error_log.check("agree SGD running stats", backend, dtype, got["state"][k], ref["state"][k], agreement_rtol, k)
    error_log.check("agree SGD inference AL", backend, dtype, got["AL_eval"], ref["AL_eval"], agreement_rtol)


# ----------------------------------------------------------------------------- dtypes


def test_dtype_is_preserved(backend, dtype, mode):
    want = backend.dtype(dtype)
    params, state, X, Y, bn, l2 = setup(backend, dtype, mode)
    AL, caches = L_model_forward(X, params, bn or False, bn_state=state)
    cost = compute_cost(AL, Y, params, l2)
    grads = L_model_backward(AL, Y, caches, l2_lambda=l2)
    new_params = update_parameters(params, grads, LEARNING_RATE)
    assert AL.dtype == want
    assert cost.dtype == want and cost.ndim == 0
    assert all(g.dtype == want for g in grads.values()), {k: g.dtype for k, g in grads.items()}
    assert all(p.dtype == want for p in new_params.values()), {k: p.dtype for k, p in new_params.items()}
    assert all(s.dtype == want for s in (state or {}).values())
    AL_inf, _ = L_model_forward(X, new_params, bn or False, training=False, bn_state=state)
    assert AL_inf.dtype == want
    for arr in (AL, AL_inf, *grads.values(), *new_params.values()):
        assert backend_mlp.backend_of(arr).name == backend.name
