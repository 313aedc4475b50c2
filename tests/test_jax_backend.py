"""The JAX backend's own contract: names, float64, missing library or device, placement, synchronisation.

The numeric behaviour on JAX is the whole suite's (``BACKEND_MLP_TEST_BACKENDS=jax``); these tests
cover what only this backend does.  They need JAX installed and skip otherwise.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from backend_mlp import BackendUnavailableError, InputValidationError, resolve_backend, to_numpy

jax = pytest.importorskip("jax")

from backend_mlp.backends import backend_of, jax_backend  # noqa: E402


def test_resolving_jax_enables_float64_for_the_process():
    backend = resolve_backend("jax")
    assert jax.config.read("jax_enable_x64")
    x = backend.asarray(np.arange(3.0))
    assert x.dtype == np.float64 and backend.asarray(np.arange(3.0), "float32").dtype == np.float32
    assert backend.dtype("float64") == np.float64
    assert (backend.name, backend.hardware, backend.on_host, backend.mutable_arrays) == ("jax:cpu", "cpu", True, False)


@pytest.mark.parametrize("choice", ["jax", "jax:cpu", "JAX:CPU", "jax:cpu:0"])
def test_cpu_spellings(choice):
    assert resolve_backend(choice).name == "jax:cpu"


def test_arrays_know_their_backend():
    backend = resolve_backend("jax")
    x = backend.asarray(np.ones((2, 3)))
    assert backend_of(x) == backend and type(backend_of(x)) is jax_backend.JaxBackend
    assert not jax_backend.JaxBackend.owns(np.ones(3))


@pytest.mark.parametrize("choice", ["jax:tpu", "jax:gpu:x", "jax:cpu:0:1", "jax:"])
def test_malformed_names_list_the_jax_spellings(choice):
    with pytest.raises(InputValidationError, match=r"expected 'jax', 'jax:cpu', 'jax:gpu' or 'jax:gpu:N'"):
        resolve_backend(choice)


def test_missing_jax_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # makes `import jax` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"device 'jax' needs JAX, which is not installed.*pip install"):
        resolve_backend("jax")


def test_a_missing_gpu_is_unavailable_not_a_crash():
    try:
        jax.devices("gpu")
    except RuntimeError:
        pass
    else:
        pytest.skip("this machine has a GPU JAX can use")
    for choice in ("jax:gpu", "jax:cuda", "jax:gpu:1"):
        with pytest.raises(BackendUnavailableError, match=r"JAX sees no GPU.*jax:cpu"):
            resolve_backend(choice)


def test_a_device_index_beyond_the_count_is_unavailable():
    with pytest.raises(BackendUnavailableError, match=r"only 1 CPU device\(s\), numbered 0 to 0"):
        resolve_backend(f"jax:cpu:{len(jax.devices('cpu'))}")


def test_a_device_without_float64_refuses_float64_data(monkeypatch):
    backend = resolve_backend("jax")
    monkeypatch.setitem(jax_backend._HAS_FLOAT64, backend.device, False)
    assert backend.supported_dtypes() == ("float32",)
    with pytest.raises(InputValidationError, match=r"^dtype: received float64, which device 'jax:cpu' does not"):
        backend.asarray(np.ones(2))
    assert backend.asarray(np.ones(2), "float32").dtype == np.float32


@pytest.fixture
def float64_switched_off():
    """``jax_enable_x64`` off for the test (as in a process where backend_mlp has not switched it on yet)."""
    backend = resolve_backend("jax")
    jax.config.update("jax_enable_x64", False)
    try:
        yield backend
    finally:
        jax.config.update("jax_enable_x64", True)


def test_switching_float64_on_with_existing_arrays_warns_once(float64_switched_off):
    x = jax.numpy.ones(3)  # made with 32-bit defaults
    assert x.dtype == np.float32
    with pytest.warns(UserWarning, match=r"^backend_mlp switched on jax_enable_x64 .* JAX array\(s\) existed"):
        backend = backend_of(x)
    assert jax.config.read("jax_enable_x64") and x.dtype == np.float32 and backend.name == "jax:cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend_of(x)
        resolve_backend("jax")


def test_switching_float64_on_without_arrays_is_silent(float64_switched_off, monkeypatch):
    monkeypatch.setattr(jax, "live_arrays", lambda *args: [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_backend("jax:cpu")
    assert jax.config.read("jax_enable_x64")


def test_float64_after_the_switch_was_turned_off_is_an_error_not_float32(float64_switched_off):
    backend = float64_switched_off  # resolved before the switch was turned off
    with pytest.raises(InputValidationError, match=r"^dtype: received float64, but jax_enable_x64 was switched off"):
        backend.asarray(np.ones(2))
    assert backend.asarray(np.ones(2), "float32").dtype == np.float32


class _GpuStandIn:
    """A JAX GPU device as far as the memory statistics go (JAX's own high-water mark, which never resets)."""

    platform, id, device_kind = "gpu", 0, "Stand-in"

    def __init__(self):
        self.stats = {"bytes_in_use": 0, "peak_bytes_in_use": 100}

    def memory_stats(self):
        return self.stats


def test_gpu_memory_peak_is_known_only_when_the_block_raised_it(monkeypatch):
    device = _GpuStandIn()
    backend = jax_backend.JaxBackend("jax:gpu:0", jax.numpy, device)
    monkeypatch.setattr(jax_backend.JaxBackend, "synchronize", lambda self: None)
    monkeypatch.delitem(jax_backend._PEAK_AT_RESET, device, raising=False)
    assert (backend.on_host, backend.hardware, backend.memory_peak()) == (False, "cuda:0", 100)
    backend.reset_memory_peak()
    assert backend.memory_peak() is None  # the block stayed below the earlier high-water mark: unknown
    device.stats["peak_bytes_in_use"] = 250
    assert backend.memory_peak() == 250
    device.stats = None  # a plugin without statistics
    assert backend.memory_peak() is None
    jax_backend._PEAK_AT_RESET.pop(device, None)


def test_synchronize_waits_for_queued_work():
    backend = resolve_backend("jax")
    x = backend.asarray(np.random.default_rng(0).standard_normal((300, 300)))
    y = x
    for _ in range(5):
        y = y @ x / 300.0
    backend.synchronize()
    assert y.is_ready()
    np.testing.assert_allclose(to_numpy(y), to_numpy(y))


def test_compile_step_is_jax_jit():
    backend = resolve_backend("jax")
    compiled = backend.compile_step(lambda a, b: (a * b, {"sum": a + b}))
    a, b = backend.asarray(np.arange(4.0)), backend.asarray(np.ones(4))
    product, tree = compiled(a, b)
    np.testing.assert_array_equal(to_numpy(product), np.arange(4.0))
    np.testing.assert_array_equal(to_numpy(tree["sum"]), np.arange(4.0) + 1)
    assert compiled._cache_size() == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_cpu_forms_a_large_layers_input_gradient_rows_first(dtype):
    """On a CPU the gradient handed down, ``W.T @ dZ``, goes through the backend's product: for a large ``W``
    ``(dZ.T @ W).T`` behind an optimisation barrier (XLA's faster GEMM), for a small one the plain product;
    both the plain product's values to float rounding, and the compiled step uses it too."""
    backend = resolve_backend("jax")
    assert backend.input_gradient is jax_backend.rows_first_input_gradient
    assert backend.kernel_ops(False).input_gradient is jax_backend.rows_first_input_gradient
    rng = np.random.default_rng(0)
    eps = float(np.finfo(dtype).eps)
    for n_out, n_in, barrier in ((7, 20, False), (256, 300, True)):
        W, dZ = rng.standard_normal((n_out, n_in)), rng.standard_normal((n_out, 64))
        got = to_numpy(backend.input_gradient(backend.asarray(W, dtype), backend.asarray(dZ, dtype)))
        Wd, dZd = W.astype(dtype).astype(np.float64), dZ.astype(dtype).astype(np.float64)
        assert got.shape == (n_in, 64) and got.dtype == np.dtype(dtype)
        assert np.all(np.abs(got - Wd.T @ dZd) <= n_out * eps * (np.abs(Wd).T @ np.abs(dZd)))
        jaxpr = str(jax.make_jaxpr(backend.input_gradient)(backend.asarray(W, dtype), backend.asarray(dZ, dtype)))
        assert ("optimization_barrier" in jaxpr) == barrier


def test_a_gpu_forms_every_product_at_full_precision(monkeypatch):
    """On a GPU JAX's default precision would run float32 products in TF32; the backend's products ask for
    the operands' own precision there (``precision=HIGHEST`` in the traced dot), with the plain values."""
    monkeypatch.setattr(jax_backend.JaxBackend, "on_host", property(lambda self: False))
    backend = resolve_backend("jax")
    products = {"matmul": (backend.matmul, lambda a, b: a @ b, (5, 7), (7, 3)),
                "weight_gradient": (backend.weight_gradient, lambda a, b: a @ b.T, (5, 3), (7, 3)),
                "input_gradient": (backend.input_gradient, lambda a, b: a.T @ b, (5, 7), (5, 3))}
    rng = np.random.default_rng(1)
    for name, (product, plain, shape_a, shape_b) in products.items():
        assert product is getattr(jax_backend, f"full_precision_{name}"), name
        a, b = rng.standard_normal(shape_a).astype(np.float32), rng.standard_normal(shape_b).astype(np.float32)
        jaxpr = str(jax.make_jaxpr(product)(backend.asarray(a), backend.asarray(b)))
        assert "precision=(Precision.HIGHEST, Precision.HIGHEST)" in jaxpr, (name, jaxpr)
        np.testing.assert_allclose(to_numpy(product(backend.asarray(a), backend.asarray(b))), plain(a, b),
                                   rtol=1e-5, atol=1e-6)
    assert backend.kernel_ops(False).matmul is jax_backend.full_precision_matmul


def test_describe_names_the_versions():
    info = resolve_backend("jax").describe()
    assert info["backend"] == "jax:cpu" and info["jax"] == jax.__version__ and "jaxlib" in info
    assert resolve_backend("jax").memory_peak() is None  # host memory: no device peak
