"""Test backends, dtypes and tolerances: the single place that decides what the tests run on.

In the spirit of scikit-learn's ``yield_namespace_device_dtype_combinations``
and array-api-extra's ``Backend`` enum.  The backends are

==================  =====================================================
``numpy``           NumPy on the host (also the reference backend)
``array_api_strict`` the standard's reference library (catches non-standard calls)
``torch``           PyTorch on the CPU
``jax``             JAX on the CPU (float64 enabled)
``cupy``            CuPy on CUDA device 0
``torch_cuda``      PyTorch on CUDA device 0
``jax_gpu``         JAX on GPU 0
==================  =====================================================

``BACKEND_MLP_TEST_BACKENDS`` (comma separated, e.g. ``numpy,torch``)
restricts the list; by default all are used.  A backend whose library is not
installed is skipped (``could not import ...``); the GPU backends (marked
``gpu``) are skipped with reason ``no CUDA device available`` on a machine
without one.

Fixtures: ``backend`` (a :class:`backend_mlp.Backend`, parametrized over the
backends), ``dtype`` (``"float32"``/``"float64"``), ``reference_backend``
(NumPy), ``tol`` (``rtol``/``atol`` for ``dtype``), ``agreement_rtol`` (the
required cross-backend relative tolerance for ``dtype``) and ``error_log``,
which records the largest relative errors seen and prints them at the end of
the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import backend_mlp
from backend_mlp import Backend, BackendUnavailableError

ENV_VAR = "BACKEND_MLP_TEST_BACKENDS"

#: every backend the tests know about, in report order
ALL_BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "cupy", "torch_cuda", "jax_gpu")
#: the module that must be importable for each backend
_LIBRARY = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch", "jax": "jax", "cupy": "cupy",
            "torch_cuda": "torch", "jax_gpu": "jax"}
#: the string handed to backend_mlp.resolve_backend
_RESOLVE_AS = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch", "jax": "jax",
               "cupy": "gpu", "torch_cuda": "torch:cuda", "jax_gpu": "jax:gpu"}
#: the backends that need a CUDA device (marked ``gpu``, skipped without one)
GPU_BACKENDS = frozenset({"cupy", "torch_cuda", "jax_gpu"})
REFERENCE_BACKEND = "numpy"

DTYPES = ("float32", "float64")

#: cross-backend agreement (relative, max|a-b| / max|b|) required per dtype
AGREEMENT_RTOL = {"float64": 1e-10, "float32": 1e-4}


def _parse_backend_names(raw: str | None) -> tuple[tuple[str, ...], list[str]]:
    """Backends named in ``raw`` (all when empty) and the unknown names."""
    if raw is None or not raw.strip():
        return ALL_BACKENDS, []
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_BACKENDS]
    return tuple(n for n in dict.fromkeys(names) if n in ALL_BACKENDS), unknown


SELECTED_BACKENDS, _UNKNOWN_BACKENDS = _parse_backend_names(os.environ.get(ENV_VAR))


def pytest_configure(config: pytest.Config) -> None:
    if _UNKNOWN_BACKENDS:
        raise pytest.UsageError(
            f"{ENV_VAR}={os.environ.get(ENV_VAR)!r}: unknown backend(s) {_UNKNOWN_BACKENDS!r}; "
            f"expected a comma separated subset of {', '.join(ALL_BACKENDS)}"
        )


_RESOLVED: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The :class:`Backend` for a test backend name, or skip the test saying what is missing."""
    if name not in _RESOLVED:
        pytest.importorskip(_LIBRARY[name])
        try:
            _RESOLVED[name] = backend_mlp.resolve_backend(_RESOLVE_AS[name])
        except BackendUnavailableError as exc:
            if name in GPU_BACKENDS:
                pytest.skip(f"no CUDA device available ({exc})")
            pytest.skip(f"backend {name!r} unavailable: {exc}")
    return _RESOLVED[name]


def backend_params(names: tuple[str, ...] = SELECTED_BACKENDS) -> list[Any]:
    """``pytest.param`` objects for ``names`` with readable ids and the ``gpu`` mark for the GPU backends."""
    return [pytest.param(n, id=n, marks=[pytest.mark.gpu] if n in GPU_BACKENDS else []) for n in names]


def foreign_backend(backend: Backend) -> Backend:
    """A backend of another library than ``backend``, to mix with it: NumPy, or array-api-strict for NumPy."""
    return get_backend("array_api_strict" if backend.library == "numpy" else REFERENCE_BACKEND)


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each selected backend in turn (skipped where unavailable)."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def reference_backend() -> Backend:
    """NumPy on the host: the backend every other one is compared against."""
    return get_backend(REFERENCE_BACKEND)


@pytest.fixture(params=DTYPES)
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param


def tolerance(dtype: str, factor: float = 100.0) -> dict[str, float]:
    """``rtol``/``atol`` of ``factor`` machine epsilons for ``dtype`` (for ``np.testing.assert_allclose``)."""
    eps = float(np.finfo(dtype).eps)
    return {"rtol": factor * eps, "atol": factor * eps}


