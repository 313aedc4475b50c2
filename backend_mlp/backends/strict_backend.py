"""array-api-strict: the standard's reference library, which rejects anything outside it (testing).

It also simulates devices on a CPU-only machine: ``"array_api_strict:device1"`` (and
``device2``), whose arrays cannot be combined with the default device's, and
``"array_api_strict:no_float64"``, which has no float64 (:meth:`supported_dtypes` says so, and
placing float64 there is an :class:`InputValidationError`).  The tests use them to find arrays
that silently land on the default device, and float64 assumptions, without a GPU.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputValidationError
from .base import DTYPES, Backend

_PREFIXES = ("array_api_strict", "strict")
#: the simulated devices offered (those this array-api-strict lacks are left out); not "no_x64", where
#: array-api-strict's own argmax fails (it returns int64, which that device refuses)
_KNOWN_DEVICE_NAMES = ("device1", "device2", "no_float64")


class ArrayApiStrictBackend(Backend):
    """``device`` is ``None`` for the default device, else an ``array_api_strict.Device``."""

    library = "array_api_strict"
    # its arrays wrap NumPy arrays, so in-place operators are honoured and the host BLAS does the work
    host_blas = True

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        prefix, sep, device_name = key.partition(":")
        if prefix not in _PREFIXES:
            return None
        try:
            import array_api_strict
        except ImportError:
            raise BackendUnavailableError(
                f"device {choice!r} needs array-api-strict: pip install array-api-strict"
            ) from None
        if not sep or device_name in ("", "cpu", "cpu_device", "default"):
            return cls.create(None)
        devices = _simulated_devices()
        if device_name not in devices:
            spelled = ", ".join(f"'array_api_strict:{n}'" for n in devices)
            raise InputValidationError(
                f"device: received {choice!r}; expected 'array_api_strict' (its default device) or one of the "
                f"devices array-api-strict {array_api_strict.__version__} simulates: {spelled}"
            )
        return cls.create(devices[device_name])

    @classmethod
    def create(cls, device: Any) -> ArrayApiStrictBackend:
        """The backend on ``device`` (an ``array_api_strict.Device``; ``None`` or the default device: the default)."""
        import array_api_strict

        if device is None or device == array_api_strict.Device():
            return cls("array_api_strict", array_api_strict, None)
        name = next((n for n, d in _simulated_devices().items() if d == device), repr(device))
        return cls(f"array_api_strict:{name}", array_api_strict, device)

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        return cls.create(x.device)

    def supported_dtypes(self) -> tuple[str, ...]:
        info = self.xp.__array_namespace_info__()
        available = info.dtypes(device=self.device, kind="real floating")
        return tuple(name for name in DTYPES if name in available)

    def asarray(self, host_array: Any, dtype: str | None = None) -> Any:
        return self.xp.asarray(self.host_for_device(host_array, dtype), device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        # the standard's only way off a device is to_device; array-api-strict refuses host buffers elsewhere
        import array_api_strict

        if x.device != array_api_strict.Device():
            x = x.to_device(array_api_strict.Device())
        return np.from_dlpack(x)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.device is not None:
            info["simulated_device"] = self.name.partition(":")[2]
        return info


@cache
def _simulated_devices() -> dict[str, Any]:
    """``{name: array_api_strict.Device}`` for every non-default device this array-api-strict simulates."""
    import array_api_strict

    available = list(array_api_strict.__array_namespace_info__().devices())
    devices = {}
    for name in _KNOWN_DEVICE_NAMES:
        try:
            device = array_api_strict.Device(name)
        except ValueError:
            continue
        if device in available:
            devices[name] = device
    return devices
