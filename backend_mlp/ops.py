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

``ops.matmul(a, b)`` is ``a @ b``; a backend that knows a faster way to form
the same product for its memory layouts (NumPy's :func:`~backend_mlp.backends.
numpy_backend.blas_matmul`) passes it to :func:`ops_for`, and the linear
kernels use it.  It must return the same values as ``a @ b``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Array = Any


class Ops:
    """Pure arithmetic: every call returns a new array (the portable default)."""

    inplace = False

    def matmul(self, a: Array, b: Array) -> Array:
        return a @ b

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


class _WithMatmul:
    """Mixin: ``matmul`` is the backend's own product (same values as ``a @ b``)."""

    def __init__(self, matmul: Callable[[Array, Array], Array]) -> None:
        self.matmul = matmul  # type: ignore[method-assign]


class _PureWithMatmul(_WithMatmul, Ops):
    pass


class _InplaceWithMatmul(_WithMatmul, InplaceOps):
    pass


PURE = Ops()
INPLACE = InplaceOps()


def ops_for(mutable_arrays: bool, matmul: Callable[[Array, Array], Array] | None = None) -> Ops:
    """:data:`INPLACE` for a backend with mutable arrays, :data:`PURE` otherwise; with ``matmul``
    (a backend's faster ``a @ b``, e.g. ``backend.matmul``), the same with that product."""
    if matmul is None:
        return INPLACE if mutable_arrays else PURE
    return _with_matmul(mutable_arrays, matmul)


@functools.lru_cache(maxsize=16)
def _with_matmul(mutable_arrays: bool, matmul: Callable[[Array, Array], Array]) -> Ops:
    return _InplaceWithMatmul(matmul) if mutable_arrays else _PureWithMatmul(matmul)
