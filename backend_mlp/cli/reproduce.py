"""Reproduce the report's Sections 4-6 over several seeds and write ``REPORT.md``.

For each seed ``s`` in ``0..N-1`` MNIST is loaded and split once
(``prepare_mnist(split_seed=s)``) and every selected section is trained on it
with ``seed=s`` (initialisation and shuffling).  With ``--ablation`` the batch
norm of Section 5 is also trained without learnable scale/shift and without the
backward pass through the batch statistics, on the same seeds.

Writes into ``--out``: ``results.json`` (every run's metrics and cost curves,
the machine, the command line), the figures (PNG) and ``REPORT.md``.

    python scripts/reproduce_report.py --device cpu --seeds 5 --data-dir DIR --out docs/report
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .. import __version__
from ..backends import Backend, resolve_backend, resolve_dtype_name, to_numpy
from ..config import BatchNormConfig
from ..errors import BackendMLPError, TrainingDivergedError
from ..experiment import REPORT_RESULTS, SECTIONS, MnistSplits, prepare_mnist, run_experiment, summarize
from ..idx import atomic_write_bytes
from ..jsonio import write_json
from ..network import L_model_forward
from ..report_figures import Curve, plot_batchnorm_ablation, plot_cost_curves, plot_weight_histograms
from ..training import TrainingConfig

PROG = "reproduce_report"

SECTION_TITLES: dict[str, str] = {
    "4": "Section 4: plain network",
    "5": "Section 5: batch normalisation",
    "6": "Section 6: L2 regularisation (λ = 1)",
}

#: Batch-norm ablation variants trained in addition to Section 5 (key -> (label, config)).
ABLATION_VARIANTS: dict[str, tuple[str, BatchNormConfig]] = {
    "a": ("(a) ours: learnable γ/β, exact backward through the batch statistics, running statistics",
          BatchNormConfig()),
    "b": ("(b) no learnable scale/shift (affine=False)", BatchNormConfig(affine=False)),
    "c": ("(c) no scale/shift and no backward through the normalisation "
          "(affine=False, backprop_statistics=False)", BatchNormConfig(affine=False, backprop_statistics=False)),
}
ABLATION_D_LABEL = "(d) = (c) evaluated with the batch statistics of the evaluated set (no running statistics)"

#: Training size of the report's split, to turn its step counts into epochs.
_REPORT_TRAIN_SIZE = 48_000
_REPORT_BATCH = 256

#: (metrics key, row label, format) of the per-section tables.
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

#: Acceptance targets (see :func:`acceptance_checks`).
SECTION4_TOLERANCE = 0.01
SECTION5_MIN_TEST = 0.92
SECTION6_MIN_TEST = 0.89


class CLIError(Exception):
    """A usage or setup problem: printed as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CLIError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N, or any name resolve_backend accepts")
    p.add_argument("--seeds", type=_positive_int, default=5, help="number of seeds 0..N-1 (default 5)")
    p.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST files (else $BACKEND_MLP_DATA/cache)")
    p.add_argument("--out", default="docs/report", help="output folder (default docs/report)")
    p.add_argument("--sections", type=_sections, default=("4", "5", "6"), help="comma separated, default 4,5,6")
    p.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                   help="run the batch-norm ablation (default on)")
    p.add_argument("--max-steps", type=_positive_int, default=None, help="cap on steps per run (smoke tests)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="BLAS threads on the CPU (default 1: the matrices are small, extra threads only contend)")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [s for s in names if s not in SECTIONS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma separated subset of {','.join(SECTIONS)}, received {text!r}"
        )
    return tuple(s for s in SECTIONS if s in names)


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec:
    """One training run per seed: ``key`` names it in results.json."""

    key: str
    label: str
    config: TrainingConfig


