"""A NumPy-backed stand-in for CuPy, used only by the tests: a SMOKE TEST of backend_mlp's CuPy branches.

It lets CI, which has no GPU, execute every line of
:class:`backend_mlp.backends.CupyBackend` (device selection and count, placement, to-host,
synchronize, the memory pool, describe) and train, save and load through it.  A green run
proves that those branches run and that no array silently leaves its "GPU"; it proves
nothing about CUDA, cuBLAS, CuPy itself or the speed of the GPU path.  Only
``scripts/gpu_check.sh`` on a machine with an NVIDIA GPU does that.

What it imitates, because the library's correctness depends on it:

* ``cupy.ndarray`` is its own type (module ``cupy``), not a NumPy subclass, so
  ``array_api_compat.is_cupy_array`` recognises it and NumPy does not; implicit conversion to
  NumPy (``numpy.asarray``) raises ``TypeError`` as in CuPy, so a host copy needs ``.get()``.
* Devices: ``cupy.cuda.Device(i)`` (``.id``, context manager making it current,
  ``.synchronize()``), ``cupy.cuda.runtime.getDeviceCount()`` (as many as configured, or an
  error), and CuPy's current-device rule: an operation on an array that lives on another
  device than the current one raises ``ValueError: Array device must be same as the current
  device`` (CuPy without peer access).  New arrays land on the current device.
* ``get_default_memory_pool()``: bytes held, a high-water mark until ``free_all_blocks()``.

:func:`install` puts the stand-in in ``sys.modules`` as ``cupy`` (with an
``array_api_compat.cupy`` namespace over it) through a pytest ``monkeypatch``, which undoes it.
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import sys
import types
import weakref
from typing import Any

import array_api_compat
import array_api_compat.numpy as compat_numpy
import numpy as np

VERSION = "0.0.0+numpy-stand-in"


class CUDARuntimeError(RuntimeError):
    """What ``cupy.cuda.runtime`` raises when the driver or runtime fails."""


class _State:
    """The stand-in's machine: device count, current device, memory pool, synchronize calls."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, device_count: int = 2, runtime_error: str | None = None) -> None:
        self.device_count = device_count
        self.runtime_error = runtime_error
        self.current = 0
        self.synchronized: list[int] = []
        self.used_bytes = 0
        self.held_bytes = 0  # the pool keeps freed blocks until free_all_blocks()
        self.free_all_blocks_calls = 0


STATE = _State()


# --------------------------------------------------------------------------- cupy.cuda


