"""The training loop's fused SGD step equals the report's functional API step by step.

``train`` replays its own host-side batch order here: ``shuffle_generator(seed)``
draws one permutation per epoch, batches are consecutive slices of it, the
last batch of an epoch may be smaller.  Both run on each selected backend.
"""

from __future__ import annotations

from typing import Any

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


# --------------------------------------------------------------------------- patience and the final check


def test_stale_checks_counts_checks_without_enough_improvement_over_the_best() -> None:
    from backend_mlp.training.loop import stale_checks

    def run(costs):  # type: ignore[no-untyped-def]
        return stale_checks(list(enumerate(costs)), 0.1)

    assert run([]) == 0 and run([5.0]) == 0
    assert run([5.0, 4.0, 3.95]) == 1  # 0.05 < 0.1 below the best
    assert run([5.0, 4.0, 4.5, 3.95]) == 2  # above the best, then not 0.1 below it
    assert run([5.0, 4.0, 4.5, 3.8]) == 0  # 0.2 below the best: fresh again


def _noisy_blobs(backend):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    X = rng.standard_normal((400, 6))
    y = (X[:, 0] + 0.8 * rng.standard_normal(400) > 0).astype(int) + (X[:, 1] > 0.5)
    return (Dataset.from_host(X[:300], y[:300], n_classes=3, device=backend),
            Dataset.from_host(X[300:], y[300:], n_classes=3, device=backend))


@pytest.mark.parametrize("patience", [1, 3])
def test_patience_stops_after_that_many_stale_checks(backend, patience: int) -> None:  # type: ignore[no-untyped-def]
    train_data, val_data = _noisy_blobs(backend)
    result = train(train_data, val_data=val_data, hidden=(16,), learning_rate=0.2, batch_size=32, record_every=5,
                   num_iterations=5000, min_improvement=1e-3, patience=patience)
    assert result.stopped_reason == "early_stopping"
    costs = result.val_costs
    stale = [i > 0 and min(costs[:i]) - c < 1e-3 for i, c in enumerate(costs)]
    assert stale[-patience:] == [True] * patience
    # it did not stop earlier: no earlier window of `patience` stale checks in a row
    assert not any(all(stale[j - patience + 1:j + 1]) for j in range(patience - 1, len(costs) - 1))
    assert result.best_step == result.recorded_steps[int(np.argmin(costs))]
    if patience == 1:  # the report's rule: stop at the first check less than min_improvement below the previous
        drops = np.diff(costs)
        assert -drops[-1] < 1e-3 and np.all(-drops[:-1] >= 1e-3)


def test_patience_lets_a_run_go_on_past_a_plateau(backend) -> None:  # type: ignore[no-untyped-def]
    train_data, val_data = _noisy_blobs(backend)
    settings = dict(hidden=(16,), learning_rate=0.2, batch_size=32, record_every=5, num_iterations=5000,
                    min_improvement=1e-3)
    assert train(train_data, val_data=val_data, patience=4, **settings).steps > train(
        train_data, val_data=val_data, patience=1, **settings).steps


def test_the_last_step_is_always_checked(backend) -> None:  # type: ignore[no-untyped-def]
    train_data, val_data = _noisy_blobs(backend)
    result = train(train_data, val_data=val_data, hidden=(16,), learning_rate=0.2, batch_size=32,
                   record_every=100, num_iterations=10)
    assert result.steps == 10 and result.recorded_steps == [10] and len(result.val_costs) == 1
    assert result.best_step == 10  # the returned parameters are the trained ones, not the initial ones
    np.testing.assert_array_equal(to_numpy(result.parameters["W1"]), to_numpy(result.state.parameters["W1"]))


def test_L_layer_model_takes_hidden_sizes_and_optimizer_keywords(backend) -> None:  # type: ignore[no-untyped-def]
    from backend_mlp import L_layer_model
    from backend_mlp.optimizers import Adam

    train_data, val_data = _noisy_blobs(backend)
    result = L_layer_model(train_data.X, train_data.Y, hidden=(12, 4), optimizer="adam", beta2=0.99,
                           learning_rate=0.01, num_iterations=20, batch_size=32, X_val=val_data.X, Y_val=val_data.Y,
                           record_every=10, patience=2)
    assert result.config.layer_dims == (6, 12, 4, 3) and result.config.optimizer == Adam(beta2=0.99)
    assert result.config.patience == 2 and sorted(result.state.optimizer_state)[-1] == "step"
    with pytest.raises(ValueError, match="layers_dims, hidden: received both"):
        L_layer_model(train_data.X, train_data.Y, [6, 3], hidden=(4,))