@dataclass
class Collected:
    """Everything gathered while running (host data only)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, list[list[np.ndarray]]] = field(default_factory=dict)  # key -> per seed -> per layer


def run_specs(sections: Sequence[str], ablation: bool, max_steps: int | None) -> list[RunSpec]:
    """The runs done for every seed, in order."""
    specs = [RunSpec(s, SECTION_TITLES[s], SECTIONS[s]) for s in sections]
    if ablation:
        for v, (label, bn) in ABLATION_VARIANTS.items():
            if v == "a" and "5" in sections:
                continue  # (a) is Section 5 itself
            specs.append(RunSpec(f"bn-{v}", label, replace(SECTIONS["5"], batchnorm=bn)))
    if max_steps is not None:
        specs = [replace(s, config=replace(s.config, num_iterations=max_steps)) for s in specs]
    return specs


def ablation_key(variant: str, sections: Sequence[str]) -> str:
    """results key of ablation variant ``a``/``b``/``c`` (``a`` is Section 5 when it was run)."""
    return "5" if variant == "a" and "5" in sections else f"bn-{variant}"


def _batch_statistics_accuracy(result: Any, splits: MnistSplits) -> dict[str, float]:
    """Accuracy with batch norm normalised by the statistics of the whole evaluated set."""
    bn = result.config.batchnorm
    out = {}
    for name, data in (("val", splits.val), ("test", splits.test)):
        AL, _ = L_model_forward(data.X, result.parameters, bn, training=True, bn_state=None)
        xp = splits.backend.xp
        hits = xp.argmax(AL, axis=0) == xp.argmax(data.Y, axis=0)
        out[f"{name}_accuracy_batch_statistics"] = float(xp.mean(xp.astype(hits, data.X_rows.dtype)))
    return out


def train_one(spec: RunSpec, splits: MnistSplits, seed: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Train ``spec`` with ``seed`` on ``splits``; returns ``(record, weights per layer on the host)``."""
    config = replace(spec.config, seed=seed)
    start = time.perf_counter()
    try:
        result, metrics = run_experiment(splits, config)
    except TrainingDivergedError as err:
        result = err.result  # type: ignore[attr-defined]
        metrics = summarize(result, splits, time.perf_counter() - start)
    L = len(config.layer_dims) - 1
    weights = [np.asarray(to_numpy(result.parameters[f"W{l}"]), dtype=np.float64) for l in range(1, L + 1)]
    record: dict[str, Any] = {"key": spec.key, "label": spec.label, **metrics}
    record["weight_std"] = [float(np.std(w)) for w in weights]
    if config.batchnorm is not None:
        record.update(_batch_statistics_accuracy(result, splits))
    return record, weights


# ----------------------------------------------------------------------------- statistics


def stats(values: Sequence[float]) -> dict[str, float]:
    """mean, sample std (0 for one value), median, min, max and n of ``values``."""
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


def summarize_runs(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per run key: stats of every table metric, per-layer weight std and batch-statistics accuracy."""
    keys = list(dict.fromkeys(r["key"] for r in runs))
    extra = ("test_accuracy_batch_statistics", "val_accuracy_batch_statistics")
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        rs = [r for r in runs if r["key"] == key]
        entry: dict[str, Any] = {"label": rs[0]["label"], "seeds": [r["seed"] for r in rs]}
        for metric in [m for m, _, _ in METRIC_ROWS] + list(extra):
            if all(metric in r for r in rs):
                entry[metric] = stats([r[metric] for r in rs])
        n_layers = len(rs[0]["weight_std"])
        entry["weight_std"] = [stats([r["weight_std"][l] for r in rs]) for l in range(n_layers)]
        out[key] = entry
    return out


def _median(summary: dict[str, Any], key: str, metric: str) -> float | None:
    value = summary.get(key, {}).get(metric, {})
    return value.get("median") if isinstance(value, dict) else None


def acceptance_checks(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The acceptance targets, each with the measured value and ``passed`` (``None``: not run)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: str, passed: bool | None) -> None:
        checks.append({"check": name, "target": target, "measured": measured, "passed": passed})

    t4, t5, t6 = (_median(summary, k, "test_accuracy") for k in ("4", "5", "6"))
    s4, s5 = _median(summary, "4", "steps"), _median(summary, "5", "steps")
    floor4 = REPORT_RESULTS["4"]["test_accuracy"] - SECTION4_TOLERANCE
    add("Section 4 test accuracy", f"median ≥ {floor4:.4f} (report {REPORT_RESULTS['4']['test_accuracy']} − "
        f"{SECTION4_TOLERANCE})", _fmt(t4, "{:.4f}"), None if t4 is None else t4 >= floor4)
    add("Section 5 test accuracy", f"median ≥ {SECTION5_MIN_TEST}", _fmt(t5, "{:.4f}"),
        None if t5 is None else t5 >= SECTION5_MIN_TEST)
    add("Section 5 steps", "median < Section 4 median steps",
        f"{_fmt(s5, '{:,.0f}')} vs {_fmt(s4, '{:,.0f}')}", None if s4 is None or s5 is None else s5 < s4)
    add("Section 6 test accuracy", f"median ≥ {SECTION6_MIN_TEST}", _fmt(t6, "{:.4f}"),
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


def _fmt(value: float | None, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(backend: Backend) -> dict[str, Any]:
    """CPU, cores, library versions, BLAS threads and (on CuPy) the GPU."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backend_mlp": __version__,
        "backend": backend.name,
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads")} for p in threadpool_info()
        ]
    except Exception:  # noqa: BLE001 - optional information only
        pass
    if backend.name.startswith("cupy"):
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
            info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            info["cupy"] = cupy.__version__
        except Exception:  # noqa: BLE001 - optional information only
            pass
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _command_line(argv: Sequence[str] | None) -> str:
    if argv is None:
        words = list(sys.argv)
        if words and words[0].endswith(".py"):
            words = ["python", *words]
        return shlex.join(words)
    return shlex.join([PROG, *argv])


