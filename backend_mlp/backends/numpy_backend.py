"""NumPy on the host: the reference backend (``"cpu"``, ``"numpy"``)."""

from __future__ import annotations

import functools
import types
from typing import Any, ClassVar

import array_api_compat
import numpy as np

from .base import Backend, host_as


def rows_first(A: np.ndarray, n_units: int) -> bool:
    """Whether a product of ``n_units`` rows with the mini-batch ``A`` (n_x, m) is faster formed rows-first.

    A mini-batch ``Xb`` is a row gather seen as columns (``rows.T``, the
    transpose of a C-contiguous array), and the first layer multiplies by it
    twice: ``W1 @ Xb`` forward and ``dZ1 @ Xb.T`` for the weight gradient.  In
    float32, when the layer has few units for the batch (the report's 20 for
    256 samples) and the samples many features, OpenBLAS forms both faster
    from the rows' side, ``(rows @ W1.T).T`` and ``(rows.T @ dZ1.T).T``; in
    float64 the direct calls are the faster ones, and with many units for the
    batch neither wins (``docs/benchmarks.md``, "Round 4" and "Round 6", with
    784 features).  The rule looks at the layout only: C-contiguous
    activations stay direct, while a rows-first first layer's activations
    inherit its transposed layout, so when it has 128 or more units (and
    ``4 * units <= m``) the second layer's products are taken rows-first too.
    Both products agree with the direct ones to float32 rounding; whether
    they are bit-identical depends on the CPU's OpenBLAS kernel (they were
    for 784 features on an Intel AVX-512 host, not on an AMD EPYC one)
    (``tests/test_bench.py::test_numpy_products_agree_with_matmul_to_rounding``).
    """
    return (
        A.dtype == np.float32
        and A.ndim == 2
        and 4 * n_units <= A.shape[1]
        and A.shape[0] >= 128
        and not A.flags.c_contiguous
        and A.T.flags.c_contiguous
    )


def blas_matmul(W: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``W @ A`` (the same values to float rounding), in the BLAS call that is faster for the layouts training produces
    (:func:`rows_first`)."""
    return (A.T @ W.T).T if rows_first(A, W.shape[0]) else W @ A


def blas_weight_gradient(dZ: np.ndarray, A_prev: np.ndarray) -> np.ndarray:
    """``dZ @ A_prev.T`` (the same values to float rounding), in the BLAS call that is faster for the layouts
    training produces (:func:`rows_first`)."""
    return (A_prev @ dZ.T).T if rows_first(A_prev, dZ.shape[0]) else dZ @ A_prev.T


@functools.cache
def step_namespace() -> Any:
    """array-api-compat's NumPy namespace, with ``sum``, ``max`` and ``astype`` of floating arrays as direct calls.

    ``sum(x, axis=0, keepdims=True)`` goes through NumPy's Python wrapper
    (``np.sum`` -> ``_wrapreduction`` -> ``np.add.reduce``), about 1.7
    microseconds a call, and a training step of the report's network makes six
    such reductions on arrays of a few thousand numbers: with ``astype``'s
    device check, about 12 of the step's 100 microseconds of fixed cost
    (``docs/benchmarks.md``, "Round 5").  Here they call the ufunc reduction
    and the array method themselves: the same functions, so the same bits.
    Other dtypes (integer sums upcast), subclasses (a masked array's own
    ``sum``) and other arguments go to the compat functions.
    """
    xp = array_api_compat.array_namespace(np.empty(0))
    compat_sum, compat_max, compat_astype = xp.sum, xp.max, xp.astype
    add_reduce, maximum_reduce = np.add.reduce, np.maximum.reduce

    def sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
        if dtype is None and type(x) is np.ndarray and x.dtype.kind == "f":
            return add_reduce(x, axis=axis, keepdims=keepdims)
        return compat_sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    def max(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
        if type(x) is np.ndarray and x.dtype.kind == "f" and x.size:
            return maximum_reduce(x, axis=axis, keepdims=keepdims)
        return compat_max(x, axis=axis, keepdims=keepdims)

    def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
        if device is None and type(x) is np.ndarray:
            return x.astype(dtype, copy=copy)
        return compat_astype(x, dtype, copy=copy, device=device)

    namespace = types.ModuleType(f"{xp.__name__}_for_the_step")
    namespace.__dict__.update({k: v for k, v in vars(xp).items() if not k.startswith("__")})
    namespace.sum, namespace.max, namespace.astype = sum, max, astype  # type: ignore[attr-defined]
    return namespace


class NumpyBackend(Backend):
    library = "numpy"
    host_blas = True
    single_device = True
    #: the linear kernels' products (``ops_for(mutable_arrays, backend.matmul, backend.weight_gradient)``)
    matmul: ClassVar[Any] = staticmethod(blas_matmul)
    weight_gradient: ClassVar[Any] = staticmethod(blas_weight_gradient)

    @classmethod
    def owns(cls, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))  # array_api_compat.is_numpy_array, without its JAX probe

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        return cls.create() if key in ("cpu", "numpy") else None

    @classmethod
    def create(cls) -> NumpyBackend:
        return cls("numpy", array_api_compat.array_namespace(np.empty(0)), None)

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        return cls.create()

    def asarray(self, host_array: Any, dtype: str | None = None) -> Any:
        return host_as(host_array, dtype)

    def step_namespace(self) -> Any:
        return step_namespace()

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def take_columns(self, rows: Any, idx: Any) -> Any:
        """The row gather as columns, with ``np.take`` itself (not the array-API wrapper).

        Each step gathers into fresh arrays: gathering into buffers reused
        across steps (``np.take(..., mode="clip", out=buffer)``) measured no
        faster here (25.5 against 26.5 microseconds in float32, 108.7 against
        109.6 in float64 for 256 rows of 784; the allocator hands back the
        previous step's block), and a reused buffer would change under anything
        still holding the previous batch (a step's caches, ``AL`` of a record).
        """
        return np.take(rows, idx, axis=0).T

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "numpy": np.__version__}
