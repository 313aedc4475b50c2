"""The ``train_mnist`` command: outputs, progress, errors, Ctrl-C and ``--resume``.

Runs on a small synthetic MNIST-shaped IDX dataset written into a temporary
folder (2,000 training / 500 test 28x28 images whose class is a bright band at a
class-dependent height), so no real data or network is needed; the one test on
the real files is marked ``mnist`` and reads ``BACKEND_MLP_DATA``.

The short run and the divergence run train with ``--device`` set to each
selected backend (conftest ``backend``).  The rest stays on the host (the
default ``cpu``): argument parsing and one-line errors, which fail before any
training; plotting; the data fingerprint check; the real-MNIST run (the CI's
NumPy run); and Ctrl-C in a subprocess, which is about signals and files (the
resumed arithmetic is compared per backend in ``test_resume.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from synthetic_mnist import write_synthetic_mnist

from backend_mlp.checkpoint import load_checkpoint, load_model, save_checkpoint
from backend_mlp.cli.train import _invocation, main
from backend_mlp.data import write_idx
from backend_mlp.report.figures import plot_cost_curve
from backend_mlp.training import TrainingConfig

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "train_mnist.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HYPERPARAMETERS = {
    "layer_dims", "learning_rate", "num_iterations", "batch_size", "l2_lambda", "batchnorm", "seed",
    "record_every", "early_stopping", "min_improvement", "optimizer", "patience", "lr_decay",
}


@pytest.fixture(scope="module")
def synthetic_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("synthetic_mnist"), n_train=2000, n_test=500)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BACKEND_MLP_DATA"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _no_partial_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("train_mnist: error: ") and "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- a short run


def test_short_run_writes_everything(
    synthetic_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture, backend: Any
) -> None:
    out = tmp_path / "run"
    argv = ["--data-dir", str(synthetic_mnist), "--max-steps", "300", "--lr", "0.05", "--out", str(out),
            "--threads", "1", "--device", backend.name]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    # plain progress lines when stdout is not a terminal
    assert "step 100  epoch " in stdout and "  train " in stdout and "  val " in stdout
    assert "accuracy: train" in stdout and str(out / "model.npz") in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz", "confusion_matrix.png", "cost_curve.png", "metrics.json", "misclassified.png", "model.npz",
        "report.md"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 300 and metrics["stopped_reason"] == "num_iterations"
    assert metrics["n_train"] == 1600 and metrics["n_val"] == 400 and metrics["n_test"] == 500
    assert metrics["hyperparameters"]["learning_rate"] == 0.05 and metrics["library_version"]
    assert "--max-steps 300" in metrics["command"] and metrics["wall_seconds"] >= metrics["train_seconds"]
    for figure in ("cost_curve.png", "confusion_matrix.png", "misclassified.png"):
        assert (out / figure).read_bytes().startswith(PNG_MAGIC)
    assert metrics["dataset"]["class_names"] == [str(k) for k in range(10)]
    assert sorted(metrics["test_accuracy_per_class"]) == [str(k) for k in range(10)]
    model = load_model(out / "model.npz")
    assert model.kind == "model" and model.config.learning_rate == 0.05 and model.extra["split_seed"] == 0
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.state.step == 300 and ckpt.extra["device"] == backend.name and metrics["device"] == backend.name
    # resuming a finished run with a larger --max-steps extends it (explicit --max-steps may differ)
    assert main(["--resume", str(out / "checkpoint.npz"), "--max-steps", "400", "--quiet", "--threads", "1"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["steps"] == 400 and resumed["device"] == backend.name  # resumed on the same backend
    assert capsys.readouterr().out == ""
    _no_partial_files(out)


def test_divergence_saves_and_fails(
    synthetic_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture, backend: Any
) -> None:
    out = tmp_path / "run"
    argv = ["--data-dir", str(synthetic_mnist), "--lr", "1e100", "--record-every", "5", "--max-steps", "50",
            "--no-early-stopping", "--out", str(out), "--quiet", "--threads", "1", "--device", backend.name]
    assert main(argv) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "diverged" in line and "no model written" in line
    assert not (out / "model.npz").exists()  # nothing non-finite is ever written
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.state.stopped_reason == "diverged"
    assert all(np.isfinite(v).all() for v in ckpt.state.parameters.values())
    assert main(["--resume", str(out / "checkpoint.npz")]) == 1
    assert "diverged" in _one_error_line(capsys.readouterr().err)


def test_plot_cost_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = plot_cost_curve(tmp_path / "c.png", [100, 200, 300], [1.0, float("nan"), 0.5], [1.1, 0.9, 0.7])
    assert path.read_bytes().startswith(PNG_MAGIC)
    before = path.read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        plot_cost_curve(path, [1, 2], [0.3, 0.2], title="again")
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.png"]


# --------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["--device", "tpu"], 2, ["device", "'tpu'"]),
        (["--dtype", "float16"], 2, ["--dtype", "float16"]),
        (["--lr", "-0.1"], 2, ["--lr", "-0.1"]),
        (["--lr", "nan"], 2, ["--lr"]),
        (["--batch-size", "0"], 2, ["--batch-size", "positive"]),
        (["--batch-size", "ten"], 2, ["--batch-size", "'ten'"]),
        (["--section", "7"], 2, ["--section"]),
        (["--frobnicate"], 2, ["unrecognized", "--frobnicate"]),
        (["--resume", "MISSING"], 1, ["not found"]),
        (["--resume", "CORRUPT"], 1, ["not an .npz"]),
        (["--data-dir", "EMPTY"], 1, ["missing 4 of 4", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                      "BACKEND_MLP_DATA"]),
        (["--data-dir", "EMPTY/nope"], 1, ["does not exist", "BACKEND_MLP_DATA"]),
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], status: int, words: list[str]
) -> None:
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "CORRUPT").write_bytes(b"\x00" * 100)
    args = [str(tmp_path / a) if a.split("/")[0] in ("MISSING", "CORRUPT", "EMPTY") else a for a in args]
    assert main([*args, "--out", str(tmp_path / "out")]) == status
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    for word in words:
        assert word in line
    assert not (tmp_path / "out").exists()  # nothing written on a failed start


def test_gpu_without_cupy_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed: 'gpu' may work here")
    except ImportError:
        pass
    assert main(["--device", "gpu:1", "--out", str(tmp_path)]) == 1
    assert "CuPy" in _one_error_line(capsys.readouterr().err)


def test_resume_with_conflicting_options(
    synthetic_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from backend_mlp.data import Dataset
    from backend_mlp.training import new_training_state

    config = TrainingConfig(learning_rate=0.02)
    data = Dataset.from_host(np.zeros((4, 784)), np.arange(4))
    path = save_checkpoint(tmp_path / "c.npz", config, new_training_state(config, data))
    argv = ["--resume", str(path), "--data-dir", str(synthetic_mnist), "--lr", "0.5", "--batchnorm", "--dtype",
            "float32"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    for word in ("learning_rate", "0.02", "0.5", "batchnorm", "dtype", "float32"):
        assert word in line


def test_script_error_in_subprocess(tmp_path: Path) -> None:
    """The script itself: exit status 2, one line on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "tpu", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60,
    )
    assert proc.returncode == 2
    assert "device" in _one_error_line(proc.stderr)


