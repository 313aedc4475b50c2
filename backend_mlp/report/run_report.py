"""report.md of one training run: what was trained on which data, how it did, per class by name, and its figures.

Rendered from the run's ``metrics.json`` dict (:mod:`backend_mlp.runs`), so the
Markdown and the JSON cannot disagree.
"""

from __future__ import annotations

from typing import Any

_PUBLISHED = {True: "yes", False: "**differs**", None: "– (no published digest)"}


def _fmt(value: Any, template: str = "{:.4f}") -> str:
    return "–" if value is None else template.format(value)


def _optimizer(hp: dict[str, Any]) -> str:
    opt = dict(hp.get("optimizer") or {"name": "sgd"})
    name = opt.pop("name")
    return name + (" (" + ", ".join(f"{k} {v:g}" for k, v in opt.items()) + ")" if opt else "")


def render_run_report(metrics: dict[str, Any]) -> str:
    """The Markdown report of a finished run from its metrics (see :meth:`backend_mlp.runs.Run.write_metrics`)."""
    hp = metrics["hyperparameters"]
    data = metrics["dataset"]
    source = data.get("source") or {}
    lines = [
        f"# {metrics['name']}",
        "",
        f"Network {hp['layer_dims']} ({'batch norm after each hidden ReLU' if hp.get('batchnorm') else 'no batch norm'}"
        f", L2 λ = {hp['l2_lambda']:g}), optimizer {_optimizer(hp)}, learning rate {hp['learning_rate']:g}"
        + (f" (× {hp['lr_decay']:g} per epoch)" if hp.get("lr_decay", 1.0) != 1.0 else "")
        + f", batch {hp['batch_size']}, seed {hp['seed']}, {metrics['dtype']} "
        f"on {metrics['device']}.  Validation checks every {hp['record_every']} steps; early stopping "
        + (f"after {hp.get('patience', 1)} check(s) without an improvement of {hp['min_improvement']:g}"
           if hp["early_stopping"] else "off")
        + ".",
        "",
        f"Data: {data.get('name') or 'IDX files'} ({len(data['class_names'])} classes, "
        f"{'×'.join(map(str, data['image_shape']))} images) from `{source.get('folder', '?')}`: "
        f"{metrics['n_train']} train / {metrics['n_val']} validation / {metrics['n_test']} test.",
        "",
        "| file | SHA-256 of the content | the published file |",
        "|---|---|---|",
        *(f"| {f['file']} | `{f['sha256'][:16]}…` | {_PUBLISHED[f.get('matches_published')]} |"
          for f in (source.get("files") or {}).values()),
        "",
        "## Result",
        "",
        "| steps | epochs | stopped by | best step | train acc. | validation acc. | test acc. | wall time |",
        "|---|---|---|---|---|---|---|---|",
        f"| {metrics['steps']} | {metrics['epochs']:.2f} | {metrics['stopped_reason']} | {metrics['best_step']} | "
        f"{_fmt(metrics['train_accuracy'])} | {_fmt(metrics['val_accuracy'])} | {_fmt(metrics['test_accuracy'])} | "
        f"{_fmt(metrics.get('wall_seconds'), '{:.1f} s')} |",
        "",
        "## Test accuracy per class",
        "",
        "| class | " + " | ".join(metrics["test_accuracy_per_class"]) + " |",
        "|---|" + "---|" * len(metrics["test_accuracy_per_class"]),
        "| accuracy | " + " | ".join(_fmt(v, "{:.3f}") for v in metrics["test_accuracy_per_class"].values()) + " |",
        "",
    ]
    figures = [(key, text, f"{key}.png") for key, text in (
        ("cost_curve", "cost during training"), ("confusion_matrix", "confusion matrix of the test set"),
        ("misclassified", "misclassified test images")) if key in metrics.get("files", {key: None})]
    if figures:
        lines += ["## Figures", ""]
        for _, text, file in figures:
            lines += [f"![{text}]({file})", ""]
    if metrics.get("command"):
        lines[2:2] = [f"Command: `{metrics['command']}` (backend_mlp {metrics.get('library_version', '?')})", ""]
    return "\n".join(lines)
