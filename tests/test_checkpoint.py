"""Checkpoint files: exact round trips across backends, every CheckpointError, atomic writes.

The round trips run on each selected backend (conftest ``backend``): a state
trained there is saved, loaded back there, or a NumPy state is moved there and
back.  The errors, the compatibility check and the atomic writes are about the
file format and the file system and stay on the host (a NumPy state).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import interrupted_state

from backend_mlp import BatchNormConfig, CheckpointError, to_numpy
from backend_mlp.backends import backend_of
from backend_mlp.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    check_compatible,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from backend_mlp.data import Dataset
from backend_mlp.training import TrainingConfig, TrainingState, train


def _data(dtype: str = "float64", device: Any = "numpy") -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 12))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return (
        Dataset.from_host(X[:350], y[:350], n_classes=3, dtype=dtype, device=device),
        Dataset.from_host(X[350:], y[350:], n_classes=3, dtype=dtype, device=device),
    )


def _config(batchnorm: bool = True, **kw: Any) -> TrainingConfig:
    base = dict(layer_dims=(12, 6, 5, 3), batch_size=32, num_iterations=200, record_every=10, early_stopping=False)
    base.update(kw)
    return TrainingConfig(batchnorm=BatchNormConfig() if batchnorm else None, **base)


def _interrupted_state(
    config: TrainingConfig, at: int = 50, dtype: str = "float64", device: Any = "numpy"
) -> TrainingState:
    """A mid-epoch state with best parameters, recorded costs and an RNG state, trained on ``device``."""
    train_data, val_data = _data(dtype, device)
    return interrupted_state(train_data, config, at, val_data)


@pytest.fixture(scope="module")
def state() -> TrainingState:
    """A NumPy state: the one moved across backends, and the one the file-format tests save."""
    return _interrupted_state(_config())


@pytest.fixture
def backend_state(backend: Any) -> TrainingState:
    """The same state trained on the backend under test."""
    trained = _interrupted_state(_config(), device=backend)
    _assert_on(backend, trained)
    return trained


def _assert_on(backend: Any, state: TrainingState) -> None:
    """Every array of ``state`` lives on ``backend``."""
    for group in ("parameters", "bn_state", "best_parameters", "best_bn_state"):
        for k, v in (getattr(state, group) or {}).items():
            assert backend_of(v).name == backend.name, f"{group}[{k!r}]"


def _host(tree: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    return None if tree is None else {k: to_numpy(v) for k, v in tree.items()}


def _assert_trees_equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> None:
    ha, hb = _host(a), _host(b)
    if ha is None or hb is None:
        assert ha is hb is None
        return
    assert list(ha) == list(hb)
    for k in ha:
        assert ha[k].dtype == hb[k].dtype, k
        np.testing.assert_array_equal(ha[k], hb[k], err_msg=k)


def _assert_states_equal(a: TrainingState, b: TrainingState) -> None:
    for group in ("parameters", "bn_state", "best_parameters", "best_bn_state"):
        _assert_trees_equal(getattr(a, group), getattr(b, group))
    np.testing.assert_array_equal(a.order, b.order)
    for name in ("step", "epochs_completed", "position", "rng_state", "costs", "val_costs", "best_val_cost",
                 "best_step", "stopped_reason", "elapsed_seconds", "compile_seconds"):
        assert getattr(a, name) == getattr(b, name), name


# --------------------------------------------------------------------------- round trips


def test_round_trip(tmp_path: Path, backend: Any, backend_state: TrainingState) -> None:
    config = _config()
    state = dataclasses.replace(backend_state, compile_seconds=backend_state.elapsed_seconds / 3)  # as if compiled
    path = save_checkpoint(tmp_path / "c.npz", config, state, extra={"split_seed": 0, "device": backend.name})
    assert path == tmp_path / "c.npz"
    ckpt = load_checkpoint(path, device=backend)
    assert isinstance(ckpt, Checkpoint)
    _assert_on(backend, ckpt.state)
    assert ckpt.config == config and ckpt.dtype == "float64" and ckpt.format_version == FORMAT_VERSION
    assert ckpt.extra == {"split_seed": 0, "device": backend.name} and ckpt.kind == "checkpoint"
    assert 0 < state.position < 350 and state.best_parameters is not None and state.bn_state
    _assert_states_equal(ckpt.state, state)
    assert ckpt.state.order.dtype == np.int64
    # the saved RNG state continues the same stream
    a, b = np.random.default_rng(), np.random.default_rng()
    a.bit_generator.state, b.bit_generator.state = state.rng_state, ckpt.state.rng_state
    assert a.permutation(50).tolist() == b.permutation(50).tolist()


def test_round_trip_across_backends(tmp_path: Path, state: TrainingState, backend: Any) -> None:
    """A NumPy checkpoint loaded onto ``backend``, saved from there and loaded back on NumPy."""
    config = _config()
    save_checkpoint(tmp_path / "a.npz", config, state)
    there = load_checkpoint(tmp_path / "a.npz", device=backend.name)
    _assert_on(backend, there.state)
    _assert_states_equal(there.state, state)  # identical values through host copies
    save_checkpoint(tmp_path / "b.npz", config, there.state)  # saved from the other backend
    back = load_checkpoint(tmp_path / "b.npz")
    assert isinstance(back.state.parameters["W1"], np.ndarray)
    _assert_states_equal(back.state, state)


def test_round_trip_float32_without_batchnorm(tmp_path: Path, backend: Any) -> None:
    config = _config(batchnorm=False)
    state = _interrupted_state(config, at=30, dtype="float32", device=backend)
    save_checkpoint(tmp_path / "c.npz", config, state)
    ckpt = load_checkpoint(tmp_path / "c.npz", device=backend)
    _assert_on(backend, ckpt.state)
    assert ckpt.state.parameters["W1"].dtype == backend.dtype("float32")
    assert ckpt.dtype == "float32" and ckpt.state.bn_state == {} and ckpt.state.best_bn_state == {}
    _assert_states_equal(ckpt.state, state)


def test_fresh_state_round_trip(tmp_path: Path, backend: Any) -> None:
    from backend_mlp.training import new_training_state

    config = _config()
    fresh = new_training_state(config, _data(device=backend)[0])
    _assert_on(backend, fresh)
    save_checkpoint(tmp_path / "c.npz", config, fresh)
    ckpt = load_checkpoint(tmp_path / "c.npz", device=backend)
    _assert_on(backend, ckpt.state)
    assert ckpt.state.order is None and ckpt.state.rng_state is None and ckpt.state.best_parameters is None
    assert ckpt.state.best_val_cost == float("inf")
    _assert_trees_equal(ckpt.state.parameters, fresh.parameters)


def test_model_round_trip(tmp_path: Path, backend: Any, backend_state: TrainingState) -> None:
    config = _config()
    state = backend_state
    assert state.best_parameters is not None
    save_model(tmp_path / "m.npz", config, state.best_parameters, state.best_bn_state, extra={"k": [1, 2]}, state=state)
    model = load_model(tmp_path / "m.npz", device=backend)
    _assert_on(backend, model.state)
    assert model.kind == "model" and model.extra == {"k": [1, 2]} and model.config == config
    assert model.state.step == state.step and model.state.best_step == state.best_step
    assert model.state.best_parameters is None and model.state.order is None
    _assert_trees_equal(model.parameters, state.best_parameters)
    _assert_trees_equal(model.bn_state, state.best_bn_state)
    # a full checkpoint also loads as a model: its best parameters
    save_checkpoint(tmp_path / "c.npz", config, state)
    on_host = load_model(tmp_path / "c.npz", device="cpu").parameters
    assert all(isinstance(v, np.ndarray) for v in on_host.values())
    _assert_trees_equal(on_host, state.best_parameters)
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        load_checkpoint(tmp_path / "m.npz")


# --------------------------------------------------------------------------- errors
# host-only down to the end: the file format, the compatibility check and the file system


def _rewrite(path: Path, mutate: Any) -> None:
    """Load every entry of ``path``, let ``mutate(arrays, meta)`` change them, write back."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__metadata__").tobytes())
    mutate(arrays, meta)
    if meta is not None:
        arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


