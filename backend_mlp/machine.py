"""The one description of the machine a run happened on, for reports and benchmarks.

:func:`machine_info` returns a JSON-ready dict: CPU model and cores, RAM,
platform, Python, NumPy, array-api-compat, the host BLAS thread pools, the
backend's own description (``backend.describe()``) when a backend is given
and PyTorch's version and threads when ``torch`` is given.  Facts that cannot
be read here are ``None`` or absent; reading them never raises.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (else ``platform.processor()``, else ``"unknown"``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
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


def machine_info(backend: Any = None, torch: Any = None) -> dict[str, Any]:
    """CPU, cores, RAM, platform, library versions and BLAS thread pools.

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
