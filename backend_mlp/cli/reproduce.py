"""Reproduce the report's Sections 4-6 over several seeds and write ``REPORT.md``.

The command line of :class:`backend_mlp.report.Reproduction`: writes
``results.json``, the figures and ``REPORT.md`` into ``--out``, by default a new
folder ``runs/reproduce-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when taken;
never an existing folder).  The runs are a sweep (:mod:`backend_mlp.sweep`), each
in its folder under ``--runs-dir`` (default ``<out>/runs``): one after another
here (``--workers 1``, the default, needs no Dask), on ``--workers N`` local
processes, or on a Dask cluster (``--scheduler``), with identical numbers;
finished runs are not trained again, so re-running with the same ``--out``
continues an interrupted reproduction.  The committed report is rewritten only when asked
for explicitly (``--out docs/report``).  Prints one line per finished run and
the acceptance checks, each within 80 columns.  Exit status: 0 done, 1 error,
2 usage error, 130 interrupted; errors are one line on stderr.

    python scripts/reproduce_report.py --device cpu --seeds 5 --data-dir DIR
    python scripts/reproduce_report.py --device cpu --seeds 5 --data-dir DIR --out docs/report \
        --runs-dir runs/docs-report-runs      # the runs' folders stay out of the committed report
    backend-mlp reproduce --seeds 5 --data-dir DIR --workers 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..errors import BackendMLPError, BackendUnavailableError
from ..experiment import SECTIONS
from ..report import Reproduction
from .common import Parser, run_command
from .progress import fit, format_duration

PROG = "reproduce_report"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command-line options."""
    p = Parser(prog=prog, description="Reproduce the report's Sections 4-6 over several seeds (and the batch-norm "
                                      "ablation) and write REPORT.md, results.json and the figures.")
    p.add_argument("--device", default="cpu",
                   help="cpu, gpu, gpu:N, or any name resolve_backend accepts (default: cpu)")
    p.add_argument("--seeds", type=_positive_int, default=5, metavar="N", help="seeds 0..N-1 (default: 5)")
    p.add_argument("--dtype", default="float64", help="float64 or float32 (default: float64)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the MNIST files (default: $BACKEND_MLP_DATA, else the download cache)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: a new runs/reproduce-<YYYYmmdd-HHMMSS>; --out docs/report "
                        "rewrites the committed report)")
    p.add_argument("--sections", type=_sections, default=("4", "5", "6"),
                   help="comma separated (default: 4,5,6)")
    p.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                   help="run the batch-norm ablation (default: on)")
    p.add_argument("--max-steps", type=_positive_int, default=None, metavar="N",
                   help="cap on steps per run, for smoke tests (default: none, the report's 100000)")
    p.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                   help="BLAS threads per run on the CPU (default: 1: the matrices are small, extra threads only "
                        "contend)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="runs at once, on N local Dask worker processes (default: 1: one after another in this "
                        "process, no Dask needed; use the number of cores for speed)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a running Dask cluster, e.g. tcp://10.0.0.5:8786 (its workers must see --out "
                        "and --data-dir)")
    p.add_argument("--runs-dir", metavar="DIR",
                   help="folder of the runs' own folders (default: <out>/runs); runs finished there are reused")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [s for s in names if s not in SECTIONS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma separated subset of {','.join(SECTIONS)}, received {text!r}"
        )
    return tuple(s for s in SECTIONS if s in names)


def _command_line(argv: Sequence[str] | None, prog: str) -> str:
    """The command as the user typed it (``python scripts/...py ...`` for a script)."""
    if sys.argv and sys.argv[0].endswith(".py") and (argv is None or list(argv) == sys.argv[1:]):
        return shlex.join(["python", *sys.argv])
    return f"{prog} {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()


_STOPPED = {"early_stopping": "early stop", "num_iterations": "step cap", "diverged": "DIVERGED"}


class _RunLines:
    """One line per finished run, within 80 columns, ending with the estimated time left.

    ``[ 3/25] seed 0 6     12,500 steps, early stop, test 0.9144, 8 s; ~3.2 min left``: the estimate is the
    mean time per run so far times the runs left (early stopping makes runs differ).
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int, r: dict[str, Any]) -> None:
        reason = _STOPPED.get(str(r["stopped_reason"]), str(r["stopped_reason"]))
        line = (f"[{done:>{len(str(total))}}/{total}] seed {r['seed']} {r['key']:<4} {r['steps']:>7,} steps, "
                f"{reason}, test {r['test_accuracy']:.4f}, {format_duration(r['train_seconds'])}")
        if done < total:
            left = (time.perf_counter() - self.start) / done * (total - done)
            line += f"; ~{format_duration(left)} left"
        print(fit(line), flush=True)


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Entry point: returns the exit status (see :mod:`backend_mlp.cli.common`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return run_command(
        prog, lambda: _run(args_list, argv, prog), args_list,
        interrupted="interrupted; partial results (if any) are in results.json",
    )


def _run(args_list: list[str], argv: Sequence[str] | None, prog: str) -> int:
    args = build_parser(prog).parse_args(args_list)
    reproduction = Reproduction(
        args.out, device=args.device, seeds=args.seeds, dtype=args.dtype, data_dir=args.data_dir,
        sections=args.sections, ablation=args.ablation, max_steps=args.max_steps, threads=args.threads,
        workers=args.workers, scheduler=args.scheduler, runs_dir=args.runs_dir,
        command=_command_line(argv, prog), argv=args_list,
    )
    if args.workers > 1 or args.scheduler:
        from ..sweep.engine import INSTALL_HINT, import_distributed

        try:
            import_distributed()
        except BackendMLPError:
            where = f"--scheduler {args.scheduler}" if args.scheduler else f"--workers {args.workers}"
            raise BackendUnavailableError(f"{where}: {INSTALL_HINT} (or --workers 1)") from None
    out = reproduction.make_out()
    where = (f"scheduler {args.scheduler}" if args.scheduler else
             f"{args.workers} workers" if args.workers > 1 else "this process")
    print(fit(f"{prog}: {args.seeds} seed(s) x {len(reproduction.specs)} run(s) on {reproduction.backend.name} "
              f"({reproduction.dtype}), {where}; output in {out}"), flush=True)
    results = reproduction.run(progress=_RunLines())
    for c in results["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "not run"}[c["passed"]]
        print(fit(f"check {c['check']}: {verdict} ({c['measured']}; target {c['target']})"), flush=True)
    print(fit(f"{prog}: wrote {out / 'REPORT.md'}, results.json and {len(results['figures'])} figure(s) in "
              f"{format_duration(results['total_seconds'])}"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
