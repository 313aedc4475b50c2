"""``train_mnist``: train one of the report's MNIST experiments from the command line.

Parses options, shows progress, turns Ctrl-C into a stop at the next record
step and reports; :mod:`backend_mlp.runs` plans and executes the run.
Writes into ``--out``: ``checkpoint.npz`` (kept up to date at record steps),
``model.npz`` (best parameters), ``cost_curve.png`` and ``metrics.json``.
Ctrl-C stops at the next record step, saves the checkpoint and exits 130;
``--resume FILE`` continues to the same result as an uninterrupted run.
Exit status: 0 done, 1 error, 2 usage error, 130 interrupted.  Errors are
one line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import signal
import sys
import time
from typing import Any

import numpy as np

from .. import __version__
from ..batchnorm import BatchNormConfig
from ..data import DATA_ENV
from ..experiment import SECTIONS
from ..runs import Run, plan_run
from ..training import ProgressEvent
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, Parser, UsageError, run_command

PROG = "train_mnist"
SPLIT_SEED = 0


def build_parser() -> argparse.ArgumentParser:
    """The options; every value defaults to ``None`` so explicit choices can be told apart."""
    p = Parser(prog=PROG, description="Train the report's MNIST MLP (Sections 4-6).")
    p.add_argument("--device", help="cpu (default), gpu, gpu:N, or any name resolve_backend accepts")
    p.add_argument("--section", choices=sorted(SECTIONS), help="the report's preset (default 4)")
    p.add_argument("--batchnorm", action="store_true", default=None, help="batch norm on hidden layers")
    p.add_argument("--l2", type=float, metavar="LAMBDA", help="L2 regularisation strength")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, help="initialisation and shuffling seed")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default float64")
    p.add_argument("--max-steps", type=int, help="number of SGD steps at most (num_iterations)")
    p.add_argument("--record-every", type=int, help="steps between cost records / validation checks")
    p.add_argument("--no-early-stopping", action="store_true", default=None)
    p.add_argument("--data-dir", help=f"folder with the MNIST files (else ${DATA_ENV}, else download)")
    p.add_argument("--out", help="output folder (default runs/section<S>-<timestamp>)")
    p.add_argument("--resume", metavar="FILE", help="continue from a checkpoint.npz")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="save the checkpoint every N records (1)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="BLAS/OpenMP threads (default: capped for small matrices; backend_mlp.backends.blas_threads)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _check_options(args: argparse.Namespace) -> None:
    def bad(option: str, value: Any, expected: str) -> UsageError:
        return UsageError(f"argument {option}: received {value!r}; expected {expected}")

    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise bad("--lr", args.lr, "a positive number such as 0.009")
    if args.l2 is not None and not (math.isfinite(args.l2) and args.l2 >= 0):
        raise bad("--l2", args.l2, "a number >= 0 (0 disables L2)")
    for option in ("batch_size", "max_steps", "record_every", "checkpoint_every", "threads"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise bad("--" + option.replace("_", "-"), value, "a positive integer")
    if args.seed is not None and args.seed < 0:
        raise bad("--seed", args.seed, "an integer >= 0")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user set explicitly."""
    pairs = {
        "batchnorm": BatchNormConfig() if args.batchnorm else None,
        "l2_lambda": args.l2,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "num_iterations": args.max_steps,
        "record_every": args.record_every,
        "early_stopping": False if args.no_early_stopping else None,
    }
    return {k: v for k, v in pairs.items() if v is not None}


# --------------------------------------------------------------------------- progress and Ctrl-C


class _DeferredSigint:
    """Turns Ctrl-C into a request honoured at the next record step (a consistent state).

    A second Ctrl-C interrupts at once.  Does nothing outside the main thread.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredSigint:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


class _Progress:
    """A tqdm bar on a terminal, plain lines otherwise, nothing with ``--quiet``."""

    def __init__(self, quiet: bool, total: int, initial: int) -> None:
        self.bar = None
        self.lines = not quiet
        if not quiet and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stdout)
            self.lines = False

    def __call__(self, e: ProgressEvent) -> None:
        val = "-" if e.val_cost is None else f"{e.val_cost:.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"epoch {e.epoch:.2f}  train {e.train_cost:.4f}  val {val}  {e.elapsed_seconds:.1f}s", refresh=False
            )
            self.bar.update(e.step - self.bar.n)
        elif self.lines:
            print(
                f"step {e.step}  epoch {e.epoch:.2f}  train {e.train_cost:.4f}  val {val}  "
                f"{e.elapsed_seconds:.1f}s",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the command


def _run(argv: list[str], started: float) -> int:
    args = build_parser().parse_args(argv)
    _check_options(args)
    with contextlib.ExitStack() as stack:
        if args.threads is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=args.threads))
        if not args.debug:  # divergence is reported once, without NumPy's overflow warnings
            stack.enter_context(np.errstate(all="ignore"))
        return _train_command(args, argv, started)


def _train_command(args: argparse.Namespace, argv: list[str], started: float) -> int:
    plan = plan_run(
        section=args.section, overrides=_overrides(args), dtype=args.dtype, device=args.device,
        data_dir=args.data_dir, out=args.out, resume=args.resume,
    )
    run = Run(plan, threads=args.threads, checkpoint_every=args.checkpoint_every or 1)
    splits = run.prepare()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(
        f"section {plan.section} on {run.backend.name} ({plan.dtype}): {splits.train.n_samples} train / "
        f"{splits.val.n_samples} val / {splits.test.n_samples} test; output in {plan.out}"
    )
    if run.state is not None:
        say(f"resuming from {args.resume} at step {run.state.step} "
            f"(epoch {run.state.epochs(splits.train.n_samples):.2f})")
    sigint = _DeferredSigint()
    progress = _Progress(args.quiet, plan.config.num_iterations, run.state.step if run.state else 0)

    def on_record(event: ProgressEvent) -> None:
        progress(event)
        sigint.check()

    try:
        with sigint:
            outcome = run.execute(on_record)
    finally:
        progress.close()
    if outcome.status == "interrupted":
        print(
            f"{PROG}: interrupted at step {outcome.state.step}; checkpoint saved to {run.checkpoint_path}; "
            f"resume with: {_invocation()} --resume {shlex.quote(str(run.checkpoint_path))}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    if outcome.status == "diverged":
        print(f"{PROG}: error: {outcome.error}; saved {run.model_path} and {run.checkpoint_path}",
              file=sys.stderr, flush=True)
        return EXIT_ERROR
    metrics_path = run.write_metrics(
        outcome,
        wall_seconds=time.perf_counter() - started,
        command=shlex.join([PROG, *argv]),
        library_version=__version__,
    )
    m, files = outcome.metrics, outcome.files
    say(
        f"done: {m['steps']} steps ({m['epochs']:.2f} epochs, stopped by {m['stopped_reason']}, "
        f"best step {m['best_step']}) in {m['wall_seconds']:.1f}s\n"
        f"accuracy: train {m['train_accuracy']:.4f}  val {m['val_accuracy']:.4f}  "
        f"test {m['test_accuracy']:.4f}\n"
        f"wrote {metrics_path}, {files['cost_curve']}, {files['model']}, {files['checkpoint']}"
    )
    return EXIT_OK


def _invocation() -> str:
    """How this command was started, for the resume hint."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(".py"):
        return f"python {shlex.quote(argv0)}"
    return "backend-mlp-train"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (see :mod:`backend_mlp.cli.common`)."""
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(PROG, lambda: _run(argv, started), argv)


if __name__ == "__main__":
    sys.exit(main())
