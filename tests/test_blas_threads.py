"""BLAS threads during training: the "auto" cap for small matrices, explicit counts, restoring on exit.

The rule and the argument check are arithmetic on sizes and stay on the host.
What ``train()`` does to the host BLAS runs on each selected backend (conftest
``backend``): backends whose matmuls run on the host BLAS (``host_blas``:
NumPy, array-api-strict) get the cap, the others (PyTorch, CuPy) bring their
own threads and leave the user's BLAS setting alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import backend_mlp.network as network
import backend_mlp.training as training
from backend_mlp import InputValidationError, backend_of
from backend_mlp.backends.blas_threads import MACS_PER_THREAD, blas_threads_for, check_blas_threads, largest_matmul_macs
from backend_mlp.data import Dataset
from backend_mlp.training import TrainingConfig, TrainingInterrupted, train

threadpoolctl = pytest.importorskip("threadpoolctl")

REPORT = (784, 20, 7, 5, 10)
WIDE = (784, 2048, 2048, 10)


def test_largest_matmul_counts_the_widest_layer_pair():
    assert largest_matmul_macs(REPORT, 256) == 784 * 20 * 256
    assert largest_matmul_macs(WIDE, 1024) == 2048 * 2048 * 1024
    assert largest_matmul_macs((3, 1), 1) == 3


@pytest.mark.parametrize(
    ("dims", "batch", "available", "expected"),
    [
        (REPORT, 256, 16, 1),  # 4 M multiply-adds: one thread
        (REPORT, 256, 1, 1),
        ((784, 512, 512, 10), 256, 16, 2),  # 103 M: two
        (WIDE, 256, 16, 16),  # 1.07 G: all that are available
        (WIDE, 256, 2, 2),
        ((2, 2), 1, 4, 1),  # never zero
    ],
)
def test_auto_threads_grow_with_the_largest_matmul_within_what_is_available(dims, batch, available, expected):
    assert blas_threads_for(dims, batch, available) == expected


def test_auto_threads_cross_the_threshold_exactly_at_macs_per_thread():
    width = 1000
    batch = MACS_PER_THREAD // (784 * width)
    below = blas_threads_for((784, width, 10), batch, 8)
    above = blas_threads_for((784, width, 10), 2 * batch + 2, 8)
    assert (below, above) == (1, 2)


@pytest.mark.parametrize("value", ["auto", None, 1, 3, np.int64(2)])
def test_check_blas_threads_accepts_auto_none_and_positive_integers(value):
    checked = check_blas_threads(value)
    assert checked == value
    assert checked is None or isinstance(checked, (str, int))


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "AUTO", "2", [1]])
def test_check_blas_threads_refuses_everything_else(value):
    with pytest.raises(InputValidationError, match=r'blas_threads: received .*; expected "auto", a positive integer'):
        check_blas_threads(value)


# ------------------------------------------------------------------ what train() does to the BLAS


def _blas_counts() -> list[int]:
    return [lib.num_threads for lib in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers]


@pytest.fixture
def two_blas_threads():
    """An outer BLAS setting of 2 threads (the user's ceiling); skips where NumPy's BLAS is not visible."""
    if not _blas_counts():
        pytest.skip("threadpoolctl sees no BLAS library")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if set(_blas_counts()) != {2}:
            pytest.skip("this BLAS cannot be set to 2 threads")
        yield


@pytest.fixture
def spy_forward(monkeypatch):
    """Records (training?, BLAS thread counts) at every forward pass of the training loop."""
    seen: list[tuple[bool, set[int]]] = []
    original = network._forward

    def spying(xp, ops, X, params, L, bn, is_training, bn_state):
        seen.append((is_training, set(_blas_counts())))
        return original(xp, ops, X, params, L, bn, is_training, bn_state)

    # the step and the evaluation each call the network's forward pass
    monkeypatch.setattr(training.step, "_forward", spying)
    monkeypatch.setattr(training.evaluation, "_forward", spying)
    return seen


def _data(n: int, n_features: int, device: Any = "numpy") -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset.from_host(rng.random((n, n_features)), rng.integers(0, 10, n), device=device)


def _counts(seen, is_training):
    return set().union(*(counts for t, counts in seen if t is is_training))


def _during_steps(backend: Any, capped: set[int]) -> set[int]:
    """The BLAS thread counts expected during the steps: ``capped`` where the backend uses the host BLAS."""
    return capped if backend.host_blas else {2}


def test_auto_uses_one_thread_for_the_report_network_and_restores_the_setting(backend, two_blas_threads, spy_forward):
    config = TrainingConfig(num_iterations=4, batch_size=32, record_every=2, early_stopping=False)
    result = train(_data(64, 784, backend), config, _data(32, 784, backend))
    assert backend_of(result.parameters["W1"]).name == backend.name
    assert _counts(spy_forward, True) == _during_steps(backend, {1})  # the steps
    assert _counts(spy_forward, False) == {2}  # the validation passes run with the user's setting
    assert set(_blas_counts()) == {2}


def test_auto_keeps_the_users_threads_for_a_wide_network(backend, two_blas_threads, spy_forward):
    config = TrainingConfig(layer_dims=(784, 600, 10), batch_size=256, num_iterations=2, early_stopping=False)
    train(_data(256, 784, backend), config)  # 120 M multiply-adds: two threads
    assert _counts(spy_forward, True) == {2}


@pytest.mark.parametrize(("requested", "expected"), [(2, {2}), (1, {1}), (None, {2})])
def test_an_explicit_count_is_used_as_given_and_none_leaves_blas_alone(
    backend, two_blas_threads, spy_forward, requested, expected
):
    config = TrainingConfig(num_iterations=2, batch_size=32, early_stopping=False)
    train(_data(64, 784, backend), config, blas_threads=requested)
    assert _counts(spy_forward, True) == _during_steps(backend, expected)
    assert set(_blas_counts()) == {2}


def test_the_setting_is_restored_after_ctrl_c(backend, two_blas_threads):
    def interrupt(event):
        raise KeyboardInterrupt

    config = TrainingConfig(num_iterations=10, batch_size=32, record_every=1, early_stopping=False)
    with pytest.raises(TrainingInterrupted):
        train(_data(64, 784, backend), config, callback=interrupt)
    assert set(_blas_counts()) == {2}


def test_train_refuses_a_bad_thread_count_before_training():  # host-only: refused before anything runs
    with pytest.raises(InputValidationError, match="blas_threads: received 0"):
        train(_data(8, 784), TrainingConfig(num_iterations=1, batch_size=8), blas_threads=0)
