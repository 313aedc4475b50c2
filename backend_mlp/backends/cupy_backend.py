"""CuPy on a CUDA device (``"gpu"``, ``"gpu:N"``, ``"cuda:N"``, ``"cupy:N"``)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ..errors import BackendUnavailableError, InputValidationError
from .base import Backend, host_as

GPU_HELP = (
    "install CuPy for your CUDA version (pip install 'backend_mlp[gpu]' for CUDA 12, "
    "or pip install cupy-cuda13x for CUDA 13) and run on a machine with an NVIDIA GPU, "
    "or use device 'cpu'"
)


class CupyBackend(Backend):
    library = "cupy"
    on_host = False

    @classmethod
    def owns(cls, x: Any) -> bool:
        return array_api_compat.is_cupy_array(x)

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        if key in ("gpu", "cuda", "cupy"):
            return cls.create(choice, 0)
        for prefix in ("gpu:", "cuda:", "cupy:"):
            if key.startswith(prefix):
                text = key[len(prefix):]
                if not text.isdigit():
                    raise InputValidationError(
                        f"device: received {choice!r}; expected a GPU number after the ':', such as '{prefix}0'"
                    )
                return cls.create(choice, int(text))
        return None

    @classmethod
    def create(cls, choice: str, index: int) -> CupyBackend:
        try:
            import cupy
        except ImportError as exc:
            raise BackendUnavailableError(
                f"device {choice!r} needs CuPy, which is not installed ({exc}); {GPU_HELP}"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001 - CUDA driver/runtime missing or broken
            raise BackendUnavailableError(
                f"device {choice!r}: CuPy is installed but no CUDA device could be opened ({exc}); {GPU_HELP}"
            ) from None
        if count == 0:
            raise BackendUnavailableError(
                f"device {choice!r}: CuPy is installed but this machine has no CUDA device; {GPU_HELP}"
            )
        if index >= count:
            raise BackendUnavailableError(
                f"device {choice!r}: there are only {count} CUDA device(s), numbered 0 to {count - 1}"
            )
        return cls(f"cupy:{index}", array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(index))

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        return cls(f"cupy:{x.device.id}", array_api_compat.array_namespace(x), x.device)

    @property
    def hardware(self) -> str:
        return f"cuda:{self.device.id}"

    def asarray(self, host_array: Any, dtype: str | None = None) -> Any:
        arr = host_as(host_array, dtype)
        with self.device_context():
            return self.xp.asarray(arr)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.get()

    def synchronize(self) -> None:
        self.device.synchronize()

    def device_context(self) -> Any:
        import cupy

        return cupy.cuda.Device(self.device.id)  # a fresh object: CuPy's Device is a context manager

    def reset_memory_peak(self) -> None:
        import cupy

        self.synchronize()
        with self.device_context():  # the pool answers for the current device
            cupy.get_default_memory_pool().free_all_blocks()

    def memory_peak(self) -> int | None:
        # CuPy's pool keeps freed blocks, so after free_all_blocks() its total is a high-water mark
        import cupy

        with self.device_context():
            return int(cupy.get_default_memory_pool().total_bytes())

    def describe(self) -> dict[str, Any]:
        import cupy

        info: dict[str, Any] = {"backend": self.name, "cupy": cupy.__version__}
        try:
            props = cupy.cuda.runtime.getDeviceProperties(self.device.id)
            name = props["name"]
            info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001 - optional information only
            pass
        return info
