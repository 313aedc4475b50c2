"""Backend selection (resolve_backend), namespace checks and host <-> device copies.

Every test runs on each selected backend (conftest ``backend``) except the
parsing of unknown names and the errors for a missing library or CUDA device,
which create no arrays (the libraries are hidden with ``monkeypatch``).
"""

from __future__ import annotations

import sys
import types

import array_api_compat
import numpy as np
import pytest
from conftest import backend_params, foreign_backend, get_backend

import backend_mlp
from backend_mlp import (
    Backend,
    BackendMismatchError,
    BackendUnavailableError,
    InputValidationError,
    namespace_of,
    resolve_backend,
    to_backend,
    to_numpy,
)

# ----------------------------------------------------------------------------- resolve_backend


#: user spellings of each test backend (the test runs for the selected backends only)
SPELLINGS = {
    "numpy": ("cpu", "numpy", "CPU", " numpy "),
    "array_api_strict": ("array_api_strict", "strict"),
    "torch": ("torch", "torch:cpu", "Torch"),
    "jax": ("jax", "jax:cpu", "JAX", "jax:cpu:0"),
    "cupy": ("gpu", "cupy", "cuda", "gpu:0"),
    "torch_cuda": ("torch:cuda", "torch:cuda:0"),
    "jax_gpu": ("jax:gpu", "jax:cuda", "jax:gpu:0"),
}


@pytest.mark.parametrize(
    ("name", "choice"),
    [
        pytest.param(p.values[0], choice, id=f"{p.id}-{choice!r}", marks=p.marks)
        for p in backend_params()
        for choice in SPELLINGS[p.values[0]]
    ],
)
def test_spellings_resolve_to_the_backend(name, choice):
    expected = get_backend(name)
    b = resolve_backend(choice)
    assert type(b) is type(expected)
    assert (b.name, b.device) == (expected.name, expected.device) and b.xp is expected.xp
    if name == "numpy":
        assert b.device is None and array_api_compat.is_numpy_namespace(b.xp)
    x = b.asarray(np.arange(3.0))
    assert backend_mlp.backend_of(x).name == expected.name and x.dtype == expected.dtype("float64")
    assert backend_mlp.backends.library_of(x) == expected.library


def test_resolve_backend_passes_backend_through(backend):
    assert resolve_backend(backend) is backend


# host-only down to namespace_of: parsing of names and the errors for a missing library or
# device (hidden with monkeypatch); no arrays are created


@pytest.mark.parametrize("choice", ["tpu", "numpyy", "jaxx", "", "gpu:x", "cuda:-1", "jax:tpu", "jax:gpu:x"])
def test_unknown_name_lists_valid_choices(choice):
    with pytest.raises(InputValidationError) as info:
        resolve_backend(choice)
    message = str(info.value)
    assert repr(choice) in message
    if ":" not in choice:
        for valid in ("'cpu'", "'gpu'", "'numpy'", "'torch'", "'array_api_strict'"):
            assert valid in message


def test_unknown_name_is_a_value_error():
    # callers that catch the built-in exception keep working
    with pytest.raises(ValueError):
        resolve_backend("tpu")


@pytest.mark.parametrize("choice", [0, None, 1.5, ["cpu"]], ids=["int", "None", "float", "list"])
def test_non_string_choice_is_rejected(choice):
    with pytest.raises(InputValidationError, match="expected a string"):
        resolve_backend(choice)


@pytest.mark.parametrize("choice", ["gpu", "cuda", "cupy", "gpu:1"])
def test_gpu_without_cupy_names_cupy(monkeypatch, choice):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(BackendUnavailableError) as info:
        resolve_backend(choice)
    message = str(info.value)
    assert "CuPy" in message and "not installed" in message
    assert "pip install" in message  # says how to fix it


def _fake_cupy(get_device_count):
    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_gpu_with_cupy_but_broken_cuda_names_cuda(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(no_driver))
    with pytest.raises(BackendUnavailableError, match="no CUDA device could be opened"):
        resolve_backend("gpu")


def test_gpu_with_cupy_but_zero_devices_names_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        resolve_backend("gpu")


def test_gpu_index_beyond_device_count(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 2))
    with pytest.raises(BackendUnavailableError, match=r"only 2 CUDA device\(s\), numbered 0 to 1"):
        resolve_backend("gpu:2")


def test_torch_cuda_index_beyond_device_count(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BackendUnavailableError, match=r"'torch:cuda:3'.*sees 1 CUDA device"):
        resolve_backend("torch:cuda:3")


def test_torch_missing_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailableError, match="PyTorch"):
        resolve_backend("torch")


def test_array_api_strict_missing_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "array_api_strict", None)
    with pytest.raises(BackendUnavailableError, match="array-api-strict"):
        resolve_backend("array_api_strict")


# ----------------------------------------------------------------------------- namespace_of


def test_namespace_of_agrees_with_each_backend(backend):
    x = backend.asarray(np.ones((2, 3)))
    y = backend.asarray(np.zeros((3, 1)))
    xp = namespace_of(x, None, y)
    assert xp is backend.xp
    assert backend_mlp.backend_of(x).name == backend.name


