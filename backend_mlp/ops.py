"""Pure or in-place arithmetic on fresh temporaries: how one kernel serves every backend.

The array API standard leaves in-place semantics undefined (on an immutable
library ``a += b`` silently rebinds ``a``), so the portable form of every
kernel is pure: it returns new arrays and never writes into its inputs.  On
a backend whose ``mutable_arrays`` is true, the same kernels may instead
update a temporary they have just created, saving an allocation and a pass
over memory.  Kernels therefore combine a *fresh* array (one they created)
with another through an :class:`Ops` object:

``ops.add(fresh, other)`` is ``fresh + other`` under :data:`PURE` and
``fresh += other; fresh`` under :data:`INPLACE`; both give the same bits.
Only arrays the kernel itself created are ever passed as ``fresh``, so a
caller's arrays (and read-only ones) are never written in either mode.

``ops.matmul(W, A)`` is ``W @ A`` (a layer's forward product),
``ops.weight_gradient(dZ, A_prev)`` is ``dZ @ A_prev.T`` (its weight
gradient) and ``ops.input_gradient(W, dZ)`` is ``W.T @ dZ`` (the gradient
handed to the layer below); a backend that knows a faster way to form the same
products for its memory layouts (NumPy's
:func:`~backend_mlp.backends.numpy_backend.blas_matmul` and
:func:`~backend_mlp.backends.numpy_backend.blas_weight_gradient`, JAX's
:func:`~backend_mlp.backends.jax_backend.rows_first_input_gradient` on a CPU)
passes them to :func:`ops_for`, and the linear kernels use them.  They must
return the plain products' values, up to float rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Array = Any
Product = Callable[[Array, Array], Array]


class Ops:
    """Pure arithmetic: every call returns a new array (the portable default)."""

    inplace = False

    def matmul(self, W: Array, A: Array) -> Array:
        return W @ A

    def weight_gradient(self, dZ: Array, A_prev: Array) -> Array:
        return dZ @ A_prev.T

    def input_gradient(self, W: Array, dZ: Array) -> Array:
        return W.T @ dZ

    def add(self, fresh: Array, other: Any) -> Array:
        return fresh + other

    def sub(self, fresh: Array, other: Any) -> Array:
        return fresh - other

    def mul(self, fresh: Array, other: Any) -> Array:
        return fresh * other

    def div(self, fresh: Array, other: Any) -> Array:
        return fresh / other


class InplaceOps(Ops):
    """In-place arithmetic on ``fresh`` (only for backends with mutable arrays)."""

    inplace = True

    def add(self, fresh: Array, other: Any) -> Array:
        fresh += other
        return fresh

    def sub(self, fresh: Array, other: Any) -> Array:
        fresh -= other
        return fresh

    def mul(self, fresh: Array, other: Any) -> Array:
        fresh *= other
        return fresh

    def div(self, fresh: Array, other: Any) -> Array:
        fresh /= other
        return fresh


class _WithProducts:
    """Mixin: ``matmul``, ``weight_gradient`` and ``input_gradient`` are the backend's own products where it
    has them."""

    def __init__(
        self, matmul: Product | None, weight_gradient: Product | None, input_gradient: Product | None
    ) -> None:
        if matmul is not None:
            self.matmul = matmul  # type: ignore[method-assign]
        if weight_gradient is not None:
            self.weight_gradient = weight_gradient  # type: ignore[method-assign]
        if input_gradient is not None:
            self.input_gradient = input_gradient  # type: ignore[method-assign]


class _PureWithProducts(_WithProducts, Ops):
    pass


class _InplaceWithProducts(_WithProducts, InplaceOps):
    pass


PURE = Ops()
INPLACE = InplaceOps()


def ops_for(
    mutable_arrays: bool,
    matmul: Product | None = None,
    weight_gradient: Product | None = None,
    input_gradient: Product | None = None,
) -> Ops:
    """:data:`INPLACE` for a backend with mutable arrays, :data:`PURE` otherwise; with a backend's faster
    products (``backend.matmul`` for ``W @ A``, ``backend.weight_gradient`` for ``dZ @ A_prev.T``,
    ``backend.input_gradient`` for ``W.T @ dZ``), the same with those products."""
    if matmul is None and weight_gradient is None and input_gradient is None:
        return INPLACE if mutable_arrays else PURE
    return _with_products(mutable_arrays, matmul, weight_gradient, input_gradient)


@functools.lru_cache(maxsize=16)
def _with_products(
    mutable_arrays: bool, matmul: Product | None, weight_gradient: Product | None, input_gradient: Product | None
) -> Ops:
    cls = _InplaceWithProducts if mutable_arrays else _PureWithProducts
    return cls(matmul, weight_gradient, input_gradient)
