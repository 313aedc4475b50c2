"""``backend-mlp sweep`` without a cluster: grids, seeds and grid files, run ids, the table and its statistics,
finished runs skipped, Ctrl-C, and the one-line message without Dask.  The Dask paths (a local cluster, a
scheduler in other processes, a worker killed mid-run) are in ``test_sweep_dask.py``."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SELECTED_BACKENDS
from synthetic_mnist import write_synthetic_mnist

from backend_mlp.checkpoint import load_model
from backend_mlp.cli.main import main
from backend_mlp.errors import UsageError
from backend_mlp.report.statistics import confidence_interval, t_quantile
from backend_mlp.runs import Run
from backend_mlp.sweep import SweepRun
from backend_mlp.sweep.grid import expand, load_grid_file, parse_axis, parse_seeds

#: the sweep machinery is host-side and its runs choose their own (NumPy) device: it runs once, in the NumPy session
pytestmark = pytest.mark.skipif("numpy" not in SELECTED_BACKENDS,
                                reason="host-side orchestration with NumPy runs: tested in the NumPy session")

TABLE = ("results.csv", "results.json", "SUMMARY.md", "accuracy.png")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("sweep_data"), n_train=600, n_test=200)


def require_dask() -> None:
    """Skip without Dask; fail instead where the session must run the sweep tests (``BACKEND_MLP_REQUIRE_SWEEP=1``,
    set by nox's NumPy session, which installs the ``sweep`` extra)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        if os.environ.get("BACKEND_MLP_REQUIRE_SWEEP") == "1":
            pytest.fail("BACKEND_MLP_REQUIRE_SWEEP=1 but Dask is not installed: pip install 'backend_mlp[sweep]'")
        pytest.skip("needs Dask: pip install 'backend_mlp[sweep]'")


def sweep_args(data_dir: Path, out: Path, *more: str, quiet: bool = True, steps: int = 300) -> list[str]:
    """A small sweep: 2 learning rates x seeds 0, 1 (4 runs of ``steps`` steps)."""
    return ["sweep", "--grid", "lr=0.02,0.05", "--seeds", "0,1", "--max-steps", str(steps), "--record-every", "50",
            "--no-early-stopping", "--hidden", "32,16", "--data-dir", str(data_dir), "--out", str(out),
            *(["--quiet"] if quiet else []), *more]


def parameter_checksums(sweep_folder: Path) -> dict[str, str]:
    """Run id -> SHA-256 of its saved model's arrays (parameters and batch-norm state), name by name."""
    import hashlib

    sums = {}
    for folder in sorted((sweep_folder / "runs").iterdir()):
        model = load_model(folder / "model.npz")
        h = hashlib.sha256()
        for name, array in sorted({**model.parameters, **model.bn_state}.items()):
            h.update(name.encode() + np.ascontiguousarray(np.asarray(array)).tobytes())
        sums[folder.name] = h.hexdigest()
    return sums


def table_rows(sweep_folder: Path) -> list[dict[str, str]]:
    with open(sweep_folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- grids, seeds, files


def test_grid_axes_and_seeds() -> None:
    assert parse_axis("lr=0.003,0.009,0.03") == ("lr", ("0.003", "0.009", "0.03"))
    assert parse_axis("hidden=20,7,5:256,128") == ("hidden", ("20,7,5", "256,128"))
    assert parse_axis("--batch_size=64,256") == ("batch-size", ("64", "256"))
    assert parse_axis("batchnorm=off,on") == ("batchnorm", ("off", "on"))
    assert parse_seeds("5") == (0, 1, 2, 3, 4) and parse_seeds("3-6") == (3, 4, 5, 6)
    assert parse_seeds("0,3,5") == (0, 3, 5) and parse_seeds([2, 7]) == (2, 7)
    runs = expand({"lr": ("1", "2"), "hidden": ("3", "4,5")}, (0, 1))
    assert len(runs) == 8 and runs[0] == ({"lr": "1", "hidden": "3"}, 0)
    assert runs[-1] == ({"lr": "2", "hidden": "4,5"}, 1)
    assert expand({}, (4,)) == [({}, 4)]


@pytest.mark.parametrize(("text", "message"), [
    ("lr", "expected KEY=V1,V2"),
    ("=1,2", "expected KEY=V1,V2"),
    ("lr=0.1,,0.2", "empty value"),
    ("lr=0.1,0.1", "more than once"),
    ("l r=1", "option name"),
])
def test_grid_axis_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_axis(text)
    assert "--grid" in str(info.value)


@pytest.mark.parametrize("text", ["", "0", "a-b", "5-2", "1,1", "-1", "0,x"])
def test_seed_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--seeds"):
        parse_seeds(text)


def test_grid_files(tmp_path: Path) -> None:
    toml = tmp_path / "grid.toml"
    toml.write_text('seeds = "0-2"\n[grid]\nlr = [0.003, 0.01]\nhidden = ["20,7,5", "64"]\noptimizer = "sgd,adam"\n'
                    "batchnorm = [false, true]\n[fixed]\nmax-steps = 50\nno_early_stopping = true\n")
    grid, fixed, seeds = load_grid_file(toml)
    assert grid == {"lr": ("0.003", "0.01"), "hidden": ("20,7,5", "64"), "optimizer": ("sgd", "adam"),
                    "batchnorm": ("off", "on")}
    assert fixed == {"max-steps": "50", "no-early-stopping": "on"} and seeds == (0, 1, 2)
    js = tmp_path / "grid.json"
    js.write_text(json.dumps({"grid": {"lr": [0.1, 0.2]}, "seeds": [4, 5]}))
    assert load_grid_file(js) == ({"lr": ("0.1", "0.2")}, {}, (4, 5))
    for text, message in (("[grid]\nlr = [[1]]\n", "expected a number"), ("colour = 1\n", "unknown entries"),
                          ("[grid\n", "not valid TOML"), ("grid = 3\n", "must be tables")):
        toml.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_grid_file(toml)
    with pytest.raises(UsageError, match="cannot read"):
        load_grid_file(tmp_path / "missing.toml")


@pytest.mark.parametrize(("argv", "words"), [
    (["--grid", "learning-rate=0.1,0.2"], ["learning-rate", "option of backend-mlp train"]),
    (["--grid", "lr=0.1,abc"], ["--grid lr=abc: ", "--lr", "abc"]),
    (["--grid", "lr=0.1,-2"], ["--grid lr=-2: ", "--lr", "positive"]),
    (["--grid", "seed=1,2"], ["--seeds"]),
    (["--grid", "batchnorm=maybe,on"], ["batchnorm=maybe", "on or off"]),
    (["--grid", "lr=0.1,0.2", "--lr", "0.3"], ["--grid lr", "--lr 0.3"]),
    (["--grid", "momentum=0.5,0.9"], ["--grid momentum=0.5: ", "--optimizer momentum"]),
    (["--grid", "optimizer=sgd,momentum", "--momentum", "0.5"], ["--grid optimizer=sgd: ", "--momentum"]),
    (["--grid", "dataset=mnist,cifar"], ["--grid dataset=cifar: ", "invalid choice"]),
    (["--grid", "lr=0.1", "--grid", "lr=0.2"], ["twice"]),
    (["--resume", "x.npz"], ["--resume"]),
    (["--grid", "lr=0.1,0.2", "--batch-size", "many"], ["error: argument --batch-size: invalid int value"]),
    (["--grid", "lr=0.1,0.2", "--lrr", "0.1"], ["'lrr' (did you mean lr?)"]),
    (["--seeds", "9-1"], ["--seeds 9-1"]),
    (["--workers", "0"], ["--workers", "positive"]),
])
def test_sweep_usage_errors(argv: list[str], words: list[str], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", *argv, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("backend-mlp sweep: error: "), err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "s").exists()  # checked before anything is created


def test_every_train_option_is_passed_on_or_refused() -> None:
    """A new option of `backend-mlp train` must be passed on to the runs or refused, never silently dropped."""
    from backend_mlp.cli.sweep import _OWN, HANDLED, _train_options, _train_parser

    options = set(_train_options(_train_parser()))
    assert HANDLED <= options and options <= HANDLED | set(_OWN), sorted(options - HANDLED - set(_OWN))


# --------------------------------------------------------------------------- identity


def test_run_ids_follow_the_configuration_not_its_spelling(data_dir: Path) -> None:
    from backend_mlp.cli.sweep import Plan

    def ids(grid: dict, fixed: list[str], seeds=(0, 1)) -> list[str]:
        return [r.run_id for r in Plan(grid, [*fixed, "--data-dir", str(data_dir)], seeds).runs]

    base = ids({"lr": ("0.003", "0.01")}, [])
    assert len(set(base)) == 4 and all(len(i) == 16 and int(i, 16) >= 0 for i in base)
    assert ids({"lr": ("3e-3", "1e-2")}, []) == base  # the same numbers spelled differently
    assert ids({"lr": ("0.003", "0.01")}, ["--section", "4"]) == base  # the default section, named
    assert ids({"lr": ("0.003", "0.01")}, ["--hidden", "20,7,5"]) == base  # the default network, named
    assert ids({"lr": ("0.003", "0.01")}, [], seeds=(1, 0)) == [base[1], base[0], base[3], base[2]]
    assert set(ids({"lr": ("0.003", "0.01")}, ["--batch-size", "128"])).isdisjoint(base)
    assert set(ids({"lr": ("0.003", "0.01")}, ["--dtype", "float32"])).isdisjoint(base)
    # stable across processes (no salted hashing): the id names a folder a later sweep must find
    code = ("from backend_mlp.cli.sweep import Plan; import sys; "
            f"print(' '.join(r.run_id for r in Plan({{'lr': ('0.003', '0.01')}}, ['--data-dir', {str(data_dir)!r}], "
            "(0, 1)).runs))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.split() == base
    run = SweepRun(settings={"lr": "0.01"}, seed=3, overrides={"learning_rate": 0.01, "seed": 3})
    assert run.identity["config"]["seed"] == 3 and run.identity["config"]["learning_rate"] == 0.01
    assert run.label == "lr=0.01" and run.describe() == "lr=0.01 seed 3"


# --------------------------------------------------------------------------- statistics


def test_t_quantiles_and_intervals() -> None:
    # textbook values of t_{0.975, df}
    for df, t in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (120, 1.9799)):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)
    assert t_quantile(0.95, 10) == pytest.approx(1.8125, abs=1e-4)
    ci = confidence_interval([0.90, 0.92, 0.91, 0.93, 0.89])
    half = 2.7764451051977934 * np.std([0.90, 0.92, 0.91, 0.93, 0.89], ddof=1) / math.sqrt(5)
    assert ci["mean"] == pytest.approx(0.91) and ci["high"] - ci["mean"] == pytest.approx(half)
    assert ci["mean"] - ci["low"] == pytest.approx(half)
    assert confidence_interval([0.9]) is None
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


# --------------------------------------------------------------------------- a sweep here, re-run, Ctrl-C


@pytest.fixture(scope="module")
def finished_sweep(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sweep, run here one run after another (the reference of the Dask tests too)."""
    out = tmp_path_factory.mktemp("sweep") / "sequential"
    assert main(sweep_args(data_dir, out, "--workers", "1")) == 0
    return out


def test_sweep_writes_runs_and_one_table(finished_sweep: Path, data_dir: Path) -> None:
    out = finished_sweep
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 4
    for name in TABLE:
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = table_rows(out)
    assert [r["run_id"] for r in rows] == [r["run_id"] for r in json.loads((out / "results.json").read_text())["runs"]]
    assert sorted(r["run_id"] for r in rows) == [p.name for p in runs]
    assert [(r["lr"], r["seed"]) for r in rows] == [("0.02", "0"), ("0.02", "1"), ("0.05", "0"), ("0.05", "1")]
    for r in rows:  # every hyperparameter and the results
        assert r["learning_rate"] == r["lr"] and r["layer_dims"] == "784-32-16-10" and r["batch_size"] == "256"
        assert r["optimizer.name"] == "sgd" and r["steps"] == "300" and r["early_stopping"] == "False"
        assert 0 <= float(r["test_accuracy"]) <= 1 and float(r["wall_seconds"]) > 0
        metrics = json.loads((out / r["folder"] / "metrics.json").read_text())
        assert metrics["test_accuracy"] == float(r["test_accuracy"]) and metrics["sweep"]["run_id"] == r["run_id"]
        assert metrics["seed"] == int(r["seed"]) and metrics["hyperparameters"]["learning_rate"] == float(r["lr"])
        # the run is what `backend-mlp train` does with these settings, and says how to make it again
        assert metrics["command"].startswith("backend-mlp train --max-steps 300")
        assert f"--lr {r['lr']} --seed {r['seed']}" in metrics["command"]
        assert {"cost_curve.png", "confusion_matrix.png", "misclassified.png"} <= {
            p.name for p in (out / r["folder"]).iterdir()}
    summary = (out / "SUMMARY.md").read_text()
    assert "| lr=0.02 | 2 |" in summary and "| lr=0.05 | 2 |" in summary and "95% CI" in summary
    configurations = json.loads((out / "results.json").read_text())["configurations"]
    first = configurations[0]["test_accuracy"]
    values = [float(r["test_accuracy"]) for r in rows[:2]]
    assert first["mean"] == pytest.approx(np.mean(values)) and first["n"] == 2
    assert first["high"] - first["low"] == pytest.approx(2 * 12.7062047 * np.std(values, ddof=1) / math.sqrt(2))


def test_sweep_run_equals_train(finished_sweep: Path, data_dir: Path, tmp_path: Path) -> None:
    """A sweep run is `backend-mlp train` with its settings: the same parameters, bit for bit."""
    row = table_rows(finished_sweep)[3]
    argv = ["train", "--max-steps", "300", "--record-every", "50", "--no-early-stopping", "--hidden", "32,16",
            "--data-dir", str(data_dir), "--lr", row["lr"], "--seed", row["seed"], "--out", str(tmp_path / "t"),
            "--quiet"]
    assert main(argv) == 0
    (tmp_path / "s" / "runs").mkdir(parents=True)
    (tmp_path / "t").rename(tmp_path / "s" / "runs" / row["run_id"])
    assert parameter_checksums(tmp_path / "s")[row["run_id"]] == parameter_checksums(finished_sweep)[row["run_id"]]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted((folder / "runs").rglob("*")) if p.is_file()}


def test_rerun_of_a_finished_sweep_trains_nothing(finished_sweep: Path, data_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished_sweep, out)
    before = {name: (out / name).read_bytes() for name in TABLE}
    runs_before = _snapshot(out)
    for name in TABLE:
        (out / name).unlink()

    def no_training(self: Run, *args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cluster was started for a finished sweep")

    monkeypatch.setattr(Run, "execute", no_training)
    monkeypatch.setattr("backend_mlp.sweep.engine.dask_client", no_cluster)
    for workers in ("1", "2"):
        assert main(sweep_args(data_dir, out, "--workers", workers, quiet=False)) == 0
        printed = capsys.readouterr().out
        assert "4 of 4 run(s) finished (0 trained now, 4 before)" in " ".join(printed.split())
        assert not any(line.startswith("[") for line in printed.splitlines())  # no run listed as trained
        assert {name: (out / name).read_bytes() for name in TABLE} == before  # the same table, byte for byte
        assert _snapshot(out) == runs_before  # no run folder touched


def test_a_grown_sweep_reuses_the_finished_runs(finished_sweep: Path, data_dir: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "grown"
    shutil.copytree(finished_sweep, out)
    runs_before = _snapshot(out)
    args = sweep_args(data_dir, out, "--workers", "1")
    args[args.index("lr=0.02,0.05")] = "lr=0.02,0.05,0.1"
    assert main(args) == 0
    after = _snapshot(out)
    assert {k: after[k] for k in runs_before} == runs_before  # the 4 runs were kept as they were
    assert len(table_rows(out)) == 6 and len(list((out / "runs").iterdir())) == 6


def test_the_default_folder_is_named_after_the_runs(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", "--grid", "lr=0.02,0.05", "--seeds", "1", "--max-steps", "20", "--hidden", "8", "--no-figures",
            "--workers", "1", "--data-dir", str(data_dir)]
    assert main(argv) == 0 and main(argv) == 0  # the same command: the same folder, continued (nothing to train)
    assert "(0 trained now, 2 before)" in " ".join(capsys.readouterr().out.split())
    assert main([*argv[:2], "lr=0.02,0.1", *argv[3:]]) == 0  # another sweep: another folder
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.startswith("sweep-") and len(f) == 16 for f in folders)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_keeps_finished_runs_and_a_rerun_completes(finished_sweep: Path, data_dir: Path, tmp_path: Path,
                                                          workers: str) -> None:
    if workers != "1":
        require_dask()
    out = tmp_path / "interrupted"
    # 10 runs, long enough that Ctrl-C after the first finished one leaves some undone on 2 workers too
    more = ("--seeds", "0-4")
    args = sweep_args(data_dir, out, "--workers", workers, *more, steps=1000)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "backend_mlp", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/metrics.json")):  # wait for the first finished run
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "run the same command to continue" in lines[0], err
    finished = {p.parent.name for p in out.glob("runs/*/metrics.json")}
    assert 1 <= len(finished) < 10
    assert {r["run_id"] for r in table_rows(out)} == finished  # the table of what finished
    assert not json.loads((out / "results.json").read_text())["complete"]
    assert "Incomplete" in (out / "SUMMARY.md").read_text()
    # the same command continues: the finished runs are kept, the rest trained, and nothing is half-written
    kept = {name: (out / "runs" / name / "model.npz").stat().st_mtime_ns for name in finished}
    assert main(sweep_args(data_dir, out, "--workers", "1", *more, steps=1000)) == 0
    assert {name: (out / "runs" / name / "model.npz").stat().st_mtime_ns for name in finished} == kept
    assert len(table_rows(out)) == 10 and json.loads((out / "results.json").read_text())["complete"]


def test_without_dask_one_line_says_how_to_install(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails as if not installed
    for argv in (sweep_args(data_dir, tmp_path / "s", "--workers", "2"),
                 sweep_args(data_dir, tmp_path / "s", "--scheduler", "tcp://127.0.0.1:1"),
                 ["reproduce", "--workers", "2", "--data-dir", str(data_dir), "--out", str(tmp_path / "r")]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "needs Dask: pip install 'backend_mlp[sweep]'" in err, err
        assert "--workers 1" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()
    # one process needs no Dask
    assert main(sweep_args(data_dir, tmp_path / "here", "--workers", "1", "--no-figures")) == 0


def test_a_failed_run_is_reported_and_the_others_finish(data_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "diverging"
    argv = ["sweep", "--grid", "lr=0.05,1e6", "--seeds", "1", "--max-steps", "100", "--record-every", "10",
            "--hidden", "32,16", "--no-figures", "--data-dir", str(data_dir), "--out", str(out), "--workers", "1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "1 of 2 run(s) failed" in err, err
    assert "FAILED" in captured.out
    assert [r["lr"] for r in table_rows(out)] == ["0.05"]
    summary = (out / "SUMMARY.md").read_text()
    assert "1 run(s) failed" in summary and "diverged" in summary.lower()


# --------------------------------------------------------------------------- on Dask: local, a scheduler, a lost worker


class DaskCluster:
    """A Dask scheduler and ``n`` single-threaded workers, each its own process on 127.0.0.1 (no nanny: a killed
    worker stays dead)."""

    def __init__(self, folder: Path, n: int = 2) -> None:
        self.folder = folder
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        file = folder / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(file)], cwd=folder, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not file.is_file() or not file.read_text().strip():
            assert self.scheduler.poll() is None and time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.05)
        self.address = json.loads(file.read_text())["address"]
        self.workers = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--name", f"w{k}", "--local-directory", str(folder / f"w{k}")], cwd=folder,
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k in range(n)]
        import distributed

        with distributed.Client(self.address, timeout="60s") as client:
            client.wait_for_workers(n, timeout=60)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def dask_cluster(tmp_path: Path):
    require_dask()
    cluster = DaskCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def test_local_cluster_equals_sequential(finished_sweep: Path, data_dir: Path, tmp_path: Path) -> None:
    require_dask()
    out = tmp_path / "local"
    assert main(sweep_args(data_dir, out, "--workers", "2", "--no-figures")) == 0
    assert parameter_checksums(out) == parameter_checksums(finished_sweep)
    assert _numbers(out) == _numbers(finished_sweep)


def _worker_environment() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}


def test_local_workers_keep_glibc_adaptive_and_blas_single_threaded() -> None:
    """Dask's default MALLOC_TRIM_THRESHOLD_ made every step's temporaries fresh mmaps (1.7x slower training)."""
    require_dask()
    from backend_mlp.sweep.engine import dask_client

    with dask_client(2, None) as client:
        environments = client.run(_worker_environment)
    assert len(environments) == 2
    for environment in environments.values():
        assert environment == {"MALLOC_TRIM_THRESHOLD_": None, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _numbers(folder: Path) -> list[tuple]:
    """The table without times: every run's id, settings, steps and results."""
    return [(r["run_id"], r["lr"], r["seed"], r["steps"], r["train_accuracy"], r["val_accuracy"], r["test_accuracy"],
             r["final_train_cost"], r["best_val_cost"]) for r in table_rows(folder)]


def test_scheduler_in_other_processes_equals_sequential(dask_cluster: DaskCluster, finished_sweep: Path,
                                                        data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "remote"
    assert main(sweep_args(data_dir, out, "--scheduler", dask_cluster.address, "--no-figures")) == 0
    assert parameter_checksums(out) == parameter_checksums(finished_sweep)  # bit for bit
    assert _numbers(out) == _numbers(finished_sweep)
    # the runs trained in the worker processes, not here
    pids = {json.loads((out / r["folder"] / "metrics.json").read_text())["sweep"].get("pid") for r in
            table_rows(out)}
    assert pids <= {w.pid for w in dask_cluster.workers} and len(pids) == 2


def test_a_worker_killed_mid_run(dask_cluster: DaskCluster, finished_sweep: Path, data_dir: Path,
                                 tmp_path: Path) -> None:
    """SIGKILL one of two workers while it trains: its run is retried on the other one, from its checkpoint;
    every run completes once, with the same numbers as the sequential sweep."""
    out = tmp_path / "killed"
    victim = dask_cluster.workers[0]
    proc = subprocess.Popen([sys.executable, "-m", "backend_mlp",
                             *sweep_args(data_dir, out, "--scheduler", dask_cluster.address, "--no-figures")],
                            cwd=tmp_path, env=dask_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline, killed = time.monotonic() + 120, None
    while killed is None:  # a run of the victim, live (locked by it) and past its first checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        for lock in out.glob("runs/*/.backend_mlp.lock"):
            try:
                holder = lock.read_text()
            except OSError:
                continue
            if holder.startswith(f"pid {victim.pid} ") and (lock.parent / "checkpoint.npz").is_file():
                victim.kill()
                killed = lock.parent.name
                break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    victim.wait(timeout=10)
    rows = table_rows(out)
    assert sorted(r["run_id"] for r in rows) == sorted(parameter_checksums(finished_sweep))  # all, once each
    assert parameter_checksums(out) == parameter_checksums(finished_sweep)
    assert _numbers(out) == _numbers(finished_sweep)
    metrics = json.loads((out / "runs" / killed / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(out.resolve() / "runs" / killed / "checkpoint.npz")  # retried, resumed
    assert metrics["sweep"]["pid"] == dask_cluster.workers[1].pid
