"""Which array library and which device: the one package that decides.

A user names a backend with a short string:

================================  ==============================================
``"cpu"`` / ``"numpy"``           NumPy on the host
``"gpu"`` / ``"gpu:N"``           CuPy on CUDA device 0 / N (also ``"cupy"``,
                                  ``"cuda"``, ``"cuda:N"``)
``"array_api_strict"``            the standard's reference library (testing)
``"array_api_strict:D"``          ... on its simulated device ``D``: ``device1``,
                                  ``device2`` or ``no_float64`` (no float64)
``"torch"`` / ``"torch:D"``       PyTorch on device ``D`` (default ``cpu``)
``"jax"`` / ``"jax:cpu"``         JAX on its CPU (float64 enabled process-wide)
``"jax:gpu"``, ``"jax:gpu:N"``    JAX on GPU 0 / N (also ``"jax:cuda:N"``)
================================  ==============================================

:func:`resolve_backend` turns that string into a :class:`Backend` (one
subclass per library, see :mod:`.base`).  Numeric code never takes a backend
argument: it asks its input arrays with :func:`namespace_of` /
:func:`common_namespace`, which also refuse arrays from two libraries or two
devices.  :func:`to_numpy` brings any array back to the host.

Adding a backend is one subclass of :class:`Backend` in its own module plus
one entry in :data:`BACKEND_CLASSES` (and one in the tests' backend list).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat
import numpy as np  # host-side conversion only

from ..errors import BackendMismatchError, InputValidationError
from .base import DTYPES, Backend, dtype_name, resolve_dtype_name
from .cupy_backend import CupyBackend
from .jax_backend import JaxBackend
from .numpy_backend import NumpyBackend
from .strict_backend import ArrayApiStrictBackend
from .torch_backend import TorchBackend

#: every backend class, in the order user strings are tried
BACKEND_CLASSES: tuple[type[Backend], ...] = (
    NumpyBackend, CupyBackend, ArrayApiStrictBackend, TorchBackend, JaxBackend
)

_ARRAY_KINDS = "an array (NumPy, CuPy, PyTorch, JAX or array-api-strict)"
_CHOICES = (
    "'cpu', 'gpu', 'gpu:N', 'numpy', 'cupy', 'torch', 'torch:cuda:N', 'jax', 'jax:gpu', 'array_api_strict' "
    "or 'array_api_strict:device1'"
)


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
            f"device: received {choice!r} of type {type(choice).__name__}; expected a string such as {_CHOICES}"
        )
    key = choice.strip().lower()
    for cls in BACKEND_CLASSES:
        backend = cls.parse(key, choice)
        if backend is not None:
            return backend
    raise InputValidationError(f"device: received {choice!r}; expected {_CHOICES}")


def torch_on_same_hardware(backend: Backend) -> Backend:
    """The PyTorch backend that computes where ``backend`` does (its CPU, or the same CUDA device).

    Raises :class:`BackendUnavailableError` when PyTorch is missing or cannot use that device.
    """
    return resolve_backend(f"torch:{backend.hardware}")


def _class_of(x: Any) -> type[Backend] | None:
    for cls in BACKEND_CLASSES:
        if cls.owns(x):
            return cls
    return None


def has_mutable_arrays(x: Any) -> bool:
    """Whether ``x``'s library honours in-place updates (its backend class's ``mutable_arrays``)."""
    cls = _class_of(x)
    return cls is not None and cls.mutable_arrays


def library_of(x: Any) -> str:
    """``"numpy"``, ``"torch"``, ``"cupy"``, ``"jax"``, ``"array_api_strict"``, ... for an array."""
    cls = _class_of(x)
    return cls.library if cls is not None else type(x).__module__.split(".", 1)[0]


def check_array(name: str, x: Any) -> Any:
    """``x`` must be an array of a supported library (:class:`InputValidationError` otherwise)."""
    if not array_api_compat.is_array_api_obj(x):
        raise InputValidationError(f"{name}: received an object of type {type(x).__name__}; expected {_ARRAY_KINDS}")
    return x


def backend_of(x: Any) -> Backend:
    """The :class:`Backend` an existing array lives on."""
    check_array("array", x)
    cls = _class_of(x)
    if cls is None:
        raise InputValidationError(
            f"array: received an array of {library_of(x)!r}, a library backend_mlp has no backend for; "
            f"expected {_ARRAY_KINDS}"
        )
    return cls.of_array(x)


def common_namespace(named: Mapping[str, Any]) -> Any:
    """The array-API namespace shared by the named arrays (``None`` values are skipped).

    Raises :class:`InputValidationError` for a non-array and
    :class:`BackendMismatchError`, naming both arguments, for arrays from two
    libraries or two devices.  Costs a few microseconds per array: the
    functional API calls it on every call.
    """
    items = [(name, a) for name, a in named.items() if a is not None]
    if not items:
        raise InputValidationError("arrays: received none; expected at least one array")
    first_name, first = items[0]
    first_type = type(first)
    xp = _NAMESPACE_BY_TYPE.get(first_type)
    if xp is None:
        xp = array_api_compat.array_namespace(check_array(first_name, first))
        _NAMESPACE_BY_TYPE[first_type] = xp
    for name, a in items[1:]:
        if type(a) is not first_type:
            check_array(name, a)
            lib, first_lib = library_of(a), library_of(first)
            if lib != first_lib:
                raise BackendMismatchError(
                    f"{first_name}, {name}: received arrays from different libraries in one call "
                    f"({first_name} is {first_lib}, {name} is {lib}); expected all arrays on one backend: "
                    "move them with backend_mlp.to_backend (one array) or backend_mlp.tree_to_backend (a dict of them)"
                )
    cls = _class_of(first)
    if cls is None or not cls.single_device:
        first_device = array_api_compat.device(first)
        for name, a in items[1:]:
            device = array_api_compat.device(a)
            if device != first_device:
                raise BackendMismatchError(
                    f"{first_name}, {name}: received arrays on different devices in one call "
                    f"({first_name} on {first_device}, {name} on {device}); expected all arrays on one device: "
                    "move them with backend_mlp.to_backend (one array) or backend_mlp.tree_to_backend (a dict of them)"
                )
    return xp


def shared_namespace(arrays: list[Any]) -> Any:
    """The namespace of ``arrays`` when all are of one array type on one device, else ``None``.

    The fast path of :func:`common_namespace` for hot public functions: call
    :func:`common_namespace` with the arguments' names when it returns ``None``,
    to get the precise error.
    """
    first_type = type(arrays[0])
    xp = _NAMESPACE_BY_TYPE.get(first_type)
    if xp is None or any(type(a) is not first_type for a in arrays):
        return None
    cls = _class_of(arrays[0])
    if cls is None or not cls.single_device:
        device = array_api_compat.device(arrays[0])
        if any(array_api_compat.device(a) != device for a in arrays):
            return None
    return xp


#: array type -> its array-API namespace (one per library), filled on first use
_NAMESPACE_BY_TYPE: dict[type, Any] = {}


def namespace_of(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` entries are ignored); see :func:`common_namespace`."""
    return common_namespace({f"array {i}": a for i, a in enumerate(arrays, start=1)})


