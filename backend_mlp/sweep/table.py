"""A sweep's results: one row per run id (never two), as CSV and JSON, a Markdown summary and a figure.

Rows come from the finished runs' ``metrics.json`` files, in the sweep's order
(configurations as the grid lists them, seeds inside), so the table depends only
on what finished, not on which worker finished first: a re-run of a finished
sweep rewrites the same files.  Each row holds the run id, the varied settings,
every hyperparameter (:class:`~backend_mlp.training.TrainingConfig` flattened:
``optimizer.name``, ``batchnorm.affine``, ...), steps, epochs, train /
validation / test accuracy, costs and times.  The summary gives per
configuration the mean, sample standard deviation and the 95% confidence
interval of the mean (Student's t with n - 1 degrees of freedom) over seeds.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes, write_json
from ..report.figures import plot_sweep_accuracy
from ..report.statistics import confidence_interval
from .spec import SweepRun

#: metrics.json fields copied into every row, after the settings and hyperparameters
METRIC_COLUMNS = ("steps", "epochs", "best_step", "stopped_reason", "train_accuracy", "val_accuracy",
                  "test_accuracy", "final_train_cost", "best_val_cost", "train_seconds", "wall_seconds")
#: the file names a sweep writes into its folder (the runs are in runs/<run id>/)
TABLE_FILES = {"csv": "results.csv", "json": "results.json", "summary": "SUMMARY.md", "figure": "accuracy.png"}
#: the metrics summarised per configuration: (column, heading, format)
SUMMARY_METRICS = (("val_accuracy", "validation accuracy", "{:.4f}"), ("test_accuracy", "test accuracy", "{:.4f}"),
                   ("steps", "steps", "{:,.0f}"), ("train_seconds", "train time (s)", "{:.1f}"))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = "-".join(map(str, value))
    else:
        out[prefix] = value


def build_rows(runs: Sequence[SweepRun], finished: Mapping[str, Mapping[str, Any]], root: Path) -> list[dict[str, Any]]:
    """One row per finished run id, in the order of ``runs`` (later duplicates of an id are dropped)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for run in runs:
        m = finished.get(run.run_id)
        if m is None or run.run_id in seen:
            continue
        seen.add(run.run_id)
        row: dict[str, Any] = {"run_id": run.run_id, "configuration": run.label, **run.settings, "seed": run.seed}
        hyper: dict[str, Any] = {}
        _flatten("", m.get("hyperparameters", {}), hyper)
        row.update({k: v for k, v in hyper.items() if k not in row})
        dataset = m.get("dataset")
        row.update({"dataset": dataset.get("name") if isinstance(dataset, Mapping) else dataset,
                    "dtype": m.get("dtype"), "device": m.get("device"), "split_seed": m.get("split_seed")})
        row.update({k: m.get(k) for k in METRIC_COLUMNS})
        row["folder"] = f"{root.name}/{run.run_id}"
        rows.append(row)
    return rows


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration (in order of appearance): seeds, and per summary metric the mean, std and 95% CI."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["configuration"], []).append(row)
    out = []
    for label, rs in groups.items():
        entry: dict[str, Any] = {"configuration": label, "seeds": [r["seed"] for r in rs], "n": len(rs)}
        for column, _, _ in SUMMARY_METRICS:
            values = [float(r[column]) for r in rs if isinstance(r.get(column), (int, float))]
            ci = confidence_interval(values)
            entry[column] = ci if ci is not None else (
                {"n": len(values), "mean": values[0], "std": None, "low": None, "high": None, "level": 0.95}
                if values else {"n": 0})
        out.append(entry)
    return out


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()


def _fmt(value: Any, template: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else template.format(value)


def summary_markdown(summary: Sequence[Mapping[str, Any]], *, n_runs: int, failed: Mapping[str, str],
                     missing: int, title: str = "Sweep summary") -> str:
    """SUMMARY.md: one row per configuration, mean ± std and the 95% CI of the mean over seeds."""
    md = [f"# {title}", ""]
    seeds = sorted({s for e in summary for s in e["seeds"]})
    md.append(f"{n_runs} finished run(s): {len(summary)} configuration(s) × seeds "
              f"{', '.join(map(str, seeds)) or '—'}. Mean ± sample standard deviation over seeds; 95% CI: "
              "confidence interval of the mean, Student's t with n − 1 degrees of freedom (— for one seed).")
    if failed or missing:
        md.append("")
        md.append(f"**Incomplete: {len(failed)} run(s) failed, {missing} not run; the rows below are the "
                  "finished runs only.**")
    md.append("")
    head = ["configuration", "seeds"]
    for _, heading, _ in SUMMARY_METRICS:
        head.append(f"{heading}: mean ± std")
        if heading.endswith("accuracy"):
            head.append(f"{heading}: 95% CI")
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["configuration"], str(e["n"])]
        for column, heading, template in SUMMARY_METRICS:
            s = e[column]
            if not s.get("n"):
                cells.append("—")
            elif s.get("std") is None:
                cells.append(_fmt(s["mean"], template))
            else:
                cells.append(f"{_fmt(s['mean'], template)} ± {_fmt(s['std'], template)}")
            if heading.endswith("accuracy"):
                low, high = s.get("low"), s.get("high")
                cells.append("—" if low is None else f"[{_fmt(low, template)}, {_fmt(high, template)}]")
        md.append("| " + " | ".join(cells) + " |")
    scored = [e for e in summary if e["val_accuracy"].get("n")]
    if len(scored) > 1:
        best = max(scored, key=lambda e: e["val_accuracy"]["mean"])
        md += ["", f"Highest mean validation accuracy: **{best['configuration']}** "
                   f"({best['val_accuracy']['mean']:.4f}; its test accuracy {best['test_accuracy']['mean']:.4f})."]
    if failed:
        md += ["", "Failed runs (a re-run of the sweep tries them again):", ""]
        md += [f"- `{run_id}`: {message}" for run_id, message in failed.items()]
    return "\n".join(md) + "\n"


def write_table(out: Path, runs: Sequence[SweepRun], finished: Mapping[str, Mapping[str, Any]],
                failed: Mapping[str, str], *, root: Path, settings: Mapping[str, Any]) -> dict[str, Path]:
    """Write results.csv, results.json, SUMMARY.md and accuracy.png into ``out``; returns name -> path.

    ``settings``: the sweep's definition (grid, fixed settings, seeds), recorded in results.json.
    """
    rows = build_rows(runs, finished, root)
    summary = summarize(rows)
    total = len({run.run_id for run in runs})
    missing = total - len(rows) - len(failed)
    files = {name: out / file for name, file in TABLE_FILES.items()}
    atomic_write_bytes(files["csv"], _csv_text(rows).encode("utf-8"))
    write_json(files["json"], {"complete": not failed and not missing, "settings": dict(settings),
                               "runs": rows, "configurations": summary, "failed": dict(failed)})
    atomic_write_bytes(files["summary"], summary_markdown(summary, n_runs=len(rows), failed=failed,
                                                          missing=missing).encode("utf-8"))
    if rows:
        points: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            points.setdefault(row["configuration"], []).append((row["seed"], float(row["test_accuracy"])))
        intervals = {e["configuration"]: (e["test_accuracy"]["low"], e["test_accuracy"]["high"])
                     if e["test_accuracy"].get("low") is not None else None for e in summary}
        plot_sweep_accuracy(points, files["figure"], intervals, title="Test accuracy by configuration, over seeds")
    else:
        files["figure"].unlink(missing_ok=True)
        del files["figure"]
    return files