def test_extending_a_finished_run_stops_where_a_longer_run_does(backend) -> None:  # type: ignore[no-untyped-def]
    """The final check of a shorter run (off the record_every grid) does not count towards early stopping."""
    import dataclasses

    train_data, val_data = _noisy_blobs(backend)
    config = TrainingConfig(layer_dims=(6, 16, 3), learning_rate=0.2, batch_size=32, record_every=10,
                            num_iterations=200, min_improvement=1e-3)
    full = train(train_data, config, val_data)
    assert full.steps > 40  # ten steps improve the validation cost by more than 1e-3 past step 31
    short = train(train_data, dataclasses.replace(config, num_iterations=31), val_data)
    assert short.recorded_steps[-1] == 31  # checked at its last step: one step after 30, hardly an improvement
    # not stopped by that off-grid check (0.0012 above the check at step 30), so it can be extended
    assert short.stopped_reason == "num_iterations"
    short.state.stopped_reason = None  # what resuming with a larger num_iterations does
    extended = train(train_data, config, val_data, state=short.state)
    assert extended.steps == full.steps and extended.best_step == full.best_step
    np.testing.assert_array_equal(to_numpy(extended.parameters["W1"]), to_numpy(full.parameters["W1"]))


def test_lr_decay_is_the_learning_rate_of_each_epoch(backend) -> None:  # type: ignore[no-untyped-def]
    """A decayed run equals runs with the decayed rates set by hand, epoch by epoch (bit for bit)."""
    import dataclasses

    train_data, _ = _noisy_blobs(backend)  # 300 samples, batches of 50: 6 steps per epoch
    config = TrainingConfig(layer_dims=(6, 8, 3), learning_rate=0.1, lr_decay=0.5, batch_size=50, num_iterations=18,
                            record_every=6, early_stopping=False, optimizer="momentum")
    decayed = train(train_data, config)
    state = None
    for epoch in range(3):
        by_hand = dataclasses.replace(config, lr_decay=1.0, learning_rate=0.1 * 0.5**epoch,
                                      num_iterations=6 * (epoch + 1))
        if state is not None:
            state.stopped_reason = None
        state = train(train_data, by_hand, state=state).state
    for k, v in decayed.state.parameters.items():
        np.testing.assert_array_equal(to_numpy(state.parameters[k]), to_numpy(v), err_msg=k)
    constant = train(train_data, dataclasses.replace(config, lr_decay=1.0))
    assert not np.array_equal(to_numpy(constant.parameters["W1"]), to_numpy(decayed.parameters["W1"]))


