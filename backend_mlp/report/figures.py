"""Every figure backend_mlp draws, with matplotlib's object API (Agg, no pyplot, no global state).

Each ``plot_*`` function takes plain host data (lists / NumPy arrays), draws one
figure and writes it with :func:`save_figure`, the one PNG writer: rendered in
memory, then written atomically.  Most have a ``*_figure`` twin that returns the
:class:`~matplotlib.figure.Figure` unsaved (for notebooks and tests).  Labels are
host integer class indices ``0..len(class_names)-1``; images one flattened image
per row.  matplotlib is imported on first use.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputValidationError
from ..experiment import REPORT_RESULTS
from ..files import atomic_write_bytes
from .protocol import SECTION_TITLES
from .statistics import ablation_rows, median

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Curve",
    "batchnorm_ablation_figure",
    "confusion_counts",
    "confusion_matrix_figure",
    "cost_curve_figure",
    "cost_curve_labels",
    "cost_curves_figure",
    "draw_report_figures",
    "misclassified_figure",
    "misclassified_indices",
    "plot_batchnorm_ablation",
    "plot_confusion_matrix",
    "plot_cost_curve",
    "plot_cost_curves",
    "plot_misclassified",
    "plot_weight_histograms",
    "plot_sweep_accuracy",
    "save_figure",
    "sweep_accuracy_figure",
]

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"
_VARIANT_COLORS = ("tab:green", "tab:purple", "tab:red", "tab:brown", "tab:gray", "tab:olive")


@dataclass(frozen=True)
class Curve:
    """One run's recorded costs: ``steps[i]`` -> ``train[i]`` (mini-batch) and ``val[i]`` (may be empty)."""

    steps: Sequence[int]
    train: Sequence[float]
    val: Sequence[float]
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.train) != len(self.steps) or len(self.val) not in (0, len(self.steps)):
            raise InputValidationError(
                f"Curve (seed {self.seed}): received {len(self.steps)} steps, {len(self.train)} training costs and "
                f"{len(self.val)} validation costs; expected as many costs as steps (no validation costs allowed)"
            )


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: float | None = 120) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically; ``dpi=None`` keeps the figure's own.  Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach an Agg canvas: independent of pyplot's backend
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi="figure" if dpi is None else dpi)
    atomic_write_bytes(target, buffer.getvalue())
    return target


def _step_formatter(value: float, _pos: object) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def _plain_log_axis(ax: Any) -> None:
    """Log y axis labelled with plain numbers (0.3, 0.5, 1, 2) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


# ----------------------------------------------------------------------------- one training run


def cost_curve_labels(l2_lambda: float = 0.0) -> tuple[str, str, str]:
    """``(training label, validation label, y label)`` of a cost curve: with L2 the mini-batch cost includes
    the penalty λ/(2m)·Σ‖W‖² while the validation cost is cross-entropy only, and the labels say so."""
    if l2_lambda:
        return (f"mini-batch cost (cross-entropy + L2 penalty, λ={l2_lambda:g})", "validation cross-entropy", "cost")
    return "training mini-batch cost", "validation cost", "cross-entropy cost"


def cost_curve_figure(
    recorded_steps: Sequence[int],
    costs: Sequence[float],
    val_costs: Sequence[float] | None = None,
    title: str = "Cost during training",
    *,
    val_steps: Sequence[int] | None = None,
    l2_lambda: float = 0.0,
) -> Figure:
    """The figure of :func:`plot_cost_curve`, not saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(recorded_steps) != len(costs):
        raise InputValidationError(
            f"plot_cost_curve: recorded_steps has {len(recorded_steps)} entries but costs has {len(costs)}; "
            "expected one cost per recorded step"
        )
    if val_costs is not None and val_steps is not None and len(val_steps) != len(val_costs):
        raise InputValidationError(
            f"plot_cost_curve: val_steps has {len(val_steps)} entries but val_costs has {len(val_costs)}; "
            "expected one validation cost per validation step"
        )
    train_label, val_label, y_label = cost_curve_labels(l2_lambda)
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)  # tight_layout needs the renderer
    ax = fig.add_subplot()
    ax.plot(list(recorded_steps), list(costs), label=train_label, linewidth=1.2)
    if val_costs is not None and len(val_costs):
        steps = list(val_steps) if val_steps is not None else list(recorded_steps)[: len(val_costs)]
        ax.plot(steps, list(val_costs), label=val_label, linewidth=1.2)
    ax.set_xlabel("step (mini-batch)")
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_cost_curve(
    path: str | os.PathLike[str],
    recorded_steps: Sequence[int],
    costs: Sequence[float],
    val_costs: Sequence[float] | None = None,
    title: str = "Cost during training",
    *,
    val_steps: Sequence[int] | None = None,
    l2_lambda: float = 0.0,
) -> Path:
    """The training CLI's figure: mini-batch ``costs`` (and ``val_costs``) against the step; returns the path.

    ``val_costs`` are taken at ``recorded_steps`` unless ``val_steps`` is given.
    Non-finite costs leave gaps in the curve.  ``l2_lambda``: the run's L2
    strength; when non-zero the legend says the mini-batch cost includes the
    penalty and the validation cost is cross-entropy alone.
    """
    fig = cost_curve_figure(recorded_steps, costs, val_costs, title, val_steps=val_steps, l2_lambda=l2_lambda)
    return save_figure(fig, path, dpi=None)


