"""One reproduction: every run of :mod:`.protocol` over the seeds, then results.json, the figures and REPORT.md.

``results.json`` is rewritten after every seed, so an interrupted reproduction
keeps the runs it finished (``"complete": false``).  Without an output folder a
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
from ..data import DATA_ENV, prepare_mnist
from ..errors import DataError, InputValidationError
from ..experiment import REPORT_RESULTS, SECTIONS
from ..files import atomic_write_bytes, write_json
from ..machine import machine_info
from .figures import draw_report_figures
from .markdown import render_report
from .protocol import run_specs, train_one
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
        command: str = "",
        argv: Sequence[str] = (),
    ) -> None:
        V.check_positive_int("seeds", seeds)
        V.check_positive_int("threads", threads)
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
        self.command = command
        self.argv = list(argv)
        self.specs = run_specs(self.sections, ablation, max_steps)

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
        """Train every run (host BLAS limited to ``threads``), write the outputs and return results.json's contents."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads):
            return self._run(progress)

    def _run(self, progress: Progress | None) -> dict[str, Any]:
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
                         "max_steps": self.max_steps, "threads": self.threads,
                         "data_dir": self.data_dir or os.environ.get(DATA_ENV)},
            "report_results": REPORT_RESULTS,
            "runs": [],
        }
        runs: list[dict[str, Any]] = []
        weights: dict[str, list[list[np.ndarray]]] = {}  # key -> per seed -> per layer
        for seed in range(self.seeds):
            splits = prepare_mnist(self.data_dir, device=self.backend, dtype=self.dtype, split_seed=seed)
            for spec in self.specs:
                record, layer_weights = train_one(spec, splits, seed)
                runs.append(record)
                weights.setdefault(spec.key, []).append(layer_weights)
                if progress is not None:
                    progress(len(runs), self.total_runs, record)
            del splits
            results["runs"] = runs
            results["total_seconds"] = time.perf_counter() - start
            write_json(self.out / "results.json", results)  # partial results survive an interruption
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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
