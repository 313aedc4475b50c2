"""JAX on its CPU or a GPU (``"jax"``, ``"jax:cpu"``, ``"jax:gpu"``, ``"jax:gpu:N"``, ``"jax:cuda:N"``).

JAX computes in 32 bits unless ``jax_enable_x64`` is set, and then silently
turns float64 requests into float32.  Resolving a JAX backend (or meeting a
JAX array) therefore sets ``jax.config.update("jax_enable_x64", True)``: a
**process-wide** switch (other JAX code in the process then also gets 64-bit
defaults for ``jnp.zeros``, ``jnp.arange``, Python floats, ...; arrays made
before keep their dtype).  Where JAX arrays already exist when it is switched,
a :class:`UserWarning` says so once; to avoid it, switch it on yourself at
start-up.  Switching it off again later makes float64 placement an error, not
float32.  A device that has no float64 (Apple's Metal plugin, for one) refuses
float64 data with a clear error.

JAX arrays are immutable (``mutable_arrays`` is false: the training step runs
pure), and the array-API namespace is ``jax.numpy`` itself.  The training
step compiles with :func:`jax.jit` (:meth:`JaxBackend.compile_step`), and
runs of steps between checks as one :func:`jax.lax.scan`
(:meth:`JaxBackend.compile_steps`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputValidationError
from .base import DTYPES, Backend

_CHOICES = "'jax', 'jax:cpu', 'jax:gpu' or 'jax:gpu:N'"
_PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu"}
#: device -> whether it computes in float64 (probed once)
_HAS_FLOAT64: dict[Any, bool] = {}
#: device -> its ``peak_bytes_in_use`` when :meth:`JaxBackend.reset_memory_peak` was last called
_PEAK_AT_RESET: dict[Any, int] = {}


def _import_jax(choice: str) -> Any:
    try:
        import jax
    except ImportError as exc:
        raise BackendUnavailableError(
            f"device {choice!r} needs JAX, which is not installed ({exc}); pip install 'backend_mlp[jax]' "
            "(for a GPU: pip install 'jax[cuda12]' or 'jax[cuda13]', after your CUDA version)"
        ) from None
    enable_float64(jax)
    return jax


def enable_float64(jax: Any) -> None:
    """Let JAX create float64 arrays (process-wide; see the module docstring).

    Warns when JAX arrays exist already: the code that made them now gets 64-bit defaults.
    """
    if jax.config.read("jax_enable_x64"):
        return
    existing = len(jax.live_arrays())
    jax.config.update("jax_enable_x64", True)
    if existing:
        warnings.warn(
            f"backend_mlp switched on jax_enable_x64 for this process (it needs float64), while {existing} JAX "
            "array(s) existed: those keep their dtype, but JAX's defaults (jnp.zeros, jnp.arange, Python floats) "
            "are 64-bit from now on; call jax.config.update('jax_enable_x64', True) at start-up to choose this "
            "yourself",
            UserWarning,
            stacklevel=3,
        )


#: weights with fewer entries keep the plain ``W.T @ dZ`` (:func:`rows_first_input_gradient`)
ROWS_FIRST_MIN_WEIGHTS = 1 << 16


def rows_first_input_gradient(W: Any, dZ: Any) -> Any:
    """``W.T @ dZ``; for a large ``W`` formed as ``(dZ.T @ W).T``, the product behind an optimisation barrier.

    XLA's CPU backend gives a product whose left operand is contracted over its
    first axis (``W.T @ dZ``) to a slower GEMM than the same product formed from
    the rows' side; left alone, it rewrites ``(dZ.T @ W).T`` back into the slow
    form, and the barrier stops that.  A 2048-unit layer's ``W.T @ dZ`` at batch
    256, with the ReLU mask after it: 12.2 ms against 8.5 ms on a 2-core AMD EPYC
    (``docs/benchmarks.md``, "Round 7").  Small weights (the report network's)
    keep the plain product, which the barrier would only keep from fusing.  The
    same values to float rounding.
    """
    if W.shape[0] * W.shape[1] < ROWS_FIRST_MIN_WEIGHTS:
        return W.T @ dZ
    import jax

    return jax.lax.optimization_barrier(dZ.T @ W).T


def _highest(a: Any, b: Any) -> Any:
    import jax
    import jax.numpy as jnp

    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def full_precision_matmul(W: Any, A: Any) -> Any:
    """``W @ A`` in the operands' own precision: on a GPU JAX's default would run float32 products in TF32
    (10-bit mantissas, errors near 1e-3), where every other backend computes in float32."""
    return _highest(W, A)


def full_precision_weight_gradient(dZ: Any, A_prev: Any) -> Any:
    """``dZ @ A_prev.T``, as :func:`full_precision_matmul`."""
    return _highest(dZ, A_prev.T)


def full_precision_input_gradient(W: Any, dZ: Any) -> Any:
    """``W.T @ dZ``, as :func:`full_precision_matmul`."""
    return _highest(W.T, dZ)


class JaxBackend(Backend):
    library = "jax"
    mutable_arrays = False
    # a jitted call copies NumPy arguments in its C++ dispatch: a few microseconds, against tens for an
    # eager slice of a device array
    compiled_takes_host_indices = True

    @classmethod
    def owns(cls, x: Any) -> bool:
        import array_api_compat

        return array_api_compat.is_jax_array(x)

    @classmethod
    def parse(cls, key: str, choice: str) -> Backend | None:
        if not (key == "jax" or key.startswith("jax:")):
            return None
        parts = key.split(":")[1:] or ["cpu"]
        platform = _PLATFORMS.get(parts[0])
        if platform is None or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise InputValidationError(f"device: received {choice!r}; expected {_CHOICES}")
        index = int(parts[1]) if len(parts) == 2 else 0
        jax = _import_jax(choice)
        try:
            devices = jax.devices(platform)
        except RuntimeError as exc:
            raise BackendUnavailableError(
                f"device {choice!r}: JAX sees no {platform.upper()} ({str(exc).splitlines()[0]}); for a GPU "
                "install jax[cuda12] or jax[cuda13] (after your CUDA version) on a machine with an NVIDIA GPU, or "
                "use device 'jax:cpu'"
            ) from None
        if index >= len(devices):
            raise BackendUnavailableError(
                f"device {choice!r}: JAX sees only {len(devices)} {platform.upper()} device(s), numbered 0 to "
                f"{len(devices) - 1}"
            )
        return cls._of_device(devices[index])

    @classmethod
    def _of_device(cls, device: Any) -> JaxBackend:
        import jax.numpy as jnp

        platform = "cpu" if device.platform == "cpu" else "gpu"
        name = "jax:cpu" if platform == "cpu" and device.id == 0 else f"jax:{platform}:{device.id}"
        return cls(name, jnp, device)

    @classmethod
    def of_array(cls, x: Any) -> Backend:
        import jax

        enable_float64(jax)
        return cls._of_device(next(iter(x.devices())))

    # ------------------------------------------------------------------ placement

    @property
    def on_host(self) -> bool:  # type: ignore[override]
        return self.device.platform == "cpu"

    @property
    def hardware(self) -> str:
        return "cpu" if self.device.platform == "cpu" else f"cuda:{self.device.id}"

    def asarray(self, host_array: Any, dtype: str | None = None) -> Any:
        import jax

        arr = self.host_for_device(host_array, dtype)  # float64 on a device without it: a clear error, not float32
        if arr.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
            raise InputValidationError(
                "dtype: received float64, but jax_enable_x64 was switched off after backend_mlp switched it on, "
                "so JAX would make it float32; expected float32 data, or jax_enable_x64 left on"
            )
        return jax.device_put(arr, self.device)

    def supported_dtypes(self) -> tuple[str, ...]:
        """float32, and float64 where the device computes in it (probed once per device)."""
        if self.device not in _HAS_FLOAT64:
            import jax

            try:
                probe = jax.device_put(np.ones(2, dtype=np.float64), self.device)
                _HAS_FLOAT64[self.device] = probe.dtype == np.float64 and float((probe + probe)[0]) == 2.0
            except Exception:  # noqa: BLE001 - a plugin that rejects float64 outright
                _HAS_FLOAT64[self.device] = False
        return DTYPES if _HAS_FLOAT64[self.device] else ("float32",)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    # ------------------------------------------------------------------ the training step

    def compile_step(self, step: Any) -> Any:
        """:func:`jax.jit`.  The state is not donated: on CPU, donating it measured no faster on
        [784, 2048, 2048, 10] at batch 256, in ``train()`` and in a hand-written step (``docs/benchmarks.md``,
        "Round 5"), and a donated state would be unusable after an interruption between call and commit."""
        import jax

        return jax.jit(step)

    def compile_steps(self, step: Any) -> Any:
        """:func:`jax.lax.scan` of ``step`` over the batches' indices, under :func:`jax.jit`: k steps in
        one dispatch.  A jitted call costs about as much again as the report network's step on the CPU (the
        arguments' pytree flattened and checked, the result handed back to Python); a scan pays it once
        per k steps (``docs/benchmarks.md``, "Round 7")."""
        import jax

        def steps(
            parameters: Any, optimizer_state: Any, bn_state: Any, X_rows: Any, Y_rows: Any, idx: Any, lr: Any
        ) -> Any:
            def one(carry: Any, batch: Any) -> Any:
                out = step(*carry, X_rows, Y_rows, batch, lr)
                return (out.parameters, out.optimizer_state, out.bn_state), None

            state, _ = jax.lax.scan(one, (parameters, optimizer_state, bn_state), idx)
            return state

        return jax.jit(steps)

    @property
    def matmul(self) -> Any:  # type: ignore[override]
        """The plain product on a CPU; :func:`full_precision_matmul` on a GPU (no TF32)."""
        return None if self.on_host else full_precision_matmul

    @property
    def weight_gradient(self) -> Any:  # type: ignore[override]
        """The plain product on a CPU; :func:`full_precision_weight_gradient` on a GPU (no TF32)."""
        return None if self.on_host else full_precision_weight_gradient

    @property
    def input_gradient(self) -> Any:  # type: ignore[override]
        """:func:`rows_first_input_gradient` on a CPU (measured there); :func:`full_precision_input_gradient` on a
        GPU (no TF32)."""
        return rows_first_input_gradient if self.on_host else full_precision_input_gradient

    # ------------------------------------------------------------------ timing and memory

    def synchronize(self) -> None:
        """Wait until every live JAX array (and every effect) is computed.

        JAX has no device-wide barrier; waiting for all live arrays covers all
        queued work whose result anyone can still see, which is what timings need.
        """
        import jax

        jax.block_until_ready(jax.live_arrays())
        jax.effects_barrier()

    def reset_memory_peak(self) -> None:
        self.synchronize()
        stats = self.device.memory_stats() or {}
        _PEAK_AT_RESET[self.device] = int(stats.get("peak_bytes_in_use", 0))

    def memory_peak(self) -> int | None:
        """The device's peak since :meth:`reset_memory_peak` where JAX can tell, else ``None``.

        JAX keeps one high-water mark per device for the life of the process and
        cannot reset it: the peak of a block is known only when the block raised
        it (host memory, or a block that stayed below an earlier peak: ``None``).
        """
        stats = self.device.memory_stats() if not self.on_host else None
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        peak = int(stats["peak_bytes_in_use"])
        return peak if peak > _PEAK_AT_RESET.get(self.device, 0) else None

    def describe(self) -> dict[str, Any]:
        import jax
        import jaxlib

        info: dict[str, Any] = {"backend": self.name, "jax": jax.__version__, "jaxlib": jaxlib.__version__}
        if not self.on_host:
            info["gpu"] = self.device.device_kind
        return info
