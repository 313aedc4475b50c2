"""The optimizer seam: an update rule with state plugs into the step, the loop and checkpoints unchanged.

A heavy-ball momentum written here (test-only, against the public seam) stands in
for the rules the next issue adds: its state must be initialised, threaded
through every step, saved, restored and resumed bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import cut_and_resume

import backend_mlp.optimizers as optimizers
from backend_mlp import to_numpy
from backend_mlp.checkpoint import load_checkpoint
from backend_mlp.data import Dataset
from backend_mlp.optimizers import Optimizer
from backend_mlp.training import TrainingConfig, train


@dataclass(frozen=True)
class HeavyBall(Optimizer):
    """``v <- mu v + g``; ``p <- p - lr v`` (PyTorch's SGD momentum without dampening)."""

    name: ClassVar[str] = "heavy-ball-test"
    momentum: float = 0.9

    def init_state(self, parameters):
        return {f"velocity.{k}": p * 0.0 for k, p in parameters.items()}

    def update(self, parameters, scaled_grads, state, learning_rate, ops):
        new_state = {f"velocity.{k}": self.momentum * state[f"velocity.{k}"] + g for k, g in
                     ((k[1:], g) for k, g in scaled_grads.items())}
        new_params = {k: p - learning_rate * new_state[f"velocity.{k}"] for k, p in parameters.items()}
        return new_params, {**state, **new_state}


@pytest.fixture
def heavy_ball(monkeypatch: pytest.MonkeyPatch) -> HeavyBall:
    monkeypatch.setitem(optimizers.OPTIMIZERS, HeavyBall.name, HeavyBall)
    return HeavyBall(momentum=0.8)


def _data(backend: Any) -> Dataset:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 5))
    return Dataset.from_host(X, np.argmax(X[:, :3], axis=1), n_classes=3, device=backend)


def test_stateful_optimizer_resumes_bit_identically(tmp_path: Path, backend: Any, heavy_ball: HeavyBall) -> None:
    config = TrainingConfig(layer_dims=(5, 6, 3), learning_rate=0.05, num_iterations=40, batch_size=16,
                            record_every=5, early_stopping=False, optimizer=heavy_ball)
    full, cut, loaded, resumed = cut_and_resume(_data(backend), config, tmp_path, backend, at=25)
    assert sorted(full.state.optimizer_state) == sorted(f"velocity.{k}" for k in full.parameters)
    assert any(float(np.abs(to_numpy(v)).max()) > 0 for v in full.state.optimizer_state.values())
    assert loaded.config.optimizer == heavy_ball
    saved = load_checkpoint(tmp_path / "cut.npz", device=backend).state  # loaded.state was resumed in place
    for k, v in cut.optimizer_state.items():
        np.testing.assert_array_equal(to_numpy(saved.optimizer_state[k]), to_numpy(v))
    for k, v in full.state.parameters.items():
        np.testing.assert_array_equal(to_numpy(resumed.state.parameters[k]), to_numpy(v), err_msg=k)
    for k, v in full.state.optimizer_state.items():
        np.testing.assert_array_equal(to_numpy(resumed.state.optimizer_state[k]), to_numpy(v), err_msg=k)


def test_momentum_differs_from_sgd_so_the_state_is_really_used(backend: Any, heavy_ball: HeavyBall) -> None:
    base = dict(layer_dims=(5, 6, 3), learning_rate=0.05, num_iterations=20, batch_size=16, early_stopping=False)
    sgd = train(_data(backend), TrainingConfig(**base))
    hb = train(_data(backend), TrainingConfig(**base, optimizer=heavy_ball))
    assert not np.allclose(to_numpy(sgd.parameters["W1"]), to_numpy(hb.parameters["W1"]))


def test_a_state_of_another_optimizer_is_refused(backend: Any, heavy_ball: HeavyBall) -> None:
    sgd_state = train(_data(backend), TrainingConfig(layer_dims=(5, 6, 3), num_iterations=3, batch_size=16,
                                                     early_stopping=False)).state
    config = TrainingConfig(layer_dims=(5, 6, 3), num_iterations=6, batch_size=16, early_stopping=False,
                            optimizer=heavy_ball)
    with pytest.raises(ValueError, match="optimizer_state"):
        train(_data(backend), config, state=sgd_state)