def test_namespace_of_refuses_a_mixture_with_another_library(backend):
    other = foreign_backend(backend)
    with pytest.raises(BackendMismatchError) as info:
        namespace_of(backend.asarray(np.ones(3)), other.asarray(np.ones(3)))
    message = str(info.value)
    assert backend.library in message and other.library in message and "to_backend" in message
    with pytest.raises(BackendMismatchError):
        namespace_of(other.asarray(np.ones(3)), backend.asarray(np.ones(3)))


def test_mixture_with_another_library_refused_by_model_functions(backend):
    params = backend_mlp.initialize_parameters([3, 2], 0, device=foreign_backend(backend))
    X = backend.asarray(np.ones((3, 4)))
    with pytest.raises(BackendMismatchError):
        backend_mlp.L_model_forward(X, params)


@pytest.mark.parametrize("obj", [[1.0, 2.0], 3.0, "abc", {"W1": 1}], ids=["list", "float", "str", "dict"])
def test_namespace_of_refuses_non_arrays(backend, obj):
    with pytest.raises(InputValidationError, match=f"type {type(obj).__name__}"):
        namespace_of(backend.asarray(np.ones(2)), obj)


# ----------------------------------------------------------------------------- host <-> backend


@pytest.mark.parametrize("dtype_", ["float32", "float64", "int64"])
def test_to_numpy_to_backend_round_trip(backend, dtype_):
    host = np.random.default_rng(1).standard_normal((4, 3)).astype(dtype_)
    dev = to_backend(host, backend)
    assert backend_mlp.backend_of(dev).name == backend.name
    assert str(dev.dtype).rsplit(".", 1)[-1] == dtype_
    back = to_numpy(dev)
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.dtype(dtype_)
    np.testing.assert_array_equal(back, host)


def test_to_backend_across_backends(backend, reference_backend):
    host = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    on_backend = to_backend(reference_backend.asarray(host), backend)
    back_on_numpy = to_backend(on_backend, "numpy")
    assert isinstance(back_on_numpy, np.ndarray)
    np.testing.assert_array_equal(back_on_numpy, host)


def test_tree_round_trip(backend):
    params = backend_mlp.initialize_parameters([4, 3, 2], 5, device=backend, use_batchnorm=True)
    host = backend_mlp.tree_to_numpy(params)
    assert set(host) == set(params)
    again = backend_mlp.tree_to_backend(host, backend)
    for k in params:
        np.testing.assert_array_equal(to_numpy(again[k]), host[k])
        assert backend_mlp.backend_of(again[k]).name == backend.name


def test_to_numpy_of_scalar_and_zero_d(backend):
    assert to_numpy(2.5) == 2.5
    zero_d = backend.xp.sum(backend.asarray(np.array([1.0, 2.0])))
    assert float(to_numpy(zero_d)) == 3.0


def test_take_batch_gathers_the_rows_as_columns(backend):
    """``take_batch`` is ``take_columns`` of the images and of the labels (the labels alone: a compiled
    run's record step), with device or host indices alike."""
    X_rows = backend.asarray(np.arange(40.0).reshape(10, 4))
    Y_rows = backend.asarray(np.eye(10))
    checked = 0
    for idx, host in ((backend.asarray(np.array([3, 1, 1, 7])), False), (np.array([3, 1, 1, 7]), True)):
        if host and not backend.compiled_takes_host_indices:
            continue  # host indices only reach backends whose compiled step takes them (JAX)
        Xb, Yb = backend.take_batch(X_rows, Y_rows, idx)
        np.testing.assert_array_equal(to_numpy(Xb), np.arange(40.0).reshape(10, 4)[[3, 1, 1, 7]].T)
        np.testing.assert_array_equal(to_numpy(Yb), np.eye(10)[[3, 1, 1, 7]].T)
        np.testing.assert_array_equal(to_numpy(backend.take_columns(Y_rows, idx)), to_numpy(Yb))
        checked += 1
    assert checked == 1 + backend.compiled_takes_host_indices


def test_backend_asarray_casts_dtype(backend, dtype):
    x = backend.asarray(np.arange(4), dtype)
    assert x.dtype == backend.dtype(dtype)
    assert backend.dtype(np.dtype(dtype)) == backend.dtype(dtype)


def test_unknown_dtype_is_rejected(backend):
    with pytest.raises(InputValidationError, match="float32, float64"):
        backend.dtype("float16")


def test_backend_is_a_frozen_record(backend):
    assert isinstance(backend, Backend) and str(backend) == backend.name
    with pytest.raises(AttributeError):
        backend.name = "other"  # type: ignore[misc]


def test_dtype_names_accept_numpy_scalar_types_and_containers_get_a_pointer():
    from backend_mlp.backends import resolve_dtype_name

    assert resolve_dtype_name(np.float32) == "float32" and resolve_dtype_name(np.dtype("float64")) == "float64"
    with pytest.raises(backend_mlp.InputValidationError, match="tree_to_backend"):
        backend_mlp.to_backend({"W1": np.ones(2)}, "numpy")
    with pytest.raises(backend_mlp.InputValidationError, match="list"):
        backend_mlp.to_numpy([1.0, 2.0])