def to_numpy(x: Any) -> np.ndarray:
    """Any supported array (or a Python/NumPy scalar) as a NumPy array on the host.

    Device arrays are copied; a host array (NumPy, PyTorch CPU, array-api-strict)
    may be returned as a view sharing its memory.
    """
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.asarray(x)
    cls = _class_of(x)
    if cls is not None:
        return cls.of_array(x).to_numpy(x)
    _refuse_containers("x", x)
    return np.from_dlpack(check_array("x", x))


def _refuse_containers(name: str, x: Any) -> None:
    """A dict, list or tuple where one array was expected: say which function takes it."""
    if isinstance(x, Mapping):
        raise InputValidationError(
            f"{name}: received a dict; expected one array (for a dict of arrays use backend_mlp.tree_to_numpy "
            "or backend_mlp.tree_to_backend)"
        )
    if isinstance(x, (list, tuple)):
        raise InputValidationError(
            f"{name}: received a {type(x).__name__}; expected an array (convert it first, e.g. numpy.asarray)"
        )


def to_backend(x: Any, backend: str | Backend) -> Any:
    """Place an array from any backend on ``backend`` (same dtype; see :meth:`Backend.asarray`).

    For a dict of arrays (parameters, state) use :func:`tree_to_backend`.
    """
    _refuse_containers("x", x)
    return resolve_backend(backend).asarray(to_numpy(x))


def tree_to_numpy(tree: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    """Apply :func:`to_numpy` to every value of a dict (parameters, gradients, state); ``None`` stays ``None``."""
    return None if tree is None else {k: to_numpy(v) for k, v in tree.items()}


def tree_to_backend(tree: dict[str, Any] | None, backend: str | Backend) -> dict[str, Any] | None:
    """Place every array of a dict on ``backend`` (see :func:`to_backend`); ``None`` stays ``None``."""
    if tree is None:
        return None
    b = resolve_backend(backend)
    return {k: b.asarray(to_numpy(v)) for k, v in tree.items()}


__all__ = [
    "BACKEND_CLASSES",
    "DTYPES",
    "ArrayApiStrictBackend",
    "Backend",
    "CupyBackend",
    "JaxBackend",
    "NumpyBackend",
    "TorchBackend",
    "backend_of",
    "check_array",
    "common_namespace",
    "dtype_name",
    "has_mutable_arrays",
    "shared_namespace",
    "library_of",
    "namespace_of",
    "resolve_backend",
    "resolve_dtype_name",
    "to_backend",
    "torch_on_same_hardware",
    "to_numpy",
    "tree_to_backend",
    "tree_to_numpy",
]
