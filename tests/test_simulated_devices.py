"""Devices without hardware: array-api-strict's simulated ``device1`` and ``no_float64``.

array-api-strict refuses to combine arrays of two devices and has a device without float64,
so these tests find arrays that silently land on the default device and float64 assumptions
on a CPU-only machine.  Every array the library hands back must stay on ``device1``.
They run once, in the array-api-strict session (not per ``backend`` fixture parameter).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import SELECTED_BACKENDS
from synthetic_mnist import write_synthetic_mnist

import backend_mlp as bm
from backend_mlp.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from backend_mlp.cli.main import main
from backend_mlp.training.evaluation import evaluate

xps = pytest.importorskip("array_api_strict")

pytestmark = pytest.mark.skipif(
    "array_api_strict" not in SELECTED_BACKENDS, reason="simulated devices run with the array_api_strict backend"
)

DEVICE1 = "array_api_strict:device1"
NO_FLOAT64 = "array_api_strict:no_float64"


def on_device(tree: dict[str, Any] | None, device: Any, what: str) -> None:
    """Every array of ``tree`` is an array-api-strict array on ``device``."""
    assert tree, f"{what}: expected arrays"
    for key, value in tree.items():
        assert bm.backend_of(value).library == "array_api_strict", f"{what}[{key!r}] is {type(value)}"
        assert value.device == device, f"{what}[{key!r}] is on {value.device}, expected {device}"


def toy_data(n: int = 120, n_features: int = 6, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % n_classes
    images = rng.normal(size=(n, n_features)) + labels[:, None]  # learnable
    return images, labels


# --------------------------------------------------------------------------- naming the devices


def test_strict_device_spellings_resolve_to_their_devices() -> None:
    backend = bm.resolve_backend(DEVICE1)
    assert backend.name == DEVICE1 and backend.device == xps.Device("device1")
    assert bm.resolve_backend("strict:device1") == backend
    assert bm.resolve_backend("Array_API_Strict:Device1") == backend
    default = bm.resolve_backend("array_api_strict")
    assert default.name == "array_api_strict" and default.device is None
    assert bm.resolve_backend("array_api_strict:cpu_device") == default
    # an existing array names its device, and the default device stays the plain name
    assert bm.backend_of(backend.asarray(np.ones(2))) == backend
    assert bm.backend_of(default.asarray(np.ones(2))) == default
    assert backend.describe()["simulated_device"] == "device1"


def test_unknown_strict_device_names_the_choices() -> None:
    with pytest.raises(bm.InputValidationError) as info:
        bm.resolve_backend("array_api_strict:device9")
    message = str(info.value)
    assert message.startswith("device: received 'array_api_strict:device9'; expected")
    assert "'array_api_strict:device1'" in message and "'array_api_strict:no_float64'" in message


def test_supported_dtypes_come_from_the_device() -> None:
    assert bm.resolve_backend(DEVICE1).supported_dtypes() == ("float32", "float64")
    assert bm.resolve_backend(NO_FLOAT64).supported_dtypes() == ("float32",)
    assert bm.resolve_backend("numpy").supported_dtypes() == ("float32", "float64")


def test_to_numpy_brings_device1_arrays_home() -> None:
    x = bm.resolve_backend(DEVICE1).asarray(np.arange(6.0).reshape(2, 3))
    host = bm.to_numpy(x)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))
    moved = bm.to_backend(x, "array_api_strict")
    assert moved.device == xps.Device()


# --------------------------------------------------------------------------- everything stays on device1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_keeps_every_array_on_device1(optimizer: str, tmp_path: Any) -> None:
    device = xps.Device("device1")
    images, labels = toy_data()
    train_set = bm.Dataset.from_host(images[:90], labels[:90], device=DEVICE1)
    val_set = bm.Dataset.from_host(images[90:], labels[90:], device=DEVICE1)
    on_device({"X_rows": train_set.X_rows, "Y_rows": train_set.Y_rows, "labels": train_set.labels}, device, "data")

    result = bm.train(train_set, val_data=val_set, hidden=(8,), optimizer=optimizer, learning_rate=0.05,
                      batch_size=30, num_iterations=12, record_every=4, batchnorm=bm.BatchNormConfig())
    assert result.steps == 12
    on_device(result.parameters, device, "parameters")
    on_device(result.bn_state, device, "bn_state")
    on_device(result.state.optimizer_state if optimizer == "adam" else {"-": train_set.X_rows}, device, "optimizer")
    on_device(result.state.best_parameters, device, "best_parameters")
    on_device(result.state.best_bn_state, device, "best_bn_state")

    X_val = val_set.X
    probabilities = bm.predict_proba(X_val, result.parameters, use_batchnorm=True, bn_state=result.bn_state)
    predictions = bm.predict(X_val, result.parameters, use_batchnorm=True, bn_state=result.bn_state)
    on_device({"probabilities": probabilities, "predictions": predictions}, device, "inference")
    cost, accuracy = evaluate(val_set, result.parameters, result.config, result.bn_state)
    assert np.isfinite(cost) and accuracy == bm.accuracy(predictions, val_set.Y)

    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "c.npz", result.config, result.state), device=DEVICE1)
    for group in ("parameters", "bn_state", "best_parameters", "best_bn_state"):
        on_device(getattr(checkpoint.state, group), device, f"loaded checkpoint {group}")
    if optimizer == "adam":
        on_device(checkpoint.state.optimizer_state, device, "loaded checkpoint optimizer_state")
    resumed = bm.train(train_set, result.config, val_set, state=checkpoint.state)  # resumes on device1
    on_device(resumed.parameters, device, "resumed parameters")

    model = load_model(save_model(tmp_path / "m.npz", result.config, result.parameters, result.bn_state),
                       device=DEVICE1)
    on_device(model.parameters, device, "loaded model parameters")
    on_device(model.bn_state, device, "loaded model bn_state")


def test_functional_api_keeps_arrays_on_device1() -> None:
    device = xps.Device("device1")
    backend = bm.resolve_backend(DEVICE1)
    images, labels = toy_data()
    X, Y = backend.asarray(images.T), backend.asarray(bm.one_hot(labels))
    dims = [X.shape[0], 5, 3]
    params = bm.initialize_parameters(dims, seed=0, device=DEVICE1, use_batchnorm=True)
    bn_state = bm.initialize_batchnorm_state(dims, device=DEVICE1)
    on_device(params, device, "initial parameters")
    on_device(bn_state, device, "initial bn_state")
    AL, caches = bm.L_model_forward(X, params, use_batchnorm=True, bn_state=bn_state)
    cost = bm.compute_cost(AL, Y, params, l2_lambda=0.5)
    grads = bm.L_model_backward(AL, Y, caches, l2_lambda=0.5)
    params = bm.update_parameters(params, grads, learning_rate=0.01)
    on_device({"AL": AL, "cost": cost}, device, "forward")
    on_device(grads, device, "grads")
    on_device(params, device, "updated parameters")
    on_device(bn_state, device, "updated bn_state")
    result = bm.L_layer_model(X, Y, dims, num_iterations=6, batch_size=40, X_val=X, Y_val=Y, record_every=3)
    on_device(result.parameters, device, "L_layer_model parameters")
    on_device({"columns": bm.Dataset.from_columns(X, Y).X_rows}, device, "Dataset.from_columns")


def test_estimator_keeps_arrays_on_device1_and_reloads_there(tmp_path: Any) -> None:
    device = xps.Device("device1")
    images, labels = toy_data()
    clf = bm.MLPClassifier(hidden_layer_sizes=(8,), device=DEVICE1, batchnorm=True, max_steps=12, batch_size=30,
                           record_every=4).fit(images, labels)
    on_device(clf.parameters_, device, "parameters_")
    on_device(clf.bn_state_, device, "bn_state_")
    assert clf.backend_.name == DEVICE1
    proba = clf.predict_proba(images)
    assert isinstance(proba, np.ndarray) and proba.shape == (120, 3)
    clf.save(tmp_path / "clf.npz")
    loaded = bm.MLPClassifier.load(tmp_path / "clf.npz")  # the file's device
    assert loaded.backend_.name == DEVICE1
    on_device(loaded.parameters_, device, "loaded parameters_")
    np.testing.assert_array_equal(loaded.predict_proba(images), proba)
    on_host = bm.MLPClassifier.load(tmp_path / "clf.npz", device="cpu")
    np.testing.assert_allclose(on_host.predict_proba(images), proba, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- mixing devices


def _mixes() -> list[Any]:
    """``(call(d1, default), first argument, second argument)``: one array on device1 and one on the default device."""

    def setup() -> dict[str, Any]:
        images, labels = toy_data()
        d1, d0 = bm.resolve_backend(DEVICE1), bm.resolve_backend("array_api_strict")
        dims = [images.shape[1], 4, 3]
        params = bm.initialize_parameters(dims, seed=0, device=d1)
        AL, caches = bm.L_model_forward(d1.asarray(images.T), params)
        return {"d1": d1, "d0": d0, "X": images.T, "Y": bm.one_hot(labels), "labels": labels, "params": params,
                "AL": AL, "caches": caches, "dims": dims}

    calls = [
        ("forward", lambda s: bm.L_model_forward(s["d0"].asarray(s["X"]), s["params"]), "X", "parameters['W1']"),
        ("cost", lambda s: bm.compute_cost(s["AL"], s["d0"].asarray(s["Y"])), "AL", "Y"),
        ("backward", lambda s: bm.L_model_backward(s["AL"], s["d0"].asarray(s["Y"]), s["caches"]), "AL", "Y"),
        ("predict", lambda s: bm.predict(s["d0"].asarray(s["X"]), s["params"]), "X", "parameters['W1']"),
        ("columns", lambda s: bm.Dataset.from_columns(s["d1"].asarray(s["X"]), s["d0"].asarray(s["Y"])), "X", "Y"),
        ("train", lambda s: bm.train(
            bm.Dataset.from_host(s["X"].T, s["labels"], device=s["d1"]),
            val_data=bm.Dataset.from_host(s["X"].T, s["labels"], device=s["d0"]), hidden=(4,), num_iterations=2,
            batch_size=40), "train_data.X_rows", "val_data.X_rows"),
        ("layer_model", lambda s: bm.L_layer_model(
            s["d1"].asarray(s["X"]), s["d1"].asarray(s["Y"]), s["dims"], num_iterations=2, batch_size=40,
            X_val=s["d0"].asarray(s["X"]), Y_val=s["d0"].asarray(s["Y"])), "X", "X_val"),
    ]
    return [pytest.param(setup, call, a, b, id=name) for name, call, a, b in calls]


@pytest.mark.parametrize(("setup", "call", "first", "second"), _mixes())
def test_mixing_devices_is_a_mismatch_naming_both_arguments(setup: Any, call: Any, first: str, second: str) -> None:
    with pytest.raises(bm.BackendMismatchError) as info:
        call(setup())
    message = str(info.value)
    assert message.startswith(f"{first}, {second}: received arrays on different devices"), message
    assert "device1" in message and "CPU_DEVICE" in message


def test_resuming_on_another_device_is_a_mismatch(tmp_path: Any) -> None:
    images, labels = toy_data()
    train_set = bm.Dataset.from_host(images, labels, device=DEVICE1)
    result = bm.train(train_set, hidden=(4,), num_iterations=3, batch_size=40)
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "c.npz", result.config, result.state),
                                 device="array_api_strict")
    with pytest.raises(bm.BackendMismatchError, match=r"^train_data\.X_rows, state\.parameters\['W1'\]"):
        bm.train(train_set, result.config, state=checkpoint.state)


# --------------------------------------------------------------------------- a device without float64


def _float64_refusals() -> list[Any]:
    images, labels = toy_data()
    calls = {
        "Dataset.from_host": lambda: bm.Dataset.from_host(images, labels, device=NO_FLOAT64, dtype="float64"),
        "initialize_parameters": lambda: bm.initialize_parameters([6, 3], seed=0, device=NO_FLOAT64,
                                                                  dtype="float64"),
        "to_backend": lambda: bm.to_backend(np.ones(3), NO_FLOAT64),
        "MLPClassifier": lambda: bm.MLPClassifier(device=NO_FLOAT64, max_steps=2, batch_size=30).fit(images, labels),
        "dtype": lambda: bm.resolve_backend(NO_FLOAT64).dtype("float64"),
    }
    return [pytest.param(call, id=name) for name, call in calls.items()]


@pytest.mark.parametrize("call", _float64_refusals())
def test_float64_on_a_device_without_it_is_a_clear_error(call: Any) -> None:
    with pytest.raises(bm.InputValidationError) as info:
        call()
    assert str(info.value) == (
        "dtype: received float64, which device 'array_api_strict:no_float64' does not support; "
        "expected float32 on this device"
    )


def test_float64_checkpoint_on_a_device_without_it_is_a_clear_error(tmp_path: Any) -> None:
    images, labels = toy_data()
    result = bm.train(bm.Dataset.from_host(images, labels, device="numpy"), hidden=(4,), num_iterations=2,
                      batch_size=40)
    path = save_checkpoint(tmp_path / "c.npz", result.config, result.state)
    with pytest.raises(bm.InputValidationError, match="^dtype: received float64, which device"):
        load_checkpoint(path, device=NO_FLOAT64)


def test_float32_trains_on_a_device_without_float64(tmp_path: Any) -> None:
    device = xps.Device("no_float64")
    images, labels = toy_data()
    train_set = bm.Dataset.from_host(images[:90], labels[:90], device=NO_FLOAT64, dtype="float32")
    val_set = bm.Dataset.from_host(images[90:], labels[90:], device=NO_FLOAT64, dtype="float32")
    result = bm.train(train_set, val_data=val_set, hidden=(8,), optimizer="adam", learning_rate=0.01,
                      batch_size=30, num_iterations=30, record_every=10, batchnorm=bm.BatchNormConfig())
    on_device(result.parameters, device, "parameters")
    on_device(result.state.optimizer_state, device, "optimizer_state")
    assert {bm.backends.dtype_name(v.dtype) for v in result.parameters.values()} == {"float32"}
    assert result.state.costs[-1][1] < result.state.costs[0][1]  # it learns
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "c.npz", result.config, result.state), device=NO_FLOAT64)
    on_device(checkpoint.state.parameters, device, "loaded parameters")
    clf = bm.MLPClassifier(hidden_layer_sizes=(8,), device=NO_FLOAT64, dtype="float32", max_steps=30,
                           batch_size=30).fit(images, labels)
    on_device(clf.parameters_, device, "estimator parameters_")
    assert clf.predict_proba(images).dtype == np.float32


# --------------------------------------------------------------------------- the command line


def test_command_line_trains_on_device1_and_refuses_float64_where_it_is_missing(tmp_path: Any, capsys: Any) -> None:
    (tmp_path / "data").mkdir()
    data = write_synthetic_mnist(tmp_path / "data", 300, 60)
    common = ["train", "--data-dir", str(data), "--hidden", "8", "--max-steps", "6", "--batch-size", "50"]
    assert main([*common, "--device", DEVICE1, "--out", str(tmp_path / "d1")]) == 0
    assert '"device": "array_api_strict:device1"' in (tmp_path / "d1" / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*common, "--device", NO_FLOAT64, "--out", str(tmp_path / "nf")]) == 2
    assert capsys.readouterr().err == (
        "backend-mlp train: error: dtype: received float64, which device 'array_api_strict:no_float64' does not "
        "support; expected float32 on this device\n"
    )
    assert not (tmp_path / "nf").exists()  # refused before anything was written
