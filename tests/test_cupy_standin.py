"""SMOKE TESTS of the CuPy branches, run on a NumPy-backed stand-in for CuPy (``tests/fake_cupy.py``).

They execute every method and branch of :class:`backend_mlp.backends.CupyBackend` (device
selection and count, placement, to-host, synchronize, the memory pool, describe) and train,
save and load through it, with CuPy's device rules imitated (arrays never convert to NumPy
implicitly; kernels run on the current GPU and refuse arrays of another one).  A green run is
NOT proof that the GPU path works: CUDA, cuBLAS and CuPy itself never run here.  That is what
``scripts/gpu_check.sh`` checks on a machine with an NVIDIA GPU.

They run once, in the NumPy session (the stand-in is NumPy), not per ``backend`` parameter.
"""

from __future__ import annotations

import sys
from typing import Any

import fake_cupy
import numpy as np
import pytest
from conftest import SELECTED_BACKENDS
from synthetic_mnist import write_synthetic_mnist

import backend_mlp as bm
from backend_mlp.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from backend_mlp.cli.main import main
from backend_mlp.training.evaluation import evaluate

pytestmark = pytest.mark.skipif(
    "numpy" not in SELECTED_BACKENDS, reason="the CuPy stand-in (NumPy-backed) runs with the numpy backend"
)