# ----------------------------------------------------------------------------- report


def _cell(entry: dict[str, Any] | None, fmt: str) -> tuple[str, str]:
    if not entry or not entry.get("n"):
        return "—", "—"
    return f"{fmt.format(entry['mean'])} ± {fmt.format(entry['std'])}", fmt.format(entry["median"])


def section_table(section: str, entry: dict[str, Any]) -> str:
    """Markdown table of one section: the report's numbers beside ours."""
    report = REPORT_RESULTS.get(section, {})
    rows = ["| metric | report | ours: mean ± std | ours: median | ours: min – max |", "|---|---|---|---|---|"]
    for metric, label, fmt in METRIC_ROWS:
        if metric in report:
            rep = fmt.format(report[metric])
        elif metric == "epochs" and "steps" in report:
            rep = f"≈{report['steps'] * _REPORT_BATCH / _REPORT_TRAIN_SIZE:.1f}*"
        else:
            rep = "—"
        mean_std, median = _cell(entry.get(metric), fmt)
        m = entry.get(metric) or {}
        span = f"{fmt.format(m['min'])} – {fmt.format(m['max'])}" if m.get("n") else "—"
        rows.append(f"| {label} | {rep} | {mean_std} | {median} | {span} |")
    return "\n".join(rows)


def _compare(value: float, reference: float, tol: float = 0.0) -> str:
    if value > reference + tol:
        return "above"
    if value < reference - tol:
        return "below"
    return "equal to"


def section_sentence(section: str, entry: dict[str, Any]) -> str:
    """One generated sentence comparing our medians with the report."""
    report = REPORT_RESULTS[section]
    t, s = entry["test_accuracy"]["median"], entry["steps"]["median"]
    return (
        f"Median test accuracy {t:.4f} is {_compare(t, report['test_accuracy'])} the report's "
        f"{report['test_accuracy']:.4f} ({t - report['test_accuracy']:+.4f}); median steps {s:,.0f} vs the "
        f"report's {report['steps']:,.0f}."
    )


def weight_table(summary: dict[str, dict[str, Any]], dims: Sequence[int]) -> str:
    """Per-layer weight std of Section 4 (plain) and Section 6 (L2)."""
    rows = ["| layer | shape | std, plain (Section 4) | std, L2 (Section 6) | ratio L2 / plain |",
            "|---|---|---|---|---|"]
    for l, (p, q) in enumerate(zip(summary["4"]["weight_std"], summary["6"]["weight_std"], strict=True), start=1):
        rows.append(
            f"| W{l} | {dims[l]} × {dims[l - 1]} | {p['median']:.4f} (mean {p['mean']:.4f} ± {p['std']:.4f}) | "
            f"{q['median']:.4f} (mean {q['mean']:.4f} ± {q['std']:.4f}) | {q['median'] / p['median']:.2f} |"
        )
    return "\n".join(rows)


