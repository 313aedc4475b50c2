"""Interrupt, checkpoint to disk, load and continue: the same result as an uninterrupted run.

Synthetic data (600 training samples, 20 features, 3 classes; batch 32, so an
epoch is 19 steps and its last batch has 24 samples; a record every 10 steps).
Every test trains, checkpoints, loads and resumes on each selected backend
(conftest ``backend``); ``test_resume_on_another_backend`` continues a NumPy
checkpoint there.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend_mlp import BatchNormConfig, InputValidationError, backend_of, to_numpy
from backend_mlp.checkpoint import load_checkpoint, save_checkpoint
from backend_mlp.data import Dataset
from backend_mlp.training import (
    ProgressEvent,
    TrainingConfig,
    TrainingInterrupted,
    TrainingResult,
    TrainingState,
    train,
)

N_TRAIN, N_FEATURES, N_CLASSES = 600, 20, 3
TOL = 1e-12


def _datasets(device: Any) -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng(42)
    X = rng.standard_normal((N_TRAIN + 150, N_FEATURES))
    w = rng.standard_normal((N_FEATURES, N_CLASSES))
    y = np.argmax(X @ w + 0.5 * rng.standard_normal((X.shape[0], N_CLASSES)), axis=1)
    train_data = Dataset.from_host(X[:N_TRAIN], y[:N_TRAIN], n_classes=N_CLASSES, device=device)
    val_data = Dataset.from_host(X[N_TRAIN:], y[N_TRAIN:], n_classes=N_CLASSES, device=device)
    return train_data, val_data


@pytest.fixture
def data(backend: Any) -> tuple[Dataset, Dataset]:
    """Training and validation data on the backend under test."""
    return _datasets(backend)


def _config(batchnorm: bool, **kw: Any) -> TrainingConfig:
    base: dict[str, Any] = dict(
        layer_dims=(N_FEATURES, 16, 8, N_CLASSES),
        learning_rate=0.05,
        num_iterations=200,  # past the epoch boundary at 190; kept short, every test runs once per backend
        batch_size=32,
        record_every=10,
        early_stopping=False,
        seed=3,
    )
    base.update(kw)
    return TrainingConfig(batchnorm=BatchNormConfig() if batchnorm else None, **base)


def _stop_at(step: int) -> Any:
    def callback(event: ProgressEvent | TrainingState) -> None:
        if event.step == step:
            raise KeyboardInterrupt

    return callback


def _interrupt_save_load(
    tmp_path: Path, data: tuple[Dataset, Dataset], config: TrainingConfig, at: int,
    state: TrainingState | None = None, via: str = "callback",
) -> TrainingState:
    """Train until a Ctrl-C at step ``at``, checkpoint to disk, return the loaded state."""
    kwargs = {via: _stop_at(at)}
    with pytest.raises(TrainingInterrupted) as info:
        train(data[0], config, data[1], state=state, **kwargs)
    interrupted = info.value.state
    assert interrupted.step == at and interrupted.stopped_reason is None
    path = save_checkpoint(tmp_path / f"at{at}.npz", config, interrupted)
    # loaded back onto the backend it was trained on
    return load_checkpoint(path, device=backend_of(interrupted.parameters["W1"])).state


def _max_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert list(a) == list(b)
    return max((float(np.max(np.abs(to_numpy(a[k]) - to_numpy(b[k])))) for k in a), default=0.0)


def _assert_same(resumed: TrainingResult, full: TrainingResult) -> None:
    rs, fs = resumed.state, full.state
    assert backend_of(rs.parameters["W1"]).name == backend_of(fs.parameters["W1"]).name
    assert rs.step == fs.step and rs.stopped_reason == fs.stopped_reason and rs.best_step == fs.best_step
    assert rs.epochs_completed == fs.epochs_completed and rs.position == fs.position
    assert _max_diff(rs.parameters, fs.parameters) <= TOL
    assert _max_diff(rs.bn_state, fs.bn_state) <= TOL
    assert _max_diff(resumed.parameters, full.parameters) <= TOL  # the best parameters
    assert _max_diff(resumed.bn_state, full.bn_state) <= TOL
    np.testing.assert_allclose([c for _, c in rs.costs], [c for _, c in fs.costs], rtol=TOL, atol=TOL)
    assert [s for s, _ in rs.val_costs] == [s for s, _ in fs.val_costs]
    np.testing.assert_allclose([c for _, c in rs.val_costs], [c for _, c in fs.val_costs], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize(
    ("at", "via"),
    [(130, "callback"), (190, "checkpoint_callback"), (10, "callback")],
    ids=["mid-epoch", "epoch-boundary", "first-record"],
)
def test_resume_matches_uninterrupted(
    tmp_path: Path, data: tuple[Dataset, Dataset], batchnorm: bool, at: int, via: str
) -> None:
    config = _config(batchnorm)
    full = train(data[0], config, data[1])
    loaded = _interrupt_save_load(tmp_path, data, config, at, via=via)
    n = data[0].n_samples
    if at == 190:
        assert loaded.position == n  # exactly the end of an epoch: the next step draws a new order
    else:
        assert 0 < loaded.position < n
    if batchnorm:
        assert loaded.bn_state and _max_diff(loaded.bn_state, full.state.bn_state) > 0  # stats were mid-way
    resumed = train(data[0], config, data[1], state=loaded)
    _assert_same(resumed, full)


def test_resume_twice(tmp_path: Path, data: tuple[Dataset, Dataset]) -> None:
    config = _config(True)
    full = train(data[0], config, data[1])
    first = _interrupt_save_load(tmp_path, data, config, 70)
    second = _interrupt_save_load(tmp_path, data, config, 150, state=first)
    _assert_same(train(data[0], config, data[1], state=second), full)


def test_resume_with_early_stopping(tmp_path: Path, data: tuple[Dataset, Dataset]) -> None:
    config = _config(False, early_stopping=True, min_improvement=2e-3, num_iterations=5000)
    full = train(data[0], config, data[1])
    assert full.stopped_reason == "early_stopping" and full.steps > 60
    loaded = _interrupt_save_load(tmp_path, data, config, 50)
    _assert_same(train(data[0], config, data[1], state=loaded), full)


def test_resume_float32_is_exact(tmp_path: Path, backend: Any) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = (X[:, 0] > 0).astype(int)
    train_data = Dataset.from_host(X[:250], y[:250], n_classes=2, dtype="float32", device=backend)
    val_data = Dataset.from_host(X[250:], y[250:], n_classes=2, dtype="float32", device=backend)
    config = _config(True, layer_dims=(8, 5, 2), num_iterations=120)
    full = train(train_data, config, val_data)
    loaded = _interrupt_save_load(tmp_path, (train_data, val_data), config, 40)
    assert loaded.parameters["W1"].dtype == backend.dtype("float32")
    assert backend_of(loaded.parameters["W1"]).name == backend.name
    resumed = train(train_data, config, val_data, state=loaded)
    assert _max_diff(resumed.state.parameters, full.state.parameters) == 0.0


def test_resume_on_another_backend(tmp_path: Path, data: tuple[Dataset, Dataset], backend: Any) -> None:
    """A checkpoint from NumPy continues on ``backend`` (agreement to rounding, not bits)."""
    config = _config(True)
    on_numpy = _datasets("numpy")
    full = train(on_numpy[0], config, on_numpy[1])
    _interrupt_save_load(tmp_path, on_numpy, config, 130)
    there = load_checkpoint(tmp_path / "at130.npz", device=backend)
    assert all(backend_of(v).name == backend.name for v in there.state.parameters.values())
    resumed = train(data[0], config, data[1], state=there.state)
    assert backend_of(resumed.state.parameters["W1"]).name == backend.name
    assert resumed.steps == full.steps
    assert _max_diff(resumed.state.parameters, full.state.parameters) <= 1e-10


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_ctrl_c_during_a_record_step_leaves_the_state_before_that_step(
    tmp_path: Path, data: tuple[Dataset, Dataset], batchnorm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside the validation pass of step 120: resuming redoes step 120 and its record."""
    from backend_mlp import training

    config = _config(batchnorm, early_stopping=True, min_improvement=0.0)
    full = train(data[0], config, data[1])
    original = training.loop._Loop._check_data_cost
    calls = {"n": 0}

    def interrupted_once(self: Any, params: Any, bn_state: Any) -> tuple[float, float]:
        calls["n"] += 1
        if calls["n"] == 13:  # the initial network's cost, then the records of steps 10..110, then step 120's
            raise KeyboardInterrupt
        return original(self, params, bn_state)

    monkeypatch.setattr(training.loop._Loop, "_check_data_cost", interrupted_once)
    with pytest.raises(TrainingInterrupted) as info:
        train(data[0], config, data[1])
    monkeypatch.setattr(training.loop._Loop, "_check_data_cost", original)
    cut = info.value.state
    assert cut.step == 119 and [s for s, _ in cut.costs][-1] == 110 and [s for s, _ in cut.val_costs][-1] == 110
    path = save_checkpoint(tmp_path / "cut.npz", config, cut)
    loaded = load_checkpoint(path, device=backend_of(cut.parameters["W1"])).state
    _assert_same(train(data[0], config, data[1], state=loaded), full)


