"""Which array library and which device: the one place that decides.

A user names a backend with a short string:

==========================  ============================================
``"cpu"`` / ``"numpy"``     NumPy on the host
``"gpu"`` / ``"gpu:N"``     CuPy on CUDA device 0 / N (also ``"cupy"``,
                            ``"cuda"``, ``"cuda:N"``)
``"array_api_strict"``      the standard's reference library (testing)
``"torch"`` / ``"torch:D"`` PyTorch on device ``D`` (default ``cpu``)
==========================  ============================================

:func:`resolve_backend` turns that string into a :class:`Backend` (namespace
and device).  Numeric code never takes a backend argument: it asks its input
arrays with :func:`namespace_of`, which also refuses arrays from two libraries
or two devices.  :func:`to_numpy` brings any array back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np  # host-side conversion only

from . import validation as V
from .errors import BackendUnavailableError, InputValidationError

DTYPES = ("float32", "float64")

_GPU_HELP = (
    "install CuPy for your CUDA version (pip install 'backend_mlp[gpu]' for CUDA 12, "
    "or pip install cupy-cuda13x for CUDA 13) and run on a machine with an NVIDIA GPU, "
    "or use device 'cpu'"
)


@dataclass(frozen=True)
class Backend:
    """An array namespace together with the device arrays are placed on.

    ``name`` is the canonical spelling (``"numpy"``, ``"cupy:0"``, ...),
    ``xp`` the array-API namespace, ``device`` the object passed as
    ``device=`` to ``xp.asarray`` (``None`` for NumPy).
    """

    name: str
    xp: Any
    device: Any = None

    def asarray(self, host_array: Any, dtype: str | None = None) -> Any:
        """Place a host (NumPy-convertible) array on this backend's device.

        On a device (CuPy, CUDA) this is a copy; on host backends the result
        may share memory with ``host_array`` when no dtype conversion is needed,
        so do not modify that array in place afterwards.

        ``dtype`` is ``"float32"``/``"float64"``/any dtype name of the namespace,
        or ``None`` to keep the array's own dtype.
        """
        arr = np.asarray(host_array)
        if dtype is not None:
            arr = arr.astype(resolve_dtype_name(dtype), copy=False)
        if self.name.startswith("cupy"):
            with self.xp_device_context():
                return self.xp.asarray(arr)
        return self.xp.asarray(arr, device=self.device)

    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for ``"float32"`` or ``"float64"``."""
        return getattr(self.xp, resolve_dtype_name(name))

    def xp_device_context(self) -> Any:
        """A context manager that makes this backend's device current (CuPy only)."""
        import cupy

        return cupy.cuda.Device(self.device.id)

    def synchronize(self) -> None:
        """Wait for queued device work to finish (no-op on host backends)."""
        if self.name.startswith("cupy"):
            import cupy

            cupy.cuda.Device(self.device.id).synchronize()
        elif self.name.startswith("torch") and "cuda" in str(self.device):
            import torch

            torch.cuda.synchronize(self.device)

    def __str__(self) -> str:
        return self.name


def resolve_dtype_name(dtype: Any) -> str:
    """Normalise ``"float32"``, ``"float64"``, ``np.float32`` or a namespace dtype to its name."""
    name = V.dtype_name(dtype)
    if name not in DTYPES:
        raise InputValidationError(
            f"dtype: received {dtype!r}; expected one of {', '.join(DTYPES)}"
        )
    return name


def _parse_index(choice: str, text: str) -> int:
    if not text.isdigit():
        raise InputValidationError(
            f"device: received {choice!r}; the part after ':' must be a GPU number such as 'gpu:0'"
        )
    return int(text)


def _cupy_backend(choice: str, index: int) -> Backend:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            f"device {choice!r} needs CuPy, which is not installed ({exc}); {_GPU_HELP}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver/runtime missing or broken
        raise BackendUnavailableError(
            f"device {choice!r}: CuPy is installed but no CUDA device could be opened ({exc}); "
            f"{_GPU_HELP}"
        ) from None
    if count == 0:
        raise BackendUnavailableError(
            f"device {choice!r}: CuPy is installed but this machine has no CUDA device; {_GPU_HELP}"
        )
    if index >= count:
        raise BackendUnavailableError(
            f"device {choice!r}: there are only {count} CUDA device(s), numbered 0 to {count - 1}"
        )
    return Backend(f"cupy:{index}", array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(index))