class Device:
    """``cupy.cuda.Device``: an id, a context manager that makes it current, and synchronize()."""

    def __init__(self, device: int | Device | None = None) -> None:
        if isinstance(device, Device):
            device = device.id
        self.id = STATE.current if device is None else int(device)
        self._previous: list[int] = []

    def __enter__(self) -> Device:
        _check_device_id(self.id)
        self._previous.append(STATE.current)
        STATE.current = self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        STATE.current = self._previous.pop()

    def use(self) -> None:
        _check_device_id(self.id)
        STATE.current = self.id

    def synchronize(self) -> None:
        STATE.synchronized.append(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda.Device", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


def _check_device_id(index: int) -> None:
    if not 0 <= index < _device_count():
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")


def _device_count() -> int:
    if STATE.runtime_error is not None:
        raise CUDARuntimeError(STATE.runtime_error)
    return STATE.device_count


def _device_properties(index: int) -> dict[str, Any]:
    _check_device_id(index)
    return {"name": f"Stand-in GPU {index} (NumPy)".encode(), "totalGlobalMem": 1 << 30}


# --------------------------------------------------------------------------- memory pool


class MemoryPool:
    """``cupy.get_default_memory_pool()``: ``total_bytes`` (held, freed blocks included), ``used_bytes``."""

    def used_bytes(self) -> int:
        return STATE.used_bytes

    def total_bytes(self) -> int:
        return STATE.held_bytes

    def free_all_blocks(self) -> None:
        STATE.free_all_blocks_calls += 1
        STATE.held_bytes = STATE.used_bytes


_POOL = MemoryPool()


def _allocated(n: int) -> None:
    STATE.used_bytes += n
    STATE.held_bytes = max(STATE.held_bytes, STATE.used_bytes)


def _freed(n: int) -> None:
    STATE.used_bytes -= n


# --------------------------------------------------------------------------- arrays


def _current_device_check(device: Device) -> None:
    if device.id != STATE.current:
        raise ValueError(
            f"Array device must be same as the current device: array device = {device.id} "
            f"while current = {STATE.current}"
        )


class ndarray:  # noqa: N801 - CuPy's name
    """A NumPy array tagged with the stand-in device it lives on."""

    __slots__ = ("_a", "_device", "__weakref__")

    def __init__(self, a: np.ndarray, device: Device) -> None:
        self._a = a
        self._device = device
        if a.flags.owndata and a.nbytes:
            _allocated(a.nbytes)
            weakref.finalize(self, _freed, a.nbytes)

    # -- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: self._device)
    # views launch no kernel: they stay on the array's device, whichever device is current
    T = property(lambda self: ndarray(self._a.T, self._device))
    mT = property(lambda self: ndarray(self._a.mT, self._device))

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        """A host copy (``cupy.ndarray.get``)."""
        return np.array(self._a, order=order, copy=True)

    def astype(self, dtype: Any, copy: bool = True, **kwargs: Any) -> ndarray:
        return _op(lambda a: a.astype(dtype, copy=copy, **kwargs), self)

    def copy(self, order: str = "C") -> ndarray:
        return _op(lambda a: a.copy(order=order), self)

    def reshape(self, *shape: Any, **kwargs: Any) -> ndarray:
        return ndarray(self._a.reshape(*shape, **kwargs), self._device)

    def __array_namespace__(self, api_version: str | None = None) -> Any:
        return NAMESPACE

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
            "explicitly."
        )

    def __getitem__(self, key: Any) -> ndarray:
        return _op(lambda a, k: a[k], self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        _check_devices([self, key, value])
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __index__(self) -> int:
        return operator.index(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __repr__(self) -> str:
        return f"array({self._a!r}, stand-in device={self._device.id})"


def _binary(fn: Any) -> Any:
    return lambda self, other: _op(fn, self, other)


def _reflected(fn: Any) -> Any:
    return lambda self, other: _op(lambda a, b: fn(b, a), self, other)


def _inplace(fn: Any) -> Any:
    def method(self: ndarray, other: Any) -> ndarray:
        _check_devices([self, other])
        fn(self._a, _unwrap(other))
        return self

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    _fn = getattr(operator, f"{_name}_" if _name in ("and", "or") else _name)
    setattr(ndarray, f"__{_name}__", _binary(_fn))
    setattr(ndarray, f"__r{_name}__", _reflected(_fn))
    setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name)))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", (lambda f: lambda self: _op(f, self))(getattr(operator, _name)))
ndarray.__hash__ = None  # type: ignore[assignment]
ndarray.__module__ = "cupy"


def _unwrap(x: Any) -> Any:
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _arrays_in(x: Any) -> list[ndarray]:
    if isinstance(x, ndarray):
        return [x]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _arrays_in(v)]
    if isinstance(x, dict):
        return [a for v in x.values() for a in _arrays_in(v)]
    return []


def _check_devices(args: Any) -> None:
    for a in _arrays_in(args):
        _current_device_check(a.device)


