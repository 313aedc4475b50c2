"""A training run on disk: what to run, resuming it, and the files it leaves.

:func:`plan_run` decides everything before any data is read: the
configuration (a report section plus explicit settings such as ``hidden`` or
``optimizer``, or a checkpoint's, checked for compatibility), dtype, device,
data set, data folder and output folder (named after what the run is, see
:func:`run_name`).  :class:`Run` then loads the data and sizes the network's
input and output layers from it, restores the state of a checkpoint (refusing
one trained on other data), trains with ``checkpoint.npz`` kept up to date,
and writes ``model.npz``, ``cost_curve.png``, ``confusion_matrix.png``,
``misclassified.png``, ``metrics.json`` (the data's source with checksums,
every hyperparameter, test accuracy per class name) and ``report.md``.  A Ctrl-C or a divergence
still leaves a checkpoint (and, for a divergence, the best model) behind.  The
command line (:mod:`backend_mlp.cli.train`) only parses options and reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, resolve_backend, to_numpy
from .checkpoint import Checkpoint, check_compatible, load_checkpoint, move_state, save_checkpoint, save_model
from .data import DataSplits, get_dataset, prepare_splits
from .errors import CheckpointError, InputValidationError, TrainingDivergedError, UsageError
from .experiment import SECTIONS, summarize
from .files import atomic_write_bytes, write_json
from .network import predict_proba
from .report.figures import plot_confusion_matrix, plot_cost_curve, plot_misclassified
from .report.run_report import render_run_report
from .training import ProgressEvent, TrainingConfig, TrainingInterrupted, TrainingResult, TrainingState, train
from .training.config import configure

#: the report's split seed: the 80/20 train/validation split of every run
SPLIT_SEED = 0


@dataclasses.dataclass
class RunPlan:
    """Everything decided before training starts.

    ``config``'s input and output sizes are provisional (MNIST's) until
    :meth:`Run.prepare` reads the data; ``dataset`` is a named data set or
    ``None`` (MNIST, or the IDX files of ``data_dir``); ``out`` is ``None``
    until :meth:`Run.prepare` names a new run's folder after what it is.
    """

    config: TrainingConfig
    dtype: str
    section: str | None
    device_arg: str
    data_dir: str | None
    out: Path | None
    checkpoint: Checkpoint | None = None
    resume_path: str | None = None
    dataset: str | None = None
    overwrite: bool = False
    split_seed: int = SPLIT_SEED
    figures: bool = True  # the run's three PNGs (a reproduction's runs skip them: its report draws its own)


def run_name(data: str, config: TrainingConfig) -> str:
    """A run's name from what it is: ``mnist-h20-7-5-sgd``, ``fashion-mnist-h256-128-adam-bn-l2_1``.

    Data set, hidden sizes (``h0`` for softmax regression), optimizer, then
    ``bn`` and ``l2_<lambda>`` when used.
    """
    parts = [data, "h" + ("-".join(map(str, config.hidden)) or "0"), config.optimizer.name]
    if config.batchnorm is not None:
        parts.append("bn")
    if config.l2_lambda:
        parts.append(f"l2_{config.l2_lambda:g}")
    return "-".join(parts)


def new_run_folder(name: str, root: Path = Path("runs")) -> Path:
    """Create and return ``runs/<name>-<timestamp>`` (``-2``, ``-3``, ... when taken).

    The folder is created with an exclusive ``mkdir``, so two runs started in the
    same second, even in two processes, never share one.
    """
    base = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        out = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            out.mkdir()
            return out
        except FileExistsError:
            continue
    raise UsageError(f"--out: could not find a free folder name next to {base}; pass --out")


class FolderLock:
    """An exclusive lock on a run's output folder while the run is live (``.backend_mlp.lock``).

    Held through ``fcntl.flock``, so the operating system releases it when the
    process ends in any way (SIGKILL included) and a lock file left behind is
    never mistaken for a live run; a lock taken on a file its last holder has
    just removed is retaken on the current one.  Where ``fcntl`` does not exist
    (Windows) the folder is not locked.
    """

    NAME = ".backend_mlp.lock"

    def __init__(self, folder: Path) -> None:
        self.path = folder / self.NAME
        self._file: Any = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        for _ in range(100):
            handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise UsageError(
                    f"--out {self.path.parent}: in use by a live run ({holder}); wait for it to finish or choose "
                    "another --out"
                ) from None
            try:  # locked: but is it still the lock file? (its last holder may have removed it meanwhile)
                same = os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        else:  # pragma: no cover - a hundred lost races
            raise UsageError(f"--out {self.path.parent}: could not lock the folder; try again")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()  # closing releases the lock
            self._file = None


#: the files a run writes into its folder (an --overwrite removes those of the previous run)
RUN_FILES = ("metrics.json", "report.md", "model.npz", "checkpoint.npz", "cost_curve.png", "confusion_matrix.png",
             "misclassified.png")


def plan_run(
    *,
    section: str | None = None,
    overrides: dict[str, Any] | None = None,
    dtype: str | None = None,
    device: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    out: str | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    split_seed: int = SPLIT_SEED,
) -> RunPlan:
    """A new run of ``section`` (default 4) with ``overrides``, or the continuation of the checkpoint ``resume``.

    ``overrides`` are :func:`~backend_mlp.training.config.configure`'s settings
    (``hidden``, ``optimizer``, ``momentum``, ... and :class:`TrainingConfig` fields).
    Resuming takes the checkpoint's configuration, dtype, device, data set and
    data folder unless given; anything given must be compatible with it
    (:class:`UsageError` listing the differences).  ``max_steps`` may grow.
    ``overwrite``: a new run may take an ``out`` folder that holds another run
    (whose files it removes when it starts); otherwise that is refused.
    ``split_seed``: the seed of the 80/20 train/validation split (the report's
    reproduction draws one per seed; ``backend-mlp train`` keeps :data:`SPLIT_SEED`).
    """
    overrides = dict(overrides or {})
    if dataset is not None:
        dataset = get_dataset(dataset).name
    if resume is None:
        base = SECTIONS[section or "4"]
        config = configure(base, n_features=base.layer_dims[0], n_classes=base.layer_dims[-1], **overrides)
        return RunPlan(config, dtype or "float64", section, device or "cpu", data_dir,
                       Path(out) if out else None, dataset=dataset, overwrite=overwrite, split_seed=split_seed)
    ckpt = load_checkpoint(resume, device="cpu")
    saved = ckpt.config
    base = dataclasses.replace(SECTIONS[section], layer_dims=saved.layer_dims) if section else saved
    config = configure(base, n_features=saved.layer_dims[0], n_classes=saved.layer_dims[-1], **overrides)
    if "num_iterations" not in overrides:
        config = dataclasses.replace(config, num_iterations=saved.num_iterations)
    dtype = dtype or ckpt.dtype
    try:
        check_compatible(ckpt, config, dtype, ignore=("num_iterations",))
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    if ckpt.state.stopped_reason == "diverged":
        raise CheckpointError(
            f"checkpoint {resume} is from a run that diverged; there is nothing to resume "
            "(start a new run, e.g. with a smaller --lr)"
        )

    recorded_dataset = ckpt.extra.get("dataset")
    if recorded_dataset is not None:
        try:
            recorded_dataset = get_dataset(recorded_dataset).name
        except InputValidationError:
            raise CheckpointError(
                f"checkpoint {resume}: its metadata names the data set {str(recorded_dataset)[:80]!r}, which this "
                "backend_mlp does not know; pass --dataset or --data-dir with the data the run started on"
            ) from None
    if dataset is None and recorded_dataset is not None:
        dataset = recorded_dataset
    elif dataset is not None and isinstance(recorded_dataset, str) and dataset != recorded_dataset:
        raise UsageError(
            f"--dataset: received {dataset!r}; expected {recorded_dataset!r}, the data set checkpoint {resume} "
            "was trained on"
        )
    recorded = ckpt.extra.get("data_dir")
    if data_dir is None and isinstance(recorded, str) and Path(recorded).is_dir():
        data_dir = recorded
    return RunPlan(
        config,
        dtype,
        section or ckpt.extra.get("section"),
        device or str(ckpt.extra.get("device_arg", "cpu")),
        data_dir,
        Path(out) if out else Path(resume).resolve().parent,
        ckpt,
        resume,
        dataset,
        overwrite,
        split_seed,
    )


def labels_fingerprint(splits: DataSplits) -> str:
    """SHA-256 of the training split's labels: identifies the data and the split cheaply."""
    labels = np.argmax(to_numpy(splits.train.Y_rows), axis=1).astype(np.uint8)
    return hashlib.sha256(labels.tobytes()).hexdigest()


