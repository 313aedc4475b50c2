"""``train(..., compile=True)``: the same pure step compiled by JAX (``jax.jit``) or PyTorch (``torch.compile``).

On every backend whose library compiles (the others skip, and NumPy shows the
one-line notice): the compiled step agrees with the eager one (float64 to
1e-12, float32 to 1e-5 relative), a whole run agrees with the eager run, a
compiled run resumes from a checkpoint as the eager one does, early stopping
stops at the same step, and a changing learning rate compiles nothing new.
Most tests share one configuration (batch norm, L2, Adam; the learning rate and
its schedule are arguments, not part of the compiled code) and one data shape,
so each library compiles the step for two dtypes and two batch sizes, and the
checks' evaluation once per validation shape; a few tests need their own.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

from backend_mlp import (
    BackendUnavailableError,
    InputValidationError,
    TrainingDivergedError,
    TrainingInterrupted,
    to_numpy,
)
from backend_mlp.checkpoint import load_checkpoint, save_checkpoint
from backend_mlp.data import Dataset
from backend_mlp.optimizers import Optimizer
from backend_mlp.training import TrainingConfig, new_training_state, train, train_step
from backend_mlp.training import compiled as compiled_module
from backend_mlp.training.compiled import FUSED_STEPS, compiled_evaluation, compiled_step, compiled_steps

DIMS = (12, 6, 5, 3)
N_SAMPLES, BATCH = 40, 16  # the last batch of an epoch has 8 samples: two compiled shapes
STEP_RTOL = {"float64": 1e-12, "float32": 1e-5}


def _config(**changes) -> TrainingConfig:
    settings = dict(
        layer_dims=DIMS, learning_rate=0.05, batch_size=BATCH, num_iterations=12, record_every=3, seed=4,
        l2_lambda=0.2, batchnorm=True, optimizer="adam", early_stopping=False, lr_decay=0.7,
    )
    settings.update(changes)
    return TrainingConfig(**settings)


def _data(backend, dtype="float64", seed=0, n=N_SAMPLES) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, DIMS[-1], n)
    centres = rng.standard_normal((DIMS[-1], DIMS[0]))
    images = centres[labels] + 0.8 * rng.standard_normal((n, DIMS[0]))
    return Dataset.from_host(images, labels, n_classes=DIMS[-1], device=backend, dtype=dtype)


def _compiled(backend, config, data):
    step = compiled_step(backend, config, data.X_rows)
    if step is None:
        pytest.skip(f"{backend.library} has no compiler: train(compile=True) runs eagerly there")
    return step


def _tree_error(error_log, check, backend, dtype, actual, expected, rtol):
    assert sorted(actual) == sorted(expected)
    floor = error_log.tree_floor(expected)
    for key in expected:
        error_log.check(check, backend, dtype, actual[key], expected[key], rtol, key, floor)


def test_compiled_step_agrees_with_eager_step(backend, dtype, error_log):
    config = _config()
    data = _data(backend, dtype)
    step = _compiled(backend, config, data)
    state = new_training_state(config, data.X_rows)
    eager = compiled = (state.parameters, state.optimizer_state, state.bn_state)
    rng = np.random.default_rng(1)
    for lr, size in ((0.05, BATCH), (0.02, BATCH), (0.02, N_SAMPLES - 2 * BATCH)):  # both shapes, two rates
        idx = backend.asarray(rng.permutation(N_SAMPLES)[:size])
        Xb, Yb = backend.take_batch(data.X_rows, data.Y_rows, idx)
        out = train_step(config, *eager, Xb, Yb, learning_rate=lr)
        eager = (out.parameters, out.optimizer_state, out.bn_state)
        lr_array = backend.asarray(np.asarray(lr, dtype=dtype))
        fast, _ = step(*compiled, data.X_rows, data.Y_rows, idx, lr_array)
        compiled = (fast.parameters, fast.optimizer_state, fast.bn_state)
        error_log.check("compiled step AL", backend, dtype, fast.AL, out.AL, STEP_RTOL[dtype])
    for name, got, want in zip(("parameters", "optimizer_state", "bn_state"), compiled, eager, strict=True):
        _tree_error(error_log, f"compiled step {name}", backend, dtype, got, want, STEP_RTOL[dtype])
    for key, value in compiled[0].items():
        assert value.dtype == state.parameters[key].dtype, key
    # it trained: the parameters moved
    assert any(not np.array_equal(to_numpy(compiled[0][k]), to_numpy(state.parameters[k])) for k in compiled[0])


def _assert_same_run(compiled, eager, error_log, backend, rtol=1e-12):
    assert compiled.compiled and not eager.compiled
    assert compiled.recorded_steps == eager.recorded_steps
    assert (compiled.steps, compiled.best_step, compiled.stopped_reason) == (
        eager.steps, eager.best_step, eager.stopped_reason)
    np.testing.assert_allclose(compiled.costs, eager.costs, rtol=rtol, atol=0)
    np.testing.assert_allclose(compiled.val_costs, eager.val_costs, rtol=rtol, atol=0)
    _tree_error(error_log, "compiled run parameters", backend, "float64", compiled.parameters, eager.parameters, rtol)
    _tree_error(error_log, "compiled run bn_state", backend, "float64", compiled.bn_state, eager.bn_state, rtol)


def test_compiled_run_agrees_with_eager_run(backend, error_log):
    config = _config()
    data, val = _data(backend), _data(backend, seed=1, n=20)
    step = _compiled(backend, config, data)
    new_shapes = {BATCH, N_SAMPLES % BATCH} - step.batch_sizes  # another test may have compiled some already
    evaluation = compiled_evaluation(backend, config, val.X_rows)
    new_shapes |= {val.n_samples} - evaluation.batch_sizes
    eager = train(data, config, val)
    compiled = train(data, config, val, compile=True)
    _assert_same_run(compiled, eager, error_log, backend)
    assert (compiled.compile_seconds > 0.0) == bool(new_shapes) and eager.compile_seconds == 0.0
    assert evaluation.batch_sizes == {val.n_samples}  # the checks ran compiled
    assert 0.0 < compiled.step_seconds <= compiled.state.elapsed_seconds
    # one compiled function per batch shape; the decaying learning rate is an argument, not a constant
    assert step.batch_sizes == {BATCH, N_SAMPLES % BATCH}
    cache_size = getattr(step.fn, "_cache_size", lambda: None)  # jax.jit's count of compiled versions
    versions = cache_size()
    again = train(data, _config(learning_rate=0.04), val, compile=True)
    assert again.compile_seconds == 0.0  # same step, data shape and batch sizes: nothing compiled
    assert cache_size() == versions  # nor by the library, for a new learning rate and its decay


def test_compiled_run_stops_early_at_the_same_step(backend, error_log):
    config = _config(early_stopping=True, min_improvement=0.05, num_iterations=60, lr_decay=1.0)
    data, val = _data(backend), _data(backend, seed=1, n=20)
    _compiled(backend, config, data)
    eager = train(data, config, val)
    assert eager.stopped_reason == "early_stopping" and eager.steps < config.num_iterations
    _assert_same_run(train(data, config, val, compile=True), eager, error_log, backend)


def test_compiled_run_diverges_as_the_eager_run_does(backend, error_log):
    config = _config(learning_rate=1e3, num_iterations=30, record_every=1, lr_decay=1.0)  # the same compiled step
    data, val = _data(backend), _data(backend, seed=1, n=20)
    _compiled(backend, config, data)
    with pytest.raises(TrainingDivergedError) as eager:
        train(data, config, val)
    with pytest.raises(TrainingDivergedError) as compiled:
        train(data, config, val, compile=True)
    assert str(compiled.value) == str(eager.value)
    _assert_same_run(compiled.value.result, eager.value.result, error_log, backend)


def test_compiled_run_resumes_from_a_checkpoint(backend, tmp_path, error_log):
    config = _config()
    data, val = _data(backend), _data(backend, seed=1, n=20)
    _compiled(backend, config, data)
    full = train(data, config, val)

    def stop(state) -> None:
        if state.step == 6:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train(data, config, val, compile=True, checkpoint_callback=stop)
    assert info.value.state.step == 6
    cut = info.value.state
    cut.compile_seconds = max(cut.compile_seconds, cut.elapsed_seconds / 2)  # non-zero even with warm caches
    loaded = load_checkpoint(save_checkpoint(tmp_path / "cut.npz", config, cut), device=backend)
    # the time spent compiling is kept with the elapsed time, so step_seconds of a resumed run is the steps'
    assert (loaded.state.compile_seconds, loaded.state.elapsed_seconds) == (cut.compile_seconds, cut.elapsed_seconds)
    resumed = train(data, config, val, state=loaded.state, compile=True)
    _assert_same_run(resumed, full, error_log, backend)
    assert resumed.compile_seconds >= cut.compile_seconds


FUSED_N = 408  # 25 full batches of 16 an epoch and one of 8: steps fused across an epoch's start, not its end


def test_steps_between_checks_run_fused(backend, tmp_path, error_log, monkeypatch):
    """Where the library compiles loops (JAX), the steps between two checks that fill a fused call within one
    epoch run FUSED_STEPS at a time as one call, the rest (record steps, an epoch's end) one by one: the run
    equals the eager one to float rounding (decaying learning rate, Adam, batch norm and L2 included); a
    Ctrl-C during a fused call leaves the state before it, and a run resumed from there, or from a
    checkpoint, ends with the uninterrupted run's bits."""
    config = _config(num_iterations=40, record_every=20, learning_rate=0.01)
    data, val = _data(backend, n=FUSED_N), _data(backend, seed=1, n=20)
    _compiled(backend, config, data)
    fused = compiled_steps(backend, config, data.X_rows)
    if fused is None:
        pytest.skip(f"{backend.library} compiles single steps, not loops")
    calls: list[int] = []  # the state's step at each fused call
    call = fused.call

    def counting(size, *args):
        calls.append(size)
        return call(size, *args)

    monkeypatch.setattr(fused, "call", counting)
    eager = train(data, config, val)
    compiled = train(data, config, val, compile=True)
    _assert_same_run(compiled, eager, error_log, backend)
    assert len(calls) >= 2 and set(calls) == {(FUSED_STEPS, BATCH)} == fused.batch_sizes
    step_calls = []
    single = compiled_step(backend, config, data.X_rows)
    monkeypatch.setattr(single, "call", lambda size, *args: step_calls.append(size) or type(single).call(
        single, size, *args))
    calls.clear()
    again = train(data, config, val, compile=True)
    assert FUSED_STEPS * len(calls) + len(step_calls) == config.num_iterations  # every step ran once
    for key, value in compiled.parameters.items():
        np.testing.assert_array_equal(to_numpy(again.parameters[key]), to_numpy(value))

    def interrupting(size, *args):  # Ctrl-C during the second fused call
        if len(calls) == 1:
            calls.append(size)
            raise KeyboardInterrupt
        return counting(size, *args)

    monkeypatch.setattr(fused, "call", interrupting)
    calls.clear()
    with pytest.raises(TrainingInterrupted) as info:
        train(data, config, val, compile=True)
    cut = info.value.state
    assert cut.step == FUSED_STEPS and cut.position == FUSED_STEPS * BATCH  # the second call's steps not taken
    monkeypatch.setattr(fused, "call", counting)

    def stop(state) -> None:
        if state.step == config.record_every:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as at_check:
        train(data, config, val, state=cut, compile=True, checkpoint_callback=stop)
    saved = save_checkpoint(tmp_path / "cut.npz", config, at_check.value.state)
    resumed = train(data, config, val, state=load_checkpoint(saved, device=backend).state, compile=True)
    assert resumed.costs == compiled.costs and resumed.val_costs == compiled.val_costs
    for key, value in compiled.parameters.items():
        np.testing.assert_array_equal(to_numpy(resumed.parameters[key]), to_numpy(value))


def test_the_compiled_checks_equal_the_eager_evaluation(backend, dtype):
    """The checks of a compiled run: the inference cost and the count of correct samples (batch norm's running
    statistics), against the public forward pass and labels counted on the host."""
    from backend_mlp import compute_cost, predict_proba

    config = _config(num_iterations=6)
    data, val = _data(backend, dtype), _data(backend, dtype, seed=1, n=20)
    _compiled(backend, config, data)
    result = train(data, config, val)
    evaluation = compiled_evaluation(backend, config, val.X_rows)
    (cost, hits), _ = evaluation(result.parameters, result.bn_state, val.X_rows, val.Y_rows)
    AL = predict_proba(val.X, result.parameters, config.batchnorm, result.bn_state)
    assert float(cost) == pytest.approx(float(compute_cost(AL, val.Y)), rel=STEP_RTOL[dtype], abs=0)
    predicted, labels = np.argmax(to_numpy(AL), axis=0), np.argmax(to_numpy(val.Y_rows), axis=1)
    assert 0 < int(hits) == int(np.sum(predicted == labels)) < val.n_samples  # some right, some wrong


@dataclass(frozen=True)
class _ScaledSGD(Optimizer):
    """SGD with a learning rate per layer: a custom optimizer holding a list, so it cannot be hashed."""

    name = "scaled-sgd-test"
    scales: list = field(default_factory=lambda: [1.0, 0.5, 0.25])

    def update(self, parameters, scaled_grads, state, learning_rate, ops):
        new = {}
        for key, value in parameters.items():
            scale = self.scales[int(key[-1]) - 1] if key[-1].isdigit() else 1.0
            grad = scaled_grads.get("d" + key)
            new[key] = value if grad is None else value - (learning_rate * scale) * grad
        return new, state


def test_an_unhashable_custom_optimizer_compiles_uncached(backend, error_log):
    config = _config(optimizer=_ScaledSGD(), num_iterations=6)
    data, val = _data(backend), _data(backend, seed=1, n=20)
    with pytest.raises(TypeError):
        hash(config.optimizer)
    _compiled(backend, config, data)
    _assert_same_run(train(data, config, val, compile=True), train(data, config, val), error_log, backend)


@pytest.mark.parametrize(
    ("failing", "what"),
    [("step", "the training step"), ("evaluation", "the evaluation of the checks (inference cost and accuracy)")],
)
def test_a_compiler_failure_is_one_clear_error(backend, monkeypatch, failing, what):
    if backend.compile_step(lambda x: x) is None:
        pytest.skip(f"{backend.library} has no compiler")
    compile_step = type(backend).compile_step

    def failing_compile_step(self, fn):
        if fn.__name__ != failing:
            return compile_step(self, fn)

        def fails(*args):
            raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.\nat ...")

        return fails

    monkeypatch.setattr(type(backend), "compile_step", failing_compile_step)
    for cached in (compiled_module._compiled_step, compiled_module._compiled_evaluation):
        monkeypatch.setattr(compiled_module, cached.__name__, functools.lru_cache(maxsize=16)(cached.__wrapped__))
    # a configuration and data of their own: nothing cached
    config = _config(l2_lambda=0.123, num_iterations=2, layer_dims=(12, 7, 3) if failing == "step" else (12, 8, 3))
    with pytest.raises(BackendUnavailableError) as info:
        train(_data(backend), config, compile=True)
    assert str(info.value) == (
        f"compile: received True, but {backend.library} failed to compile and run {what} on "
        f"{backend.name} (RuntimeError: Failed to find C compiler. Please specify via CC environment variable.); "
        "expected a working compiler there, or compile=False (the same numbers, eagerly)"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_failure_of_the_fused_call_is_one_clear_error(backend, monkeypatch):
    if backend.compile_steps(lambda *a: a) is None:
        pytest.skip(f"{backend.library} compiles single steps, not loops")

    def failing_compile_steps(self, fn):
        def fails(*args):
            raise RuntimeError("out of memory while compiling the loop\nat ...")

        return fails

    monkeypatch.setattr(type(backend), "compile_steps", failing_compile_steps)
    cached = compiled_module._compiled_steps
    monkeypatch.setattr(compiled_module, cached.__name__, functools.lru_cache(maxsize=16)(cached.__wrapped__))
    config = _config(num_iterations=FUSED_STEPS + 1, record_every=20)
    with pytest.raises(BackendUnavailableError) as info:
        train(_data(backend, n=FUSED_N), config, compile=True)
    assert str(info.value) == (
        f"compile: received True, but {backend.library} failed to compile and run the training steps fused into "
        f"one call on {backend.name} (RuntimeError: out of memory while compiling the loop); expected a working "
        "compiler there, or compile=False (the same numbers, eagerly)"
    )


def test_the_estimator_and_the_report_function_compile_too(backend):
    from backend_mlp import L_layer_model, MLPClassifier

    config = _config()
    data = _data(backend)
    _compiled(backend, config, data)
    X, y = to_numpy(data.X_rows), np.argmax(to_numpy(data.Y_rows), axis=1)
    settings = dict(learning_rate=config.learning_rate, batch_size=BATCH, max_steps=6, record_every=3, l2=0.2,
                    batchnorm=True, optimizer="adam", early_stopping=False, lr_decay=0.7, random_state=4)
    eager = MLPClassifier(DIMS[1:-1], device=backend, **settings).fit(X, y)
    compiled = MLPClassifier(DIMS[1:-1], device=backend, compile=True, **settings).fit(X, y)
    assert compiled.training_result_.compiled and not eager.training_result_.compiled
    np.testing.assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-12, atol=0)
    result = L_layer_model(data.X, data.Y, list(DIMS), 0.05, 6, BATCH, use_batchnorm=True, l2_lambda=0.2, seed=4,
                           record_every=3, optimizer="adam", lr_decay=0.7, compile=True)
    assert result.compiled and len(result.costs) == 2


def test_without_a_compiler_the_step_runs_eagerly_with_a_notice(reference_backend):
    data = _data(reference_backend)
    config = _config()
    eager = train(data, config)
    with pytest.warns(UserWarning, match=r"^compile: numpy has no compiler; the training step runs eagerly$"):
        result = train(data, config, compile=True)
    assert not result.compiled and result.compile_seconds == 0.0
    assert result.costs == eager.costs
    for key, value in eager.parameters.items():
        np.testing.assert_array_equal(to_numpy(result.parameters[key]), to_numpy(value))


def test_eager_training_warns_nothing(reference_backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(_data(reference_backend), _config(num_iterations=2))


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_compile_must_be_a_bool(reference_backend, value):
    with pytest.raises(InputValidationError, match=r"^compile: received .*; expected True or False$"):
        train(_data(reference_backend), _config(), compile=value)