def ablation_rows(summary: dict[str, dict[str, Any]], sections: Sequence[str]) -> list[dict[str, Any]]:
    """The ablation variants (a)-(d) with their medians / spreads (``None`` where missing)."""
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


def ablation_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the ablation."""
    out = ["| variant | test accuracy: median | mean ± std | validation accuracy: median | steps: median | "
           "steps: mean ± std | best validation cost: median |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        steps = "same run as (c)" if r["variant"] == "d" else f"{r['steps']['median']:,.0f}"
        steps_ms = "—" if r["variant"] == "d" else _cell(r["steps"], "{:,.0f}")[0]
        bvc = "—" if r["best_val_cost"] is None else f"{r['best_val_cost']['median']:.4f}"
        out.append(f"| {r['label']} | {r['test']['median']:.4f} | {_cell(r['test'], '{:.4f}')[0]} | "
                   f"{r['val']['median']:.4f} | {steps} | {steps_ms} | {bvc} |")
    return "\n".join(out)


def ablation_prose(
    rows: Sequence[dict[str, Any]],
    summary: dict[str, dict[str, Any]],
    all_runs: Sequence[dict[str, Any]] = (),
    spread_note: float = 0.05,
) -> list[str]:
    """Short factual sentences generated from the measured medians (conditional on the numbers).

    A variant whose test accuracy spans more than ``spread_note`` across seeds gets a note on its worst seed.
    """
    by = {r["variant"]: r for r in rows}
    acc = {v: r["test"]["median"] for v, r in by.items()}
    steps = {v: r["steps"]["median"] for v, r in by.items() if v != "d"}
    plain = _median(summary, "4", "test_accuracy")
    plain_steps = _median(summary, "4", "steps")
    rep_bn, rep_plain = REPORT_RESULTS["5"]["test_accuracy"], REPORT_RESULTS["4"]["test_accuracy"]
    lines: list[str] = []
    if "a" in acc:
        s = f"Ours (a) reaches a median test accuracy of {acc['a']:.4f} in {steps['a']:,.0f} steps"
        if plain is not None:
            s += (f", {_compare(acc['a'], plain)} our plain network's {plain:.4f} "
                  f"({acc['a'] - plain:+.4f}), in {'fewer' if steps['a'] < plain_steps else 'not fewer'} steps "
                  f"than its {plain_steps:,.0f}")
        lines.append(s + ".")
    if "a" in acc and "b" in acc:
        lines.append(f"Removing the learnable scale/shift (a → b) changes the median test accuracy by "
                     f"{acc['b'] - acc['a']:+.4f} (to {acc['b']:.4f}) and the median steps from "
                     f"{steps['a']:,.0f} to {steps['b']:,.0f}.")
    if "b" in acc and "c" in acc:
        lines.append(f"Also removing the backward pass through the normalisation (b → c) changes it by "
                     f"{acc['c'] - acc['b']:+.4f} (to {acc['c']:.4f}), median steps {steps['b']:,.0f} → "
                     f"{steps['c']:,.0f}.")
    if "c" in acc and "d" in acc:
        lines.append(f"Evaluating (c) with the statistics of the whole evaluated set instead of running averages "
                     f"(c → d) changes the test accuracy by {acc['d'] - acc['c']:+.4f} (to {acc['d']:.4f}).")
    if "a" in acc and "c" in acc:
        total = acc["c"] - acc["a"]
        parts = {"scale/shift (a → b)": acc.get("b", acc["a"]) - acc["a"],
                 "backward through the statistics (b → c)": acc["c"] - acc.get("b", acc["a"])}
        biggest = min(parts, key=lambda k: parts[k])
        lines.append(f"In total (a → c) the two missing pieces change the median test accuracy by {total:+.4f}; "
                     f"the larger {'drop' if parts[biggest] < 0 else 'change'} comes from removing the "
                     f"{biggest} ({parts[biggest]:+.4f}).")
    if plain is not None and "c" in acc:
        worst = min((v for v in ("c", "d") if v in acc), key=lambda v: acc[v])
        gap_ours = acc[worst] - plain
        gap_report = REPORT_RESULTS["5"]["test_accuracy"] - rep_plain
        if gap_ours < 0 and "a" in acc and acc["a"] >= plain:
            verdict = ("so on these seeds the report's likely implementation is worse than the plain network while "
                       "the correct batch norm is not: this is consistent with the explanation that the report's "
                       "batch norm lacked these pieces")
        elif gap_ours < 0:
            verdict = ("but our correct batch norm is also below the plain network here, so the missing pieces "
                       "explain the report's result only in part")
        else:
            verdict = ("so the missing pieces alone do not reproduce the report's drop below its plain network on "
                       "these seeds")
        lines.append(f"The report's batch-norm run was {gap_report:+.4f} against its plain network ({rep_bn:.4f} vs "
                     f"{rep_plain:.4f}); our variant ({worst}) is {gap_ours:+.4f} against our plain network, "
                     f"{verdict}.")
        if "c" in steps and plain_steps is not None:
            more = steps["c"] > plain_steps
            lines.append(f"Steps: (c) needs a median of {steps['c']:,.0f} steps vs {plain_steps:,.0f} for the plain "
                         f"network ({'more' if more else 'fewer or as many'}); the report needed "
                         f"{REPORT_RESULTS['5']['steps']:,.0f} vs {REPORT_RESULTS['4']['steps']:,.0f}, so "
                         + ("the missing pieces are also consistent with the report's longer batch-norm training."
                            if more else "the missing pieces do not explain the report's longer batch-norm "
                            "training under this protocol."))
    for v, r in by.items():
        if v == "d" or r["test"].get("n", 0) < 2 or r["test"]["max"] - r["test"]["min"] <= spread_note:
            continue
        runs = [x for x in all_runs if x["key"] == r["key"]]
        worst_run = min(runs, key=lambda x: x["test_accuracy"])
        lines.append(f"({v}) varies strongly between seeds: test accuracy from {r['test']['min']:.4f} (seed "
                     f"{worst_run['seed']}, stopped after {worst_run['steps']:,} steps) to {r['test']['max']:.4f}; "
                     "the medians above are less sensitive to this than the means.")
    return lines


def render_report(results: dict[str, Any]) -> str:
    """REPORT.md from the contents of results.json (and the figure names in it)."""
    summary, settings, machine = results["summary"], results["settings"], results["machine"]
    sections = settings["sections"]
    figures = results.get("figures", {})
    n_seeds = settings["seeds"]
    md: list[str] = ["# Reproduction of the report's MNIST experiments (Sections 4–6)", ""]
    md += ["## Acceptance checks", ""]
    if settings.get("max_steps"):
        md += [f"**Runs were capped at {settings['max_steps']:,} steps (`--max-steps`): a smoke run, not the "
               "protocol; the checks below do not judge the reproduction.**", ""]
    md += ["| check | target | measured | result |", "|---|---|---|---|"]
    for c in results["checks"]:
        verdict = {True: "**PASS**", False: "**FAIL**", None: "not run"}[c["passed"]]
        md.append(f"| {c['check']} | {c['target']} | {c['measured']} | {verdict} |")
    failed = [c["check"] for c in results["checks"] if c["passed"] is False]
    md += ["", f"{len(failed)} of {sum(c['passed'] is not None for c in results['checks'])} checks failed"
           + (f": {', '.join(failed)}." if failed else "."), ""]

    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')}" for b in machine.get("blas", []))
    md += ["## How this was produced", "",
           f"- Command: `{results['command']}`",
           f"- Date (UTC): {results['date_started']} – {results.get('date_finished', '—')}; total wall time "
           f"{results.get('total_seconds', 0) / 60:.1f} min",
           f"- Machine: {machine['cpu_model']}, {machine['cpu_count']} cores ({machine['usable_cores']} usable)"
           + (f", GPU {machine['gpu']}" if "gpu" in machine else "")
           + (f"; load average at start {machine['load_average_at_start'][0]:.2f} (shared machine: wall times are "
              "indicative only)" if "load_average_at_start" in machine else ""),
           f"- Software: backend_mlp {machine['backend_mlp']}, Python {machine['python']}, NumPy "
           f"{machine['numpy']}" + (f", BLAS {blas}" if blas else "") + f"; backend `{machine['backend']}`, dtype "
           f"`{settings['dtype']}`, BLAS limited to {settings.get('threads')} thread(s) (`--threads`)",
           f"- Protocol: {n_seeds} seed{'s' if n_seeds != 1 else ''} (0..{n_seeds - 1}); each seed draws the 80/20 "
           "train/validation split "
           "and the initialisation/shuffling; [784, 20, 7, 5, 10] ReLU/softmax, SGD lr 0.009, batch 256, cost "
           "recorded and validation checked every 100 steps, early stopping when the validation cost improves by "
           "< 1e-4 since the previous check; the parameters of the best check are evaluated (inference mode).",
           "- Every number below is measured; per-run values are in `results.json`.", ""]

    md += ["## Results per section", "",
           "Mean ± sample standard deviation over seeds, the median, and the range. \\* report epochs derived as "
           "steps × 256 / 48,000. Final training cost: cross-entropy of the whole training set with the returned "
           "parameters (without the L2 term). Wall time: training + validation checks of one run.", ""]
    for s in sections:
        if s not in summary:
            continue
        md += [f"### {SECTION_TITLES[s]}", "", section_table(s, summary[s]), "", section_sentence(s, summary[s]), ""]
    if "cost_curves" in figures:
        md += ["### Cost curves", "", f"![cost curves per section]({figures['cost_curves']})", ""]

    if "4" in summary and "6" in summary:
        dims = results["runs"][0]["hyperparameters"]["layer_dims"]
        md += ["## Section 6: weights with and without L2", "",
               "Standard deviation of each layer's weights after training: median over seeds (mean ± std).", "",
               weight_table(summary, dims), ""]
        ratios = [q["median"] / p["median"] for p, q in zip(summary["4"]["weight_std"],
                                                           summary["6"]["weight_std"], strict=True)]
        narrower = sum(r < 1 for r in ratios)
        md += [f"L2 narrows the weight distribution in {narrower} of {len(ratios)} layers "
               f"(ratio L2/plain from {min(ratios):.2f} to {max(ratios):.2f}).", ""]
        if "weights" in figures:
            md += [f"![weight histograms, plain vs L2]({figures['weights']})", ""]

    rows = ablation_rows(summary, sections) if settings.get("ablation") else []
    if rows:
        md += ["## Why the report's batch norm did worse: ablation", "",
               "Same seeds, splits and protocol as Section 5; only the batch-norm implementation changes. (c) is "
               "most likely what the report did; (d) evaluates (c)'s parameters normalising each layer by the "
               "statistics of the whole evaluated set (`L_model_forward(..., training=True)` without running "
               "statistics), no new training. Early stopping of every variant uses the validation cost in "
               "inference mode (running statistics).", "",
               ablation_table(rows), "",
               *[f"- {line}" for line in ablation_prose(rows, summary, results["runs"])], ""]
        if "ablation" in figures:
            md += [f"![batch-norm ablation]({figures['ablation']})", ""]
    return "\n".join(md).rstrip() + "\n"


# ----------------------------------------------------------------------------- outputs


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically."""
    atomic_write_bytes(path, text.encode())