@pytest.fixture
def saved(tmp_path: Path, state: TrainingState) -> Path:
    return save_checkpoint(tmp_path / "c.npz", _config(), state)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def test_not_an_npz(tmp_path: Path) -> None:
    (tmp_path / "c.npz").write_text("hello")
    with pytest.raises(CheckpointError, match=r"not an \.npz"):
        load_checkpoint(tmp_path / "c.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match=r"not an \.npz"):
        load_checkpoint(tmp_path / "a.npy")


def test_truncated(saved: Path) -> None:
    raw = saved.read_bytes()
    for keep in (len(raw) // 2, len(raw) - 10, 10):
        saved.write_bytes(raw[:keep])
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            load_checkpoint(saved)


def test_corrupted_array_data(saved: Path, state: TrainingState) -> None:
    raw = bytearray(saved.read_bytes())
    where = bytes(raw).find(np.asarray(state.parameters["W1"]).tobytes())
    assert where > 0
    raw[where + 17] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(saved)


def test_missing_metadata(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", W1=np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match="__metadata__"):
        load_checkpoint(tmp_path / "c.npz")


def test_missing_arrays(saved: Path) -> None:
    _rewrite(saved, lambda arrays, meta: arrays.pop("parameters/W2"))
    with pytest.raises(CheckpointError, match="parameters is missing arrays W2"):
        load_checkpoint(saved)


def test_missing_order(saved: Path) -> None:
    _rewrite(saved, lambda arrays, meta: arrays.pop("order"))
    with pytest.raises(CheckpointError, match="missing the array 'order'"):
        load_checkpoint(saved)


def test_wrong_shape(saved: Path) -> None:
    def mutate(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        arrays["parameters/W1"] = np.zeros((3, 3))

    _rewrite(saved, mutate)
    with pytest.raises(CheckpointError, match=r"W1 has shape \(3, 3\)"):
        load_checkpoint(saved)


def test_format_2_file_loads_with_no_compile_time(saved: Path) -> None:
    """Format 2 (backend_mlp 0.2 before compile_seconds) had no compile time in the state: it loads as 0."""

    def as_format_2(arrays: dict, meta: dict) -> None:
        meta["format_version"] = 2
        del meta["state"]["compile_seconds"]

    _rewrite(saved, as_format_2)
    loaded = load_checkpoint(saved)
    assert loaded.format_version == 2 and loaded.state.compile_seconds == 0.0 and loaded.state.step > 0


def test_saving_refuses_a_compile_time_beyond_the_run_time(tmp_path: Path, state: TrainingState) -> None:
    bad = dataclasses.replace(state, compile_seconds=state.elapsed_seconds + 1.0)
    with pytest.raises(CheckpointError, match="compile_seconds"):
        save_checkpoint(tmp_path / "c.npz", _config(), bad)
    assert not (tmp_path / "c.npz").exists()


def test_newer_format_version(saved: Path) -> None:
    _rewrite(saved, lambda arrays, meta: meta.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer backend_mlp") as info:
        load_checkpoint(saved)
    assert "upgrade" in str(info.value)


def test_foreign_metadata(saved: Path) -> None:
    _rewrite(saved, lambda arrays, meta: meta.update(format="something.else"))
    with pytest.raises(CheckpointError, match="not a file written by backend_mlp"):
        load_checkpoint(saved)


def test_bad_config_in_metadata(saved: Path) -> None:
    _rewrite(saved, lambda arrays, meta: meta["config"].update(learning_rate=-1))
    with pytest.raises(CheckpointError, match="config.*learning_rate"):
        load_checkpoint(saved)


def test_extra_must_be_json(tmp_path: Path, state: TrainingState) -> None:
    with pytest.raises(CheckpointError, match="extra"):
        save_checkpoint(tmp_path / "c.npz", _config(), state, extra={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_saving_refuses_what_loading_would_refuse(
    tmp_path: Path, state: TrainingState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader's documented limits apply when saving too, so no file is written that cannot be loaded;
    raising a limit (a module constant) loads a larger file one trusts."""
    import backend_mlp.checkpoint as ck

    with pytest.raises(CheckpointError, match="MAX_METADATA_BYTES"):
        save_checkpoint(tmp_path / "c.npz", _config(), state, extra={"notes": "x" * ck.MAX_METADATA_BYTES})
    path = save_checkpoint(tmp_path / "c.npz", _config(), state)
    monkeypatch.setattr(ck, "MAX_PARAMETERS", 100)  # the network has 12*6+6 + 6*5+5 + 5*3+3 + 22 = 153
    with pytest.raises(CheckpointError, match=r"layer_dims .* 153 parameters.*MAX_PARAMETERS = 100"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="MAX_PARAMETERS"):
        save_model(tmp_path / "m.npz", _config(), state.parameters, state.bn_state)
    monkeypatch.setattr(ck, "MAX_PARAMETERS", 153)
    assert load_checkpoint(path).state.step == state.step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_check_compatible(saved: Path) -> None:
    ckpt = load_checkpoint(saved)
    config = _config()
    check_compatible(ckpt, config, "float64")  # identical: fine
    longer = _config(num_iterations=10_000)
    check_compatible(ckpt, longer, "float64", ignore=("num_iterations",))
    with pytest.raises(CheckpointError, match="num_iterations"):
        check_compatible(ckpt, longer, "float64")
    other = _config(batchnorm=False, learning_rate=0.1, layer_dims=(12, 7, 3))
    with pytest.raises(CheckpointError) as info:
        check_compatible(ckpt, other, "float32")
    message = str(info.value)
    for word in ("layer_dims", "learning_rate", "batchnorm", "dtype", "float32"):
        assert word in message
    assert "seed" not in message


# --------------------------------------------------------------------------- atomicity


def test_failed_write_keeps_old_file(tmp_path: Path, state: TrainingState, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config()
    path = save_checkpoint(tmp_path / "c.npz", config, state)
    before = path.read_bytes()
    later = _interrupted_state(config, at=80)

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, config, later)
    with pytest.raises(CheckpointError):
        save_model(tmp_path / "m.npz", config, later.parameters, later.bn_state)

    def interrupt(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, config, later)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary file left
    assert path.read_bytes() == before
    _assert_states_equal(load_checkpoint(path).state, state)


def test_format_1_checkpoint_loads_as_sgd_and_resumes_to_the_old_result(backend: Any) -> None:
    """tests/data/checkpoint_v1.npz was written by backend_mlp 0.1 (format 1, before optimizer state) at
    step 30 of a 60-step batch-norm run; checkpoint_v1_final.npz holds 0.1's own uninterrupted result."""
    from backend_mlp.optimizers import SGD

    folder = Path(__file__).parent / "data"
    loaded = load_checkpoint(folder / "checkpoint_v1.npz", device=backend)
    assert loaded.format_version == 1 and loaded.config.optimizer == SGD() and loaded.state.optimizer_state == {}
    assert loaded.state.step == 30 and loaded.state.compile_seconds == 0.0  # format 1 predates it
    rng = np.random.default_rng(11)
    X = rng.standard_normal((150, 5))
    y = np.argmax(X[:, :3], axis=1)
    data = [Dataset.from_host(X[a:b], y[a:b], n_classes=3, device=backend) for a, b in ((0, 120), (120, 150))]
    resumed = train(data[0], loaded.config, data[1], state=loaded.state)
    with np.load(folder / "checkpoint_v1_final.npz") as expected:
        for key in expected.files:
            got = to_numpy(resumed.state.parameters.get(key, resumed.state.bn_state.get(key)))
            np.testing.assert_allclose(got, expected[key], rtol=1e-12, atol=1e-12, err_msg=key)
