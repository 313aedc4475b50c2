"""``backend-mlp train``: train one network on MNIST, a named data set or any IDX folder.

Parses options, shows progress, turns Ctrl-C into a stop at the next record
step and reports; :mod:`backend_mlp.runs` plans and executes the run.
Writes into ``--out`` (default ``runs/<what the run is>-<timestamp>``):
``checkpoint.npz`` (kept up to date at record steps), ``model.npz`` (best
parameters; loads into ``MLPClassifier.load`` and ``backend-mlp predict``),
``cost_curve.png``, ``confusion_matrix.png``, ``misclassified.png`` and
``metrics.json``.  Ctrl-C stops at the next record step, saves the checkpoint
and exits 130; ``--resume FILE`` continues to the same result as an
uninterrupted run.  Exit status: 0 done, 1 error, 2 usage error, 130
interrupted.  Errors are one line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..batchnorm import BatchNormConfig
from ..data import DATA_ENV, DATASETS
from ..experiment import SECTIONS
from ..optimizers import OPTIMIZER_KEYWORDS, OPTIMIZERS
from ..runs import Run, plan_run
from ..training import ProgressEvent
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    Parser,
    Terminated,
    UsageError,
    handle_sigterm,
    interrupted_status,
    restore_sigterm,
    run_command,
)
from .progress import Progress

PROG = "train_mnist"

#: the default of every training option, as the help shows it (the options themselves default to None,
#: so explicit choices can be told apart from a section's preset or a checkpoint's settings)
_REPORT = SECTIONS["4"]


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The options; every value defaults to ``None`` so explicit choices can be told apart."""
    p = Parser(prog=prog, description="Train a multilayer perceptron (by default the report's Section 4 on MNIST).")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=sorted(DATASETS),
                      help="a named data set, downloaded, verified and cached when not found locally "
                           "(default: mnist; with --data-dir alone: the IDX files found there)")
    data.add_argument("--data-dir", metavar="DIR",
                      help="folder with the four IDX files (train/t10k images and labels, any image size, labels "
                           f"0..K-1; default: ${DATA_ENV}, else the download cache)")
    net = p.add_argument_group("network and training")
    net.add_argument("--section", choices=sorted(SECTIONS),
                     help="the report's preset: 4 plain, 5 batch norm, 6 L2 with lambda 1 (default: 4); "
                          "other options override it")
    net.add_argument("--hidden", type=_hidden, metavar="SIZES",
                     help="hidden layer sizes, comma separated, 'none' for softmax regression (default: "
                          f"{','.join(map(str, _REPORT.hidden))}); input and output sizes come from the data")
    net.add_argument("--batchnorm", action="store_true", default=None,
                     help="batch normalisation after each hidden activation (default: off)")
    net.add_argument("--l2", type=float, metavar="LAMBDA",
                     help=f"L2 strength: cost + lambda/(2m)*sum ||W||^2 (default: {_REPORT.l2_lambda:g})")
    net.add_argument("--optimizer", choices=list(OPTIMIZERS),
                     help="update rule, as torch.optim defines it (default: sgd)")
    net.add_argument("--momentum", type=float, help="momentum of --optimizer momentum|nesterov (default: 0.9)")
    net.add_argument("--beta1", type=float, help="Adam's first-moment decay (default: 0.9)")
    net.add_argument("--beta2", type=float, help="Adam's second-moment decay (default: 0.999)")
    net.add_argument("--epsilon", type=float, help="Adam's epsilon (default: 1e-08)")
    net.add_argument("--lr", type=float, help=f"learning rate (default: {_REPORT.learning_rate:g})")
    net.add_argument("--lr-decay", type=float, metavar="F",
                     help="multiply the learning rate by F after every epoch, 0 < F <= 1 "
                          f"(default: {_REPORT.lr_decay:g}, constant)")
    net.add_argument("--batch-size", type=int, metavar="N", help=f"mini-batch size (default: {_REPORT.batch_size})")
    net.add_argument("--seed", type=int, help=f"initialisation and shuffling seed (default: {_REPORT.seed})")
    net.add_argument("--dtype", choices=("float32", "float64"), help="precision (default: float64)")
    net.add_argument("--max-steps", type=int, metavar="N",
                     help=f"number of steps at most (default: {_REPORT.num_iterations})")
    stop = p.add_argument_group("validation checks and early stopping")
    stop.add_argument("--record-every", type=int, metavar="N",
                      help=f"steps between cost records and validation checks; the last step is always checked "
                           f"(default: {_REPORT.record_every})")
    stop.add_argument("--patience", type=int, metavar="N",
                      help="stop after N checks in a row not --min-improvement below the best earlier one "
                           f"(default: {_REPORT.patience}, the report's rule)")
    stop.add_argument("--min-improvement", type=float, metavar="X",
                      help=f"improvement of the validation cost that counts (default: {_REPORT.min_improvement:g})")
    stop.add_argument("--no-early-stopping", action="store_true", default=None,
                      help="train all --max-steps steps; the best checked parameters are still kept (default: off)")
    run = p.add_argument_group("run")
    run.add_argument("--device", help="cpu, gpu, gpu:N, or any name resolve_backend accepts (default: cpu)")
    run.add_argument("--out", metavar="DIR",
                     help="output folder (default: runs/<data set>-h<hidden>-<optimizer>[-bn][-l2_<lambda>]-<time>)")
    run.add_argument("--resume", metavar="FILE", help="continue from a checkpoint.npz (default: a new run)")
    run.add_argument("--overwrite", action="store_true", default=None,
                     help="let a new run take an --out folder that holds another run's files, removing them "
                          "(default: off: such a folder is refused)")
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help="save the checkpoint every N records (default: 1)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="BLAS/OpenMP threads (default: capped for small matrices; backend_mlp.backends.blas_threads)")
    run.add_argument("--compile", action="store_true", default=None,
                     help="compile the training step and its checks: jax.jit on JAX, torch.compile on PyTorch; "
                          "elsewhere they run eagerly, with a note (default: off)")
    run.add_argument("--quiet", action="store_true", help="no progress output (default: off)")
    return p


