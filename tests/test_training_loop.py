"""The training loop's fused SGD step equals the report's functional API step by step.

``train`` replays its own host-side batch order here: ``shuffle_generator(seed)``
draws one permutation per epoch, batches are consecutive slices of it, the
last batch of an epoch may be smaller.  Both run on each selected backend.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend_mlp import (
    BatchNormConfig,
    L_model_backward,
    L_model_forward,
    backend_of,
    initialize_batchnorm_state,
    initialize_parameters,
    to_numpy,
    update_parameters,
)
from backend_mlp.data import Dataset
from backend_mlp.training import TrainingConfig, batch_indices, train

N, FEATURES, CLASSES, BATCH, STEPS = 90, 6, 3, 16, 23  # epochs of 6 batches, the last one of 10

MODES = {
    "plain": {},
    "batchnorm": {"batchnorm": BatchNormConfig()},
    "batchnorm-before-no-affine": {"batchnorm": BatchNormConfig(position="before", affine=False)},
    "l2": {"l2_lambda": 0.7},
}


def _functional_run(backend, X: np.ndarray, y: np.ndarray, config: TrainingConfig):  # type: ignore[no-untyped-def]
    dims = list(config.layer_dims)
    params = initialize_parameters(dims, config.seed, device=backend, use_batchnorm=config.batchnorm)
    state = initialize_batchnorm_state(dims, device=backend) if config.batchnorm else None
    Y = np.eye(CLASSES)[y]
    batches = batch_indices(N, config.batch_size, config.seed)
    for _ in range(config.num_iterations):
        idx = next(batches)
        Xb, Yb = backend.asarray(X[idx].T.copy()), backend.asarray(Y[idx].T.copy())
        AL, caches = L_model_forward(Xb, params, config.batchnorm or False, bn_state=state)
        grads = L_model_backward(AL, Yb, caches, l2_lambda=config.l2_lambda)
        params = update_parameters(params, grads, config.learning_rate)
    return params, state or {}


@pytest.mark.parametrize("mode", list(MODES))
def test_train_matches_the_functional_api(backend, mode: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, FEATURES))
    y = rng.integers(0, CLASSES, N)
    config = TrainingConfig(
        layer_dims=(FEATURES, 5, 4, CLASSES), learning_rate=0.1, num_iterations=STEPS, batch_size=BATCH,
        early_stopping=False, record_every=5, seed=3, **MODES[mode],
    )
    result = train(Dataset.from_host(X, y, n_classes=CLASSES, device=backend), config)
    expected, expected_state = _functional_run(backend, X, y, config)
    assert list(result.parameters) == list(expected)
    for tree in (result.parameters, result.bn_state, expected, expected_state):
        assert all(backend_of(v).name == backend.name for v in tree.values())
    for key, value in [*expected.items(), *expected_state.items()]:
        got = to_numpy(result.parameters.get(key, result.bn_state.get(key)))
        want = to_numpy(value)
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, float(np.max(np.abs(want)))), key