def test_a_ctrl_c_while_a_step_is_recorded_is_raised_once_the_record_is_whole(
    tmp_path: Path, data: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT that arrives after a record step's measurements, while the step is committed and recorded
    (here: as its early-stopping verdict is being taken), is raised when the record is whole: the interrupted
    state holds that step with its costs, best check and verdict, and resuming it ends as the uninterrupted
    run did.  Raised where it arrived, it would leave the step without its verdict, and the resumed run
    would train on past the stop."""
    from backend_mlp.training import loop

    config = _config(False, early_stopping=True, min_improvement=2e-3, num_iterations=5000)
    full = train(data[0], config, data[1])
    stop = full.state.step
    assert full.stopped_reason == "early_stopping" and stop > 30
    verdict = loop.stale_checks

    def ctrl_c_inside(val_costs: list[tuple[int, float]], min_improvement: float) -> int:
        if val_costs[-1][0] == stop:
            signal.raise_signal(signal.SIGINT)  # its handler runs at the next bytecode, inside the record
        return verdict(val_costs, min_improvement)

    monkeypatch.setattr(loop, "stale_checks", ctrl_c_inside)
    with pytest.raises(TrainingInterrupted) as info:
        train(data[0], config, data[1])
    monkeypatch.undo()
    cut = info.value.state
    assert cut.step == stop and cut.costs[-1][0] == stop and cut.val_costs[-1][0] == stop
    assert cut.stopped_reason == "early_stopping" and cut.best_step == full.state.best_step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    path = save_checkpoint(tmp_path / "cut.npz", config, cut)
    loaded = load_checkpoint(path, device=backend_of(cut.parameters["W1"])).state
    _assert_same(train(data[0], config, data[1], state=loaded), full)


@pytest.mark.parametrize(("saved_bn", "resumed_bn"), [(False, True), (True, False)], ids=["plain->bn", "bn->plain"])
def test_resume_refuses_a_state_of_the_other_batchnorm_setting(
    data: tuple[Dataset, Dataset], saved_bn: bool, resumed_bn: bool
) -> None:
    """Same shapes, other parameter set: training on would silently drop (or ignore) gamma/beta."""
    state = train(data[0], _config(saved_bn, num_iterations=5), data[1]).state
    with pytest.raises(InputValidationError, match="state.parameters") as info:
        train(data[0], _config(resumed_bn, num_iterations=10), data[1], state=state)
    assert "gamma1" in str(info.value)
