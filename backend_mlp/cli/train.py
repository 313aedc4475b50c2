"""``train_mnist``: train one of the report's MNIST experiments from the command line.

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
import dataclasses
import hashlib
import math
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import Backend, resolve_backend, to_numpy
from ..batchnorm import BatchNormConfig
from ..checkpoint import Checkpoint, check_compatible, load_checkpoint, move_state, save_checkpoint, save_model
from ..data import DATA_ENV, MnistSplits, prepare_mnist
from ..errors import CheckpointError, TrainingDivergedError
from ..experiment import SECTIONS, summarize
from ..files import write_json
from ..report.figures import plot_cost_curve
from ..training import ProgressEvent, TrainingConfig, TrainingInterrupted, TrainingState, train
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
                   help="BLAS/OpenMP threads (default: BLAS capped for small matrices, see backend_mlp.backends.blas_threads)")
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


# --------------------------------------------------------------------------- helpers


def _labels_fingerprint(splits: MnistSplits) -> str:
    """SHA-256 of the training split's labels: identifies the data and the split cheaply."""
    labels = np.argmax(to_numpy(splits.train.Y_rows), axis=1).astype(np.uint8)
    return hashlib.sha256(labels.tobytes()).hexdigest()


def _default_out(section: str) -> Path:
    base = Path("runs") / f"section{section}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


@dataclasses.dataclass
class _Plan:
    """Everything decided before training starts."""

    config: TrainingConfig
    dtype: str
    section: str
    device_arg: str
    data_dir: str | None
    out: Path
    checkpoint: Checkpoint | None


def _plan(args: argparse.Namespace) -> _Plan:
    overrides = _overrides(args)
    if args.resume is None:
        section = args.section or "4"
        config = dataclasses.replace(SECTIONS[section], **overrides)
        return _Plan(
            config, args.dtype or "float64", section, args.device or "cpu", args.data_dir,
            Path(args.out) if args.out else _default_out(section), None,
        )
    ckpt = load_checkpoint(args.resume, device="cpu")
    base = SECTIONS[args.section] if args.section else ckpt.config
    config = dataclasses.replace(base, **overrides)
    if args.max_steps is None:
        config = dataclasses.replace(config, num_iterations=ckpt.config.num_iterations)
    dtype = args.dtype or ckpt.dtype
    try:
        check_compatible(ckpt, config, dtype, ignore=("num_iterations",))
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    if ckpt.state.stopped_reason == "diverged":
        raise CheckpointError(
            f"checkpoint {args.resume} is from a run that diverged; there is nothing to resume "
            "(start a new run, e.g. with a smaller --lr)"
        )
    data_dir = args.data_dir
    recorded = ckpt.extra.get("data_dir")
    if data_dir is None and isinstance(recorded, str) and Path(recorded).is_dir():
        data_dir = recorded
    section = args.section or str(ckpt.extra.get("section", "4"))
    device_arg = args.device or str(ckpt.extra.get("device_arg", "cpu"))
    out = Path(args.out) if args.out else Path(args.resume).resolve().parent
    return _Plan(config, dtype, section, device_arg, data_dir, out, ckpt)


