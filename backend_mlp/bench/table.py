"""The benchmark report (the JSON dict :class:`~backend_mlp.bench.runner.Benchmark` returns) as a plain-text table."""

from __future__ import annotations

from typing import Any

from .bound import describe
from .workloads import (
    BM_JAX,
    BM_TORCH,
    BM_TORCH_COMPILE,
    CHECK_STEPS,
    COMPILE,
    FUNCTIONAL,
    HAND_NUMPY,
    JAX,
    JAX_SCAN,
    SKLEARN,
    TORCH,
    TRAIN,
)

#: the per-step table's sides, left to right: backend_mlp's paths, then the peers
STEP_SIDES = (TRAIN, FUNCTIONAL, BM_TORCH, BM_JAX, BM_TORCH_COMPILE, HAND_NUMPY, TORCH, COMPILE, JAX, JAX_SCAN,
              SKLEARN)

#: (header, width) left to right; a negative width left-aligns
_COLUMNS: list[tuple[str, int]] = [
    ("part", -8),
    ("workload", -15),
    ("dtype", -7),
    ("steps", 6),
    ("bm it/s", 9),
    ("fn it/s", 9),
    ("torch it/s", 10),
    ("ratio", 6),
    ("fn/train", 8),
    ("fn/torch", 8),
    ("compile it/s", 12),
    ("ratio_c", 7),
    ("bm samples/s", 12),
    ("torch samples/s", 15),
    ("bm MB", 6),
    ("fn MB", 6),
    ("torch MB", 8),
    ("max rel diff", 12),
    ("fn diff", 8),
    ("bm thr", 6),
]


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _rate(entry: dict[str, Any] | None, part: str) -> str:
    """Steps per second, or calls per second for the predict part."""
    if entry is None:
        return "-"
    if part == "predict":
        return f"{1 / entry['seconds_median']:.1f}"
    return f"{entry['steps_per_second']:.1f}"


def _row(r: dict[str, Any], mem_key: str) -> list[str]:
    part = r["part"]
    bm, fn, th, tc = (r.get(k) for k in (TRAIN, FUNCTIONAL, TORCH, COMPILE))

    def mem(e: dict[str, Any] | None) -> str:
        return _mb((e or {}).get("memory", {}).get(mem_key))

    return [
        part,
        r["workload"],
        r["dtype"],
        str(r["steps_per_block"] or "-"),
        _rate(bm, part),
        _rate(fn, part),
        _rate(th, part),
        _fmt(r.get("ratio_vs_torch"), ".3f"),
        _fmt(r.get("ratio_functional_vs_train"), ".3f"),
        _fmt(r.get("ratio_functional_vs_torch"), ".3f"),
        _rate(tc, part),
        _fmt(r.get("ratio_vs_torch_compile"), ".3f"),
        _fmt(bm and bm["samples_per_second"], ".0f"),
        _fmt(th and th["samples_per_second"], ".0f"),
        mem(bm),
        mem(fn),
        mem(th),
        _fmt(r.get("check_max_rel_diff"), ".1e"),
        _fmt(r.get("check_max_rel_diff_functional"), ".1e"),
        str(r.get("backend_mlp_blas_threads") or "-"),
    ]


def _line(cells: list[str]) -> str:
    return " ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, (_, w) in zip(cells, _COLUMNS, strict=True))