def test_divergence_at_chance_level_needs_two_checks_in_a_row(backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One exploding check at chance level is a spike; two in a row are a divergence, and the
    parameters kept are the best check's, never the exploded ones."""
    import backend_mlp.training.loop as loop
    from backend_mlp.errors import TrainingDivergedError

    train_data, val_data = _noisy_blobs(backend)
    config = TrainingConfig(layer_dims=(6, 8, 3), learning_rate=0.05, batch_size=30, record_every=10,
                            num_iterations=60, early_stopping=False)

    def scripted(checks):  # type: ignore[no-untyped-def]
        values = iter([(1.0, 0.3), *checks])  # the initial network's, then one per check

        def fake(self, params, bn_state):  # type: ignore[no-untyped-def]
            return next(values)

        return fake

    spikes = [(0.8, 0.6), (2.0, 0.3), (0.7, 0.7), (2.0, 0.3), (0.6, 0.8), (0.5, 0.8)]
    monkeypatch.setattr(loop._Loop, "_check_data_cost", scripted(spikes))
    assert train(train_data, config, val_data).stopped_reason == "num_iterations"
    monkeypatch.setattr(loop._Loop, "_check_data_cost", scripted([(0.8, 0.6), (2.0, 0.3), (2.0, 0.3)]))
    with pytest.raises(TrainingDivergedError, match="at step 30: .* at chance level .* two checks in a row") as info:
        train(train_data, config, val_data)
    assert info.value.result.best_step == 10 and info.value.result.state.stopped_reason == "diverged"


def test_noisy_small_batches_without_validation_data_do_not_diverge(backend) -> None:  # type: ignore[no-untyped-def]
    """Without validation data the checks measure a fixed reference of training samples, not the mini-batch
    (a batch of one misclassified sample is no sign of divergence)."""
    train_data, _ = _noisy_blobs(backend)
    result = train(train_data, hidden=(16,), learning_rate=0.05, batch_size=1, num_iterations=600, record_every=20,
                   early_stopping=False)
    assert result.stopped_reason == "num_iterations"


# --------------------------------------------------------------------------- Ctrl-C at any moment


def _interrupted_at_line(data: Dataset, config: TrainingConfig, code: object, when: Any, k: int) -> object | None:
    """The state of ``train(data, config)`` stopped by a ``KeyboardInterrupt`` raised at the ``k``-th line
    executed in the first call of ``code`` whose frame satisfies ``when`` (a trace function raising it, as a
    Ctrl-C handler would at that line); ``None`` when that call has fewer lines."""
    import sys

    from backend_mlp.training import TrainingInterrupted

    seen = {"lines": 0, "raised": False}

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "line" and not seen["raised"]:
            if seen["lines"] == k:
                seen["raised"] = True
                raise KeyboardInterrupt
            seen["lines"] += 1
        return local

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        if frame.f_code is not code or seen["raised"] or seen["lines"]:
            return None
        return local if when(frame) else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        train(data, config)
    except TrainingInterrupted as info:
        return info.state
    finally:
        sys.settrace(previous)
    assert not seen["raised"]
    return None


def _at_epoch_change(frame: Any) -> bool:
    st = frame.f_locals["st"]
    return st.order is not None and st.position >= frame.f_locals["n_samples"]


def _at_step_5(frame: Any) -> bool:  # a step that records nothing (records: steps 3 and 7)
    return frame.f_locals["self"].state.step == 5


@pytest.mark.parametrize("where", ["epoch change", "step commit"])
def test_a_ctrl_c_at_any_line_of_a_state_change_leaves_a_state_that_resumes_exactly(backend, where) -> None:  # type: ignore[no-untyped-def]
    """The new epoch's order, generator state, position and count change as one, and so do a step's
    parameters, optimizer state, position and count: interrupted at each line of either change in turn, the
    run resumes to the uninterrupted run's bits (a decaying learning rate, so an epoch counted twice would
    show)."""
    from backend_mlp.training import loop

    code, when = {
        "epoch change": (loop.next_span.__code__, _at_epoch_change),
        "step commit": (loop._Loop._commit.__code__, _at_step_5),
    }[where]

    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((40, FEATURES)), rng.integers(0, CLASSES, 40)
    data = Dataset.from_host(X, y, n_classes=CLASSES, device=backend)
    config = TrainingConfig(
        layer_dims=(FEATURES, 5, CLASSES), batch_size=16, num_iterations=8, record_every=4, lr_decay=0.5,
        learning_rate=0.1, early_stopping=False, seed=1,
    )  # epochs of 3 batches: the first change of epoch before step 3 (0-based)
    full = train(data, config)
    k, cuts = 0, set()
    while (cut := _interrupted_at_line(data, config, code, when, k)) is not None:
        cuts.add((cut.step, cut.epochs_completed))
        resumed = train(data, config, state=cut)
        assert resumed.state.epochs_completed == full.state.epochs_completed == 2, k
        for key, value in full.parameters.items():
            np.testing.assert_array_equal(to_numpy(resumed.parameters[key]), to_numpy(value), err_msg=f"line {k}")
        k += 1
    # every line was interrupted once: before the change and, for the epoch's, after it (a commit is its call's
    # last statement); resuming ended right in each case, so no cut fell within a change
    assert k >= 3 and len(cuts) == (2 if where == "epoch change" else 1)


def test_held_signals_reach_their_handler_after_the_block_and_none_is_swallowed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``_signals_held``: a Ctrl-C inside the block is raised after it, the handlers are put back; and a
    Ctrl-C that lands while they are being put back leaves no handler that swallows a later signal."""
    import signal

    from backend_mlp.training.loop import _signals_held

    done = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_held():
            signal.raise_signal(signal.SIGINT)
            done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    terms: list[int] = []
    old_term = signal.signal(signal.SIGTERM, lambda signum, frame: terms.append(signum))
    try:
        real_signal = signal.signal

        def restore_then_ctrl_c(sig, handler):  # type: ignore[no-untyped-def]
            out = real_signal(sig, handler)
            if sig == signal.SIGINT and handler is signal.default_int_handler:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C after SIGINT is put back, before SIGTERM is
            return out

        monkeypatch.setattr(signal, "signal", restore_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            with _signals_held():
                pass
        monkeypatch.setattr(signal, "signal", real_signal)
        signal.raise_signal(signal.SIGTERM)  # whatever handler was left, the test's own must see it
        assert terms == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old_term)