def _check_labels(name: str, labels: Any, m: int | None, k: int) -> np.ndarray:
    """``labels`` as a 1-D int64 array of ``m`` (any when None) class indices in 0..k-1."""
    a = np.asarray(labels)
    if a.ndim != 1 or (m is not None and a.shape[0] != m) or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise InputValidationError(f"{name}: received an array of shape {a.shape} and dtype {a.dtype}; expected "
                                   f"{'m' if m is None else m} integer class indices (one per sample)")
    if a.size and (a.min() < 0 or a.max() >= k):
        raise InputValidationError(f"{name}: received class indices from {a.min()} to {a.max()}; expected 0..{k - 1} "
                                   f"(one per class name)")
    return a.astype(np.int64)


def confusion_counts(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """``counts[i, j]``: samples of true class ``i`` predicted as ``j`` (host int64, ``n_classes`` square)."""
    t = _check_labels("y_true", y_true, None, n_classes)
    p = _check_labels("y_pred", y_pred, t.shape[0], n_classes)
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    return counts


def confusion_matrix_figure(
    y_true: Any, y_pred: Any, class_names: Sequence[str], *, title: str = "Confusion matrix (test set)"
) -> Figure:
    """The figure of :func:`plot_confusion_matrix`, not saved."""
    from matplotlib.figure import Figure

    names = [str(n) for n in class_names]
    k = len(names)
    counts = confusion_counts(y_true, y_pred, k)
    m = int(counts.sum())
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = float(np.clip(0.55 * k + 2.5, 5.0, 18.0))
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class (row)")
    size = float(np.clip(110 / k, 4, 9))
    for i, j in np.ndindex(k, k):
        ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", fontsize=size,
                color="white" if share[i, j] > 0.5 else "black")
    long = max((len(n) for n in names), default=0) > 3
    ax.set_xticks(range(k), names, rotation=45 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = float(np.trace(counts)) / m if m else float("nan")
    ax.set_title(f"{title}\naccuracy {accuracy:.4f} ({int(np.trace(counts)):,} of {m:,} correct)", fontsize=11)
    return fig


def plot_confusion_matrix(
    path: str | os.PathLike[str],
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    *,
    title: str = "Confusion matrix (test set)",
) -> Path:
    """Confusion matrix of host integer labels ``y_true``/``y_pred`` (m,); returns the path.

    Labels are class indices ``0..len(class_names)-1``.  Rows are the true class,
    columns the predicted class; each cell shows its count and is coloured by the
    fraction of its row; the title gives the accuracy.
    """
    return save_figure(confusion_matrix_figure(y_true, y_pred, class_names, title=title), path)


def misclassified_indices(
    y_true: Any, y_pred: Any, *, max_images: int = 25, probabilities: Any = None
) -> np.ndarray:
    """The samples :func:`plot_misclassified` shows: the first ``max_images`` mistakes in sample order, or, with
    ``probabilities`` (m, n_classes), the most confident mistakes first (ties in sample order)."""
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    wrong = np.flatnonzero(t != p)
    if probabilities is not None:
        confidence = np.asarray(probabilities, dtype=np.float64)[wrong, p[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    return wrong[:max_images]


def _short(name: str, width: int = 10) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def misclassified_figure(
    images: Any,
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    image_shape: tuple[int, int],
    *,
    max_images: int = 25,
    probabilities: Any = None,
) -> Figure:
    """The figure of :func:`plot_misclassified`, not saved."""
    from matplotlib.figure import Figure

    names = [str(n) for n in class_names]
    x = np.asarray(images)
    rows, cols = (int(v) for v in image_shape)
    if x.ndim != 2 or x.shape[1] != rows * cols:
        raise InputValidationError(f"images: received shape {x.shape}; expected (m, {rows * cols}) for image_shape "
                                   f"{tuple(image_shape)} (one flattened image per row)")
    if not isinstance(max_images, int) or max_images <= 0:
        raise InputValidationError(f"max_images: received {max_images!r}; expected a positive integer")
    m, k = x.shape[0], len(names)
    t = _check_labels("y_true", y_true, m, k)
    p = _check_labels("y_pred", y_pred, m, k)
    if probabilities is not None and np.shape(probabilities) != (m, k):
        raise InputValidationError(f"probabilities: received shape {np.shape(probabilities)}; expected ({m}, {k}) "
                                   "(one row of class probabilities per image)")
    chosen = misclassified_indices(t, p, max_images=max_images, probabilities=probabilities)
    n_wrong = int(np.count_nonzero(t != p))
    if not chosen.size:
        fig = Figure(figsize=(5, 2))
        fig.text(0.5, 0.5, f"No misclassified images: all {m:,} correct", ha="center", va="center", fontsize=12)
        return fig
    n_cols = int(np.ceil(np.sqrt(chosen.size)))
    n_rows = int(np.ceil(chosen.size / n_cols))
    fig = Figure(figsize=(1.6 * n_cols, 1.75 * n_rows + 0.6), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    vmax = 255 if np.issubdtype(x.dtype, np.integer) else max(1.0, float(x[chosen].max()))
    vmin = min(0.0, float(x[chosen].min()))
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, chosen, strict=False):
        ax.imshow(x[i].reshape(rows, cols), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        label = f"true: {_short(names[t[i]])}\npred: {_short(names[p[i]])}"
        if probabilities is not None:
            label += f" ({float(np.asarray(probabilities)[i, p[i]]):.2f})"
        ax.set_title(label, fontsize=8)
    order = "most confident mistakes first" if probabilities is not None else "first in sample order"
    fig.suptitle(f"Misclassified: {chosen.size} of {n_wrong:,} mistakes ({m:,} images; {order})", fontsize=10)
    return fig


def plot_misclassified(
    path: str | os.PathLike[str],
    images: Any,
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    image_shape: tuple[int, int],
    *,
    max_images: int = 25,
    probabilities: Any = None,
) -> Path:
    """A greyscale grid of misclassified images, each titled with its true and predicted class; returns the path.

    ``images`` (m, rows*cols) host floats (drawn on 0..1, or their range if wider) or integers (0..255),
    one image per row; ``y_true``/``y_pred`` (m,) class indices; ``image_shape`` (rows, cols).
    Shows the first ``max_images`` mistakes in sample order, or with ``probabilities`` (m, n_classes)
    the most confident mistakes first (with the predicted class's probability).  Without a mistake
    the figure says so.
    """
    fig = misclassified_figure(images, y_true, y_pred, class_names, image_shape, max_images=max_images,
                               probabilities=probabilities)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- the reproduction report


def cost_curves_figure(
    curves: Mapping[str, Sequence[Curve]],
    *,
    reference_steps: Mapping[str, float] | None = None,
    l2_lambdas: Mapping[str, float] | None = None,
) -> Figure:
    """The figure of :func:`plot_cost_curves`, not saved."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    n = max(len(curves), 1)
    fig = Figure(figsize=(4.6 * n, 3.9), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    all_costs = [c for runs in curves.values() for r in runs for c in (*r.train, *r.val) if np.isfinite(c)]
    for ax, (title, runs) in zip(axes, curves.items(), strict=False):
        train_label, val_label, _ = cost_curve_labels((l2_lambdas or {}).get(title, 0.0))
        for i, run in enumerate(runs):
            ax.plot(run.steps, run.train, color=_TRAIN_COLOR, lw=0.7, alpha=0.35,
                    label=train_label if i == 0 else None)
            if run.val:
                ax.plot(run.steps, run.val, color=_VAL_COLOR, lw=1.3, alpha=0.9,
                        label=val_label if i == 0 else None)
                ax.plot(run.steps[-1], run.val[-1], marker="o", ms=3, color=_VAL_COLOR)
        if reference_steps and title in reference_steps:
            ax.axvline(reference_steps[title], color="0.3", ls="--", lw=1,
                       label=f"report stopped ({reference_steps[title]:,.0f})")
        ax.set_title(f"{title}  ({len(runs)} seed{'s' if len(runs) != 1 else ''})", fontsize=10)
        ax.set_xlabel("step (mini-batch of 256)")
        ax.xaxis.set_major_formatter(FuncFormatter(_step_formatter))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    any_l2 = any((l2_lambdas or {}).get(title, 0.0) for title in curves)
    axes[0].set_ylabel(("cost" if any_l2 else "cross-entropy cost") + " (log scale)")
    if all_costs:
        _plain_log_axis(axes[0])
        lo, hi = min(all_costs), max(all_costs)
        axes[0].set_ylim(lo / 1.15, hi * 1.15)
    fig.suptitle("Cost curves per section (one line per seed; dot = early-stopping point)", fontsize=11)
    return fig


def plot_cost_curves(
    curves: Mapping[str, Sequence[Curve]],
    path: str | os.PathLike[str],
    *,
    reference_steps: Mapping[str, float] | None = None,
    l2_lambdas: Mapping[str, float] | None = None,
) -> Path:
    """One panel per entry of ``curves`` (title -> runs): mini-batch and validation cost vs step.

    Seeds are overlaid (mini-batch cost thin and light, validation cost solid).
    ``reference_steps`` (title -> step) draws a dashed line where the report stopped.
    ``l2_lambdas`` (title -> λ): panels of L2 runs label their mini-batch cost as
    cross-entropy + L2 penalty and their validation cost as cross-entropy.
    """
    return save_figure(cost_curves_figure(curves, reference_steps=reference_steps, l2_lambdas=l2_lambdas), path)


def plot_weight_histograms(
    plain: Sequence[np.ndarray],
    l2: Sequence[np.ndarray],
    path: str | os.PathLike[str],
    *,
    labels: tuple[str, str] = ("Section 4: plain", "Section 6: L2 (λ = 1)"),
    max_bins: int = 80,
) -> Path:
    """One panel per layer: density histograms of the weights of the plain and the L2 network.

    ``plain[l]`` / ``l2[l]``: all weights of layer ``l + 1`` (any shape; seeds may be pooled).
    Each panel's title gives the standard deviation of the weights of both.
    """
    from matplotlib.figure import Figure

    if len(plain) != len(l2):
        raise InputValidationError(
            f"plot_weight_histograms: received {len(plain)} plain layers and {len(l2)} L2 layers; "
            "expected the same number"
        )
    n = len(plain)
    fig = Figure(figsize=(3.6 * max(n, 1), 3.8), layout="constrained")
    axes = fig.subplots(1, max(n, 1), squeeze=False)[0]
    for l, (ax, wp, wl) in enumerate(zip(axes, plain, l2, strict=False), start=1):
        wp, wl = np.ravel(np.asarray(wp, dtype=float)), np.ravel(np.asarray(wl, dtype=float))
        both = np.concatenate([wp, wl])
        lo, hi = np.percentile(both, [0.1, 99.9]) if both.size else (-1.0, 1.0)
        n_bins = int(np.clip(np.sqrt(min(wp.size, wl.size)), 8, max_bins))
        edges = np.linspace(lo, hi, n_bins + 1)
        ax.hist(wp, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=_TRAIN_COLOR,
                label=labels[0])
        ax.hist(wl, bins=edges, density=True, histtype="step", lw=1.5, color="tab:red", label=labels[1])
        ax.set_title(f"W{l}: std {np.std(wp):.3f} (plain) vs {np.std(wl):.3f} (L2)\n{wp.size:,} values",
                     fontsize=9)
        ax.set_xlabel("weight value")
        ax.grid(True, alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    axes[0].set_ylabel("density")
    fig.suptitle("Weights after training, plain vs L2 (all seeds pooled; central 99.8% shown)", fontsize=11)
    return save_figure(fig, path)


def batchnorm_ablation_figure(
    curves: Mapping[str, Sequence[Curve]],
    test_accuracy: Mapping[str, Sequence[float]],
    *,
    reference_accuracy: Mapping[str, float] | None = None,
) -> Figure:
    """The figure of :func:`plot_batchnorm_ablation`, not saved."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(12.5, 4.4), layout="constrained")
    ax_cost, ax_acc = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    colors = {name: _VARIANT_COLORS[i % len(_VARIANT_COLORS)] for i, name in enumerate(test_accuracy)}
    for i, (name, runs) in enumerate(curves.items()):
        color = colors.get(name, _VARIANT_COLORS[i % len(_VARIANT_COLORS)])
        for j, run in enumerate(run for run in runs if run.val):
            ax_cost.plot(run.steps, run.val, color=color, lw=1.1, alpha=0.75, label=name if j == 0 else None)
            ax_cost.plot(run.steps[-1], run.val[-1], marker="o", ms=3, color=color)
    _plain_log_axis(ax_cost)
    ax_cost.xaxis.set_major_formatter(FuncFormatter(_step_formatter))
    ax_cost.set_xlabel("step (mini-batch of 256); dot = early-stopping point")
    ax_cost.set_ylabel("validation cost (inference mode)")
    ax_cost.set_title("Validation cost during training", fontsize=10)
    ax_cost.grid(True, alpha=0.3)
    ax_cost.legend(fontsize=7, loc="upper right")

    names = list(test_accuracy)
    several = any(len(v) > 1 for v in test_accuracy.values())
    for x, name in enumerate(names):
        values = np.asarray(test_accuracy[name], dtype=float)
        if values.size:
            mid = float(np.median(values))
            ax_acc.bar(x, mid, width=0.6, color=colors[name], alpha=0.3)
            jitter = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else np.zeros(1)
            ax_acc.plot(x + jitter, values, "o", ms=4, color=colors[name])
            ax_acc.text(x, mid / 2, f"{'median' if several else 'test acc.'}\n{mid:.4f}", ha="center",
                        va="center", fontsize=8)
    for k, (label, value) in enumerate((reference_accuracy or {}).items()):
        ax_acc.axhline(value, color="0.25", ls=("--", ":", "-.")[k % 3], lw=1, label=f"{label}: {value:.4f}")
    ax_acc.set_ylim(0.0, 1.0)  # bars start at zero: their heights compare honestly; the numbers give the detail
    ax_acc.set_xticks(range(len(names)), [n.split(":")[0] for n in names])
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("Test accuracy (dots: seeds, bar: median)" if several else "Test accuracy (one seed)",
                     fontsize=10)
    ax_acc.grid(True, axis="y", alpha=0.3)
    if reference_accuracy:
        ax_acc.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.suptitle("Batch-norm ablation: what the report's implementation most likely lacked", fontsize=11)
    return fig


def plot_batchnorm_ablation(
    curves: Mapping[str, Sequence[Curve]],
    test_accuracy: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    reference_accuracy: Mapping[str, float] | None = None,
) -> Path:
    """Left: validation cost vs step of each variant (seeds overlaid, one colour per variant).

    Right: test accuracy per seed (dots) and median (bar, on an axis from 0 to 1)
    of each entry of ``test_accuracy`` (which may include evaluation-only
    variants), with horizontal lines for ``reference_accuracy`` (label -> value).
    """
    fig = batchnorm_ablation_figure(curves, test_accuracy, reference_accuracy=reference_accuracy)
    return save_figure(fig, path)


def sweep_accuracy_figure(
    points: Mapping[str, Sequence[tuple[int, float]]],
    intervals: Mapping[str, tuple[float, float] | None] | None = None,
    *,
    metric: str = "test accuracy",
    title: str = "Sweep: accuracy by configuration",
) -> Figure:
    """One column per configuration: one point per seed (labelled by seed order), the mean as a bar and its
    confidence interval as an error bar.  ``points``: configuration label -> ``[(seed, value), ...]``;
    ``intervals``: label -> ``(low, high)`` or ``None`` (one seed)."""
    from matplotlib.figure import Figure

    labels = list(points)
    if not labels:
        raise InputValidationError("sweep_accuracy_figure: received no configurations; expected at least one")
    width = min(max(4.5, 0.9 * len(labels) + 2.0), 24.0)
    fig = Figure(figsize=(width, 4.4), layout="constrained")
    ax = fig.subplots()
    for x, label in enumerate(labels):
        pts = sorted(points[label])
        k = len(pts)
        offsets = np.linspace(-0.18, 0.18, k) if k > 1 else np.zeros(1)
        values = np.asarray([v for _, v in pts], dtype=float)
        ax.scatter(x + offsets, values, s=18, color=_TRAIN_COLOR, alpha=0.8, zorder=3,
                   label="one seed" if x == 0 else None)
        mean = float(values.mean())
        ax.hlines(mean, x - 0.3, x + 0.3, color="black", lw=1.5, zorder=4, label="mean" if x == 0 else None)
        ci = (intervals or {}).get(label)
        if ci is not None:
            ax.errorbar([x + 0.34], [mean], yerr=[[mean - ci[0]], [ci[1] - mean]], fmt="none", ecolor="tab:red",
                        capsize=3, lw=1.2, zorder=4, label="95% CI of the mean" if x == 0 else None)
    ax.set_xticks(range(len(labels)), [_wrap(label) for label in labels], fontsize=8,
                  rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(metric)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title, fontsize=11)
    return fig


def _wrap(label: str) -> str:
    """A configuration label on one line per setting."""
    return "\n".join(label.split(" "))


def plot_sweep_accuracy(
    points: Mapping[str, Sequence[tuple[int, float]]],
    path: str | os.PathLike[str],
    intervals: Mapping[str, tuple[float, float] | None] | None = None,
    **kwargs: Any,
) -> Path:
    """:func:`sweep_accuracy_figure` written to ``path`` (PNG)."""
    return save_figure(sweep_accuracy_figure(points, intervals, **kwargs), path)


# ----------------------------------------------------------------------------- REPORT.md's figures


def _curves(runs: Sequence[dict[str, Any]], key: str) -> list[Curve]:
    return [Curve(r["recorded_steps"], r["costs"], r["val_costs"], r["seed"]) for r in runs if r["key"] == key]


def _l2_lambda(run: Mapping[str, Any]) -> float:
    return float(run.get("hyperparameters", {}).get("l2_lambda") or 0.0)


def draw_report_figures(
    results: Mapping[str, Any], weights: Mapping[str, Sequence[Sequence[np.ndarray]]], out: Path
) -> dict[str, str]:
    """Draw REPORT.md's figures into ``out``; returns figure name -> file name.

    ``results``: the contents of results.json with its summary; ``weights``:
    run key -> per seed -> each layer's weights (host arrays).
    """
    runs, sections, summary = results["runs"], results["settings"]["sections"], results["summary"]
    figures: dict[str, str] = {}
    curves = {SECTION_TITLES[s]: _curves(runs, s) for s in sections}
    l2 = {SECTION_TITLES[s]: max((_l2_lambda(r) for r in runs if r["key"] == s), default=0.0) for s in sections}
    plot_cost_curves(curves, out / "cost_curves.png",
                     reference_steps={SECTION_TITLES[s]: REPORT_RESULTS[s]["steps"] for s in sections},
                     l2_lambdas=l2)
    figures["cost_curves"] = "cost_curves.png"
    if "4" in weights and "6" in weights:
        n_layers = len(weights["4"][0])
        pooled = {k: [np.concatenate([w[l].ravel() for w in weights[k]]) for l in range(n_layers)]
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
        plain = median(summary, "4", "test_accuracy")
        ours = "ours, plain (Section 4" + (" median)" if results["settings"].get("seeds", 1) > 1 else ")")
        refs[ours if plain is not None else "report, plain (Section 4)"] = (
            plain if plain is not None else REPORT_RESULTS["4"]["test_accuracy"])
        plot_batchnorm_ablation(ab_curves, accs, out / "batchnorm_ablation.png", reference_accuracy=refs)
        figures["ablation"] = "batchnorm_ablation.png"
    return figures
