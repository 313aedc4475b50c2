"""NumPy on the host: the reference backend (``"cpu"``, ``"numpy"``)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .base import Backend, host_as


class NumpyBackend(Backend):
    library = "numpy"
    host_blas = True
    single_device = True

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

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "numpy": np.__version__}
