"""Behaviour of the benchmark (``scripts/benchmark.py``, :mod:`backend_mlp.bench`, :mod:`backend_mlp.cli.bench`).

No timing is asserted.  What is checked: every side runs the identical
workload (same initial weights, same batches in the training loop's order,
same number of steps: their parameters agree), PyTorch runs on the hardware
the backend names, a tiny end-to-end run writes the JSON keys the docs and
report writers use and renders its table, the machine description, the
memory probe, and that bad options or a missing GPU fail with one line and a
non-zero exit status.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend_mlp.backends import resolve_backend
from backend_mlp.bench import memory, table
from backend_mlp.bench.backend_mlp_side import BackendMLPSide, FunctionalSide
from backend_mlp.bench.runner import Benchmark, Options, max_rel_diff
from backend_mlp.bench.workloads import (
    BlockIndices,
    HostData,
    Workload,
    samples_in_steps,
    step_batches,
    synthetic_data,
)
from backend_mlp.cli import bench as cli
from backend_mlp.data import Dataset
from backend_mlp.errors import BackendUnavailableError
from backend_mlp.machine import cpu_model, machine_info
from backend_mlp.training import TrainingConfig, batch_indices, train

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "benchmark.py"

TINY = Workload("tiny", (784, 16, 8, 10), 32)
TINY_BN = Workload("tiny-bn", (784, 16, 8, 10), 32, batchnorm=True)
N_TRAIN, N_TEST = 300, 40  # 10 batches per epoch, the last one of 12 samples


@pytest.fixture(scope="module")
def data() -> HostData:
    return synthetic_data(seed=3, n_train=N_TRAIN, n_test=N_TEST)


def _torch():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------- the batch order


def test_batch_order_replays_the_training_loop(data: HostData) -> None:
    n_steps = 23  # two full epochs and three batches into the third
    batches = step_batches(N_TRAIN, TINY.batch_size, seed=5, n_steps=n_steps)
    assert [len(b) for b in batches[:11]] == [32] * 9 + [12, 32]
    for epoch in range(2):  # each epoch is one permutation
        np.testing.assert_array_equal(np.sort(np.concatenate(batches[10 * epoch : 10 * epoch + 10])), np.arange(300))
    dataset = Dataset.from_host(data.train_images, data.train_labels, dtype="float64")
    config = TrainingConfig(
        layer_dims=TINY.layer_dims, num_iterations=n_steps, batch_size=32, seed=5, early_stopping=False
    )
    state = train(dataset, config).state
    assert state.epochs_completed == 2
    assert state.position == 3 * 32
    np.testing.assert_array_equal(state.order[: state.position], np.concatenate(batches[20:]))


def test_block_indices_and_sample_counts() -> None:
    block = BlockIndices.of(N_TRAIN, 32, seed=1, n_steps=12)
    batches = step_batches(N_TRAIN, 32, seed=1, n_steps=12)
    assert block.n_steps == 12
    assert block.n_samples == sum(len(b) for b in batches) == samples_in_steps(N_TRAIN, 32, 12) == 300 + 64
    for (start, stop), b in zip(block.spans(), batches, strict=True):
        np.testing.assert_array_equal(block.flat[start:stop], b)
    first = next(batch_indices(N_TRAIN, 32, seed=1))
    np.testing.assert_array_equal(first, batches[0])
    assert samples_in_steps(N_TRAIN, 32, 10) == 300 and samples_in_steps(N_TRAIN, 32, 3) == 96


# ----------------------------------------------------------------------------- the sides agree


@pytest.mark.parametrize(
    "workload, dtype, n_steps, rtol_fn, rtol_torch",
    [
        (TINY, "float64", 25, 1e-12, 1e-10),
        (TINY, "float32", 12, 1e-5, 1e-3),
        (TINY_BN, "float64", 12, 1e-10, 1e-9),
        (TINY_BN, "float32", 3, 1e-4, 1e-3),
    ],
    ids=["plain-f64", "plain-f32", "bn-f64", "bn-f32"],
)
def test_all_sides_run_the_identical_workload(
    data: HostData, workload: Workload, dtype: str, n_steps: int, rtol_fn: float, rtol_torch: float
) -> None:
    host = data.cast(dtype)
    mine = BackendMLPSide(resolve_backend("cpu"), host, dtype, seed=1)
    functional = FunctionalSide(resolve_backend("cpu"), host, dtype, seed=1, placed=mine)
    cost_mine = mine.prepare(workload, n_steps)()
    cost_fn = functional.prepare(workload, n_steps)()
    a, f = mine.host_parameters(), functional.host_parameters()
    assert set(a) == set(f) and len(a) == (10 if workload.batchnorm else 6)
    assert max_rel_diff(f, a) <= rtol_fn
    assert cost_fn == pytest.approx(cost_mine, rel=rtol_fn * 10)
    if workload.batchnorm:  # the running statistics were updated alike
        for k, v in mine.bn_state.items():
            np.testing.assert_allclose(np.asarray(functional.bn_state[k]), np.asarray(v), rtol=rtol_fn * 10)
    torch = _torch()
    theirs = _torch_side(torch, host, dtype, seed=1)
    cost_theirs = theirs.prepare(workload, n_steps)()
    t = theirs.host_parameters()
    assert set(a) == set(t)
    assert max_rel_diff(a, t) <= rtol_torch
    assert cost_mine == pytest.approx(cost_theirs, rel=rtol_torch * 10)
    # the predictions of the trained models agree as well
    p_mine = np.asarray(mine.prepare_predict(workload)())
    p_theirs = theirs.prepare_predict(workload)().numpy()
    assert p_mine.shape == p_theirs.shape == (N_TEST,)
    assert np.mean(p_mine == p_theirs) >= 0.95


def _torch_side(torch, host: HostData, dtype: str, seed: int):
    from backend_mlp.bench.torch_side import TorchSide

    return TorchSide(torch, resolve_backend("numpy"), host, dtype, seed=seed)


def test_every_block_starts_from_the_initial_weights(data: HostData) -> None:
    host = data.cast("float64")
    functional = FunctionalSide(resolve_backend("cpu"), host, "float64", seed=2)
    run = functional.prepare(TINY_BN, 4)
    run()
    first = functional.host_parameters()
    functional.prepare(TINY_BN, 4)()
    assert max_rel_diff(functional.host_parameters(), first) == 0.0


def test_initial_weights_are_copied_exactly(data: HostData) -> None:
    torch = _torch()
    host = data.cast("float32")
    theirs = _torch_side(torch, host, "float32", seed=4)
    mine = BackendMLPSide(resolve_backend("cpu"), host, "float32", seed=4)
    theirs.prepare(TINY_BN, 1)  # builds and resets the model, runs nothing
    initial = {k: np.asarray(v, dtype=np.float64) for k, v in mine.fresh_state(TINY_BN).parameters.items()}
    assert max_rel_diff(theirs.host_parameters(), initial) == 0.0


# ----------------------------------------------------------------------------- where PyTorch runs


@pytest.mark.parametrize("device", ["cpu", "torch", "array_api_strict"])
def test_pytorch_runs_on_the_backends_hardware(data: HostData, device: str) -> None:
    _torch()
    backend = resolve_backend(device)
    bench = Benchmark(Options(device=device, verbose=False))
    sides = bench.sides(data.cast("float64"), "float64", with_compile=False)
    assert [s.label for s in sides] == ["backend_mlp", "backend_mlp functional", "torch"]
    assert str(sides[2].device) == backend.hardware == "cpu"


class _CudaBackend:
    """A stand-in for a backend computing on a CUDA device (only ``name`` and ``hardware`` are asked)."""

    name = "somelib:7"
    hardware = "cuda:7"


def test_pytorch_must_see_the_backends_cuda_device() -> None:
    torch = _torch()
    from backend_mlp.bench.torch_side import import_torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    with pytest.raises(BackendUnavailableError, match="cuda:7"):
        import_torch(_CudaBackend())


# ----------------------------------------------------------------------------- end to end, JSON, table


def test_tiny_end_to_end_run_writes_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "ratio" in text and "fn/train" in text and "report-bn" in text
    report = json.loads(out.read_text())
    for key in ("device", "hardware", "on_host", "data", "options", "machine", "results", "torch_compile_skipped"):
        assert key in report
    assert report["device"] == "numpy" and report["hardware"] == "cpu" and report["on_host"] is True
    parts = [(r["part"], r["workload"]) for r in report["results"]]
    assert parts == [("steps", "report"), ("epoch", "report-bn"), ("predict", "report-bn")]
    steps, epoch, pred = report["results"]
    assert steps["steps_per_block"] == 4 and epoch["steps_per_block"] == 3  # ceil(600 / 256)
    assert steps["samples_per_block"] == 600 + 256  # a full epoch (256, 256, 88), then one batch
    assert epoch["samples_per_block"] == 600
    for record in (steps, epoch):
        for side in ("backend_mlp", "backend_mlp functional", "torch"):
            assert record[side]["seconds_median"] > 0 and record[side]["steps_per_second"] > 0
        for key in ("ratio_vs_torch", "ratio_functional_vs_train", "ratio_functional_vs_torch"):
            assert record[key] > 0
        assert record["check_max_rel_diff"] < 1e-9
        assert record["check_max_rel_diff_functional"] < 1e-12
        assert record["max_rel_diff_end"] < 1e-9
        assert record["max_rel_diff_end_functional"] < 1e-12
        assert record["backend_mlp_blas_threads"] >= 1
    assert "backend_mlp functional" not in pred  # predict is the same public function for both
    assert pred["ratio_vs_torch"] > 0 and pred["prediction_agreement"] >= 0.9
    machine = report["machine"]
    assert machine["numpy"] == np.__version__ and machine["backend"] == "numpy" and "torch" in machine


def test_table_renders_without_pytorch_and_with_a_memory_failure() -> None:
    side = {"seconds_median": 0.5, "steps_per_second": 20.0, "samples_per_second": 5120.0}
    report = {
        "on_host": False,
        "results": [
            {
                "part": "steps", "workload": "report", "dtype": "float32", "steps_per_block": 10,
                "backend_mlp": {**side, "memory": {"device_peak_bytes": 3 * 2**20, "peak_rss_bytes": 9 * 2**20}},
                "backend_mlp functional": {**side, "seconds_median": 1.0, "steps_per_second": 10.0},
                "ratio_functional_vs_train": 2.0, "check_max_rel_diff_functional": 1e-7,
                "backend_mlp_blas_threads": None,
            },
            {"part": "memory", "section": "4", "dtype": "float32", "error": "no MNIST here"},
        ],
        "torch_compile_skipped": "PyTorch is not installed",
    }  # fmt: skip
    text = table.format_table(report)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["part", "workload", "dtype"]
    row = lines[2].split()
    assert row[:6] == ["steps", "report", "float32", "10", "20.0", "10.0"]
    assert "2.000" in row and "1.0e-07" in row and "3" in row and "9" not in row  # device memory, not RSS
    assert "peak device memory" in text
    assert "torch.compile skipped: PyTorch is not installed" in text
    assert "memory (Section 4, float32): failed: no MNIST here" in text


# ----------------------------------------------------------------------------- machine and memory


def test_machine_info_describes_cpu_libraries_backend_and_torch() -> None:
    assert isinstance(cpu_model(), str) and cpu_model()
    info = machine_info()
    for key in ("cpu_model", "cpu_count", "usable_cores", "ram_bytes", "platform", "python", "numpy",
                "array_api_compat", "blas", "backend_mlp"):  # fmt: skip
        assert key in info, key
    assert "backend" not in info and "torch" not in info
    json.dumps(info)
    with_backend = machine_info(resolve_backend("cpu"))
    assert with_backend["backend"] == "numpy" and with_backend["numpy"] == np.__version__
    torch = _torch()
    with_torch = machine_info(resolve_backend("torch"), torch)
    assert with_torch["backend"] == "torch:cpu"
    assert with_torch["torch"] == torch.__version__ and with_torch["torch_threads"] >= 1
    json.dumps(with_torch)


def test_side_memory_probe_in_a_fresh_process() -> None:
    spec = {
        "side": "backend_mlp functional", "workload": "report", "dtype": "float32", "n_steps": 3,
        "device": "cpu", "data_dir": None, "n_train": 600, "n_test": 20, "seed": 0, "torch_threads": None,
    }  # fmt: skip
    out = memory.measure_side_memory(spec)
    assert "error" not in out, out
    assert out["peak_rss_bytes"] >= out["rss_before_bytes"] > 0
    assert "device_peak_bytes" not in out  # host arrays: no device memory
    assert "error" in memory.measure_side_memory({**spec, "side": "nonsense"})


def test_peak_rss_is_readable() -> None:
    assert memory.peak_rss_bytes() > 0


# ----------------------------------------------------------------------------- command-line errors


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
    assert proc.returncode == 1  # the machine cannot run it: a failure, not a bad command line
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("benchmark: error: ") and "gpu" in lines[0].lower()
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--workloads", "nonsense"], "--workloads"),
        (["--dtypes", "float16"], "--dtypes"),
        (["--repeats", "0"], "--repeats"),
        (["--repeats", "two"], "--repeats"),
        (["--device", "tpu"], "device"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_options_fail_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*argv, "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmark: error: ") and needle in err[0], captured.err
    assert captured.out == ""
