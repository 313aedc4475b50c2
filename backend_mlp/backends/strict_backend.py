"""array-api-strict: the standard's reference library, which rejects anything outside it (testing)."""

from __future__ import annotations

from typing import Any

from ..errors import BackendUnavailableError
from .base import Backend


class ArrayApiStrictBackend(Backend):
    library = "array_api_strict"
    # its arrays wrap NumPy arrays, so in-place operators are honoured and the host BLAS does the work
    host_blas = True

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        if key not in ("array_api_strict", "strict"):
            return None
        try:
            import array_api_strict
        except ImportError:
            raise BackendUnavailableError(
                f"device {choice!r} needs array-api-strict: pip install array-api-strict"
            ) from None
        return cls("array_api_strict", array_api_strict, None)

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        import array_api_strict

        device = x.device
        return cls("array_api_strict", array_api_strict, None if device == array_api_strict.Device() else device)
