"""The pure training step against its in-place variant, on every backend; inputs are never written."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tolerance

import backend_mlp
from backend_mlp import BatchNormConfig, TrainingConfig, to_numpy
from backend_mlp.training import new_training_state, train_step

DIMS = (6, 5, 4, 3)
MODES = {
    "plain": {},
    "l2": {"l2_lambda": 0.7},
    "batchnorm": {"batchnorm": BatchNormConfig()},
    "batchnorm-before-no-affine": {"batchnorm": BatchNormConfig(position="before", affine=False)},
}


def _problem(backend, dtype, mode, m=9):
    rng = np.random.default_rng(5)
    config = TrainingConfig(layer_dims=DIMS, learning_rate=0.05, seed=2, **MODES[mode])
    X = backend.asarray(rng.standard_normal((DIMS[0], m)), dtype)
    Y = backend.asarray(np.eye(DIMS[-1])[rng.integers(0, DIMS[-1], m)].T.copy(), dtype)
    state = new_training_state(config, X)
    return config, state, X, Y


def _host(tree):
    return {k: to_numpy(v).copy() for k, v in tree.items()}


@pytest.mark.parametrize("mode", list(MODES))
def test_pure_and_inplace_steps_agree_and_leave_inputs_untouched(backend, dtype, mode):
    config, state, X, Y = _problem(backend, dtype, mode)
    before = {"parameters": _host(state.parameters), "bn_state": _host(state.bn_state), "X": to_numpy(X).copy()}
    params, opt_state, bn_state = state.parameters, state.optimizer_state, state.bn_state
    for _ in range(3):  # a few steps, so state produced by each variant feeds the next
        pure = train_step(config, params, opt_state, bn_state, X, Y)
        params, opt_state, bn_state = pure.parameters, pure.optimizer_state, pure.bn_state
    params_p, bn_p = params, bn_state
    params, opt_state, bn_state = state.parameters, state.optimizer_state, state.bn_state
    if backend.mutable_arrays:
        for _ in range(3):
            out = train_step(config, params, opt_state, bn_state, X, Y, inplace=True)
            params, opt_state, bn_state = out.parameters, out.optimizer_state, out.bn_state
    else:
        with pytest.raises(backend_mlp.InputValidationError, match="inplace"):
            train_step(config, params, opt_state, bn_state, X, Y, inplace=True)
        pytest.skip(f"{backend.name} declares immutable arrays: only the pure step applies")
    tol = tolerance(dtype)
    assert list(params) == list(params_p)
    for key in params_p:
        np.testing.assert_allclose(to_numpy(params[key]), to_numpy(params_p[key]), **tol, err_msg=key)
    for key in bn_p:
        np.testing.assert_allclose(to_numpy(bn_state[key]), to_numpy(bn_p[key]), **tol, err_msg=key)
    # the step really trained something, and wrote into none of its inputs
    assert any(not np.array_equal(to_numpy(params_p[k]), before["parameters"][k]) for k in params_p)
    for key, host in before["parameters"].items():
        np.testing.assert_array_equal(to_numpy(state.parameters[key]), host, err_msg=f"parameters[{key!r}] written")
    for key, host in before["bn_state"].items():
        np.testing.assert_array_equal(to_numpy(state.bn_state[key]), host, err_msg=f"bn_state[{key!r}] written")
    np.testing.assert_array_equal(to_numpy(X), before["X"])


@pytest.mark.parametrize("inplace", [False, True], ids=["pure", "inplace"])
@pytest.mark.parametrize("mode", list(MODES))
def test_steps_never_write_read_only_numpy_inputs(mode, inplace):
    backend = backend_mlp.resolve_backend("numpy")
    config, state, X, Y = _problem(backend, "float64", mode)
    frozen = [X, Y, *state.parameters.values(), *state.bn_state.values()]
    for a in frozen:
        a.flags.writeable = False  # any write raises "assignment destination is read-only"
    out = train_step(config, state.parameters, state.optimizer_state, state.bn_state, X, Y, inplace=inplace)
    assert all(not a.flags.writeable for a in frozen)
    assert all(out.parameters[k] is not state.parameters[k] for k in state.parameters)


def test_functional_api_never_writes_read_only_inputs():
    rng = np.random.default_rng(0)
    params = backend_mlp.initialize_parameters(list(DIMS), seed=1, use_batchnorm=True)
    bn_state = backend_mlp.initialize_batchnorm_state(list(DIMS))
    X = rng.standard_normal((DIMS[0], 7))
    Y = np.eye(DIMS[-1])[rng.integers(0, DIMS[-1], 7)].T.copy()
    for a in (X, Y, *params.values(), *bn_state.values()):
        a.flags.writeable = False
    AL, caches = backend_mlp.L_model_forward(X, params, use_batchnorm=True, bn_state=bn_state)
    grads = backend_mlp.L_model_backward(AL, Y, caches, l2_lambda=0.5)
    new = backend_mlp.update_parameters(params, grads, 0.1)
    for k in params:
        assert not np.array_equal(new[k], params[k]) or not np.any(grads["d" + k])
    backend_mlp.predict(X, new, use_batchnorm=True, bn_state=bn_state)


def test_train_step_matches_update_parameters(backend, dtype):
    """The step's folded gradient scale gives what the report's three functions give."""
    config, state, X, Y = _problem(backend, dtype, "l2")
    out = train_step(config, state.parameters, state.optimizer_state, state.bn_state, X, Y)
    AL, caches = backend_mlp.L_model_forward(X, state.parameters)
    grads = backend_mlp.L_model_backward(AL, Y, caches, l2_lambda=config.l2_lambda)
    expected = backend_mlp.update_parameters(state.parameters, grads, config.learning_rate)
    for key in expected:
        np.testing.assert_allclose(to_numpy(out.parameters[key]), to_numpy(expected[key]), **tolerance(dtype))


def test_train_step_checks_its_arguments(backend):
    config, state, X, Y = _problem(backend, "float64", "batchnorm")
    args = (state.parameters, state.optimizer_state, state.bn_state)
    with pytest.raises(backend_mlp.InputValidationError, match="X"):
        train_step(config, *args, X.T, Y)
    with pytest.raises(backend_mlp.InputValidationError, match="Yb"):
        train_step(config, *args, X, Y[:, :3])
    other = TrainingConfig(layer_dims=(6, 5, 3), batchnorm=BatchNormConfig())
    with pytest.raises(backend_mlp.InputValidationError, match="layer"):
        train_step(other, *args, X, Y)
    with pytest.raises(backend_mlp.InputValidationError, match="config"):
        train_step({"layer_dims": DIMS}, *args, X, Y)


def test_numpy_step_namespace_gives_the_bits_of_the_compat_namespace():
    """NumPy's step namespace (direct ufunc reductions) changes the cost of a call, never a bit of a step."""
    import array_api_compat.numpy as compat

    from backend_mlp.backends import resolve_backend
    from backend_mlp.ops import INPLACE
    from backend_mlp.training.step import _train_step

    backend = resolve_backend("numpy")
    fast = backend.step_namespace()
    assert fast is not compat and fast.sum is not compat.sum
    for dtype in ("float32", "float64"):
        for mode in MODES:
            config, state, X, Y = _problem(backend, dtype, mode, m=33)
            trees = {}
            for xp in (compat, fast):
                params, opt_state, bn_state = state.parameters, state.optimizer_state, state.bn_state
                for _ in range(3):
                    out = _train_step(xp, config, params, opt_state, bn_state, X, Y, INPLACE, 0.05)
                    params, opt_state, bn_state = out.parameters, out.optimizer_state, out.bn_state
                trees[xp] = {**params, **{f"bn.{k}": v for k, v in bn_state.items()}, "AL": out.AL}
            for key, value in trees[compat].items():
                np.testing.assert_array_equal(trees[fast][key], value, err_msg=f"{dtype} {mode} {key}")
    # the direct calls are what runs: with NumPy's reduction wrapper broken, the step still runs on them
    import numpy._core.fromnumeric as fromnumeric

    config, state, X, Y = _problem(backend, "float64", "batchnorm", m=33)
    args = (config, state.parameters, state.optimizer_state, state.bn_state, X, Y, INPLACE, 0.05)
    original = fromnumeric._wrapreduction
    fromnumeric._wrapreduction = None  # np.sum and np.max now fail
    try:
        _train_step(fast, *args)
        with pytest.raises(TypeError):
            _train_step(compat, *args)
    finally:
        fromnumeric._wrapreduction = original
    # what the direct calls do not cover goes to the compat functions: integer sums upcast, empty maxima raise
    ints = np.arange(6, dtype=np.int8).reshape(2, 3)
    assert fast.sum(ints, axis=1).dtype == compat.sum(ints, axis=1).dtype == np.int64
    with pytest.raises(ValueError):
        fast.max(np.empty((0, 3)), axis=0)
    assert fast.astype(ints, np.float32).dtype == np.float32


def test_the_training_loop_computes_with_the_step_namespace(monkeypatch):
    """``train()``'s eager step uses ``backend.step_namespace()``, not the plain namespace."""
    import types

    from backend_mlp.backends.numpy_backend import NumpyBackend
    from backend_mlp.data import Dataset
    from backend_mlp.training import train

    step_namespace, calls = NumpyBackend.step_namespace, []

    def counting(self):
        namespace = types.ModuleType("counting")
        namespace.__dict__.update(vars(step_namespace(self)))
        real_sum = namespace.sum

        def sum(x, /, **kwargs):  # noqa: A001
            calls.append(1)
            return real_sum(x, **kwargs)

        namespace.sum = sum
        return namespace

    monkeypatch.setattr(NumpyBackend, "step_namespace", counting)
    rng = np.random.default_rng(3)
    data = Dataset.from_host(rng.standard_normal((40, DIMS[0])), rng.integers(0, DIMS[-1], 40), n_classes=DIMS[-1])
    train(data, TrainingConfig(layer_dims=DIMS, learning_rate=0.05, batch_size=8, num_iterations=3, seed=1))
    assert len(calls) >= 3 * (len(DIMS) - 1)  # at least the bias gradients of every step