@dataclasses.dataclass
class RunOutcome:
    """How a run ended: ``"done"`` (``metrics`` and ``files`` set), ``"interrupted"`` or ``"diverged"``."""

    status: str
    state: TrainingState
    files: dict[str, Path]
    metrics: dict[str, Any] | None = None
    error: BaseException | None = None


class Run:
    """One planned run: :meth:`prepare` loads data and state, :meth:`execute` trains and writes the files."""

    def __init__(
        self, plan: RunPlan, *, threads: int | None = None, checkpoint_every: int = 1, compile: bool = False
    ) -> None:
        self.plan = plan
        self.threads = threads
        self.compile = compile  # train(..., compile=True): the step compiled by the backend's library
        self.checkpoint_every = checkpoint_every
        self.backend: Backend = resolve_backend(plan.device_arg)
        self.splits: DataSplits | None = None
        self.state: TrainingState | None = None
        self.extra: dict[str, Any] = {}
        self.lock: FolderLock | None = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the output folder (the run is no longer live)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def checkpoint_path(self) -> Path:
        return self.plan.out / "checkpoint.npz"

    @property
    def model_path(self) -> Path:
        return self.plan.out / "model.npz"

    def prepare(self) -> DataSplits:
        """Load and split the data on the backend, size the network from it, restore the checkpoint's state,
        create the output folder."""
        plan = self.plan
        splits = prepare_splits(plan.dataset, plan.data_dir, device=self.backend, dtype=plan.dtype,
                                split_seed=plan.split_seed)
        sizes = (splits.train.n_features, splits.n_classes)
        if plan.checkpoint is None:
            plan.config = dataclasses.replace(plan.config, layer_dims=(sizes[0], *plan.config.hidden, sizes[1]))
        elif (plan.config.layer_dims[0], plan.config.layer_dims[-1]) != sizes:
            raise CheckpointError(
                f"checkpoint {plan.checkpoint.path} has a network for {plan.config.layer_dims[0]} features and "
                f"{plan.config.layer_dims[-1]} classes; the data found now has {sizes[0]} and {sizes[1]}; "
                "pass --dataset/--data-dir with the data the run started on"
            )
        fingerprint = labels_fingerprint(splits)
        self.state = self._resume_state(splits, fingerprint)
        name = run_name(splits.spec.name, plan.config)  # a registered data set's name, else the folder's
        try:
            if plan.out is None:
                plan.out = new_run_folder(name)
            elif plan.out.exists() and not plan.out.is_dir():
                raise UsageError(f"--out {plan.out}: received a file; expected a folder (new or a run's)")
            else:
                plan.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {plan.out}: cannot create the folder ({exc.strerror or exc})") from None
        self._claim(plan.out)
        self.extra = {
            "name": name,
            "section": plan.section,
            "dataset": plan.dataset,
            "class_names": list(splits.class_names),
            "image_shape": list(splits.image_shape),
            "split_seed": plan.split_seed,
            "device": self.backend.name,
            "device_arg": plan.device_arg,
            "data_dir": str(Path(plan.data_dir).resolve()) if plan.data_dir else None,
            "n_train": splits.train.n_samples,
            "train_labels_sha256": fingerprint,
        }
        self.splits = splits
        return splits

    def _claim(self, out: Path) -> None:
        """Own ``out`` for this run: lock it, refuse another run's results, remove stale temporary files."""
        lock = FolderLock(out)
        lock.acquire()
        try:
            resuming_here = self.plan.checkpoint is not None and Path(self.plan.checkpoint.path).resolve().parent == (
                out.resolve())
            previous = [name for name in RUN_FILES if (out / name).exists()]
            if previous and not resuming_here:
                if not self.plan.overwrite:
                    what = "a finished run" if "metrics.json" in previous else "an unfinished run"
                    hint = "" if "metrics.json" in previous else (
                        f" resume it with --resume {out / 'checkpoint.npz'} if it was interrupted,")
                    raise UsageError(
                        f"--out {out}: holds {what} ({', '.join(previous)});{hint} pass --overwrite to replace it, "
                        "or choose another --out"
                    )
                for name in previous:
                    (out / name).unlink()
            elif resuming_here:  # the run is live again: its old results no longer describe it
                for name in RUN_FILES:
                    if name not in ("checkpoint.npz", "model.npz"):
                        (out / name).unlink(missing_ok=True)
            for stale in out.glob(".*.part"):  # interrupted atomic writes: no live writer holds this folder
                stale.unlink(missing_ok=True)
        except BaseException:
            lock.release()
            raise
        self.lock = lock

    def _resume_state(self, splits: DataSplits, fingerprint: str) -> TrainingState | None:
        ckpt = self.plan.checkpoint
        if ckpt is None:
            return None
        saved = ckpt.extra.get("train_labels_sha256")
        n = ckpt.state.order.shape[0] if ckpt.state.order is not None else splits.train.n_samples
        if n != splits.train.n_samples or (saved is not None and saved != fingerprint):
            raise CheckpointError(
                f"checkpoint {ckpt.path} was trained on different data ({n} training samples, labels "
                f"SHA-256 {str(saved)[:12]}...) than the files found now ({splits.train.n_samples}, "
                f"{fingerprint[:12]}...); pass --data-dir with the files the run started on"
            )
        state = move_state(ckpt.state, splits.backend)
        if state.stopped_reason == "num_iterations" and state.step < self.plan.config.num_iterations:
            state.stopped_reason = None  # a larger max_steps extends the run
        return state

    def execute(self, callback: Callable[[ProgressEvent], None] | None = None) -> RunOutcome:
        """Train (from :meth:`prepare`'s state), keep the checkpoint current, and write the run's files."""
        if self.splits is None:
            self.prepare()
        assert self.splits is not None
        with self.splits.backend.device_context():  # CuPy: kernels run on the current GPU
            return self._execute(callback)

    def _execute(self, callback: Callable[[ProgressEvent], None] | None) -> RunOutcome:
        splits, config = self.splits, self.plan.config
        assert splits is not None

        def on_checkpoint(st: TrainingState) -> None:
            if (st.step // config.record_every) % self.checkpoint_every == 0:
                save_checkpoint(self.checkpoint_path, config, st, extra=self.extra)

        files = {"checkpoint": self.checkpoint_path}
        start = time.perf_counter()
        try:
            result = train(
                splits.train, config, splits.val, state=self.state, callback=callback,
                checkpoint_callback=on_checkpoint, blas_threads="auto" if self.threads is None else self.threads,
                compile=self.compile,
            )
            splits.backend.synchronize()
        except TrainingInterrupted as exc:
            save_checkpoint(self.checkpoint_path, config, exc.state, extra=self.extra)
            return RunOutcome("interrupted", exc.state, files, error=exc)
        except TrainingDivergedError as exc:
            return self._diverged(exc)
        train_seconds = time.perf_counter() - start
        return RunOutcome("done", result.state, *self._write_outputs(result, train_seconds))

    def _diverged(self, exc: TrainingDivergedError) -> RunOutcome:
        """Keep what is finite: the best checked model (if a check came before the divergence) and a
        checkpoint that records the divergence with those parameters, never the exploded ones."""
        best: TrainingResult = exc.result  # type: ignore[attr-defined]
        config, state = self.plan.config, best.state
        files: dict[str, Path] = {}
        kept = dataclasses.replace(state, parameters=best.parameters, bn_state=best.bn_state,
                                   optimizer_state=config.optimizer.init_state(best.parameters))
        save_checkpoint(self.checkpoint_path, config, kept, extra=self.extra)
        files["checkpoint"] = self.checkpoint_path
        if state.best_parameters is not None:
            save_model(self.model_path, config, best.parameters, best.bn_state, extra=self.extra, state=state)
            files["model"] = self.model_path
        return RunOutcome("diverged", state, files, error=exc)

    def _write_outputs(self, result: TrainingResult, train_seconds: float) -> tuple[dict[str, Path], dict[str, Any]]:
        plan, config, splits = self.plan, self.plan.config, self.splits
        assert splits is not None
        out, name = plan.out, self.extra["name"]
        save_checkpoint(self.checkpoint_path, config, result.state, extra=self.extra)
        save_model(self.model_path, config, result.parameters, result.bn_state, extra=self.extra, state=result.state)
        val_costs = result.state.val_costs
        files = {"metrics": out / "metrics.json"}
        if plan.figures:
            files["cost_curve"] = plot_cost_curve(
                out / "cost_curve.png", result.recorded_steps, result.costs, [c for _, c in val_costs],
                title=f"{name}: cost during training", val_steps=[s for s, _ in val_costs],
                l2_lambda=config.l2_lambda,
            )
        files.update(model=self.model_path, checkpoint=self.checkpoint_path)
        proba = probabilities_on_test_set(result, splits)
        y_pred, y_true = np.argmax(proba, axis=1), np.argmax(to_numpy(splits.test.Y_rows), axis=1)
        names = splits.class_names
        if plan.figures:
            files["confusion_matrix"] = plot_confusion_matrix(
                out / "confusion_matrix.png", y_true, y_pred, names, title=f"{name}: test set"
            )
            files["misclassified"] = plot_misclassified(
                out / "misclassified.png", to_numpy(splits.test.X_rows), y_true, y_pred, names, splits.image_shape,
                probabilities=proba,
            )
        metrics = summarize(result, splits, train_seconds)
        chance = 1.0 / len(names)
        warnings = []
        if metrics["val_accuracy"] <= chance + 0.05:
            warnings.append(
                f"validation accuracy {metrics['val_accuracy']:.3f} is at chance level (1/{len(names)}) after "
                f"{metrics['steps']} steps (stopped by {metrics['stopped_reason']}): the network learned nothing; "
                f"check the learning rate ({config.learning_rate:g}) and the early-stopping settings"
            )
        per_class = {names[k]: float(np.mean(y_pred[y_true == k] == k)) if np.any(y_true == k) else None
                     for k in range(len(names))}
        metrics.update(
            {
                "name": name,
                "section": plan.section,
                "dataset": {
                    "name": splits.source.get("dataset", splits.spec.name),  # "idx folder" for unknown files
                    "class_names": list(names),
                    "image_shape": list(splits.image_shape),
                    "source": dict(splits.source),
                },
                "test_accuracy_per_class": per_class,
                "warnings": warnings,
                "total_train_seconds": result.state.elapsed_seconds,
                "compiled": result.compiled,
                "compile_seconds": result.compile_seconds,
                "step_seconds": result.step_seconds,
                "resumed_from": str(plan.resume_path) if plan.resume_path else None,
                "data_dir": self.extra["data_dir"],
                "files": {k: str(v) for k, v in files.items()},
            }
        )
        return files, metrics

    def write_metrics(self, outcome: RunOutcome, **more: Any) -> Path:
        """Write ``metrics.json`` and ``report.md`` of a finished run, plus ``more`` fields (command, wall time)."""
        assert outcome.metrics is not None
        outcome.metrics.update(more)
        path = outcome.files["metrics"]
        outcome.files["report"] = self.plan.out / "report.md"
        outcome.metrics["files"]["report"] = str(outcome.files["report"])
        write_json(path, outcome.metrics)
        atomic_write_bytes(outcome.files["report"], render_run_report(outcome.metrics).encode("utf-8"))
        return path


def probabilities_on_test_set(result: TrainingResult, splits: DataSplits, chunk: int = 65_536) -> np.ndarray:
    """Host class probabilities ``(m, n_classes)`` of the test set with the result's parameters (inference mode)."""
    X = splits.test.X
    m = int(X.shape[1])
    parts = [
        to_numpy(predict_proba(X[:, i:min(i + chunk, m)], result.parameters, result.config.batchnorm or False,
                               result.bn_state or None)).T
        for i in range(0, m, chunk)  # in-bounds slice stops (array API)
    ]
    return np.concatenate(parts, axis=0)