def _curves(runs: Sequence[dict[str, Any]], key: str) -> list[Curve]:
    return [Curve(r["recorded_steps"], r["costs"], r["val_costs"], r["seed"]) for r in runs if r["key"] == key]


def draw_figures(results: dict[str, Any], collected: Collected, out: Path) -> dict[str, str]:
    """Draw the figures into ``out``; returns figure name -> file name."""
    runs, sections, summary = results["runs"], results["settings"]["sections"], results["summary"]
    figures: dict[str, str] = {}
    curves = {SECTION_TITLES[s]: _curves(runs, s) for s in sections}
    plot_cost_curves(curves, out / "cost_curves.png",
                     reference_steps={SECTION_TITLES[s]: REPORT_RESULTS[s]["steps"] for s in sections})
    figures["cost_curves"] = "cost_curves.png"
    if "4" in collected.weights and "6" in collected.weights:
        n_layers = len(collected.weights["4"][0])
        pooled = {k: [np.concatenate([w[l].ravel() for w in collected.weights[k]]) for l in range(n_layers)]
                  for k in ("4", "6")}
        plot_weight_histograms(pooled["4"], pooled["6"], out / "weights_plain_vs_l2.png")
        figures["weights"] = "weights_plain_vs_l2.png"
    rows = ablation_rows(summary, sections) if results["settings"].get("ablation") else []
    if rows:
        short = {"a": "a: ours", "b": "b: no γ/β", "c": "c: no γ/β, no backward", "d": "d: c + batch stats"}
        ab_curves = {short[r["variant"]]: _curves(runs, r["key"]) for r in rows if r["variant"] != "d"}
        accs: dict[str, list[float]] = {}
        for r in rows:
            metric = "test_accuracy_batch_statistics" if r["variant"] == "d" else "test_accuracy"
            accs[short[r["variant"]]] = [x[metric] for x in runs if x["key"] == r["key"]]
        refs = {"report, batch norm (Section 5)": REPORT_RESULTS["5"]["test_accuracy"]}
        plain = _median(summary, "4", "test_accuracy")
        refs["ours, plain (Section 4 median)" if plain is not None else "report, plain (Section 4)"] = (
            plain if plain is not None else REPORT_RESULTS["4"]["test_accuracy"])
        plot_batchnorm_ablation(ab_curves, accs, out / "batchnorm_ablation.png", reference_accuracy=refs)
        figures["ablation"] = "batchnorm_ablation.png"
    return figures


