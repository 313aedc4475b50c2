"""Smoke tests of the benchmark machinery (``scripts/benchmark.py``, :mod:`backend_mlp.benchmarking`).

No timing is asserted.  What is checked: both sides really run the identical
workload (same initial weights, same batches, same number of steps: their
parameters agree after N steps), the batch schedule replays the training
loop's, a tiny end-to-end run writes its JSON, and ``--device gpu`` without a
GPU fails with one clear line and a non-zero exit status.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend_mlp import benchmarking as B
from backend_mlp.backends import resolve_backend
from backend_mlp.dataset import Dataset
from backend_mlp.training import TrainingConfig, train

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "benchmark.py"

TINY = B.Workload("tiny", (784, 16, 8, 10), 32)
TINY_BN = B.Workload("tiny-bn", (784, 16, 8, 10), 32, batchnorm=True)
N_TRAIN, N_TEST = 300, 40  # 10 batches per epoch, the last one of 12 samples


@pytest.fixture(scope="module")
def data() -> B.HostData:
    return B.synthetic_data(seed=3, n_train=N_TRAIN, n_test=N_TEST)


def _torch():
    return pytest.importorskip("torch")


def test_batch_schedule_replays_the_training_loop(data: B.HostData) -> None:
    n_steps = 23  # two full epochs and three batches into the third
    schedule = B.batch_schedule(N_TRAIN, TINY.batch_size, seed=5, n_steps=n_steps)
    assert len(schedule) == n_steps
    assert [stop - start for _, start, stop in schedule[:10]] == [32] * 9 + [12]
    assert schedule[10] == (1, 0, 32)
    dataset = Dataset.from_host(data.train_images, data.train_labels, dtype="float64")
    config = TrainingConfig(
        layer_dims=TINY.layer_dims, num_iterations=n_steps, batch_size=32, seed=5, early_stopping=False
    )
    state = train(dataset, config).state
    orders = B.epoch_orders(N_TRAIN, seed=5, n_epochs=3)
    epoch, _, stop = schedule[-1]
    assert state.epochs_completed == epoch == 2
    assert state.position == stop
    np.testing.assert_array_equal(state.order, orders[epoch])


@pytest.mark.parametrize(
    "workload, dtype, n_steps, rtol",
    [
        (TINY, "float64", 25, 1e-10),
        (TINY, "float32", 12, 1e-3),
        (TINY_BN, "float64", 12, 1e-9),
        (TINY_BN, "float32", 3, 1e-3),
    ],
    ids=["plain-f64", "plain-f32", "bn-f64", "bn-f32"],
)
def test_both_sides_run_the_identical_workload(
    data: B.HostData, workload: B.Workload, dtype: str, n_steps: int, rtol: float
) -> None:
    torch = _torch()
    host = data.cast(dtype)
    mine = B.BackendMLPSide(resolve_backend("cpu"), host, dtype, seed=1)
    theirs = B.TorchSide(torch, "cpu", host, dtype, seed=1)
    cost_mine = mine.prepare(workload, n_steps)()
    cost_theirs = theirs.prepare(workload, n_steps)()
    a, b = mine.host_parameters(), theirs.host_parameters()
    assert set(a) == set(b)
    assert B.max_rel_diff(a, b) <= rtol
    assert cost_mine == pytest.approx(cost_theirs, rel=rtol * 10)
    # the predictions of the trained models agree as well
    p_mine = np.asarray(mine.prepare_predict(workload)())
    p_theirs = theirs.prepare_predict(workload)().numpy()
    assert p_mine.shape == p_theirs.shape == (N_TEST,)
    assert np.mean(p_mine == p_theirs) >= 0.95


def test_initial_weights_are_copied_exactly(data: B.HostData) -> None:
    torch = _torch()
    host = data.cast("float32")
    theirs = B.TorchSide(torch, "cpu", host, "float32", seed=4)
    mine = B.BackendMLPSide(resolve_backend("cpu"), host, "float32", seed=4)
    theirs.prepare(TINY_BN, 1)  # builds and resets the model, runs nothing
    initial = {k: np.asarray(v, dtype=np.float64) for k, v in mine.fresh_state(TINY_BN).parameters.items()}
    assert B.max_rel_diff(theirs.host_parameters(), initial) == 0.0


def test_tiny_end_to_end_run_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _torch()
    out = tmp_path / "bench.json"
    argv = [
        "--quick",
        "--workloads", "report",
        "--epoch-workloads", "report-bn",
        "--dtypes", "float64",
        "--n-train", "600",
        "--n-test", "50",
        "--steps", "4",
        "--repeats", "1",
        "--quiet",
        "--json", str(out),
    ]  # fmt: skip
    assert B.main(argv) == 0
    table = capsys.readouterr().out
    assert "ratio" in table and "report" in table
    report = json.loads(out.read_text())
    parts = [(r["part"], r["workload"]) for r in report["results"]]
    assert parts == [("steps", "report"), ("epoch", "report-bn"), ("predict", "report-bn")]
    steps, epoch, pred = report["results"]
    assert steps["steps_per_block"] == 4 and epoch["steps_per_block"] == 3  # ceil(600 / 256)
    for record in report["results"]:
        for side in ("backend_mlp", "torch"):
            assert record[side]["seconds_median"] > 0
        assert record["ratio_vs_torch"] > 0
    assert steps["check_max_rel_diff"] < 1e-10
    assert epoch["check_max_rel_diff"] < 1e-9
    assert pred["prediction_agreement"] >= 0.9
    assert report["machine"]["numpy"] == np.__version__


def test_gpu_without_a_gpu_fails_with_one_line() -> None:
    try:
        resolve_backend("gpu")
    except Exception:
        pass
    else:
        pytest.skip("a CUDA device is available here")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "gpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "gpu" in lines[0].lower()
    assert proc.stdout == ""


def test_bad_options_fail_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert B.main(["--workloads", "nonsense", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workloads" in err[0]


def test_peak_rss_is_readable() -> None:
    assert B.peak_rss_bytes() > 0
