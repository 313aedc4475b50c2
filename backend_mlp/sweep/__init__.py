"""Sweeps: many independent training runs (a grid of settings × seeds), on this machine or a Dask cluster.

Modules: :mod:`.grid` (``--grid``, ``--seeds`` and grid files into settings),
:mod:`.spec` (:class:`SweepRun`, one run, and its id), :mod:`.task` (a run where
it trains, once), :mod:`.engine` (:func:`run_sweep`: skip finished runs, run the
rest here or on Dask, progress, Ctrl-C) and :mod:`.table` (results.csv /
results.json, SUMMARY.md with 95% confidence intervals, the figure).  The
command line is :mod:`backend_mlp.cli.sweep`; ``backend-mlp reproduce`` is a
sweep too (:mod:`backend_mlp.report.reproduction`).
"""

from __future__ import annotations

from .engine import INSTALL_HINT, SweepEvent, SweepOutcome, run_sweep
from .spec import SweepRun
from .table import TABLE_FILES, write_table
from .task import execute, finished_metrics

__all__ = ["INSTALL_HINT", "TABLE_FILES", "SweepEvent", "SweepOutcome", "SweepRun", "execute", "finished_metrics",
           "run_sweep", "write_table"]
