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
"""

from __future__ import annotations

from typing import Any

Array = Any


class Ops:
    """Pure arithmetic: every call returns a new array (the portable default)."""

    inplace = False

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


PURE = Ops()
INPLACE = InplaceOps()


def ops_for(mutable_arrays: bool) -> Ops:
    """:data:`INPLACE` for a backend with mutable arrays, :data:`PURE` otherwise."""
    return INPLACE if mutable_arrays else PURE
