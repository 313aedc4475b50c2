"""The one description of the machine a run happened on, for reports and benchmarks.

:func:`machine_info` returns a JSON-ready dict: CPU model and cores, RAM,
platform, Python, NumPy, array-api-compat, the host BLAS thread pools, the
backend's own description (``backend.describe()``) when a backend is given
and PyTorch's version and threads when ``torch`` is given.  Facts that cannot
be read here are ``None`` or absent; reading them never raises.
:func:`blas_kernel_note` says when the host BLAS leaves the CPU's vector width unused.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _cpuinfo() -> str:
    """The text of /proc/cpuinfo (Linux), else ``""``."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (else ``platform.processor()``, else ``"unknown"``)."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def ram_bytes() -> int | None:
    """Total RAM in bytes (``MemTotal`` of /proc/meminfo, else ``sysconf``), or ``None``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def usable_cores() -> int | None:
    """Cores this process may run on (its CPU affinity), or ``os.cpu_count()`` where that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def blas_threadpools() -> list[dict[str, Any]]:
    """The native thread pools threadpoolctl sees (BLAS, OpenMP): API, library, version, threads."""
    try:
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
    except Exception:  # noqa: BLE001 - optional information only
        return []
    keys = ("internal_api", "prefix", "version", "num_threads", "architecture")
    return [{k: p.get(k) for k in keys} for p in pools]


#: the CPU flags (Linux ``/proc/cpuinfo`` names) that OpenBLAS's ``SkylakeX`` (AVX-512) kernels need
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
#: OpenBLAS's x86-64 kernels that use AVX-512 (threadpoolctl's ``architecture``, lower case)
AVX512_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux lists only those the kernel enabled); empty elsewhere.

    ``cpuinfo``: that file's text (default: read it).
    """
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def blas_kernel_note(
    pools: list[dict[str, Any]] | None = None,
    flags: frozenset[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """One line when OpenBLAS runs kernels without AVX-512 on a CPU that has it, saying why; else ``None``.

    Either ``OPENBLAS_CORETYPE`` names those kernels (some machines set it, with ``OPENBLAS_L2_SIZE``, to
    keep older OpenBLAS builds off their CPU's own kernels), or OpenBLAS chose them.  On the AMD Zen 5
    of docs/benchmarks.md ("Round 9") its ``SkylakeX`` kernels formed the report network's float64
    products about twice as fast as its ``Haswell`` ones.  The flags are read on Linux only, so
    elsewhere this says nothing.  ``pools``, ``flags`` and ``environ`` default to this process's
    (:func:`blas_threadpools`, :func:`cpu_flags`, ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    if not AVX512_FLAGS <= (cpu_flags() if flags is None else flags):
        return None
    for pool in blas_threadpools() if pools is None else pools:
        kernel = str(pool.get("architecture") or "")
        if pool.get("internal_api") != "openblas" or not kernel or kernel.lower() in AVX512_KERNELS:
            continue
        library = " ".join(["OpenBLAS", *([str(pool["version"])] if pool.get("version") else [])])
        held = environ.get("OPENBLAS_CORETYPE", "").strip()
        if held.lower() == kernel.lower():
            what = (f"uses its {kernel} kernels, without AVX-512, because OPENBLAS_CORETYPE={held}; unset it to let "
                    "it choose")
        else:
            what = (f"chose its {kernel} kernels, without AVX-512; OPENBLAS_CORETYPE=SkylakeX, set before Python "
                    "starts, selects its AVX-512 ones")
        return f"{library} on this AVX-512 CPU {what} (float64 products were about 2x faster on an AMD Zen 5)"
    return None


def machine_info(backend: Any = None, torch: Any = None) -> dict[str, Any]:
    """CPU, cores, RAM, platform, library versions and BLAS thread pools (``blas_note``: :func:`blas_kernel_note`).

    ``backend``: a :class:`~backend_mlp.backends.Backend`; its ``describe()``
    (``backend``, the library's version, ``gpu`` on CUDA, ...) is merged in.
    ``torch``: the imported ``torch`` module; adds ``torch``, ``torch_threads``
    and ``torch_blas``.
    """
    from . import __version__

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "ram_bytes": ram_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "backend_mlp": __version__,
        "numpy": np.__version__,
    }
    try:
        import array_api_compat

        info["array_api_compat"] = array_api_compat.__version__
    except ImportError:
        info["array_api_compat"] = None
    info["blas"] = blas_threadpools()
    info["blas_note"] = blas_kernel_note(info["blas"])
    if backend is not None:
        try:
            info.update(backend.describe())
        except Exception as exc:  # noqa: BLE001 - a description must not stop a run
            info["backend"] = str(backend)
            info["backend_describe_error"] = f"{type(exc).__name__}: {exc}"
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_blas"] = "mkl" if torch.backends.mkl.is_available() else "other"
    return info