def _wrap(x: Any, device: Device) -> Any:
    if isinstance(x, np.ndarray):
        return ndarray(x, device)
    if isinstance(x, np.generic):  # CuPy returns 0-d arrays where NumPy returns scalars
        return ndarray(np.asarray(x), device)
    if isinstance(x, tuple):
        items = [_wrap(v, device) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [_wrap(v, device) for v in x]
    return x


def _op(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn`` on the NumPy arrays inside ``args``, its results on the current device (CuPy's rule)."""
    _check_devices((args, kwargs))
    out = kwargs.get("out")
    result = fn(*_unwrap(args), **_unwrap(kwargs))
    return out if isinstance(out, ndarray) else _wrap(result, Device(STATE.current))


# --------------------------------------------------------------------------- the cupy module


def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """Host data or an array to the current device (a copy when it comes from another device)."""
    if isinstance(a, ndarray):
        if a.device.id == STATE.current and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        a = a._a
    return ndarray(np.array(a, dtype=dtype, order=order or "K", copy=True), Device(STATE.current))


def _creation(fn: Any) -> Any:
    return lambda *args, **kwargs: ndarray(fn(*args, **kwargs), Device(STATE.current))


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


runtime = _module(
    "cupy.cuda.runtime",
    getDeviceCount=_device_count,
    getDeviceProperties=_device_properties,
    CUDARuntimeError=CUDARuntimeError,
)
cuda = _module("cupy.cuda", Device=Device, runtime=runtime)
cupy = _module(
    "cupy",
    __version__=VERSION,
    ndarray=ndarray,
    cuda=cuda,
    asarray=asarray,
    array=asarray,
    empty=_creation(np.empty),
    zeros=_creation(np.zeros),
    ones=_creation(np.ones),
    get_default_memory_pool=lambda: _POOL,
    float32=np.float32,
    float64=np.float64,
)


def _device_kw(fn: Any) -> Any:
    """A compat-NumPy function lifted to stand-in arrays: ``device=`` a stand-in Device, CuPy's device rules."""
    try:
        takes_device = "device" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # NumPy ufuncs have no inspectable signature (and take no device)
        takes_device = False

    def lifted(*args: Any, **kwargs: Any) -> Any:
        device = kwargs.pop("device", None)
        if device is not None and not isinstance(device, Device):
            raise ValueError(f"device: received {device!r}; expected a cupy.cuda.Device")
        if takes_device and device is not None:
            kwargs["device"] = "cpu"
        with Device(device) if device is not None else contextlib.nullcontext():
            return _op(fn, *args, **kwargs)

    lifted.__name__ = getattr(fn, "__name__", "lifted")
    return lifted


def _namespace() -> types.ModuleType:
    """``array_api_compat.cupy`` over the stand-in: the compat NumPy namespace with every function lifted."""
    ns = _module("array_api_compat.cupy", __array_api_version__=compat_numpy.__array_api_version__)
    for name in dir(compat_numpy):
        if name.startswith("__") and name != "__array_namespace_info__":
            continue
        value = getattr(compat_numpy, name)
        if isinstance(value, types.ModuleType):  # linalg, fft
            sub = _module(f"array_api_compat.cupy.{name}")
            for sub_name in dir(value):
                sub_value = getattr(value, sub_name)
                if callable(sub_value) and not isinstance(sub_value, type) and not sub_name.startswith("_"):
                    setattr(sub, sub_name, _device_kw(sub_value))
            setattr(ns, name, sub)
        elif callable(value) and not isinstance(value, type) and name not in ("finfo", "iinfo", "isdtype"):
            setattr(ns, name, _device_kw(value))
        else:
            setattr(ns, name, value)  # dtypes, constants, finfo/iinfo/isdtype (they take dtypes, not arrays)
    ns.asarray = lambda obj, /, *, dtype=None, device=None, copy=None: (
        _in_device(device, lambda: asarray(obj, dtype=dtype))
    )
    return ns


def _in_device(device: Device | None, make: Any) -> Any:
    with Device(device) if device is not None else contextlib.nullcontext():
        return make()


NAMESPACE = _namespace()


def install(monkeypatch: Any, *, device_count: int = 2, runtime_error: str | None = None) -> types.ModuleType:
    """Put the stand-in in ``sys.modules`` as ``cupy`` for one test (``monkeypatch`` undoes it); returns it.

    ``device_count`` stand-in GPUs (numbered from 0), or ``runtime_error``: the message
    ``getDeviceCount`` raises with, as on a machine whose CUDA driver is missing.
    """
    STATE.reset(device_count, runtime_error)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.runtime", runtime)
    # array_api_compat's own CuPy wrapper would import CuPy's whole API; ours lifts its NumPy wrapper instead
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", NAMESPACE)
    monkeypatch.setattr(array_api_compat, "cupy", NAMESPACE, raising=False)
    return cupy
