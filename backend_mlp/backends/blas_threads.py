"""How many BLAS threads the NumPy-based backends use while training a network.

A matmul of the report's network ([784, 20, 7, 5, 10] at batch 256: at most
4 million multiply-adds) takes tens of microseconds, less than waking a second
BLAS thread and waiting for it; on a 2-core machine two threads made such a
step 1.4x *slower* than one.  Threads pay off from about 50 million
multiply-adds per thread (``docs/benchmarks.md``, "BLAS threads").

:class:`BlasThreadLimit` therefore caps the BLAS threads during the training
steps at ``largest matmul / MACS_PER_THREAD`` (at least 1) by default
(``threads="auto"``).  "auto" only ever lowers the count in force
(``OPENBLAS_NUM_THREADS``, ``threadpoolctl``), so a user's own limit stays the
ceiling; an integer sets the count for the steps exactly, ``None`` leaves
BLAS alone.  The thread count changes the rounding of BLAS sums (float32
trajectories drift apart after some steps), so it is fixed for a whole run,
never tuned on the fly.  It acts only on backends whose ``host_blas`` is true (NumPy,
array-api-strict); PyTorch and CuPy manage their own threads.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from itertools import pairwise
from typing import Any

from ..errors import InputValidationError
from .base import Backend

MACS_PER_THREAD = 50_000_000
"""Multiply-adds of one matmul that make one more BLAS thread worth waking."""

def check_blas_threads(value: Any) -> int | str | None:
    """``"auto"``, ``None`` or a positive integer (returned as ``int``); anything else is refused."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise InputValidationError(
        f'blas_threads: received {value!r:.80}; expected "auto", a positive integer or None'
    )


def largest_matmul_macs(layer_dims: Sequence[int], batch_size: int) -> int:
    """Multiply-adds of the largest matmul of one step: ``max(n_l * n_{l-1}) * batch_size``."""
    return max(a * b for a, b in pairwise(layer_dims)) * batch_size


def blas_threads_for(layer_dims: Sequence[int], batch_size: int, available: int) -> int:
    """Threads for a step of this network: ``largest matmul // MACS_PER_THREAD``, within ``[1, available]``."""
    wanted = largest_matmul_macs(layer_dims, batch_size) // MACS_PER_THREAD
    return max(1, min(int(available), wanted))


class BlasThreadLimit:
    """Sets the host BLAS threads for a training loop's steps; lifts the setting for big evaluations.

    ``with limit.steps():`` around the step loop; ``with limit.lifted():``
    around work on many samples at once (the validation forward pass) inside it.
    Both are no-ops on backends without ``host_blas``, or when no BLAS library is
    visible to ``threadpoolctl``.
    """

    def __init__(
        self, backend: Backend, layer_dims: Sequence[int], batch_size: int, threads: int | str | None = "auto"
    ) -> None:
        self._controller: Any = None
        self._previous: list[dict[str, Any]] = []  # threadpoolctl's info() of the BLAS libraries before steps()
        self.threads: int | None = None  # the count in force during steps, None when not managed
        if threads is None or not backend.host_blas:
            return
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController().select(user_api="blas")
        self._previous = controller.info()
        if not self._previous:
            return
        available = min(lib["num_threads"] for lib in self._previous)
        self.threads = blas_threads_for(layer_dims, batch_size, available) if threads == "auto" else int(threads)
        if any(lib["num_threads"] != self.threads for lib in self._previous):
            self._controller = controller  # otherwise the setting in force is already the step setting

    def steps(self) -> AbstractContextManager[Any]:
        """The step setting, restored to the previous counts on exit (also on Ctrl-C)."""
        return self._limit(self.threads)

    def lifted(self) -> AbstractContextManager[Any]:
        """The per-library counts that were in force before :meth:`steps`."""
        return self._limit(self._previous)

    def _limit(self, limits: Any) -> AbstractContextManager[Any]:
        return nullcontext() if self._controller is None else self._controller.limit(limits=limits)
