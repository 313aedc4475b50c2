"""Statistics over seeds: per-run-key summaries, the ablation's rows and the acceptance checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..experiment import REPORT_RESULTS
from .protocol import ABLATION_D_LABEL, ABLATION_VARIANTS, ablation_key

#: (metrics key, row label, format) of the metrics summarised per run key, in the order of the report's tables.
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("steps", "steps", "{:,.0f}"),
    ("epochs", "epochs", "{:.1f}"),
    ("train_accuracy", "train accuracy", "{:.4f}"),
    ("val_accuracy", "validation accuracy", "{:.4f}"),
    ("test_accuracy", "test accuracy", "{:.4f}"),
    ("final_train_cost", "final training cost", "{:.4f}"),
    ("best_val_cost", "best validation cost", "{:.4f}"),
    ("train_seconds", "wall time (s)", "{:.1f}"),
)
#: Metrics summarised only where every run of a key has them (the batch-norm runs).
BATCH_STATISTICS_METRICS = ("test_accuracy_batch_statistics", "val_accuracy_batch_statistics")

#: Acceptance targets (see :func:`acceptance_checks`).
SECTION4_TOLERANCE = 0.01
SECTION5_MIN_TEST = 0.92
SECTION6_MIN_TEST = 0.89


def stats(values: Sequence[float | None]) -> dict[str, float]:
    """mean, sample std (0 for one value), median, min, max and n of ``values`` (``None`` entries skipped)."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (``0.5 < p < 1``) of Student's t distribution with ``df >= 1`` degrees of freedom.

    Solves ``P(|T| <= t) = 2p - 1`` by bisection on the exact closed form for
    integer ``df`` (Abramowitz & Stegun 26.7.3-4); e.g. ``t_quantile(0.975, 4) = 2.7764...``.
    """
    if not (0.5 < p < 1) or int(df) != df or df < 1:
        raise ValueError(f"t_quantile: received p={p!r}, df={df!r}; expected 0.5 < p < 1 and an integer df >= 1")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while _t_central(hi, int(df)) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_central(mid, int(df)) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return (lo + hi) / 2


def _t_central(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):  # 1 + 2/3 c^2 + (2*4)/(3*5) c^4 + ... (df - 3 powers)
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return (2 / math.pi) * (theta + (s * math.cos(theta) * total if df > 1 else 0.0))
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):  # 1 + 1/2 c^2 + (1*3)/(2*4) c^4 + ... (df - 2 powers)
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return s * total


def confidence_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float] | None:
    """Mean, sample std and the two-sided ``level`` t-interval of the mean of ``values`` (``None`` below 2 values).

    ``{"n", "mean", "std", "low", "high", "level"}``: ``mean ± t_{(1+level)/2, n-1} · std / √n``.
    """
    a = np.asarray(list(values), dtype=np.float64)
    if a.size < 2:
        return None
    mean, std = float(a.mean()), float(a.std(ddof=1))
    half = t_quantile((1 + level) / 2, int(a.size) - 1) * std / math.sqrt(a.size)
    return {"n": int(a.size), "mean": mean, "std": std, "low": mean - half, "high": mean + half, "level": level}


def summarize_runs(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per run key: stats of every table metric, per-layer weight std and batch-statistics accuracy."""
    keys = list(dict.fromkeys(r["key"] for r in runs))
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        rs = [r for r in runs if r["key"] == key]
        entry: dict[str, Any] = {"label": rs[0]["label"], "seeds": [r["seed"] for r in rs]}
        for metric in [m for m, _, _ in METRIC_ROWS] + list(BATCH_STATISTICS_METRICS):
            if all(metric in r for r in rs):
                entry[metric] = stats([r[metric] for r in rs])
        n_layers = len(rs[0]["weight_std"])
        entry["weight_std"] = [stats([r["weight_std"][l] for r in rs]) for l in range(n_layers)]
        out[key] = entry
    return out


def median(summary: dict[str, Any], key: str, metric: str) -> float | None:
    """The median of ``metric`` over the seeds of run ``key``; ``None`` when it was not run."""
    value = summary.get(key, {}).get(metric, {})
    return value.get("median") if isinstance(value, dict) else None


def ablation_rows(summary: dict[str, dict[str, Any]], sections: Sequence[str]) -> list[dict[str, Any]]:
    """The ablation variants (a)-(d) that were run, with their test/validation accuracy, steps and cost stats."""
    rows = []
    for v, (label, _) in ABLATION_VARIANTS.items():
        e = summary.get(ablation_key(v, sections))
        if e is None:
            continue
        rows.append({"variant": v, "label": label, "key": ablation_key(v, sections),
                     "test": e["test_accuracy"], "val": e["val_accuracy"], "steps": e["steps"],
                     "best_val_cost": e["best_val_cost"]})
    c = summary.get(ablation_key("c", sections))
    if c is not None and "test_accuracy_batch_statistics" in c:
        rows.append({"variant": "d", "label": ABLATION_D_LABEL, "key": ablation_key("c", sections),
                     "test": c["test_accuracy_batch_statistics"], "val": c["val_accuracy_batch_statistics"],
                     "steps": c["steps"], "best_val_cost": None})
    return rows


def acceptance_checks(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The acceptance targets, each with the measured value and ``passed`` (``None``: not run)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: str, passed: bool | None) -> None:
        checks.append({"check": name, "target": target, "measured": measured, "passed": passed})

    t4, t5, t6 = (median(summary, k, "test_accuracy") for k in ("4", "5", "6"))
    s4, s5 = median(summary, "4", "steps"), median(summary, "5", "steps")
    floor4 = REPORT_RESULTS["4"]["test_accuracy"] - SECTION4_TOLERANCE
    add("Section 4 test accuracy", f"median ≥ {floor4:.4f} (report {REPORT_RESULTS['4']['test_accuracy']} − "
        f"{SECTION4_TOLERANCE})", fmt(t4, "{:.4f}"), None if t4 is None else t4 >= floor4)
    add("Section 5 test accuracy", f"median ≥ {SECTION5_MIN_TEST}", fmt(t5, "{:.4f}"),
        None if t5 is None else t5 >= SECTION5_MIN_TEST)
    add("Section 5 steps", "median < Section 4 median steps",
        f"{fmt(s5, '{:,.0f}')} vs {fmt(s4, '{:,.0f}')}", None if s4 is None or s5 is None else s5 < s4)
    add("Section 6 test accuracy", f"median ≥ {SECTION6_MIN_TEST}", fmt(t6, "{:.4f}"),
        None if t6 is None else t6 >= SECTION6_MIN_TEST)
    if "4" in summary and "6" in summary:
        plain = [w["median"] for w in summary["4"]["weight_std"]]
        l2 = [w["median"] for w in summary["6"]["weight_std"]]
        pairs = enumerate(zip(plain, l2, strict=True), start=1)
        measured = ", ".join(f"W{l}: L2 {b:.3f} vs plain {a:.3f}" for l, (a, b) in pairs)
        add("Section 6 weights narrower", "median std of each layer's weights < Section 4's", measured,
            all(b < a for a, b in zip(plain, l2, strict=True)))
    else:
        add("Section 6 weights narrower", "median std of each layer's weights < Section 4's", "—", None)
    return checks


def fmt(value: float | None, template: str) -> str:
    """``template.format(value)``, or ``—`` for a missing or NaN value."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else template.format(value)