def format_table(report: dict[str, Any]) -> str:
    """The results as a plain-text table (medians; ratio = backend_mlp time / PyTorch time), then notes."""
    on_host = report.get("on_host", True)
    head = _line([h for h, _ in _COLUMNS])
    lines = [head, "-" * len(head)]
    mem_key = "peak_rss_bytes" if on_host else "device_peak_bytes"
    for r in report["results"]:
        if r["part"] != "memory":
            lines.append(_line(_row(r, mem_key)))
    lines += [
        "bm: backend_mlp's train(); fn: the functional API (L_model_forward / L_model_backward / "
        "update_parameters) in a user's loop; torch: PyTorch eager",
        "it/s: steps per second (epoch: steps of that epoch; predict: calls per second over the test images)",
        "ratio: backend_mlp time / PyTorch eager time (below 1: backend_mlp is faster); ratio_c: vs torch.compile; "
        "fn/train, fn/torch: functional time / train() time, / PyTorch eager time",
        "MB: peak host RSS during one block, each side in a fresh process (data and libraries included)"
        if on_host
        else "MB: peak device memory of one block, each side in a fresh process (backend's pool / torch.cuda)",
        f"max rel diff: max|a - b| / max|b| over the parameters after {CHECK_STEPS} steps, PyTorch against train(); "
        "fn diff: the functional API against train()",
        "bm thr: host BLAS threads of train()'s steps (blas_threads='auto') and of the functional loop; PyTorch runs "
        "with the process's settings (JSON: machine.blas, machine.torch_threads)",
    ]
    if report.get("torch_compile_skipped"):
        lines.append(f"torch.compile skipped: {report['torch_compile_skipped']}")
    for library, products in report.get("matmul_libraries", {}).items():
        lines.append(f"products of {library}: {products}")
    if report.get("machine", {}).get("blas_note"):
        lines.append(f"note: {report['machine']['blas_note']}")
    for label, why in report.get("sides_skipped", {}).items():
        if label != COMPILE:
            lines.append(f"{label} skipped: {why}")
    per_step = format_per_step(report)
    if per_step:
        lines += ["", per_step]
    for r in report["results"]:
        if r["part"] == "memory":
            lines.append(_memory_line(r))
    return "\n".join(lines)


def _memory_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"memory (Section {r['section']}, {r['dtype']}): failed: {r['error']}"
    return (
        f"memory (Section {r['section']}, MNIST, {r['dtype']}): peak RSS {_mb(r['peak_rss_bytes'])} MB "
        f"= {r['peak_over_train_set']:.2f} x the training set ({_mb(r['train_set_bytes'])} MB; "
        f"target < 3); after loading {_mb(r['peak_rss_after_load_bytes'])} MB, interpreter "
        f"{_mb(r['baseline_rss_bytes'])} MB; {r['steps']} steps"
    )


def format_per_step(report: dict[str, Any]) -> str:
    """The steps part as microseconds per step, one column per side that ran: ``median (min-max)``,
    then the fastest backend_mlp path against the fastest peer (torch, torch.compile, jax.jit)."""
    records = [r for r in report["results"] if r["part"] == "steps"]
    labels = [s for s in STEP_SIDES if any(s in r for r in records)]
    if not records or len(labels) < 2:
        return ""
    width = 20
    lines = [
        "microseconds per step, median (min-max) of the alternating blocks",
        " ".join([f"{'workload':<15}", f"{'dtype':<7}", *(f"{s:>{width}}" for s in labels),
                  f"{'fastest backend_mlp / fastest peer':>36}", f"{'bound':>6}", f"{'/bound':>6}"]),  # fmt: skip
    ]
    for r in records:
        cells = [f"{r['workload']:<15}", f"{r['dtype']:<7}"]
        for s in labels:
            entry = r.get(s)
            if entry is None or "us_per_step" not in entry:
                cells.append(f"{'-':>{width}}")
                continue
            us, median = entry["us_per_step"], entry["us_per_step_median"]
            cells.append(f"{median:.0f} ({min(us):.0f}-{max(us):.0f})".rjust(width))
        best = r.get("ratio_fastest_vs_peer")
        versus = "-" if best is None else f"{best:.3f} ({r['fastest_backend_mlp']} / {r['fastest_peer']})"
        cells.append(versus.rjust(36))
        bound = r.get("one_core_bound")
        cells.append("-".rjust(6) if bound is None else f"{bound['bound_us']:.0f}".rjust(6))
        cells.append(_fmt(r.get("ratio_fastest_vs_bound"), ".2f").rjust(6))
        lines.append(" ".join(cells))
        for s, why in r.get("sides_not_run", {}).items():
            lines.append(f"  {r['workload']} {r['dtype']}: {s} not run: {why}")
        if bound is not None:
            lines.append(f"  {r['workload']} {r['dtype']}: one-core bound {describe(bound)}")
    lines.append(
        "numpy by hand: a minimal hand-written NumPy step (the eager path's yardstick); sklearn: MLPClassifier("
        "solver='sgd') by partial_fit; jax.jit: a hand-written jitted step; backend_mlp <library>: train() there; "
        "bound: the one-core lower bound measured here (products at the best GEMM rate + the row gather), "
        "/bound: the fastest backend_mlp path over it"
    )
    return "\n".join(lines)
