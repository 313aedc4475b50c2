"""``backend-mlp sweep``: a grid of ``train`` settings × seeds, run on all cores or a Dask cluster, then one table.

::

    backend-mlp sweep --grid lr=0.003,0.009,0.03 --grid hidden=20,7,5:256,128 --seeds 0-9 --max-steps 2000

Each ``--grid KEY=V1,V2,...`` names an option of ``backend-mlp train`` (``lr``,
``hidden``, ``optimizer``, ``batch-size``, ``batchnorm=off,on``, ``dataset``, ...;
values separated by commas, or by colons when a value has commas); every other
``train`` option given is a fixed setting of all runs, and ``--grid-file`` reads
the same from TOML or JSON.  Every combination is checked with ``train``'s own
parser before anything runs, and each run is exactly what ``backend-mlp train``
does with those settings (and ``--seed``), in its own folder
``<out>/runs/<run id>``; the id is a hash of the configuration and seed.

Runs are spread over ``--workers`` local processes (default: one per core, one
BLAS thread each) or a running Dask cluster (``--scheduler tcp://HOST:PORT``;
the workers read the data themselves and must see ``--out`` and ``--data-dir``);
``--workers 1`` runs them here, one after another, without Dask.  Finished runs
are skipped, so re-running the command continues an interrupted sweep and
rewrites the same table; Ctrl-C keeps what finished.  Writes ``results.csv``,
``results.json``, ``SUMMARY.md`` (mean, std, 95% confidence interval per
configuration) and ``accuracy.png`` into ``--out``.  Exit status: 0 all runs
finished, 1 a run failed or an error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, UsageError
from .common import EXIT_ERROR, EXIT_OK, Parser, interrupted_status, run_command
from .progress import fit, format_duration

PROG = "backend-mlp sweep"

#: every train option a sweep run passes on (a new train option must be added here, or to _OWN, to be accepted)
HANDLED = {"dataset", "data-dir", "section", "hidden", "batchnorm", "l2", "optimizer", "momentum", "beta1", "beta2",
           "epsilon", "lr", "lr-decay", "batch-size", "dtype", "max-steps", "record-every", "patience",
           "min-improvement", "no-early-stopping", "device", "checkpoint-every", "threads", "compile"}
#: train options a sweep decides itself (the run's folder, seed and output)
_OWN = {"out": "--out is the sweep's folder", "resume": "finished runs are skipped and unfinished ones resumed "
        "by re-running the sweep", "overwrite": "each run has its own folder", "seed": "use --seeds",
        "quiet": "--quiet is the sweep's", "help": "", "debug": ""}
_ON, _OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The sweep's own options; the rest of the command line is ``train``'s."""
    p = Parser(prog=prog, description="Run a grid of `backend-mlp train` settings over several seeds, in parallel, "
               "and summarise the results. Every other option is a `backend-mlp train` option applied to all runs.",
               epilog="Training options: those of `backend-mlp train --help` (--dataset, --data-dir, --hidden, "
                      "--optimizer, --lr, --max-steps, --device, --dtype, ...), as --grid axes or settings of every "
                      "run; not --out, --resume, --overwrite or --seed, which the sweep decides.")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a train option and its values, e.g. lr=0.003,0.009 or hidden=20,7,5:256,128 (colons "
                        "separate values that have commas) or batchnorm=off,on; repeat for more axes")
    p.add_argument("--grid-file", metavar="FILE",
                   help="a TOML or JSON file with [grid] (option = [values]), [fixed] settings and seeds")
    p.add_argument("--seeds", metavar="SEEDS",
                   help="N (seeds 0..N-1), a range 0-9 or a list 0,3,5 (default: the grid file's, else 5)")
    p.add_argument("--workers", type=int, metavar="N",
                   help=f"local worker processes, one thread each (default: one per core, {usable_cores()} here); "
                        "1 runs here without Dask")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (its workers must see --out and the data)")
    p.add_argument("--out", metavar="DIR",
                   help="the sweep's folder (default: runs/sweep-<hash of its runs>, so the same command "
                        "continues the same sweep)")
    p.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True,
                   help="each run draws its cost curve, confusion matrix and misclassified images as train does "
                        "(default: on; about a second per run, so --no-figures for many short runs)")
    p.add_argument("--quiet", action="store_true", help="no line per run (default: off)")
    return p


def _train_parser() -> argparse.ArgumentParser:
    from .train import build_parser as train_parser

    return train_parser("backend-mlp train")


