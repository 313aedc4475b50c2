"""``benchmark.py``: time backend_mlp against PyTorch on the identical MLP workload (see :mod:`backend_mlp.bench`).

Prints the table (and ``--json PATH`` writes the full report).  Exit status:
0 done, 1 error, 2 usage error or a device this machine cannot run,
130 interrupted.  Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..backends import resolve_dtype_name
from ..bench.runner import DEFAULT_PARTS, DEFAULT_SIDES, PARTS, SIDE_KEYS, Benchmark, Options
from ..bench.table import format_table
from ..bench.workloads import DEFAULT_EPOCH_WORKLOADS, DTYPES, N_TEST, N_TRAIN, QUICK_WORKLOADS, WORKLOADS
from ..errors import DataError, InputValidationError
from ..files import write_json
from . import DefaultsHelpFormatter
from .common import EXIT_OK, Parser, run_command

PROG = "benchmark"


def _names(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InputValidationError(
            f"--{what}: received {text!r}; expected a comma separated subset of {', '.join(known)}"
        )
    return names


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command-line options (``--help`` shows every default)."""
    p = Parser(
        prog=prog,
        description="Time backend_mlp (train() and the functional API) against PyTorch on the identical MLP "
        "workload (same weights, batches, steps, dtype and hardware).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="backend_mlp's device: cpu, gpu / gpu:N, torch:cuda:N, ...; PyTorch runs on the same hardware",
    )
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="networks timed step by step (the steps part), comma separated; NAME:DTYPE times NAME in that dtype "
        f"only (e.g. wide2048-b256:float32); any of {', '.join(WORKLOADS)}",
    )
    p.add_argument(
        "--epoch-workloads",
        default=",".join(DEFAULT_EPOCH_WORKLOADS),
        help="networks for the epoch and predict parts, comma separated",
    )
    p.add_argument(
        "--dtypes", default=",".join(DTYPES), help=f"dtypes to time, comma separated; any of {', '.join(DTYPES)}"
    )
    p.add_argument(
        "--parts", default=",".join(DEFAULT_PARTS), help=f"what to time, comma separated; any of {', '.join(PARTS)}"
    )
    p.add_argument(
        "--sides",
        default=",".join(DEFAULT_SIDES),
        help="sides to time, comma separated: bm (train() on --device, always timed: the reference), fn (the "
        "functional API), bm-torch (train() on PyTorch), bm-jax (train(compile=True) on JAX), bm-torch-compile "
        "(train(compile=True) on PyTorch), torch, torch-compile, jax (a hand-written jax.jit step), jax-scan (that "
        "step fused 8 at a time in a lax.scan, as bm-jax fuses them), numpy (a "
        "hand-written NumPy step), sklearn (MLPClassifier); a side whose library is missing is skipped with a note",
    )
    p.add_argument("--memory", action="store_true", help="also measure Section 4's peak memory (real MNIST)")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per side (alternating), medians reported")
    p.add_argument("--steps", type=int, default=None, help="SGD steps per block (default: about --min-seconds)")
    p.add_argument(
        "--min-seconds", type=float, default=1.0, help="target duration of one block when --steps is not given"
    )
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="skip the compiled sides (torch.compile, jax.jit, train(compile=True))",
    )
    p.add_argument("--no-functional", action="store_true", help="skip the functional-API side")
    p.add_argument(
        "--no-side-memory", action="store_true", help="skip the per-side peak memory (a fresh process per side)"
    )
    p.add_argument(
        "--no-bound", action="store_true", help="skip measuring the one-core bound of each steps record (CPU)"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the PyTorch side (default: PyTorch's choice)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="real MNIST folder to time on (default: synthetic MNIST-sized data; the memory part, always on real "
        "MNIST, then finds it through $BACKEND_MLP_DATA or the cache)",
    )
    p.add_argument("--n-train", type=int, default=N_TRAIN, help="synthetic training images (default 48,000)")
    p.add_argument("--n-test", type=int, default=N_TEST, help="synthetic test images (default 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the data and the batches")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small workloads, 2 repeats, 20 steps, no compile or side memory",
    )
    p.add_argument(
        "--json", default=None, metavar="PATH", help="also write the full results as JSON (default: no JSON file)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    """Check the command line and turn it into :class:`~backend_mlp.bench.runner.Options`."""
    parts = _names(args.parts, PARTS, "parts")
    if args.memory and "memory" not in parts:
        parts = (*parts, "memory")
    o = Options(
        device=args.device,
        workloads=_names(args.workloads, (*WORKLOADS, *(f"{w}:{d}" for w in WORKLOADS for d in DTYPES)), "workloads"),
        epoch_workloads=_names(args.epoch_workloads, tuple(WORKLOADS), "epoch-workloads"),
        dtypes=tuple(resolve_dtype_name(d) for d in _names(args.dtypes, DTYPES, "dtypes")),
        parts=parts,
        sides=_names(args.sides, tuple(SIDE_KEYS), "sides"),
        repeats=args.repeats,
        steps=args.steps,
        min_seconds=args.min_seconds,
        compile=not args.no_compile,
        functional=not args.no_functional,
        side_memory=not args.no_side_memory,
        bound=not args.no_bound,
        torch_threads=args.torch_threads,
        data_dir=args.data_dir,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        verbose=not args.quiet,
    )
    if args.quick:
        default_workloads = args.workloads == ",".join(WORKLOADS)
        o.workloads = QUICK_WORKLOADS if default_workloads else o.workloads
        o.repeats = min(o.repeats, 2)
        o.steps = 20 if args.steps is None else args.steps
        o.compile = False
        o.side_memory = False
        o.bound = False
    if o.repeats < 1 or (o.steps is not None and o.steps < 1) or o.n_train < 1 or o.n_test < 1:
        raise InputValidationError("--repeats, --steps, --n-train, --n-test: expected positive integers")
    if o.torch_threads is not None and o.torch_threads < 1:
        raise InputValidationError(f"--torch-threads: received {o.torch_threads}; expected a positive integer")
    too_big = [w for w in (*o.workloads, *o.epoch_workloads) if WORKLOADS[w.partition(":")[0]].batch_size > o.n_train]
    if too_big and not o.data_dir:
        raise InputValidationError(f"--n-train: {o.n_train} is smaller than the batch size of {too_big[0]}")
    return o


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Entry point: returns the exit status (see :mod:`backend_mlp.cli.common`); ``prog`` names it in messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(prog, lambda: _run(argv, prog), argv)


def _run(argv: list[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    report = Benchmark(options_from_args(args)).run()
    print(format_table(report))
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, report)
        except OSError as err:
            raise DataError(f"--json: cannot write {str(path)!r}: {err.strerror or err}") from None
        print(f"wrote {path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
