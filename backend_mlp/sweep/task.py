"""A sweep run where it trains (a Dask worker process, or this process): one run folder, finished exactly once.

:func:`execute` trains a :class:`~backend_mlp.sweep.spec.SweepRun` into its
folder through :class:`backend_mlp.runs.Run`, the machinery of ``backend-mlp
train``: the folder is locked while the run is live, a checkpoint is kept up to
date, and ``metrics.json`` (with the run's id and identity under ``"sweep"``) is
written last, atomically.  The worker reads the data itself from the run's
``data_dir`` / ``dataset``; no array goes through the scheduler.  A retried run
(its worker was killed, or the sweep was interrupted) continues from the
checkpoint it left, to the same numbers as an uninterrupted run; leftovers that
cannot be resumed are replaced.  :func:`finished_metrics` says whether a folder
holds the finished run of an id.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendMLPError, TrainingDivergedError
from ..runs import Run, RunPlan
from .spec import SweepRun

#: the key of metrics.json that identifies a sweep run
SWEEP_KEY = "sweep"


def finished_metrics(folder: Path, run_id: str) -> dict[str, Any] | None:
    """The metrics of the finished run ``run_id`` in ``folder``, or ``None`` (absent, unfinished, another run's)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or not isinstance(metrics.get(SWEEP_KEY), dict):
        return None
    if metrics[SWEEP_KEY].get("run_id") != run_id or not (folder / "model.npz").is_file():
        return None
    return metrics


def execute(run: SweepRun, folder: str) -> dict[str, Any]:
    """Train ``run`` into ``folder`` (unless it is finished there already) and return its metrics.

    Raises :class:`~backend_mlp.errors.TrainingDivergedError` for a run that
    diverged, ``KeyboardInterrupt`` when it was interrupted (its checkpoint is
    saved), and the run's own errors (bad data, a backend this machine lacks).
    """
    out = Path(folder)
    done = finished_metrics(out, run.run_id)
    if done is not None:  # an earlier attempt finished it (e.g. just before its worker was lost)
        return done
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(limits=run.threads), np.errstate(all="ignore"):
        options = {"compile": True} if run.compile else {}
        with Run(_plan(run, out), threads=run.threads, checkpoint_every=run.checkpoint_every, **options) as live:
            outcome = live.execute()
            if outcome.status == "interrupted":  # Ctrl-C or SIGTERM (the checkpoint is saved): the signal's own type
                cause = outcome.error.__context__ if outcome.error is not None else None
                raise cause if isinstance(cause, KeyboardInterrupt) else KeyboardInterrupt
            if outcome.status == "diverged":
                raise TrainingDivergedError(f"{run.describe()}: {outcome.error}")
            more = run.extras(live, outcome) if run.extras is not None else {}
            record = {"run_id": run.run_id, "settings": dict(run.settings), "seed": run.seed,
                      "identity": run.identity, "host": socket.gethostname(), "pid": os.getpid()}
            live.write_metrics(
                outcome, **more, wall_seconds=time.perf_counter() - started, library_version=_version(),
                command=run.command or f"backend-mlp sweep (run {run.run_id})", **{SWEEP_KEY: record},
            )
    metrics = finished_metrics(out, run.run_id)
    assert metrics is not None, f"{out}: metrics.json was not written"
    return metrics


def _plan(run: SweepRun, out: Path) -> RunPlan:
    """A continuation of the run's checkpoint when one is usable, else a new run replacing any leftovers."""
    checkpoint = out / "checkpoint.npz"
    if checkpoint.is_file():
        try:
            return run.plan(out, resume=checkpoint)
        except BackendMLPError:  # a damaged checkpoint, or one of a diverged run: start again
            pass
    return run.plan(out, overwrite=True)


def _version() -> str:
    from .. import __version__

    return __version__
