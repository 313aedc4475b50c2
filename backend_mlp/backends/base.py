"""The :class:`Backend` interface: what the rest of the library may ask of an array library.

A backend is an array namespace (``xp``) plus the device its arrays are
placed on, and it answers, as data, every question that would otherwise be
guessed from a library's name: where its arrays live (``on_host``), whether
in-place updates are honoured (``mutable_arrays``), whether the host BLAS
threads apply (``host_blas``), how to wait for queued work
(:meth:`synchronize`), how to bring an array home (:meth:`to_numpy`) and what
its device memory peak was (:meth:`reset_memory_peak`, :meth:`memory_peak`).
One subclass per library; nothing outside :mod:`backend_mlp.backends`
compares backend or library names.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np  # host-side conversion only

from ..errors import InputValidationError
from ..ops import Ops, ops_for

DTYPES = ("float32", "float64")


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``np.float32``, ``torch.float32``, ``np.dtype("float32")``, ``"float32"``, ..."""
    if isinstance(dtype, type) and issubclass(dtype, np.generic):  # a NumPy scalar type such as np.float32
        return np.dtype(dtype).name
    return str(getattr(dtype, "name", None) or dtype).rsplit(".", 1)[-1]


def resolve_dtype_name(dtype: Any) -> str:
    """Normalise ``"float32"``, ``"float64"``, ``np.float32`` or a namespace dtype to its name."""
    name = dtype_name(dtype)
    if name not in DTYPES:
        raise InputValidationError(f"dtype: received {dtype!r}; expected one of {', '.join(DTYPES)}")
    return name