def run(args: argparse.Namespace, command: str, argv: Sequence[str]) -> int:
    """Do the runs (BLAS limited to ``--threads``) and write the outputs."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        return _run(args, command, argv)


def _run(args: argparse.Namespace, command: str, argv: Sequence[str]) -> int:
    backend = resolve_backend(args.device)
    dtype = resolve_dtype_name(args.dtype)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out {args.out}: cannot create the folder ({err.strerror or err})") from None
    specs = run_specs(args.sections, args.ablation, args.max_steps)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "complete": False,
        "command": command,
        "argv": list(argv),
        "date_started": _now(),
        "machine": machine_info(backend),
        "settings": {"device": args.device, "backend": backend.name, "dtype": dtype, "seeds": args.seeds,
                     "sections": list(args.sections), "ablation": args.ablation, "max_steps": args.max_steps,
                     "threads": args.threads,
                     "data_dir": args.data_dir or os.environ.get("BACKEND_MLP_DATA")},
        "report_results": REPORT_RESULTS,
        "runs": [],
    }
    collected = Collected()
    total, done = args.seeds * len(specs), 0
    print(f"{PROG}: {args.seeds} seed(s) x {len(specs)} run(s) on {backend.name} ({dtype}) -> {out}", flush=True)
    for seed in range(args.seeds):
        splits = prepare_mnist(args.data_dir, device=backend, dtype=dtype, split_seed=seed)
        for spec in specs:
            record, weights = train_one(spec, splits, seed)
            collected.runs.append(record)
            collected.weights.setdefault(spec.key, []).append(weights)
            done += 1
            print(f"[{done}/{total}] seed {seed} {spec.key:>4}: {record['steps']:>6,} steps "
                  f"({record['epochs']:.1f} epochs, {record['stopped_reason']}), test accuracy "
                  f"{record['test_accuracy']:.4f}, {record['train_seconds']:.1f} s", flush=True)
        del splits
        results["runs"] = collected.runs
        results["total_seconds"] = time.perf_counter() - start
        write_json(out / "results.json", results)  # partial results survive an interruption
    summary = summarize_runs(collected.runs)
    results.update(summary=summary, checks=acceptance_checks(summary))
    results["figures"] = draw_figures(results, collected, out)
    results["date_finished"] = _now()
    results["total_seconds"] = time.perf_counter() - start
    results["complete"] = True
    write_json(out / "results.json", results)
    write_text(out / "REPORT.md", render_report(results))
    for c in results["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "not run"}[c["passed"]]
        print(f"check {c['check']}: {verdict} ({c['measured']}; target {c['target']})", flush=True)
    print(f"{PROG}: wrote {out / 'REPORT.md'}, results.json and {len(results['figures'])} figure(s) in "
          f"{results['total_seconds'] / 60:.1f} min", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 1 failure, 2 usage error, 130 interrupted)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
        return run(args, _command_line(argv), args_list)
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except BackendMLPError as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; partial results (if any) are in results.json", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
