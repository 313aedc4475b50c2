"""Peak memory, each measurement in a fresh interpreter.

:func:`measure_side_memory`: one timed block of one side (peak host RSS of
the block, and the backend's device memory peak where its arrays are not on
the host).  :func:`measure_section_memory`: the report's Section 4 on real
MNIST, loading included.  The child process runs ``<function>_child(spec)`` of
this module and prints its JSON result; a failing child gives ``{"error": ...}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..backends import resolve_backend
from ..errors import BackendUnavailableError, InputValidationError
from .workloads import FUNCTIONAL, TORCH, TRAIN, WORKLOADS, mnist_data, synthetic_data

#: the side labels a child can measure
SIDES = (TRAIN, FUNCTIONAL, TORCH)


def _proc_status_bytes(field: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process from /proc (bytes), or ``None`` off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM); ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak resident set size (bytes): VmHWM, else ``ru_maxrss``."""
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


# ----------------------------------------------------------------------------- one side, one block


def side_memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: place the data, run one block of one side, report its memory.

    ``spec``: ``side`` (one of :data:`SIDES`), ``workload``, ``dtype``,
    ``n_steps``, ``device``, ``data_dir``, ``n_train``, ``n_test``, ``seed``,
    ``torch_threads``.  ``peak_rss_bytes`` is the peak during the block (the
    high-water mark is reset just before it), so it includes the resident data
    and libraries; ``rss_before_bytes`` is the RSS just before the block;
    ``device_peak_bytes`` (device backends only) the block's device peak.
    """
    from .backend_mlp_side import BackendMLPSide, FunctionalSide
    from .torch_side import TorchSide, import_torch

    if spec["side"] not in SIDES:
        raise InputValidationError(f"side: received {spec['side']!r}; expected one of {', '.join(SIDES)}")
    backend = resolve_backend(spec["device"])
    torch = None
    if spec["side"] == TORCH:
        torch = import_torch(backend)
        if torch is None:
            raise BackendUnavailableError("PyTorch is not installed")
        if spec.get("torch_threads"):
            torch.set_num_threads(spec["torch_threads"])
    source = (
        mnist_data(spec["data_dir"])
        if spec["data_dir"]
        else synthetic_data(spec["seed"], spec["n_train"], spec["n_test"])
    )
    data = source.cast(spec["dtype"])
    del source
    workload = WORKLOADS[spec["workload"]]
    if torch is not None:
        side: Any = TorchSide(torch, backend, data, spec["dtype"], spec["seed"])
    else:
        cls = FunctionalSide if spec["side"] == FUNCTIONAL else BackendMLPSide
        side = cls(backend, data, spec["dtype"], spec["seed"])
    del data
    probe = side.backend  # whose device memory the block allocates
    run = side.prepare(workload, spec["n_steps"])
    probe.reset_memory_peak()
    rss_before = _proc_status_bytes("VmRSS")
    per_block = reset_peak_rss()
    run()
    out: dict[str, Any] = {
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_bytes": rss_before,
        "peak_is_per_block": per_block,
    }
    device_peak = probe.memory_peak()
    if device_peak is not None:
        out["device_peak_bytes"] = device_peak
    return out


def measure_side_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`side_memory_child` in a fresh interpreter."""
    return run_child("side_memory_child", spec)


# ----------------------------------------------------------------------------- Section 4


def section_memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load MNIST, train the report's section and report the peak RSS (bytes).

    ``spec``: ``data_dir`` (``None``: the default MNIST location), ``section``, ``dtype``.
    """
    from ..data import prepare_mnist
    from ..experiment import SECTIONS, run_experiment

    data_dir, section, dtype = spec.get("data_dir"), spec.get("section", "4"), spec.get("dtype", "float32")
    baseline = peak_rss_bytes()
    start = time.perf_counter()
    splits = prepare_mnist(data_dir, dtype=dtype, download=data_dir is None)
    after_load = peak_rss_bytes()
    _, metrics = run_experiment(splits, SECTIONS[section])
    train_set_bytes = (
        int(splits.train.X_rows.shape[0]) * int(splits.train.X_rows.shape[1]) * (4 if dtype == "float32" else 8)
    )
    peak = peak_rss_bytes()
    return {
        "baseline_rss_bytes": baseline,
        "peak_rss_after_load_bytes": after_load,
        "peak_rss_bytes": peak,
        "train_set_bytes": train_set_bytes,
        "peak_over_train_set": peak / train_set_bytes,
        "target_peak_over_train_set": 3.0,
        "steps": metrics["steps"],
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - start,
    }


def measure_section_memory(data_dir: str | None, section: str = "4", dtype: str = "float32") -> dict[str, Any]:
    """:func:`section_memory_child` in a fresh interpreter (PyTorch is never imported there)."""
    out = run_child("section_memory_child", {"data_dir": data_dir, "section": section, "dtype": dtype})
    return {"part": "memory", "section": section, "dtype": dtype, **out}


# ----------------------------------------------------------------------------- the child process


def run_child(function: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``function(spec)`` of this module in a fresh interpreter; its JSON result, or ``{"error": ...}``."""
    code = (
        f"import json, sys; from {__name__} import {function}; "
        f"print(json.dumps({function}(json.loads(sys.argv[1]))))"
    )
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the checkout (or site-packages) holding backend_mlp
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["(no output)"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