@dataclass(frozen=True)
class Backend:
    """An array namespace together with the device arrays are placed on.

    ``name`` is the canonical spelling (``"numpy"``, ``"cupy:0"``,
    ``"torch:cpu"``, ...), ``xp`` the array-API namespace, ``device`` the
    object passed as ``device=`` to ``xp.asarray`` (``None`` for the default).
    Subclasses set the class-level capabilities below and override the few
    methods whose behaviour differs.
    """

    name: str
    xp: Any
    device: Any = None

    #: the library's import name ("numpy", "cupy", "torch", "array_api_strict")
    library: ClassVar[str] = ""
    #: arrays live in host memory (to_numpy may share memory, no device copies)
    on_host: ClassVar[bool] = True
    #: in-place operators (``a += b``) update ``a`` itself, so an in-place step variant is allowed
    mutable_arrays: ClassVar[bool] = True
    #: the library's matmuls run on the host BLAS that threadpoolctl controls
    host_blas: ClassVar[bool] = False
    #: all arrays of the library share one device, so device checks can be skipped
    single_device: ClassVar[bool] = False
    #: its compiled step (:meth:`compile_step`) takes the batch's host NumPy indices as an argument, copied in by
    #: the call itself, which is cheaper than slicing a device array once per step
    compiled_takes_host_indices: ClassVar[bool] = False
    #: a faster ``W @ A`` (the same values up to float rounding) for the layouts training produces, used by the
    #: linear kernels through :func:`~backend_mlp.ops.ops_for`; ``None``: plain ``W @ A``
    matmul: ClassVar[Any] = None
    #: likewise for a layer's weight gradient ``dZ @ A_prev.T``; ``None``: that plain product
    weight_gradient: ClassVar[Any] = None
    #: likewise for the gradient a layer hands down, ``W.T @ dZ``; ``None``: that plain product
    input_gradient: ClassVar[Any] = None

    # ------------------------------------------------------------------ which arrays are ours

    @classmethod
    def owns(cls, x: Any) -> bool:
        """True when ``x`` is an array of this backend's library."""
        return type(x).__module__.split(".", 1)[0] == cls.library

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        """The backend a lower-cased user string names, or ``None`` when it is not this library's."""
        raise NotImplementedError

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        """The backend an existing array of this library lives on."""
        import array_api_compat

        return cls(cls.library, array_api_compat.array_namespace(x), array_api_compat.device(x))

    # ------------------------------------------------------------------ placement

    def asarray(self, host_array: Any, dtype: str | None = None) -> Any:
        """Place a host (NumPy-convertible) array on this backend's device.

        On a device this is a copy; on host backends the result may share
        memory with ``host_array`` when no dtype conversion is needed, so do
        not modify that array in place afterwards.  ``dtype`` is
        ``"float32"``/``"float64"`` or ``None`` to keep the array's own dtype.
        """
        return self.xp.asarray(host_as(host_array, dtype), device=self.device)

    def host_for_device(self, host_array: Any, dtype: str | None = None) -> np.ndarray:
        """:func:`host_as`, refusing floating data of a dtype this device does not compute in (:meth:`check_dtype`):
        for backends whose devices may lack float64, before placing."""
        arr = host_as(host_array, dtype)
        if arr.dtype.kind == "f":
            self.check_dtype(arr.dtype.name)
        return arr

    def to_numpy(self, x: Any) -> np.ndarray:
        """``x`` as a NumPy array on the host (a view where the memory is already on the host)."""
        return np.from_dlpack(x)

    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for ``"float32"`` or ``"float64"`` (refused where the device lacks it)."""
        return getattr(self.xp, self.check_dtype(name))

    def supported_dtypes(self) -> tuple[str, ...]:
        """The floating dtypes of :data:`DTYPES` this backend's device computes in (all, unless overridden)."""
        return DTYPES

    def check_dtype(self, dtype: Any) -> str:
        """``dtype``'s name, or :class:`InputValidationError` when this backend's device does not support it."""
        name = resolve_dtype_name(dtype)
        supported = self.supported_dtypes()
        if name not in supported:
            raise InputValidationError(
                f"dtype: received {name}, which device {self.name!r} does not support; "
                f"expected {' or '.join(supported)} on this device"
            )
        return name

    # ------------------------------------------------------------------ the training step

    def take_batch(self, X_rows: Any, Y_rows: Any, idx: Any) -> tuple[Any, Any]:
        """The batch of samples ``idx`` as columns: ``(Xb (n_x, m), Yb (n_classes, m))`` from row-major data."""
        return self.take_columns(X_rows, idx), self.take_columns(Y_rows, idx)

    def take_columns(self, rows: Any, idx: Any) -> Any:
        """The rows ``idx`` of ``rows`` (n, k) as columns: (k, m)."""
        return self.xp.take(rows, idx, axis=0).T

    def kernel_ops(self, inplace: bool) -> Ops:
        """The linear kernels' arithmetic (:func:`~backend_mlp.ops.ops_for`): in place on fresh temporaries or
        pure, with this backend's own products (:attr:`matmul`, :attr:`weight_gradient`, :attr:`input_gradient`)."""
        return ops_for(inplace, self.matmul, self.weight_gradient, self.input_gradient)

    def step_namespace(self) -> Any:
        """The array namespace the eager training step computes with: ``xp``, or a twin of it with the same
        functions and values and less overhead per call (NumPy's, see :func:`.numpy_backend.step_namespace`)."""
        return self.xp

    def compile_step(self, step: Any) -> Any:
        """``step`` (a pure function of arrays: the training step, the checks' evaluation) compiled by this
        library's compiler, or ``None`` without one.

        The compiled function takes and returns the same (nested dicts/tuples of) arrays as ``step``;
        callers run ``step`` eagerly when this returns ``None``.
        """
        return None

    def compile_steps(self, step: Any) -> Any:
        """Several training steps as one compiled call, or ``None`` (the loop then calls the compiled step
        once per batch).

        ``step`` is the one :meth:`compile_step` compiles, called as ``step(parameters, optimizer_state,
        bn_state, X_rows, Y_rows, idx, learning_rate)`` and returning a
        :class:`~backend_mlp.training.step.StepOutput`.  The returned
        function takes the same arguments with ``idx`` of shape (k, m), the k batches' indices in order,
        and returns the state after the k steps, ``(parameters, optimizer_state, bn_state)``.
        """
        return None

    def compile_namespace(self) -> Any:
        """The array namespace a step handed to :meth:`compile_step` computes with (``xp`` unless overridden)."""
        return self.xp

    def compiling(self) -> AbstractContextManager[Any]:
        """The context a compiled step's first (compiling) call runs in: quiets the compiler's chatter."""
        return nullcontext()

    # ------------------------------------------------------------------ timing and memory

    def synchronize(self) -> None:
        """Wait for queued device work to finish (a no-op on host backends)."""

    def device_context(self) -> AbstractContextManager[Any]:
        """A context in which this backend's device is the current one (a no-op unless overridden).

        CuPy runs every kernel on the *current* GPU and refuses arrays of another one, so work on
        ``"gpu:1"`` runs inside ``with backend.device_context():``.
        """
        return nullcontext()

    @property
    def hardware(self) -> str:
        """Where the arithmetic runs, as PyTorch spells devices: ``"cpu"`` or ``"cuda:N"``."""
        return "cpu"

    def reset_memory_peak(self) -> None:
        """Forget earlier device allocations, so :meth:`memory_peak` reads the coming block's peak."""

    def memory_peak(self) -> int | None:
        """Peak device memory in bytes since :meth:`reset_memory_peak`; ``None`` for host memory."""
        return None

    def describe(self) -> dict[str, Any]:
        """Library version and device facts, for machine descriptions in reports."""
        return {"backend": self.name, self.library: getattr(self.xp, "__version__", None) or _version(self.library)}

    def __str__(self) -> str:
        return self.name


def host_as(host_array: Any, dtype: str | None) -> np.ndarray:
    """``host_array`` as a NumPy array of ``dtype`` (``None``: its own), copied only to convert."""
    arr = np.asarray(host_array)
    return arr if dtype is None else arr.astype(resolve_dtype_name(dtype), copy=False)


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:  # noqa: BLE001 - optional information only
        return None