def _train_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``"batch-size" -> action`` for every long option of ``train``."""
    return {s[2:]: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


def _argv_of(option: str, value: str, action: argparse.Action, where: str) -> list[str]:
    """The train arguments for ``option=value`` (a flag is on/off)."""
    if action.nargs == 0:
        word = value.strip().lower()
        if word in _ON:
            return [f"--{option}"]
        if word in _OFF:
            return []
        raise UsageError(f"{where}: received {value!r} for the flag --{option}; expected on or off")
    return [f"--{option}", value]


def _check_key(option: str, options: dict[str, argparse.Action], where: str) -> argparse.Action:
    if option in _OWN:
        raise UsageError(f"{where}: received --{option}; expected a training setting ({_OWN[option] or 'not one'})")
    if option in options and option not in HANDLED:
        raise UsageError(f"{where}: received --{option}; expected a setting a sweep passes on to its runs "
                         f"({', '.join(sorted(HANDLED))})")
    if option not in options:
        close = difflib.get_close_matches(option, [o for o in options if o not in _OWN], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"{where}: received {option!r}{hint}; expected an option of backend-mlp train such as lr, "
                         "hidden, optimizer, batch-size or batchnorm")
    return options[option]


class Plan:
    """The sweep's runs, each checked with ``train``'s parser: ``runs`` and their train command lines."""

    def __init__(self, grid: dict[str, tuple[str, ...]], fixed_argv: list[str], seeds: tuple[int, ...],
                 figures: bool = True) -> None:
        from ..sweep.grid import expand

        self.grid, self.fixed_argv, self.seeds = grid, fixed_argv, seeds
        parser = _train_parser()
        options = _train_options(parser)
        actions = {key: _check_key(key, options, f"--grid {key}") for key in grid}
        given = _given_options(fixed_argv, options)
        for option in given:
            _check_key(option, options, f"--{option}")
        for key in grid:
            canonical = actions[key].option_strings[-1][2:]
            if canonical in given:
                raise UsageError(f"--grid {key}: received also as --{canonical} {' '.join(given[canonical])}; "
                                 "expected one of them")
        self.runs = []
        for settings, seed in expand(grid, seeds):
            argv = list(fixed_argv)
            for key, value in settings.items():
                argv += _argv_of(key, value, actions[key], f"--grid {key}={value}")
            argv += ["--seed", str(seed)]
            try:
                run = _sweep_run(parser, argv, settings, seed)
            except UsageError as exc:
                raise UsageError(f"{_culprit(str(exc), settings, actions)}{exc}") from None
            self.runs.append(dataclasses.replace(run, figures=figures))

    def sweep_id(self) -> str:
        """A short hash of the sweep's run ids (the default folder name)."""
        return hashlib.sha256(" ".join(sorted(r.run_id for r in self.runs)).encode()).hexdigest()[:10]


def _culprit(message: str, settings: dict[str, str], actions: dict[str, argparse.Action]) -> str:
    """What an error of train's parser is about, as a prefix: the grid value it names (``--grid lr=abc: ``),
    nothing when it names no grid option (a fixed setting: the message names it), else the combination."""
    named = [k for k in settings if any(f"{option} " in message or f"{option}:" in message
                                        for option in actions[k].option_strings)]
    if len(named) == 1:
        return f"--grid {named[0]}={settings[named[0]]}: "
    if not named:
        return ""
    return "--grid " + " ".join(f"{k}={v}" for k, v in settings.items()) + ": "


def _given_options(argv: list[str], options: dict[str, argparse.Action]) -> dict[str, list[str]]:
    """The train options present in ``argv`` (canonical long names) with the words after them."""
    given: dict[str, list[str]] = {}
    current: str | None = None
    for word in argv:
        if word.startswith("--"):
            name = word[2:].split("=", 1)[0]
            action = options.get(name)
            current = action.option_strings[-1][2:] if action is not None else name
            given[current] = []
        elif current is not None:
            given[current].append(word)
    return given


def _sweep_run(parser: argparse.ArgumentParser, argv: list[str], settings: dict[str, str], seed: int) -> Any:
    """The :class:`~backend_mlp.sweep.SweepRun` of ``backend-mlp train argv``, checked as train checks it."""
    from ..sweep import SweepRun
    from .train import _check_options, _overrides

    args = parser.parse_args(argv)
    _check_options(args)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    run = SweepRun(settings=settings, seed=seed, overrides=_overrides(args), section=args.section,
                   dtype=args.dtype or "float64", device=args.device or "cpu", dataset=args.dataset,
                   data_dir=data_dir, threads=args.threads or 1, checkpoint_every=args.checkpoint_every or 1,
                   compile=bool(getattr(args, "compile", False)), command=f"backend-mlp train {shlex.join(argv)}")
    config = run.identity["config"]
    dims = config["layer_dims"]
    work = config["num_iterations"] * config["batch_size"] * sum(a * b for a, b in zip(dims, dims[1:], strict=False))
    return dataclasses.replace(run, cost=work * (1.5 if config["batchnorm"] else 1.0))  # longest first


# --------------------------------------------------------------------------- progress