@pytest.fixture
def cupy(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in, installed as ``cupy`` with two stand-in GPUs for one test."""
    return fake_cupy.install(monkeypatch, device_count=2)


def on_gpu(tree: dict[str, Any] | None, index: int, what: str) -> None:
    """Every array of ``tree`` is a (stand-in) CuPy array on GPU ``index``."""
    assert tree, f"{what}: expected arrays"
    for key, value in tree.items():
        assert type(value).__module__ == "cupy", f"{what}[{key!r}] is {type(value)}, expected a cupy.ndarray"
        assert value.device.id == index, f"{what}[{key!r}] is on GPU {value.device.id}, expected GPU {index}"


def toy_data(n: int = 120, n_features: int = 6, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % n_classes
    return rng.normal(size=(n, n_features)) + labels[:, None], labels


# --------------------------------------------------------------------------- choosing a GPU


@pytest.mark.parametrize(("choice", "index"), [("gpu", 0), ("cuda", 0), ("cupy", 0), ("gpu:1", 1), ("cuda:1", 1),
                                               ("CuPy:1", 1)])
def test_smoke_gpu_names_resolve_to_cupy_devices(cupy: Any, choice: str, index: int) -> None:
    backend = bm.resolve_backend(choice)
    assert isinstance(backend, bm.backends.CupyBackend)
    assert backend.name == f"cupy:{index}" and backend.device.id == index and backend.hardware == f"cuda:{index}"
    assert not backend.on_host


def test_smoke_gpu_number_beyond_the_count_names_the_count(cupy: Any) -> None:
    with pytest.raises(bm.BackendUnavailableError) as info:
        bm.resolve_backend("gpu:5")
    assert str(info.value) == "device 'gpu:5': there are only 2 CUDA device(s), numbered 0 to 1"


def test_smoke_gpu_number_must_be_a_number(cupy: Any) -> None:
    with pytest.raises(bm.InputValidationError) as info:
        bm.resolve_backend("cuda:one")
    assert str(info.value) == "device: received 'cuda:one'; expected a GPU number after the ':', such as 'cuda:0'"


def test_smoke_other_libraries_names_are_not_cupys(cupy: Any) -> None:
    assert bm.backends.CupyBackend.parse("array_api_strict", "array_api_strict") is None


def test_smoke_machine_without_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cupy.install(monkeypatch, device_count=0)
    with pytest.raises(bm.BackendUnavailableError, match="CuPy is installed but this machine has no CUDA device; "):
        bm.resolve_backend("gpu")


def test_smoke_broken_cuda_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cupy.install(monkeypatch, runtime_error="cudaErrorInsufficientDriver: driver too old")
    with pytest.raises(bm.BackendUnavailableError) as info:
        bm.resolve_backend("gpu:0")
    assert "no CUDA device could be opened (cudaErrorInsufficientDriver: driver too old)" in str(info.value)


def test_smoke_cupy_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(bm.BackendUnavailableError, match=r"^device 'gpu' needs CuPy, which is not installed"):
        bm.resolve_backend("gpu")


# --------------------------------------------------------------------------- placement, host, memory


def test_smoke_placement_and_back_to_the_host(cupy: Any) -> None:
    backend = bm.resolve_backend("gpu:1")
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    x = backend.asarray(host, "float32")
    assert type(x) is cupy.ndarray and x.device.id == 1 and x.dtype == np.float32
    assert bm.backends.CupyBackend.owns(x) and not bm.backends.NumpyBackend.owns(x)
    assert bm.backend_of(x) == backend and bm.backends.library_of(x) == "cupy"
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)  # the stand-in, like CuPy, never converts silently
    back = bm.to_numpy(x)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    assert bm.to_backend(x, "cpu").dtype == np.float32


def test_smoke_synchronize_memory_and_describe(cupy: Any) -> None:
    backend = bm.resolve_backend("gpu:1")
    backend.reset_memory_peak()
    assert fake_cupy.STATE.synchronized == [1] and fake_cupy.STATE.free_all_blocks_calls == 1
    before = backend.memory_peak()
    x = backend.asarray(np.ones((100, 100)))
    backend.synchronize()
    assert fake_cupy.STATE.synchronized == [1, 1]
    assert backend.memory_peak() >= before + x.nbytes
    info = backend.describe()
    assert info == {"backend": "cupy:1", "cupy": fake_cupy.VERSION, "gpu": "Stand-in GPU 1 (NumPy)"}


def test_smoke_describe_without_device_properties(cupy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = bm.resolve_backend("gpu")

    def broken(index: int) -> Any:
        raise fake_cupy.CUDARuntimeError("no properties")

    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceProperties", broken)
    assert backend.describe() == {"backend": "cupy:0", "cupy": fake_cupy.VERSION}


def test_smoke_device_context_makes_the_gpu_current(cupy: Any) -> None:
    backend = bm.resolve_backend("gpu:1")
    x = backend.asarray(np.ones(3))
    with pytest.raises(ValueError, match="Array device must be same as the current device"):
        x + 1  # CuPy's rule, imitated: GPU 0 is current
    with backend.device_context():
        assert (x + 1).device.id == 1


# --------------------------------------------------------------------------- training through the CuPy branches


def test_smoke_training_keeps_every_array_on_the_gpu(cupy: Any, tmp_path: Any) -> None:
    images, labels = toy_data()
    train_set = bm.Dataset.from_host(images[:90], labels[:90], device="gpu")
    val_set = bm.Dataset.from_host(images[90:], labels[90:], device="gpu")
    result = bm.train(train_set, val_data=val_set, hidden=(8,), optimizer="adam", learning_rate=0.05,
                      batch_size=30, num_iterations=12, record_every=4, batchnorm=bm.BatchNormConfig())
    for group in ("parameters", "bn_state", "optimizer_state", "best_parameters", "best_bn_state"):
        on_gpu(getattr(result.state, group), 0, group)
    cost, accuracy = evaluate(val_set, result.parameters, result.config, result.bn_state)
    assert np.isfinite(cost) and 0 <= accuracy <= 1

    # the same run on NumPy: the stand-in computes with NumPy, so the numbers agree to rounding
    host = bm.train(bm.Dataset.from_host(images[:90], labels[:90]), result.config,
                    bm.Dataset.from_host(images[90:], labels[90:]))
    for key, value in host.parameters.items():
        np.testing.assert_allclose(bm.to_numpy(result.parameters[key]), value, rtol=1e-12, atol=1e-14)

    # saved from the "GPU", loaded on the CPU and back on another GPU
    path = save_checkpoint(tmp_path / "c.npz", result.config, result.state)
    on_cpu = load_checkpoint(path, device="cpu")
    assert all(isinstance(v, np.ndarray) for v in on_cpu.state.parameters.values())
    on_gpu1 = load_checkpoint(path, device="gpu:1")
    on_gpu(on_gpu1.state.parameters, 1, "loaded parameters")
    on_gpu(on_gpu1.state.optimizer_state, 1, "loaded optimizer_state")
    for key, value in on_cpu.state.parameters.items():
        np.testing.assert_array_equal(bm.to_numpy(on_gpu1.state.parameters[key]), value)
    model = load_model(save_model(tmp_path / "m.npz", result.config, on_cpu.state.parameters, on_cpu.state.bn_state),
                       device="gpu")
    on_gpu(model.parameters, 0, "model loaded on the GPU")


def test_smoke_estimator_on_the_gpu_saves_and_loads(cupy: Any, tmp_path: Any) -> None:
    images, labels = toy_data()
    clf = bm.MLPClassifier(hidden_layer_sizes=(8,), device="gpu", max_steps=12, batch_size=30).fit(images, labels)
    on_gpu(clf.parameters_, 0, "parameters_")
    proba = clf.predict_proba(images)
    assert isinstance(proba, np.ndarray) and proba.shape == (120, 3)
    clf.save(tmp_path / "clf.npz")
    again = bm.MLPClassifier.load(tmp_path / "clf.npz")  # the file's device, "gpu"
    on_gpu(again.parameters_, 0, "reloaded parameters_")
    host = bm.MLPClassifier.load(tmp_path / "clf.npz", device="cpu")
    np.testing.assert_allclose(host.predict_proba(images), proba, rtol=1e-12, atol=1e-15)


def test_smoke_training_on_the_second_gpu_inside_its_device_context(cupy: Any) -> None:
    images, labels = toy_data()
    backend = bm.resolve_backend("gpu:1")
    train_set = bm.Dataset.from_host(images, labels, device=backend)
    assert train_set.labels.device.id == 1  # these make the GPU current themselves
    on_gpu({"X_rows": bm.Dataset.from_columns(train_set.X, train_set.Y).X_rows}, 1, "Dataset.from_columns")
    with backend.device_context():
        result = bm.train(train_set, hidden=(4,), num_iterations=4, batch_size=30)
    on_gpu(result.parameters, 1, "parameters")


def test_smoke_training_on_the_second_gpu(cupy: Any) -> None:
    images, labels = toy_data()
    clf = bm.MLPClassifier(hidden_layer_sizes=(4,), device="gpu:1", max_steps=4, batch_size=30).fit(images, labels)
    on_gpu(clf.parameters_, 1, "parameters_")
    assert clf.predict_proba(images).shape == (120, 3)


@pytest.mark.parametrize("device", ["gpu", "gpu:1"])
def test_smoke_command_line_train_and_predict(cupy: Any, tmp_path: Any, device: str) -> None:
    (tmp_path / "data").mkdir()
    data = write_synthetic_mnist(tmp_path / "data", 300, 60)
    out = tmp_path / "run"
    index = int(device.partition(":")[2] or 0)
    argv = ["train", "--data-dir", str(data), "--hidden", "8", "--max-steps", "6", "--batch-size", "50",
            "--device", device, "--out", str(out)]
    assert main(argv) == 0
    assert f'"device": "cupy:{index}"' in (out / "metrics.json").read_text()
    on_gpu(load_model(out / "model.npz", device=device).parameters, index, "model parameters")
    csv = tmp_path / "p.csv"
    assert main(["predict", str(out / "model.npz"), str(data / "t10k-images-idx3-ubyte.gz"), "--device", device,
                 "--out", str(csv)]) == 0
    assert len(csv.read_text().splitlines()) == 61  # a header and one row per image


def test_smoke_mixing_gpus_or_libraries_is_a_mismatch(cupy: Any) -> None:
    gpu0, gpu1 = bm.resolve_backend("gpu:0"), bm.resolve_backend("gpu:1")
    params = bm.initialize_parameters([4, 3], seed=0, device=gpu0)
    with pytest.raises(bm.BackendMismatchError, match=r"^X, parameters\['W1'\]: received arrays on different devices"):
        bm.predict(gpu1.asarray(np.ones((4, 2))), params)
    with pytest.raises(bm.BackendMismatchError, match=r"^X, parameters\['W1'\]: received arrays from different lib"):
        bm.predict(np.ones((4, 2)), params)