def _resume_state(plan: _Plan, splits: MnistSplits, fingerprint: str) -> TrainingState | None:
    ckpt = plan.checkpoint
    if ckpt is None:
        return None
    saved = ckpt.extra.get("train_labels_sha256")
    n = ckpt.state.order.shape[0] if ckpt.state.order is not None else splits.train.n_samples
    if n != splits.train.n_samples or (saved is not None and saved != fingerprint):
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained on different data ({n} training samples, labels "
            f"SHA-256 {str(saved)[:12]}...) than the MNIST files found now ({splits.train.n_samples}, "
            f"{fingerprint[:12]}...); pass --data-dir with the files the run started on"
        )
    state = move_state(ckpt.state, splits.backend)
    if state.stopped_reason == "num_iterations" and state.step < plan.config.num_iterations:
        state.stopped_reason = None  # a larger --max-steps extends the run
    return state


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
    plan = _plan(args)
    config = plan.config
    backend: Backend = resolve_backend(plan.device_arg)
    splits = prepare_mnist(plan.data_dir, device=backend, dtype=plan.dtype, split_seed=SPLIT_SEED)
    fingerprint = _labels_fingerprint(splits)
    state = _resume_state(plan, splits, fingerprint)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {plan.out}: cannot create the folder ({exc.strerror or exc})") from None
    ckpt_path, model_path = plan.out / "checkpoint.npz", plan.out / "model.npz"
    extra = {
        "section": plan.section,
        "split_seed": SPLIT_SEED,
        "device": backend.name,
        "device_arg": plan.device_arg,
        "data_dir": str(Path(plan.data_dir).resolve()) if plan.data_dir else None,
        "n_train": splits.train.n_samples,
        "train_labels_sha256": fingerprint,
    }
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(
        f"section {plan.section} on {backend.name} ({plan.dtype}): {splits.train.n_samples} train / "
        f"{splits.val.n_samples} val / {splits.test.n_samples} test; output in {plan.out}"
    )
    if state is not None:
        say(f"resuming from {args.resume} at step {state.step} (epoch {state.epochs(splits.train.n_samples):.2f})")

    every = args.checkpoint_every or 1
    sigint = _DeferredSigint()
    progress = _Progress(args.quiet, config.num_iterations, state.step if state else 0)

    def on_record(event: ProgressEvent) -> None:
        progress(event)
        sigint.check()

    def on_checkpoint(st: TrainingState) -> None:
        if (st.step // config.record_every) % every == 0:
            save_checkpoint(ckpt_path, config, st, extra=extra)

    start = time.perf_counter()
    try:
        with sigint:
            result = train(
                splits.train,
                config,
                splits.val,
                state=state,
                callback=on_record,
                checkpoint_callback=on_checkpoint,
                blas_threads="auto" if args.threads is None else args.threads,
            )
            splits.backend.synchronize()
    except TrainingInterrupted as exc:
        progress.close()
        save_checkpoint(ckpt_path, config, exc.state, extra=extra)
        print(
            f"{PROG}: interrupted at step {exc.state.step}; checkpoint saved to {ckpt_path}; resume with: "
            f"{_invocation()} --resume {shlex.quote(str(ckpt_path))}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    except TrainingDivergedError as exc:
        progress.close()
        best = exc.result  # type: ignore[attr-defined]
        save_model(model_path, config, best.parameters, best.bn_state, extra=extra, state=best.state)
        save_checkpoint(ckpt_path, config, best.state, extra=extra)
        print(f"{PROG}: error: {exc}; saved {model_path} and {ckpt_path}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    finally:
        progress.close()
    train_seconds = time.perf_counter() - start

    save_checkpoint(ckpt_path, config, result.state, extra=extra)
    save_model(model_path, config, result.parameters, result.bn_state, extra=extra, state=result.state)
    curve_path = plot_cost_curve(
        plan.out / "cost_curve.png",
        result.recorded_steps,
        result.costs,
        [c for _, c in result.state.val_costs],
        title=f"Section {plan.section}: cost during training",
        val_steps=[s for s, _ in result.state.val_costs],
    )
    metrics = summarize(result, splits, train_seconds)
    metrics_path = plan.out / "metrics.json"
    metrics.update(
        {
            "section": plan.section,
            "total_train_seconds": result.state.elapsed_seconds,
            "wall_seconds": time.perf_counter() - started,
            "command": shlex.join([PROG, *argv]),
            "library_version": _library_version(),
            "resumed_from": str(args.resume) if args.resume else None,
            "data_dir": extra["data_dir"],
            "files": {
                "metrics": str(metrics_path),
                "cost_curve": str(curve_path),
                "model": str(model_path),
                "checkpoint": str(ckpt_path),
            },
        }
    )
    write_json(metrics_path, metrics)
    say(
        f"done: {metrics['steps']} steps ({metrics['epochs']:.2f} epochs, stopped by {metrics['stopped_reason']}, "
        f"best step {metrics['best_step']}) in {metrics['wall_seconds']:.1f}s\n"
        f"accuracy: train {metrics['train_accuracy']:.4f}  val {metrics['val_accuracy']:.4f}  "
        f"test {metrics['test_accuracy']:.4f}\n"
        f"wrote {metrics_path}, {curve_path}, {model_path}, {ckpt_path}"
    )
    return EXIT_OK


def _invocation() -> str:
    """How this command was started, for the resume hint."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(".py"):
        return f"python {shlex.quote(argv0)}"
    return "backend-mlp-train"


def _library_version() -> str:
    from .. import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (see :mod:`backend_mlp.cli.common`)."""
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(PROG, lambda: _run(argv, started), argv)


if __name__ == "__main__":
    sys.exit(main())