class _Lines:
    """One line per run finished, found finished or failed, with the counts: ``[ 3/12] done 3, running 2, ...``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, event: Any) -> None:
        if self.quiet or event.skipped:  # runs finished before are counted, not listed
            return
        width = len(str(event.total))
        head = (f"[{event.done + event.failed:>{width}}/{event.total}] done {event.done}, running {event.running}, "
                f"failed {event.failed}: {event.run.describe()}: ")
        if event.error is not None:
            tail = f"FAILED: {event.error}"
        else:
            m = event.metrics
            tail = (f"test {m['test_accuracy']:.4f}, {m['steps']:,} steps, "
                    + format_duration(m.get("wall_seconds") or 0.0))
        print(fit(head + tail), flush=True)


# --------------------------------------------------------------------------- the command


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Entry point: returns the exit status (see :mod:`backend_mlp.cli.common`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return run_command(prog, lambda: _run(args_list, prog), args_list)


def _run(argv: list[str], prog: str) -> int:
    started = time.perf_counter()
    args, rest = build_parser(prog).parse_known_args(argv)
    if args.workers is not None and args.workers <= 0:
        raise UsageError(f"argument --workers: received {args.workers}; expected a positive integer")
    from ..sweep.grid import load_grid_file, parse_axis, parse_seeds

    grid: dict[str, tuple[str, ...]] = {}
    fixed_argv: list[str] = []
    seeds = None
    if args.grid_file:
        file_grid, fixed, seeds = load_grid_file(args.grid_file)
        grid.update(file_grid)
        options = _train_options(_train_parser())
        for key, value in fixed.items():
            fixed_argv += _argv_of(key, value, _check_key(key, options, f"--grid-file fixed.{key}"),
                                   f"--grid-file fixed.{key}")
    for text in args.grid:
        key, values = parse_axis(text)
        if key in grid:
            raise UsageError(f"--grid {text}: received {key} twice; expected each option once")
        grid[key] = values
    seeds = parse_seeds(args.seeds) if args.seeds is not None else (seeds or parse_seeds("5"))
    plan = Plan(grid, fixed_argv + rest, seeds, figures=args.figures)
    workers = args.workers or (1 if args.scheduler else usable_cores())
    if args.scheduler or workers > 1:
        from ..sweep.engine import INSTALL_HINT, import_distributed

        try:
            import_distributed()
        except Exception:
            where = f"--scheduler {args.scheduler}" if args.scheduler else f"--workers {workers}"
            raise BackendUnavailableError(f"{where}: {INSTALL_HINT} (or --workers 1 to run the runs here, one after "
                                   "another)") from None
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{plan.sweep_id()}"
    return _execute(plan, out, workers, args, prog, started)


def _execute(plan: Plan, out: Path, workers: int, args: argparse.Namespace, prog: str, started: float) -> int:
    from ..runs import FolderLock
    from ..sweep import run_sweep, write_table

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not out.is_dir():
        raise UsageError(f"--out {out}: received a file; expected a folder")
    lock = FolderLock(out)
    lock.acquire()  # one sweep client per folder
    try:
        where = f"scheduler {args.scheduler}" if args.scheduler else (
            f"{workers} local worker(s)" if workers > 1 else "this process")
        if not args.quiet:
            print(fit(f"{prog}: {len(plan.runs)} run(s) ({len(plan.runs) // len(plan.seeds)} configuration(s) x "
                      f"{len(plan.seeds)} seed(s)) on {where}; output in {out}"), flush=True)
        outcome = run_sweep(plan.runs, out / "runs", workers=workers, scheduler=args.scheduler,
                            on_event=_Lines(args.quiet))
        settings = {"grid": {k: list(v) for k, v in plan.grid.items()}, "fixed": plan.fixed_argv,
                    "seeds": list(plan.seeds)}
        files = write_table(out, plan.runs, outcome.finished, outcome.failed, root=out / "runs", settings=settings)
    finally:
        lock.release()
    trained = len(outcome.finished) - len(outcome.skipped)
    done = (f"{len(outcome.finished)} of {outcome.total} run(s) finished ({trained} trained now, "
            f"{len(outcome.skipped)} before)")
    if outcome.interrupted is not None:
        status, word = interrupted_status(outcome.interrupted)
        print(f"{prog}: {word}; {done}; their table is in {files['csv']}; run the same command to continue",
              file=sys.stderr, flush=True)
        return status
    if not args.quiet:
        print(fit(f"{prog}: {done} in {format_duration(time.perf_counter() - started)}; wrote "
                  f"{', '.join(p.name for p in files.values())} in {out}"), flush=True)
    if outcome.failed:
        first = next(iter(outcome.failed.values()))
        print(f"{prog}: error: {len(outcome.failed)} of {outcome.total} run(s) failed (first: {first}); see "
              f"{files['summary']}; run the same command to try them again", file=sys.stderr, flush=True)
        return EXIT_ERROR
    return EXIT_OK

if __name__ == "__main__":
    sys.exit(main())
