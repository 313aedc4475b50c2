"""The cost curve of a training run as a PNG (matplotlib, Agg, no pyplot state).

The figure is rendered into memory and written atomically (temporary file in
the same folder, fsync, ``os.replace``), so a reader never sees half a PNG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from .idx import atomic_write_bytes


def plot_cost_curve(
    path: str | os.PathLike[str],
    recorded_steps: Sequence[int],
    costs: Sequence[float],
    val_costs: Sequence[float] | None = None,
    title: str = "Cost during training",
    *,
    val_steps: Sequence[int] | None = None,
) -> Path:
    """Plot mini-batch ``costs`` (and ``val_costs``) against the step; returns the path written.

    ``val_costs`` are taken at ``recorded_steps`` unless ``val_steps`` is given.
    Non-finite costs leave gaps in the curve.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(recorded_steps) != len(costs):
        raise ValueError(f"recorded_steps has {len(recorded_steps)} entries but costs has {len(costs)}")
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(list(recorded_steps), list(costs), label="training mini-batch cost", linewidth=1.2)
    if val_costs is not None and len(val_costs):
        steps = list(val_steps) if val_steps is not None else list(recorded_steps)[: len(val_costs)]
        ax.plot(steps, list(val_costs), label="validation cost", linewidth=1.2)
    ax.set_xlabel("step (mini-batch)")
    ax.set_ylabel("cross-entropy cost")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    p = Path(path)
    atomic_write_bytes(p, buffer.getvalue())
    return p


__all__ = ["plot_cost_curve"]