@pytest.fixture
def tol(dtype: str) -> dict[str, float]:
    """About 100 eps of ``dtype`` (2.2e-14 in float64, 1.2e-5 in float32)."""
    return tolerance(dtype)


@pytest.fixture
def agreement_rtol(dtype: str) -> float:
    """Required relative agreement with NumPy: 1e-10 in float64, 1e-4 in float32."""
    return AGREEMENT_RTOL[dtype]


# --------------------------------------------------------------------------- error bookkeeping


def relative_error(actual: Any, expected: Any, floor: float = 0.0) -> float:
    """``max|a - b| / max(max|b|, floor)`` over host copies (absolute when the denominator is 0).

    ``floor`` guards arrays that are zero up to rounding, e.g. the gradient of a
    bias that a batch norm removes: pass a small fraction of the scale of the
    whole parameter or gradient set (see :func:`tree_floor`).
    """
    a = np.asarray(backend_mlp.to_numpy(actual), dtype=np.float64)
    b = np.asarray(backend_mlp.to_numpy(expected), dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(b))), floor)
    diff = float(np.max(np.abs(a - b)))
    return diff / scale if scale > 0 else diff


#: arrays are compared relative to their own largest entry, but at least this
#: fraction of the largest entry of the whole set they belong to
TREE_FLOOR_FRACTION = 1e-2


def tree_floor(tree: dict[str, Any], fraction: float = TREE_FLOOR_FRACTION) -> float:
    """``fraction`` times the largest magnitude over all arrays of ``tree``."""
    return fraction * max((float(np.max(np.abs(backend_mlp.to_numpy(v)))) for v in tree.values()), default=0.0)


class ErrorLog:
    """Keeps the largest error per (check, backend, dtype) and asserts bounds."""

    relative_error = staticmethod(relative_error)
    tree_floor = staticmethod(tree_floor)

    def __init__(self) -> None:
        self.worst: dict[tuple[str, str, str], float] = {}

    def record(self, check: str, backend: Backend | str, dtype: str, value: float) -> float:
        key = (check, str(backend).split(":")[0], dtype)
        self.worst[key] = max(self.worst.get(key, 0.0), float(value))
        return float(value)

    def check(
        self,
        check: str,
        backend: Backend | str,
        dtype: str,
        actual: Any,
        expected: Any,
        rtol: float,
        what: str = "",
        floor: float = 0.0,
    ) -> float:
        """Assert ``relative_error(actual, expected, floor) <= rtol`` and record the error."""
        err = self.record(check, backend, dtype, relative_error(actual, expected, floor))
        assert np.isfinite(err) and err <= rtol, (
            f"{check} {what} on {backend} ({dtype}): relative error {err:.3e} > {rtol:.1e}"
        )
        return err


_ERROR_LOG = ErrorLog()


@pytest.fixture(scope="session")
def error_log() -> ErrorLog:
    """The session's :class:`ErrorLog` (its maxima are printed in the terminal summary)."""
    return _ERROR_LOG


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ERROR_LOG.worst:
        return
    tr = terminalreporter
    tr.write_sep("-", "backend_mlp: largest relative errors observed")
    width = max(len(k[0]) for k in _ERROR_LOG.worst)
    for (check, name, dt), value in sorted(_ERROR_LOG.worst.items()):
        tr.write_line(f"{check:<{width}}  {name:<17} {dt:<8} {value:.3e}")


@pytest.fixture
def server() -> Iterator[Any]:
    """A fresh local HTTP mirror on 127.0.0.1 (:class:`local_mirror.Server`), closed after the test."""
    from local_mirror import Server

    s = Server()
    try:
        yield s
    finally:
        s.close()



def interrupted_state(data: Any, config: Any, at: int, val_data: Any = None) -> Any:
    """The :class:`~backend_mlp.training.TrainingState` of ``train(data, config, val_data)`` stopped by a
    Ctrl-C at the record step ``at`` (raised from the checkpoint callback, as a user's would arrive)."""
    from backend_mlp.training import TrainingInterrupted, train

    def stop(state: Any) -> None:
        if state.step == at:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train(data, config, val_data, checkpoint_callback=stop)
    return info.value.state


def cut_and_resume(data: Any, config: Any, folder: Any, backend: Backend, at: int) -> tuple[Any, Any, Any, Any]:
    """Train ``config`` on ``data`` in full, and again with a Ctrl-C at step ``at`` (from the checkpoint
    callback), the interrupted state saved to ``folder/cut.npz``, loaded on ``backend`` and resumed.

    Returns ``(full, cut, loaded, resumed)``: the uninterrupted result, the interrupted state, the loaded
    :class:`~backend_mlp.checkpoint.Checkpoint` (its ``state`` advanced by the resume) and the resumed result.
    """
    from backend_mlp.checkpoint import load_checkpoint, save_checkpoint
    from backend_mlp.training import train

    full = train(data, config)
    cut = interrupted_state(data, config, at)
    loaded = load_checkpoint(save_checkpoint(folder / "cut.npz", config, cut), device=backend)
    return full, cut, loaded, train(data, config, state=loaded.state)