def _torch_backend(choice: str, device: str) -> Backend:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            f"device {choice!r} needs PyTorch, which is not installed ({exc}); pip install torch"
        ) from None
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputValidationError(
            f"device: received {choice!r}; expected 'torch', 'torch:cpu' or 'torch:cuda:N'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"device {choice!r}: PyTorch sees no CUDA device")
    return Backend(f"torch:{dev}", array_api_compat.array_namespace(torch.empty(0)), dev)


def resolve_backend(choice: str | Backend = "cpu") -> Backend:
    """Turn a user's backend/device choice into a :class:`Backend`.

    Raises :class:`InputValidationError` for an unknown name and
    :class:`BackendUnavailableError` (saying what is missing and how to fix it)
    when the library or device is not available here.
    """
    if isinstance(choice, Backend):
        return choice
    if not isinstance(choice, str):
        raise InputValidationError(
            f"device: received {choice!r} of type {type(choice).__name__}; expected a string such as "
            "'cpu', 'gpu', 'gpu:1', 'numpy', 'cupy', 'torch' or 'array_api_strict'"
        )
    key = choice.strip().lower()
    if key in ("cpu", "numpy"):
        return Backend("numpy", array_api_compat.array_namespace(np.empty(0)), None)
    if key in ("gpu", "cuda", "cupy"):
        return _cupy_backend(choice, 0)
    for prefix in ("gpu:", "cuda:", "cupy:"):
        if key.startswith(prefix):
            return _cupy_backend(choice, _parse_index(choice, key[len(prefix):]))
    if key in ("array_api_strict", "strict"):
        try:
            import array_api_strict
        except ImportError:
            raise BackendUnavailableError(
                f"device {choice!r} needs array-api-strict: pip install array-api-strict"
            ) from None
        return Backend("array_api_strict", array_api_strict, None)
    if key == "torch" or key.startswith("torch:"):
        return _torch_backend(choice, key[len("torch:"):] or "cpu")
    raise InputValidationError(
        f"device: received {choice!r}; expected 'cpu', 'gpu', 'gpu:N', 'numpy', 'cupy', "
        "'torch', 'torch:cuda:N' or 'array_api_strict'"
    )


def namespace_of(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` entries are ignored).

    Raises :class:`BackendMismatchError` if the arrays come from different
    libraries or live on different devices, and :class:`InputValidationError`
    if one of them is not an array at all (see :func:`validation.common_namespace`).
    """
    return V.common_namespace({f"array {i}": a for i, a in enumerate(arrays, start=1)})


def backend_of(x: Any) -> Backend:
    """The :class:`Backend` an existing array lives on."""
    xp = namespace_of(x)
    if array_api_compat.is_numpy_array(x):
        return Backend("numpy", xp, None)
    if array_api_compat.is_cupy_array(x):
        return Backend(f"cupy:{x.device.id}", xp, x.device)
    if array_api_compat.is_torch_array(x):
        return Backend(f"torch:{x.device}", xp, x.device)
    if V.library_of(x) == "array_api_strict":
        return Backend("array_api_strict", xp, None)
    return Backend(V.library_of(x), xp, array_api_compat.device(x))


def to_numpy(x: Any) -> np.ndarray:
    """Any supported array (or a Python/NumPy scalar) as a NumPy array on the host.

    Device arrays are copied; a host array (NumPy, PyTorch CPU, array-api-strict)
    may be returned as a view sharing its memory.
    """
    if array_api_compat.is_numpy_array(x) or np.isscalar(x):
        return np.asarray(x)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.from_dlpack(x)


def to_backend(x: Any, backend: str | Backend) -> Any:
    """Place an array from any backend on ``backend`` (same dtype; see :meth:`Backend.asarray`)."""
    return resolve_backend(backend).asarray(to_numpy(x))


def tree_to_numpy(tree: dict[str, Any]) -> dict[str, np.ndarray]:
    """Apply :func:`to_numpy` to every value of a dict (parameters, gradients, state)."""
    return {k: to_numpy(v) for k, v in tree.items()}


def tree_to_backend(tree: dict[str, Any], backend: str | Backend) -> dict[str, Any]:
    """Place every array of a dict on ``backend`` (see :func:`to_backend`)."""
    b = resolve_backend(backend)
    return {k: b.asarray(to_numpy(v)) for k, v in tree.items()}
