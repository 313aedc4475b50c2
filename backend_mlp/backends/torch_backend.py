"""PyTorch on its CPU or a CUDA device (``"torch"``, ``"torch:cpu"``, ``"torch:cuda:N"``)."""

from __future__ import annotations

import contextlib
import functools
import types
import warnings
from collections.abc import Iterator
from typing import Any

import array_api_compat
import numpy as np

from ..errors import BackendUnavailableError, InputValidationError
from .base import Backend


@functools.cache
def _compile_namespace(xp: Any) -> Any:
    """array-api-compat's torch namespace, except that ``maximum``/``minimum`` with a Python scalar compare with a
    0-d tensor of the array's dtype: the same values, without compat's ``torch.result_type`` call on a scalar,
    which torch.compile cannot trace (it would split the step's graph at every ReLU)."""
    import torch

    def with_scalar_as_tensor(name: str) -> Any:
        compat, native = getattr(xp, name), getattr(torch, name)

        def op(x1: Any, x2: Any, /) -> Any:
            if isinstance(x1, torch.Tensor) and isinstance(x2, (int, float)) and not isinstance(x2, bool):
                return native(x1, torch.full((), x2, dtype=x1.dtype, device=x1.device))
            return compat(x1, x2)

        op.__name__ = name
        return op

    namespace = types.ModuleType(f"{xp.__name__}_for_torch_compile")
    namespace.__dict__.update({k: v for k, v in vars(xp).items() if not k.startswith("__")})
    namespace.maximum = with_scalar_as_tensor("maximum")  # type: ignore[attr-defined]
    namespace.minimum = with_scalar_as_tensor("minimum")  # type: ignore[attr-defined]
    return namespace


def with_own_code(fn: Any) -> Any:
    """``fn`` with a distinct (equal) code object: ``torch.compile`` keeps its graphs, and counts them against its
    recompile limit (8), per code object, so each compiled function that gets its own never exhausts another's."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


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
        if dev.type == "cuda" and dev.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device {choice!r}: PyTorch sees {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
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

    # ------------------------------------------------------------------ the training step

    def compile_step(self, step: Any) -> Any:
        """``torch.compile(step)`` with static shapes (the epoch's smaller last batch is a second graph).

        Dynamo keeps its compiled graphs per code object, with a limit of recompilations per
        code object; each compiled step therefore gets a code object of its own, so one run's
        configuration and shapes never count against another's.
        """
        import torch

        return torch.compile(with_own_code(step), dynamic=False)

    def compile_namespace(self) -> Any:
        return _compile_namespace(self.xp)

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """Dynamo warns that it traces through array-api-compat's ``functools.lru_cache`` helpers (type checks
        with constant answers): harmless, and not the user's business."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools\.lru_cache`")
            yield