def _hidden(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(
            f"received {text!r}; expected positive integers separated by commas, such as 256,128, or 'none'"
        )
    return sizes


def _check_options(args: argparse.Namespace) -> None:
    def bad(option: str, value: Any, expected: str) -> UsageError:
        return UsageError(f"argument {option}: received {value!r}; expected {expected}")

    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise bad("--lr", args.lr, "a positive number such as 0.009")
    if args.l2 is not None and not (math.isfinite(args.l2) and args.l2 >= 0):
        raise bad("--l2", args.l2, "a number >= 0 (0 disables L2)")
    if args.lr_decay is not None and not (math.isfinite(args.lr_decay) and 0 < args.lr_decay <= 1):
        raise bad("--lr-decay", args.lr_decay, "a number in (0, 1] such as 0.8")
    if args.min_improvement is not None and not (math.isfinite(args.min_improvement) and args.min_improvement >= 0):
        raise bad("--min-improvement", args.min_improvement, "a number >= 0")
    for option in ("batch_size", "max_steps", "record_every", "patience", "checkpoint_every", "threads"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise bad("--" + option.replace("_", "-"), value, "a positive integer")
    if args.seed is not None and args.seed < 0:
        raise bad("--seed", args.seed, "an integer >= 0")
    rule = args.optimizer or (None if args.resume else "sgd")  # with --resume, the checkpoint's rule decides
    if rule is not None:  # keywords of another rule
        fields = {f.name for f in dataclasses.fields(OPTIMIZERS[rule])}
        for key in OPTIMIZER_KEYWORDS:
            value = getattr(args, key)
            if value is not None and key not in fields:
                owners = [n for n, c in OPTIMIZERS.items() if key in {f.name for f in dataclasses.fields(c)}]
                raise bad(f"--{key}", value, f"it only with --optimizer {' or '.join(owners)}")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave explicitly (see backend_mlp.training.config.configure)."""
    pairs = {
        "hidden": args.hidden,
        "batchnorm": BatchNormConfig() if args.batchnorm else None,
        "l2_lambda": args.l2,
        "learning_rate": args.lr,
        "lr_decay": args.lr_decay,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "num_iterations": args.max_steps,
        "record_every": args.record_every,
        "patience": args.patience,
        "min_improvement": args.min_improvement,
        "early_stopping": False if args.no_early_stopping else None,
        "optimizer": args.optimizer,
        **{key: getattr(args, key) for key in OPTIMIZER_KEYWORDS},
    }
    return {k: v for k, v in pairs.items() if v is not None}


# --------------------------------------------------------------------------- progress and Ctrl-C


class _DeferredStop:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a request honoured at the next record step (a consistent state).

    A second signal stops at once.  Does nothing outside the main thread.  ``signal``
    is the first one received; :meth:`check` raises ``KeyboardInterrupt`` for SIGINT
    and :class:`~backend_mlp.cli.common.Terminated` for SIGTERM.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            self._raise(signum)
        self.signal = signum

    def _raise(self, signum: int) -> None:
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def __enter__(self) -> _DeferredStop:
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def check(self) -> None:
        if self.signal is not None:
            self._raise(self.signal)


# --------------------------------------------------------------------------- the command


def _run(argv: list[str], started: float, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    _check_options(args)
    with contextlib.ExitStack() as stack:
        if args.threads is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=args.threads))
        if not args.debug:  # divergence is reported once, without NumPy's overflow warnings
            stack.enter_context(np.errstate(all="ignore"))
        stack.enter_context(warnings.catch_warnings())  # a library warning is one line too
        warnings.showwarning = lambda message, *a, **k: print(f"{prog}: note: {message}", file=sys.stderr)
        return _train_command(args, argv, started, prog)


def _train_command(args: argparse.Namespace, argv: list[str], started: float, prog: str) -> int:
    plan = plan_run(
        section=args.section, overrides=_overrides(args), dtype=args.dtype, device=args.device,
        dataset=args.dataset, data_dir=args.data_dir, out=args.out, resume=args.resume,
        overwrite=bool(args.overwrite),
    )
    with Run(plan, threads=args.threads, checkpoint_every=args.checkpoint_every or 1,
             compile=bool(args.compile)) as run:
        return _train_run(run, args, argv, started, prog)


def _train_run(run: Run, args: argparse.Namespace, argv: list[str], started: float, prog: str) -> int:
    plan = run.plan
    splits = run.prepare()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(
        f"{run.extra['name']} {list(plan.config.layer_dims)} on {run.backend.name} ({plan.dtype}): "
        f"{splits.train.n_samples} train / {splits.val.n_samples} val / {splits.test.n_samples} test; "
        f"output in {plan.out}"
    )
    differ = [f["file"] for f in splits.source.get("files", {}).values() if f.get("matches_published") is False]
    if differ:  # shown even with --quiet: the data are not what the data set's name promises
        print(f"{prog}: note: {', '.join(differ)} in {splits.source.get('folder')} differ from the published "
              f"{splits.spec.title} files (SHA-256); used as given", file=sys.stderr, flush=True)
    if run.state is not None:
        say(f"resuming from {args.resume} at step {run.state.step} "
            f"(epoch {run.state.epochs(splits.train.n_samples):.2f})")
    stop = _DeferredStop()
    progress = Progress(args.quiet, plan.config.num_iterations, run.state.step if run.state else 0)

    def on_record(event: ProgressEvent) -> None:
        progress(event)
        stop.check()

    with stop:  # a signal while the results are written lets them be completed, then says so
        try:
            outcome = run.execute(on_record)
        finally:
            progress.close()
        if outcome.status == "done":
            run.write_metrics(outcome, wall_seconds=time.perf_counter() - started,
                              command=f"{prog} {shlex.join(argv)}".strip(), library_version=__version__)
    if outcome.status == "interrupted":
        status, word = interrupted_status(Terminated() if stop.signal == signal.SIGTERM else KeyboardInterrupt())
        print(
            f"{prog}: {word} at step {outcome.state.step}; checkpoint saved to {run.checkpoint_path}; "
            f"resume with: {_invocation(prog)} --resume {shlex.quote(str(run.checkpoint_path))}",
            file=sys.stderr,
            flush=True,
        )
        return status
    if outcome.status == "diverged":
        saved = (f"saved the best checked model to {run.model_path}" if "model" in outcome.files
                 else "no model written (no check before the divergence)")
        print(f"{prog}: error: {outcome.error}; {saved}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    m, files = outcome.metrics, outcome.files
    for warning in m["warnings"]:  # shown even with --quiet
        print(f"{prog}: warning: {warning}", file=sys.stderr, flush=True)
    say(
        f"done: {m['steps']} steps ({m['epochs']:.2f} epochs, stopped by {m['stopped_reason']}, "
        f"best step {m['best_step']}) in {m['wall_seconds']:.1f}s"
        + (f" (compiling the step and checks: {m['compile_seconds']:.1f}s of the run's "
           f"{m['total_train_seconds']:.1f}s of training)" if m.get("compiled") else "") + "\n"
        f"accuracy: train {m['train_accuracy']:.4f}  val {m['val_accuracy']:.4f}  "
        f"test {m['test_accuracy']:.4f}\n"
        f"wrote {', '.join(str(path) for path in files.values())}"
    )
    if stop.signal is not None:  # it came after training: the results above are complete
        status, word = interrupted_status(Terminated() if stop.signal == signal.SIGTERM else KeyboardInterrupt())
        print(f"{prog}: {word} after training; the results were written in full", file=sys.stderr, flush=True)
        return status
    return EXIT_OK


def _invocation(prog: str) -> str:
    """How this command was started, for the resume hint."""
    argv0 = sys.argv[0] if sys.argv else ""
    command = prog if prog.startswith("backend-mlp") else "backend-mlp train"
    if Path(argv0).name == "__main__.py":  # python -m backend_mlp train
        return f"python -m backend_mlp {command.removeprefix('backend-mlp').strip()}"
    if argv0.endswith(".py"):
        return f"python {shlex.quote(argv0)}"
    return command


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command; returns the exit status (see :mod:`backend_mlp.cli.common`)."""
    started = time.perf_counter()
    previous = handle_sigterm()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(prog, lambda: _run(argv, started, prog), argv)
    finally:
        restore_sigterm(previous)


if __name__ == "__main__":
    sys.exit(main())