# --------------------------------------------------------------------------- Ctrl-C and --resume, end to end


def _train_args(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, str(SCRIPT), "--data-dir", str(data), "--out", str(out), "--max-steps", "1500",
        "--record-every", "50", "--checkpoint-every", "1", "--no-early-stopping", "--batchnorm", "--lr", "0.02",
        "--threads", "1",
    ]


@pytest.mark.parametrize(
    ("argv0", "prog", "hint"),
    [
        ("/site-packages/backend_mlp/__main__.py", "backend-mlp train", "python -m backend_mlp train"),
        ("scripts/train_mnist.py", "train_mnist.py", "python scripts/train_mnist.py"),
        ("/usr/bin/backend-mlp", "backend-mlp train", "backend-mlp train"),
        ("/usr/bin/backend-mlp-train", "backend-mlp-train", "backend-mlp-train"),
    ],
)
def test_the_resume_hint_repeats_how_the_command_was_started(
    monkeypatch: pytest.MonkeyPatch, argv0: str, prog: str, hint: str
) -> None:
    monkeypatch.setattr(sys, "argv", [argv0, "--data-dir", "x"])
    assert _invocation(prog) == hint


def test_sigint_then_resume_matches_uninterrupted(synthetic_mnist: Path, tmp_path: Path) -> None:
    full_out, cut_out = tmp_path / "full", tmp_path / "cut"
    env = _env()
    full = subprocess.Popen(_train_args(synthetic_mnist, full_out), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cut = subprocess.Popen(_train_args(synthetic_mnist, cut_out), env=env, cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (cut_out / "checkpoint.npz").exists():
            assert cut.poll() is None, cut.communicate()
            assert time.monotonic() < deadline, "no checkpoint.npz within 60 s"
            time.sleep(0.01)
        cut.send_signal(signal.SIGINT)
        _, cut_err = cut.communicate(timeout=60)
        _, full_err = full.communicate(timeout=120)
    finally:
        for proc in (cut, full):
            if proc.poll() is None:
                proc.kill()
    assert cut.returncode == 130, cut_err
    assert full.returncode == 0, full_err
    assert "--resume" in cut_err and str(cut_out / "checkpoint.npz") in cut_err and "Traceback" not in cut_err
    _no_partial_files(cut_out)
    stopped = load_checkpoint(cut_out / "checkpoint.npz")
    assert 0 < stopped.state.step < 1500 and stopped.state.stopped_reason is None

    resumed = subprocess.run([*_train_args(synthetic_mnist, cut_out), "--resume", str(cut_out / "checkpoint.npz")],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {cut_out / 'checkpoint.npz'} at step {stopped.state.step}" in resumed.stdout

    a, b = load_model(full_out / "model.npz"), load_model(cut_out / "model.npz")
    assert a.state.best_step == b.state.best_step and a.state.step == b.state.step == 1500
    for group in ("parameters", "bn_state"):
        ta, tb = getattr(a, group), getattr(b, group)
        assert list(ta) == list(tb) and ta
        for k in ta:
            np.testing.assert_allclose(tb[k], ta[k], rtol=0, atol=1e-12, err_msg=k)
    last_a, last_b = load_checkpoint(full_out / "checkpoint.npz"), load_checkpoint(cut_out / "checkpoint.npz")
    for k in last_a.state.parameters:
        np.testing.assert_allclose(last_b.state.parameters[k], last_a.state.parameters[k], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array(last_b.state.val_costs), np.array(last_a.state.val_costs), rtol=1e-12)
    ma = json.loads((full_out / "metrics.json").read_text())
    mb = json.loads((cut_out / "metrics.json").read_text())
    assert mb["resumed_from"] == str(cut_out / "checkpoint.npz")
    for key in ("steps", "epochs", "best_step", "train_accuracy", "val_accuracy", "test_accuracy"):
        assert ma[key] == mb[key], key


# --------------------------------------------------------------------------- real MNIST


@pytest.mark.mnist
def test_short_real_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CI's short real run: 300 steps on the real files (BACKEND_MLP_DATA)."""
    if not os.environ.get("BACKEND_MLP_DATA"):
        pytest.skip("real MNIST: set BACKEND_MLP_DATA to a folder with the four MNIST files")
    out = tmp_path / "real"
    argv = ["--max-steps", "300", "--section", "5", "--lr", "0.1", "--out", str(out), "--quiet", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("steps", "epochs", "train_accuracy", "val_accuracy", "test_accuracy", "final_train_cost",
                "final_minibatch_cost", "best_val_cost", "train_seconds", "wall_seconds", "device", "backend",
                "dtype", "seed", "split_seed", "hyperparameters", "command", "library_version", "stopped_reason"):
        assert key in metrics, key
    assert set(metrics["hyperparameters"]) == HYPERPARAMETERS
    assert metrics["hyperparameters"]["batchnorm"] is not None and metrics["hyperparameters"]["learning_rate"] == 0.1
    assert metrics["hyperparameters"]["optimizer"] == {"name": "sgd"}
    assert metrics["steps"] == 300 and metrics["n_train"] == 48000 and metrics["n_test"] == 10000
    assert metrics["device"] == "numpy" and metrics["dtype"] == "float64" and metrics["seed"] == 0
    assert metrics["test_accuracy"] > 0.5, metrics["test_accuracy"]
    for figure in ("cost_curve.png", "confusion_matrix.png", "misclassified.png"):
        assert (out / figure).read_bytes().startswith(PNG_MAGIC)
    assert metrics["dataset"]["class_names"] == [str(k) for k in range(10)]
    assert sorted(metrics["test_accuracy_per_class"]) == [str(k) for k in range(10)]
    assert load_model(out / "model.npz").config.batchnorm is not None


def test_resume_on_different_data_is_refused(
    synthetic_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["--data-dir", str(synthetic_mnist), "--max-steps", "20", "--record-every", "10", "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    other = tmp_path / "other"
    other.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"):
        (other / name).write_bytes((synthetic_mnist / name).read_bytes())
    labels = np.random.default_rng(5).integers(0, 10, 2000).astype(np.uint8)
    write_idx(other / "train-labels-idx1-ubyte", labels)
    argv = ["--resume", str(out / "checkpoint.npz"), "--data-dir", str(other), "--max-steps", "40", "--quiet"]
    assert main(argv) == 1
    assert "different data" in _one_error_line(capsys.readouterr().err)
