"""Running a sweep's runs: here one after another, or on Dask (a local cluster or a running one).

:func:`run_sweep` skips the runs already finished in the sweep's folder (no
training, nothing submitted), orders the others longest first (so the last
runs of the workers end together), and executes them with
:func:`~backend_mlp.sweep.task.execute`:

- ``workers=1`` and no scheduler: in this process, in order, without Dask;
- ``workers=N``: a Dask ``LocalCluster`` of N worker processes with one thread
  (and one BLAS thread) each; ``scheduler="tcp://HOST:PORT"``: a running Dask cluster.

A worker lost mid-run (killed, out of memory) makes Dask run that task again
elsewhere; the retry continues from the run's checkpoint.  Ctrl-C (or SIGTERM)
cancels what has not finished and closes a local cluster; the runs finished so
far stay in their folders and a re-run of the sweep continues with the rest.
Dask is an optional dependency, imported only here and only when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
from .spec import SweepRun
from .task import execute, finished_metrics

#: the one line shown when Dask is needed but not installed
INSTALL_HINT = "needs Dask: pip install 'backend_mlp[sweep]'"


@dataclasses.dataclass
class SweepEvent:
    """A run finished (``metrics``), was found finished (``skipped``) or failed (``error``); the counts after it."""

    run: SweepRun
    metrics: dict[str, Any] | None
    error: str | None
    skipped: bool
    done: int
    running: int
    failed: int
    total: int


@dataclasses.dataclass
class SweepOutcome:
    """What a sweep did: ``finished`` run id -> metrics (``skipped`` of them were finished before),
    ``failed`` run id -> one-line error, ``interrupted``: the Ctrl-C / SIGTERM that stopped it."""

    total: int
    finished: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    interrupted: BaseException | None = None


def run_sweep(
    runs: Sequence[SweepRun],
    root: Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    on_event: Callable[[SweepEvent], None] | None = None,
) -> SweepOutcome:
    """Execute the unfinished ``runs`` into ``root/<run id>`` and return what happened (never raises for a
    failed run; a Ctrl-C is returned as ``interrupted``)."""
    unique = {run.run_id: run for run in runs}  # one configuration and seed given twice is one run
    outcome = SweepOutcome(total=len(unique))
    emit = _Emitter(outcome, on_event)
    todo = []
    for run_id, run in unique.items():
        metrics = finished_metrics(root / run_id, run_id)
        if metrics is None:
            todo.append(run)
            continue
        outcome.finished[run_id] = metrics
        outcome.skipped.append(run_id)
        emit(run, metrics=metrics, skipped=True)
    todo.sort(key=lambda run: -run.cost)  # stable: equal costs keep the sweep's order
    if not todo:
        return outcome
    root.mkdir(parents=True, exist_ok=True)
    try:
        if scheduler is None and workers == 1:
            _in_process(todo, root, outcome, emit)
        else:
            _on_dask(todo, root, outcome, emit, workers=workers, scheduler=scheduler)
    finally:  # what finished on disk counts, also a run whose result did not reach us (Ctrl-C, lost client)
        for run in todo:
            if run.run_id not in outcome.finished:
                metrics = finished_metrics(root / run.run_id, run.run_id)
                if metrics is not None:
                    outcome.finished[run.run_id] = metrics
                    outcome.failed.pop(run.run_id, None)
    return outcome


class _Emitter:
    def __init__(self, outcome: SweepOutcome, on_event: Callable[[SweepEvent], None] | None) -> None:
        self.outcome, self.on_event = outcome, on_event
        self.slots = 1  # runs that can train at once

    def __call__(self, run: SweepRun, *, metrics: dict[str, Any] | None = None, error: str | None = None,
                 skipped: bool = False) -> None:
        o = self.outcome
        if metrics is not None:
            o.finished[run.run_id] = metrics
        if error is not None:
            o.failed[run.run_id] = error
        if self.on_event is not None:
            left = o.total - len(o.finished) - len(o.failed)
            running = 0 if skipped else min(left, self.slots)
            self.on_event(SweepEvent(run, metrics, error, skipped, len(o.finished), running, len(o.failed), o.total))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _in_process(todo: list[SweepRun], root: Path, outcome: SweepOutcome, emit: _Emitter) -> None:
    for run in todo:
        try:
            metrics = execute(run, str(root / run.run_id))
        except KeyboardInterrupt as exc:  # the run saved its checkpoint: a re-run continues it
            outcome.interrupted = exc
            return
        except Exception as exc:  # noqa: BLE001 - a failed run is reported, the sweep goes on
            emit(run, error=_one_line(exc))
            continue
        emit(run, metrics=metrics)


def import_distributed() -> Any:
    """``distributed``, or :class:`BackendUnavailableError` with the install line."""
    try:
        import distributed
    except ImportError:
        raise BackendUnavailableError(INSTALL_HINT) from None
    return distributed


def worker_environ() -> dict[str, Any]:
    """Dask's environment for new worker processes, less its ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets that variable so workers hand memory back to the system; but
    glibc then stops adapting its mmap threshold, so every large temporary of
    a training step (a 256-sample batch is 1.6 MB in float64) is a fresh
    ``mmap`` and its pages fault in again: the report's network trained 1.7x
    slower in a Dask worker than in a plain process (2.9 against 4.9 s for
    3,000 steps on this machine's MNIST).  The BLAS thread variables (1) stay.
    Workers of a cluster started elsewhere (``--scheduler``) have their own
    configuration (``dask worker --no-nanny`` sets no such variable).
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: of a new ``LocalCluster`` of ``workers`` single-threaded processes, or of ``scheduler``."""
    distributed = import_distributed()
    for name in ("distributed", "distributed.worker", "distributed.nanny", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.ERROR)  # a lost worker is reported by the sweep, in one line
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            import dask

            # one task per worker at a time: the next run goes to whichever worker is free first (longest first)
            stack.enter_context(dask.config.set({
                "distributed.scheduler.worker-saturation": 1.0,
                "distributed.nanny.pre-spawn-environ": worker_environ(),
            }))
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.CRITICAL,  # shutdown chatter of the workers (a Ctrl-C is one line)
            ))
            address = cluster
        else:
            address = scheduler
        try:
            client = stack.enter_context(distributed.Client(address, timeout="20s"))
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendUnavailableError(f"--scheduler {scheduler}: cannot connect ({_one_line(exc)})") from None
        yield client


def _on_dask(todo: list[SweepRun], root: Path, outcome: SweepOutcome, emit: _Emitter, *, workers: int,
             scheduler: str | None) -> None:
    distributed = import_distributed()
    with dask_client(workers, scheduler) as client:
        futures = {}
        for rank, run in enumerate(todo):  # higher priority first: the longest runs
            future = client.submit(execute, run, str((root / run.run_id).resolve()), key=f"sweep-run-{run.run_id}",
                                   pure=False, priority=len(todo) - rank)
            futures[future] = run
        try:
            for future in distributed.as_completed(list(futures)):
                emit.slots = max(1, sum(client.nthreads().values()))
                run = futures[future]
                if future.status == "finished":
                    emit(run, metrics=future.result())
                else:
                    emit(run, error=_one_line(future.exception()))
        except KeyboardInterrupt as exc:
            outcome.interrupted = exc
            with contextlib.suppress(Exception):
                client.cancel(list(futures))
