"""One reproduction: every run of :mod:`.protocol` over the seeds, as a sweep, then results.json, the figures and
REPORT.md written from the sweep's runs.

The runs (sections × seeds + the ablation) are :mod:`backend_mlp.sweep` runs, each
in its own folder ``<runs_dir>/<run id>`` (default ``<out>/runs``): here one
after another (``workers=1``, no Dask needed), on ``workers`` local Dask
processes, or on a Dask cluster (``scheduler``).  Runs are deterministic, so
every way gives the same numbers.  A reproduction stopped by Ctrl-C (or a lost
worker) keeps its finished runs; the same command with the same ``--out`` (or
``--runs-dir``) continues with the rest, and a finished one is rewritten from its
runs without training.  An interrupted reproduction writes the runs it finished
into results.json (``"complete": false``).  Without an output folder a
reproduction writes into a new ``runs/reproduce-<YYYYmmdd-HHMMSS>`` (relative to
the working directory; ``-2``, ``-3``, ... appended when taken), never into an
existing folder such as the committed ``docs/report``.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import validation as V
from ..backends import resolve_backend, resolve_dtype_name
from ..data import DATA_ENV
from ..errors import BackendMLPError, DataError, InputValidationError
from ..experiment import REPORT_RESULTS, SECTIONS
from ..files import atomic_write_bytes, write_json
from ..machine import machine_info
from .figures import draw_report_figures
from .markdown import render_report
from .protocol import record_of, run_specs, sweep_run
from .statistics import acceptance_checks, summarize_runs

#: Called after each finished run with ``(runs done, runs in all, the run's record)``.
Progress = Callable[[int, int, dict[str, Any]], None]

#: Parent folder of the default output folders, relative to the working directory.
RUNS_DIR = Path("runs")


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def default_out(root: str | os.PathLike[str] = RUNS_DIR) -> Path:
    """``<root>/reproduce-<YYYYmmdd-HHMMSS>``, or with ``-2``, ``-3``, ... when that path exists (not created)."""
    base = Path(root) / f"reproduce-{_timestamp()}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


class Reproduction:
    """The settings of one reproduction, checked; :meth:`run` trains and writes the outputs into ``out``.

    ``out=None``: a new folder :func:`default_out` under ``runs/``, created by
    :meth:`make_out` (or :meth:`run`) with a further suffix if another process
    took the name meanwhile: never an existing folder.  An explicit ``out`` may
    exist; its outputs are replaced.  Raises :class:`~backend_mlp.errors.InputValidationError` or
    :class:`~backend_mlp.errors.BackendUnavailableError` for bad settings,
    before anything is created or trained.
    """

    def __init__(
        self,
        out: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        seeds: int = 5,
        dtype: str = "float64",
        data_dir: str | None = None,
        sections: Sequence[str] = ("4", "5", "6"),
        ablation: bool = True,
        max_steps: int | None = None,
        threads: int = 1,
        workers: int = 1,
        scheduler: str | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        command: str = "",
        argv: Sequence[str] = (),
    ) -> None:
        V.check_positive_int("seeds", seeds)
        V.check_positive_int("threads", threads)
        V.check_positive_int("workers", workers)
        if max_steps is not None:
            V.check_positive_int("max_steps", max_steps)
        unknown = [s for s in sections if s not in SECTIONS]
        if not sections or unknown:
            raise InputValidationError(f"sections: received {list(sections)!r}; expected a non-empty subset of "
                                       f"{', '.join(SECTIONS)}")
        self.fresh = out is None
        self.out = default_out() if out is None else Path(out)
        self.device = device
        self.backend = resolve_backend(device)
        self.dtype = resolve_dtype_name(dtype)
        self.seeds = seeds
        self.data_dir = data_dir
        self.sections = tuple(s for s in SECTIONS if s in sections)
        self.ablation = ablation
        self.max_steps = max_steps
        self.threads = threads
        self.workers = workers
        self.scheduler = scheduler
        self._runs_dir = None if runs_dir is None else Path(runs_dir)
        self.command = command
        self.argv = list(argv)
        self.specs = run_specs(self.sections, ablation, max_steps)

    @property
    def runs_dir(self) -> Path:
        """Where the runs' folders go: ``runs_dir``, else ``<out>/runs``."""
        return self._runs_dir if self._runs_dir is not None else self.out / "runs"

    @property
    def total_runs(self) -> int:
        """Training runs in all: seeds × runs per seed."""
        return self.seeds * len(self.specs)

    def make_out(self) -> Path:
        """Create the output folder (a fresh one when ``out`` was None: ``self.out`` may gain a suffix); idempotent."""
        try:
            if not self.fresh:
                self.out.mkdir(parents=True, exist_ok=True)
                return self.out
            self.out.parent.mkdir(parents=True, exist_ok=True)
            while True:
                try:
                    self.out.mkdir()  # fails if another process created it since default_out chose it
                    break
                except FileExistsError:
                    self.out = default_out(self.out.parent)
        except OSError as err:
            raise DataError(f"output folder {self.out}: cannot create it ({err.strerror or err})") from None
        self.fresh = False  # created: from now on it is this reproduction's own folder
        return self.out

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        """Train every run not finished in :attr:`runs_dir` (host BLAS limited to ``threads`` per run), write the
        outputs and return results.json's contents.  Raises ``KeyboardInterrupt`` after writing the finished runs
        into results.json when interrupted, and :class:`~backend_mlp.errors.BackendMLPError` when a run failed."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads):
            return self._run(progress)

    def _run(self, progress: Progress | None) -> dict[str, Any]:
        from ..sweep import run_sweep

        self.make_out()
        start = time.perf_counter()
        results: dict[str, Any] = {
            "complete": False,
            "command": self.command,
            "argv": self.argv,
            "date_started": _now(),
            "machine": self._machine(),
            "settings": {"device": self.device, "backend": self.backend.name, "dtype": self.dtype,
                         "seeds": self.seeds, "sections": list(self.sections), "ablation": self.ablation,
                         "max_steps": self.max_steps, "threads": self.threads, "workers": self.workers,
                         "scheduler": self.scheduler, "data_dir": self.data_dir or os.environ.get(DATA_ENV)},
            "report_results": REPORT_RESULTS,
            "runs": [],
        }
        data_dir = str(Path(self.data_dir).resolve()) if self.data_dir else None
        planned = [(spec, sweep_run(spec, seed, dtype=self.dtype, device=self.device, data_dir=data_dir,
                                    threads=self.threads))
                   for seed in range(self.seeds) for spec in self.specs]
        spec_of = {run.run_id: spec for spec, run in planned}
        finished = 0

        def on_event(event: Any) -> None:
            nonlocal finished
            if event.metrics is not None and progress is not None:
                finished += 1
                progress(finished, self.total_runs, record_of(spec_of[event.run.run_id], event.metrics))

        outcome = run_sweep([run for _, run in planned], self.runs_dir, workers=self.workers,
                            scheduler=self.scheduler, on_event=on_event)
        runs = [record_of(spec, outcome.finished[run.run_id]) for spec, run in planned
                if run.run_id in outcome.finished]  # seed by seed, in the protocol's order
        results["runs"] = runs
        results["total_seconds"] = time.perf_counter() - start
        if outcome.interrupted is not None or outcome.failed:
            write_json(self.out / "results.json", results)  # the finished runs survive
            if outcome.interrupted is not None:
                raise outcome.interrupted
            first = next(iter(outcome.failed.values()))
            raise BackendMLPError(f"{len(outcome.failed)} of {self.total_runs} runs failed (first: {first}); the "
                                  f"{len(runs)} finished are in {self.out / 'results.json'}")
        weights = {key: [_layer_weights(self.runs_dir / run.run_id) for spec, run in planned if spec.key == key]
                   for key in ("4", "6") if key in self.sections}
        summary = summarize_runs(runs)
        results.update(summary=summary, checks=acceptance_checks(summary))
        results["figures"] = draw_report_figures(results, weights, self.out)
        results["date_finished"] = _now()
        results["total_seconds"] = time.perf_counter() - start
        results["complete"] = True
        write_json(self.out / "results.json", results)
        atomic_write_bytes(self.out / "REPORT.md", render_report(results).encode())
        return results

    def _machine(self) -> dict[str, Any]:
        info = machine_info(self.backend)
        try:
            info["load_average_at_start"] = list(os.getloadavg())
        except (OSError, AttributeError):
            pass
        return info


def _layer_weights(folder: Path) -> list[np.ndarray]:
    """Each layer's weights (host float64) of the model a run saved in ``folder``."""
    from ..checkpoint import load_model

    model = load_model(folder / "model.npz", device="cpu")
    L = len(model.config.layer_dims) - 1
    return [np.asarray(model.parameters[f"W{l}"], dtype=np.float64) for l in range(1, L + 1)]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
