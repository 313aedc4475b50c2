"""PyTorch on its CPU or a CUDA device (``"torch"``, ``"torch:cpu"``, ``"torch:cuda:N"``)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ..errors import BackendUnavailableError, InputValidationError
from .base import Backend


class TorchBackend(Backend):
    library = "torch"

    @classmethod
    def owns(cls, x: Any) -> bool:
        return array_api_compat.is_torch_array(x)

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        if not (key == "torch" or key.startswith("torch:")):
            return None
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(
                f"device {choice!r} needs PyTorch, which is not installed ({exc}); pip install torch"
            ) from None
        try:
            dev = torch.device(key[len("torch:"):] or "cpu")
        except RuntimeError:
            raise InputValidationError(
                f"device: received {choice!r}; expected 'torch', 'torch:cpu' or 'torch:cuda:N'"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {choice!r}: PyTorch sees no CUDA device")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", 0)
        return cls(f"torch:{dev}", array_api_compat.array_namespace(torch.empty(0)), dev)

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        return cls(f"torch:{x.device}", array_api_compat.array_namespace(x), x.device)

    @property
    def on_host(self) -> bool:  # type: ignore[override]
        return self.device.type == "cpu"

    @property
    def hardware(self) -> str:
        return str(self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def reset_memory_peak(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def memory_peak(self) -> int | None:
        if self.device.type != "cuda":
            return None
        import torch

        return int(torch.cuda.max_memory_allocated(self.device))

    def describe(self) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"backend": self.name, "torch": torch.__version__}
        info["torch_threads"] = torch.get_num_threads()
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info
