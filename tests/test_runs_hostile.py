"""Issue 12's problems with a run's outputs, divergence and signals, one test each (numbers as in the issue).

1. a diverging run never writes a non-finite model nor replaces a good one;
2. two runs cannot share an output folder;
3. default output folders are unique even for runs planned in the same second;
4. temporary files of an interrupted write are removed by the next run in that folder;
11. exploding learning rates stop with the divergence message, exit 1;
13. Ctrl-C during start-up is one line; SIGTERM saves a checkpoint and exits 143.

Runs use small synthetic MNIST-shaped files; the subprocess tests drive the real
console entry point (``python -m backend_mlp``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic_mnist import write_synthetic_mnist

import backend_mlp.runs as runs
from backend_mlp.checkpoint import load_checkpoint, load_model
from backend_mlp.cli.train import main

BASE = ["--max-steps", "60", "--record-every", "20", "--lr", "0.05", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("hostile_runs_data"), n_train=1000, n_test=200)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BACKEND_MLP_DATA"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ 1


def test_1_a_diverging_run_never_replaces_a_good_model(data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), *BASE, "--out", str(out)]) == 0
    good = (out / "model.npz").read_bytes()
    capsys.readouterr()
    diverging = ["--data-dir", str(data_dir), *BASE, "--lr", "1e100", "--out", str(out)]
    assert main(diverging) == 2  # the folder holds a finished run
    assert "holds a finished run" in _one_line(capsys.readouterr().err)
    assert (out / "model.npz").read_bytes() == good
    # replacing it on purpose: the diverged run writes no model (none of its checks was finite)
    assert main([*diverging, "--overwrite"]) == 1
    assert "no model written" in _one_line(capsys.readouterr().err)
    assert not (out / "model.npz").exists() and not (out / "metrics.json").exists()
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.state.stopped_reason == "diverged"
    assert all(np.isfinite(v).all() for v in ckpt.state.parameters.values())


def test_1_a_run_diverging_after_checks_keeps_the_best_finite_model(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import backend_mlp.training.loop as loop

    real, steps = loop._train_step, []

    def blowing_up(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        steps.append(1)
        if len(steps) > 45:  # from step 46 on, the parameters explode
            return out._replace(parameters={k: v * np.inf for k, v in out.parameters.items()})
        return out

    monkeypatch.setattr(loop, "_train_step", blowing_up)
    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), *BASE, "--no-early-stopping", "--out", str(out)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "diverged at step 60" in line and "best checked model" in line
    model = load_model(out / "model.npz")
    assert model.state.best_step in (20, 40)
    assert all(np.isfinite(v).all() for v in model.parameters.values())


# ------------------------------------------------------------------------------------------------ 2


def test_2_two_live_runs_cannot_share_an_out_folder(data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "shared"
    long_run = [sys.executable, "-m", "backend_mlp", "train", "--data-dir", str(data_dir), "--max-steps", "1000000",
                "--record-every", "10", "--no-early-stopping", "--lr", "0.01", "--threads", "1", "--quiet",
                "--out", str(out)]
    first = subprocess.Popen(long_run, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.05)
        assert main(["--data-dir", str(data_dir), *BASE, "--out", str(out)]) == 2
        assert "in use by a live run (pid" in _one_line(capsys.readouterr().err)
        assert main(["--data-dir", str(data_dir), *BASE, "--out", str(out), "--overwrite"]) == 2  # not even so
        capsys.readouterr()
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 143 and "terminated at step" in _one_line(err)  # problem 13: SIGTERM
    resumed = main(["--resume", str(out / "checkpoint.npz"), "--max-steps", "50", "--quiet", "--threads", "1"])
    assert resumed in (0, 2)  # the lock died with the process: the folder is usable again


# ------------------------------------------------------------------------------------------------ 3


def test_3_runs_planned_in_the_same_second_get_their_own_folders(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda *a: "20261201-120000")
    plans = [runs.plan_run(overrides={"num_iterations": 20}, data_dir=str(data_dir)) for _ in range(2)]
    folders = []
    for plan in plans:
        with runs.Run(plan, threads=1) as run:
            run.prepare()
            folders.append(run.plan.out)
    assert folders[0] != folders[1] and all(f.is_dir() for f in folders)
    assert folders[1].name == folders[0].name + "-2"


# ------------------------------------------------------------------------------------------------ 4


def test_4_temporary_files_of_an_interrupted_write_are_removed(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), *BASE, "--max-steps", "20", "--out", str(out)]) == 0
    leftover = out / ".checkpoint.npz.k3j9x2.part"  # what a SIGKILL inside atomic_write_bytes leaves
    leftover.write_bytes(b"\0" * 4096)
    assert main(["--resume", str(out / "checkpoint.npz"), "--max-steps", "40", "--quiet", "--threads", "1"]) == 0
    assert not leftover.exists()


# ------------------------------------------------------------------------------------------------ 11


@pytest.mark.parametrize("lr", ["30", "1e9"])
def test_11_exploding_learning_rates_stop_as_diverged(data_dir: Path, tmp_path: Path, capsys, lr: str) -> None:
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--max-steps", "400", "--record-every", "20", "--lr", lr, "--threads", "1",
            "--quiet", "--out", str(out)]
    assert main(argv) == 1
    line = _one_line(capsys.readouterr().err)
    assert "training diverged" in line and "try a smaller learning rate" in line
    assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------------------------------------ 13


#: runs the rest of the command line with SIGINT at its default: a test runner started in the background by a
#: non-interactive shell ignores SIGINT, and a child would inherit that (Python keeps an ignored SIGINT ignored)
_SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def _imported(line: str) -> str | None:
    """The module an ``-X importtime`` line reports imported, else ``None``."""
    return line.rsplit("|", 1)[-1].strip() if line.startswith("import time:") else None


@pytest.mark.parametrize(
    ("cue", "delay", "said"),
    [
        ("numpy", 0.0, "interrupted while starting"),  # while the command's modules load: NumPy has, more follow
        ("backend_mlp.cli.main", 0.3, "interrupted"),  # later: reading the data or training
    ],
)
def test_13_ctrl_c_during_start_up_is_one_line(data_dir: Path, tmp_path: Path, cue: str, delay: float,
                                               said: str) -> None:
    """Ctrl-C ``delay`` s after ``-X importtime`` reports ``cue`` imported, once ``backend_mlp.cli.main`` has been.

    Timed from the process's start instead, the signal can land while the interpreter still imports
    ``site`` or the package, before any of the command's code runs (CI's loaded machine took over 0.1 s).
    """
    cmd = [sys.executable, "-c", _SIGINT_DEFAULT, sys.executable, "-X", "importtime", "-m", "backend_mlp", "train",
           "--data-dir", str(data_dir), "--quiet", "--out", str(tmp_path / "run")]
    lines: list[str] = []
    cued = threading.Event()
    with subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:

        def drain() -> None:  # reads every line, so the child never blocks on a full pipe
            in_main = False
            for line in proc.stderr:  # type: ignore[union-attr]
                lines.append(line)
                in_main = in_main or _imported(line) == "backend_mlp.cli.main"
                if in_main and _imported(line) == cue:
                    cued.set()
            cued.set()  # the child ended first: the assertions below say how

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            assert cued.wait(60), f"{cue} was not imported within 60 s"
            assert proc.poll() is None, f"the command ended before {cue} was imported: {''.join(lines[-20:])}"
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=60)
    assert not reader.is_alive(), "stderr was not read to its end"
    err = "".join(line for line in lines if _imported(line) is None)
    last_import = next((line.strip() for line in reversed(lines) if _imported(line)), "")
    assert proc.returncode == 130, f"{err}\n(last import reported: {last_import})"
    assert said in _one_line(err)


def test_1_a_resumed_run_that_diverges_leaves_no_stale_results(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extending a finished run: its old metrics and report stop describing the folder once it is live again."""
    import backend_mlp.training.loop as loop

    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), *BASE, "--no-early-stopping", "--out", str(out)]) == 0
    real, steps = loop._train_step, []

    def blowing_up(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        steps.append(1)
        if len(steps) > 30:
            return result._replace(parameters={k: v * np.inf for k, v in result.parameters.items()})
        return result

    monkeypatch.setattr(loop, "_train_step", blowing_up)
    capsys.readouterr()
    assert main(["--resume", str(out / "checkpoint.npz"), "--max-steps", "120", "--quiet", "--threads", "1"]) == 1
    assert "diverged at step 100" in _one_line(capsys.readouterr().err)
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    assert all(np.isfinite(v).all() for v in load_model(out / "model.npz").parameters.values())


def test_an_out_that_is_a_file_is_one_line(data_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    assert main(["--data-dir", str(data_dir), *BASE, "--out", str(tmp_path / "afile")]) == 2
    assert "received a file; expected a folder" in _one_line(capsys.readouterr().err)


def test_11_a_result_at_chance_level_is_warned_about(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that ends without exploding but learned nothing (e.g. --lr 1 on MNIST) exits 0 with a warning line."""
    real = runs.summarize

    def at_chance(*args, **kwargs):  # type: ignore[no-untyped-def]
        return {**real(*args, **kwargs), "val_accuracy": 0.1}

    monkeypatch.setattr(runs, "summarize", at_chance)
    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), *BASE, "--out", str(out)]) == 0
    line = _one_line(capsys.readouterr().err)
    assert "warning: validation accuracy 0.100 is at chance level (1/10)" in line
    assert json.loads((out / "metrics.json").read_text())["warnings"]


_LOCK_STRESS = """
import os, sys, time
from pathlib import Path
from backend_mlp.errors import UsageError
from backend_mlp.runs import FolderLock
folder, marker = Path(sys.argv[1]), Path(sys.argv[1]) / "holder"
acquired = doubles = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except UsageError:
        continue
    acquired += 1
    try:  # only the holder may create the marker
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        time.sleep(0.0002)
        os.unlink(marker)
    except FileExistsError:
        doubles += 1
    lock.release()
print(acquired, doubles)
"""


def test_2_the_folder_lock_never_has_two_holders(tmp_path: Path) -> None:
    """Three processes taking and releasing the lock as fast as they can: never two holders at once
    (before the lock was retaken on a replaced lock file, about a third of the acquisitions were doubles)."""
    procs = [subprocess.Popen([sys.executable, "-c", _LOCK_STRESS, str(tmp_path), "3"], env=_env(),
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    counts = [tuple(map(int, p.communicate(timeout=60)[0].split())) for p in procs]
    assert all(acquired > 50 for acquired, _ in counts), counts
    assert sum(doubles for _, doubles in counts) == 0, counts


def test_a_checkpoint_naming_an_unknown_data_set_is_one_line(data_dir: Path, tmp_path: Path, capsys) -> None:
    from backend_mlp.checkpoint import save_checkpoint

    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), *BASE, "--max-steps", "20", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out / "checkpoint.npz")
    save_checkpoint(tmp_path / "crafted.npz", ckpt.config, ckpt.state, extra={**ckpt.extra, "dataset": "bogus"})
    capsys.readouterr()
    assert main(["--resume", str(tmp_path / "crafted.npz"), "--max-steps", "40", "--quiet"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "crafted.npz: its metadata names the data set 'bogus'" in line
