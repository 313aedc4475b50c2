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
from backend_mlp.machine import AVX512_FLAGS, blas_kernel_note, cpu_flags, cpu_model, machine_info
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
    bench = Benchmark(Options(device=device, sides=("bm", "fn", "torch", "torch-compile"), verbose=False))
    sides = bench.sides(data.cast("float64"), "float64", with_compile=False)
    assert [s.label for s in sides] == ["backend_mlp", "backend_mlp functional", "torch"]
    assert str(sides[2].device) == backend.hardware == "cpu"


class _CudaBackend:
    """A stand-in for a backend computing on a CUDA device (only ``name`` and ``hardware`` are asked)."""

    name = "somelib:7"
    hardware = "cuda:7"


def test_backend_mlps_other_paths_run_on_the_gpu_backends_device(data: HostData) -> None:
    """Beside a backend on CUDA device 7, train() on PyTorch and JAX (eager and compiled) are asked for on
    that device; the hand-written peers stay CPU-only.  Without such a device each says why it cannot run."""
    from backend_mlp.bench.workloads import BM_JAX, BM_TORCH, BM_TORCH_COMPILE, JAX

    torch = _torch()
    pytest.importorskip("jax")
    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    bench = Benchmark(Options(device="cpu", verbose=False))
    bench.backend = _CudaBackend()
    asked: dict[str, str] = {}
    for label, build in bench._builders(data.cast("float32"), "float32"):
        if label in (BM_TORCH, BM_JAX, BM_TORCH_COMPILE, JAX):
            try:
                build()
            except BackendUnavailableError as exc:
                asked[label] = str(exc)
    assert "torch:cuda:7" in asked.get(BM_TORCH, "") and "jax:cuda:7" in asked.get(BM_JAX, ""), asked
    assert "torch:cuda:7" in asked.get(BM_TORCH_COMPILE, ""), asked
    assert JAX not in asked and "CPU only" in bench.skipped[JAX]


def test_pytorch_must_see_the_backends_cuda_device() -> None:
    torch = _torch()
    from backend_mlp.bench.torch_side import import_torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    with pytest.raises(BackendUnavailableError, match="cuda:7"):
        import_torch(_CudaBackend())


# ----------------------------------------------------------------------------- the peers of round 4


def _bm_on(device: str, host: HostData, dtype: str, **kw):
    return BackendMLPSide(resolve_backend(device), host, dtype, seed=1, **kw)


def _train_compiles() -> bool:
    import inspect

    return "compile" in inspect.signature(train).parameters


def _new_sides(host: HostData, dtype: str) -> list:
    """Every side added in round 4 whose library is installed (each test skips the rest)."""
    from backend_mlp.bench.jax_side import JaxJitSide, JaxScanSide, import_jax
    from backend_mlp.bench.numpy_side import HandNumpySide
    from backend_mlp.bench.sklearn_side import SklearnSide, import_sklearn_mlp
    from backend_mlp.bench.workloads import BM_JAX, BM_TORCH

    sides: list = [HandNumpySide(host, dtype, seed=1)]
    if (jax := import_jax()) is not None:
        sides.append(JaxJitSide(jax, host, dtype, seed=1))
        sides.append(JaxScanSide(jax, host, dtype, seed=1))
        if _train_compiles():
            sides.append(_bm_on("jax", host, dtype, label=BM_JAX, compile=True))
    if (mlp := import_sklearn_mlp()) is not None:
        sides.append(SklearnSide(mlp, host, dtype, seed=1))
    try:
        sides.append(_bm_on("torch:cpu", host, dtype, label=BM_TORCH))
    except BackendUnavailableError:
        pass
    return sides


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_new_sides_run_the_identical_workload(data: HostData, dtype: str, rtol: float) -> None:
    """The hand-written NumPy and jax.jit steps (alone and fused in a scan), scikit-learn and train() on JAX /
    PyTorch reach train()'s parameters on NumPy after 12 steps (an epoch's smaller last batch included; the
    scan and train() on JAX fuse 8 of them)."""
    host = data.cast(dtype)
    mine = _bm_on("cpu", host, dtype)
    cost = mine.prepare(TINY, 12)()
    reference = mine.host_parameters()
    sides = _new_sides(host, dtype)
    for side in sides:
        assert side.supports(TINY) is None
        theirs = side.prepare(TINY, 12)()
        assert max_rel_diff(side.host_parameters(), reference) <= rtol, side.label
        if side.label != "sklearn":  # its loss_ is the mean over the last partial_fit call's batches
            assert theirs == pytest.approx(cost, rel=rtol * 100), side.label
    # a second block starts from the initial weights again
    for side in sides:
        side.prepare(TINY, 12)()
        assert max_rel_diff(side.host_parameters(), reference) <= rtol, side.label


@pytest.mark.parametrize("workload", [TINY, TINY_BN], ids=["plain", "batchnorm"])
def test_the_torch_compile_peer_runs_the_identical_workload(data: HostData, workload: Workload) -> None:
    """``torch.compile`` compiles the whole step (gather, forward, loss, gradient, SGD) as one graph without
    batch norm, and the model with it; either way it reaches train()'s parameters after 12 steps (an epoch's
    smaller last batch included), and a second block starts from the initial weights again."""
    from backend_mlp.bench.torch_side import TorchSide

    torch = _torch()
    host = data.cast("float64")
    mine = _bm_on("cpu", host, "float64")
    cost = mine.prepare(workload, 12)()
    reference = mine.host_parameters()
    theirs = TorchSide(torch, resolve_backend("numpy"), host, "float64", seed=1, compiled=True)
    for _ in range(2):
        loss = theirs.prepare(workload, 12)()
        assert max_rel_diff(theirs.host_parameters(), reference) <= 1e-12
        assert loss == pytest.approx(cost, rel=1e-10)
    assert (workload.name in theirs._steps) == (not workload.batchnorm)  # the one-graph step where it applies


def test_the_torch_compile_peer_compiles_many_workloads_in_one_process(data: HostData) -> None:
    """Five networks, each with a full and a smaller last batch: ten graphs, past dynamo's limit of 8 graphs per
    code object, which with ``fullgraph=True`` fails instead of falling back (a default benchmark compiles 24)."""
    from backend_mlp.bench.torch_side import TorchSide

    torch = _torch()
    host = data.cast("float32")
    side = TorchSide(torch, resolve_backend("numpy"), host, "float32", seed=1, compiled=True)
    for i in range(5):
        workload = Workload(f"tiny{i}", (TINY.layer_dims[0], 6 + i, 10), TINY.batch_size)
        side.prepare(workload, 4)()
        side.warm_up_shapes(workload)  # the epoch's smaller last batch: the second graph
    assert len(side._steps) == 5


def test_hand_written_peers_refuse_batch_norm_with_a_reason(data: HostData) -> None:
    host = data.cast("float64")
    for side in _new_sides(host, "float64"):
        why = side.supports(TINY_BN)
        if side.label.startswith("backend_mlp"):
            assert why is None
        else:
            assert isinstance(why, str) and "batch norm" in why


def test_missing_optional_libraries_skip_their_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without JAX or scikit-learn the benchmark runs the other sides and names what it skipped."""
    from backend_mlp.bench import jax_side, sklearn_side

    monkeypatch.setattr(jax_side, "import_jax", lambda: None)
    monkeypatch.setattr(sklearn_side, "import_sklearn_mlp", lambda: None)
    options = Options(
        workloads=("report", "report-bn"), dtypes=("float64",), parts=("steps",), repeats=1, steps=3,
        sides=("bm", "jax", "sklearn", "numpy"), n_train=600, n_test=20, side_memory=False, verbose=False,
    )  # fmt: skip
    report = Benchmark(options).run()
    assert report["sides_skipped"] == {"jax.jit": "JAX is not installed", "sklearn": "scikit-learn is not installed"}
    plain, bn = report["results"]
    assert plain["numpy by hand"]["us_per_step_median"] > 0 and plain["ratio_vs_numpy_by_hand"] > 0
    assert plain["check_max_rel_diff_numpy_by_hand"] < 1e-12
    assert "numpy by hand" not in bn and "batch norm" in bn["sides_not_run"]["numpy by hand"]
    text = table.format_table(report)
    assert "jax.jit skipped: JAX is not installed" in text and "numpy by hand" in text


def test_ratios_name_the_fastest_path_and_peer() -> None:
    from backend_mlp.bench.runner import ratios

    def timed(seconds: float) -> dict:
        return {"seconds_median": seconds}

    results = {"backend_mlp": timed(4.0), "backend_mlp jax.jit": timed(2.0), "torch": timed(5.0),
               "torch.compile": timed(3.0), "jax.jit": timed(2.5), "numpy by hand": timed(1.0),
               "sklearn": timed(0.5)}  # fmt: skip
    r = ratios(results)
    # the hand-written NumPy step and scikit-learn are reported, but are not the peers to beat
    assert r["fastest_backend_mlp"] == "backend_mlp jax.jit" and r["fastest_peer"] == "jax.jit"
    assert r["ratio_fastest_vs_peer"] == pytest.approx(0.8)
    assert r["ratio_bm_jax_vs_jax"] == pytest.approx(0.8) and r["ratio_vs_numpy_by_hand"] == pytest.approx(4.0)
    assert "fastest_peer" not in ratios({"backend_mlp": timed(1.0), "sklearn": timed(1.0)})


def test_block_length_follows_the_fastest_side_within_a_ceiling() -> None:
    from backend_mlp.bench.runner import steps_for

    assert steps_for([2000.0, 1000.0, 500.0], 1.0) == 2000  # the fastest side runs 1 s, the slowest 4 s
    assert steps_for([2000.0, 50.0], 1.0) == 500  # ... unless the slowest would exceed 10 s
    assert steps_for([1.0], 1.0) == 5 and steps_for([1e9], 1.0) == 20_000


def test_one_core_bound_arithmetic() -> None:
    """The report network's step is 16.4 MFLOP of products (the issue's figure); the bound adds the gather."""
    from backend_mlp.bench.bound import describe, one_core_bound, step_flops

    assert step_flops((784, 20, 7, 5, 10), 256) == 2 * 256 * (3 * (784 * 20 + 20 * 7 + 7 * 5 + 5 * 10) - 784 * 20)
    assert round(step_flops((784, 20, 7, 5, 10), 256) / 1e6, 1) == 16.4
    bound = one_core_bound(TINY, "float32", n_train=2000)
    assert bound["gemm_gflops"] == max(bound["layer1_products_gflops"].values()) > 0
    assert bound["products_us"] == pytest.approx(bound["step_flops"] / bound["gemm_gflops"] / 1e3)
    assert bound["bound_us"] == pytest.approx(bound["products_us"] + bound["gather_us"])
    assert "MFLOP" in describe(bound)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "n_out, m, n_in",
    [(20, 256, 784), (5, 256, 784), (64, 256, 784), (7, 256, 784), (2048, 256, 784), (20, 1024, 784),
     (32, 1024, 256), (20, 256, 1024), (20, 3, 784), (5, 256, 136), (20, 256, 200)],
)
def test_numpy_products_agree_with_matmul_to_rounding(dtype: str, n_out: int, m: int, n_in: int) -> None:
    """NumPy's layout-aware products with the mini-batch gathered as rows (the first layer's ``W @ Xb``
    and ``dZ @ Xb.T``; with n_in=256, a second layer on the transposed activations a rows-first first
    layer leaves) give the plain products to float rounding, and take the rows' side exactly where the
    rule says (float32, a layer narrow for its batch).  Rounding, not bits: which order OpenBLAS sums in
    depends on the CPU's kernel (bit-identical on one Intel AVX-512 host for 784 features, not on an AMD
    one), so each entry is held to the worst-case error of a length-``n`` float sum,
    ``n * eps * sum(|a_i b_i|)``."""
    from backend_mlp.backends.numpy_backend import blas_matmul, blas_weight_gradient

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((1500, n_in)).astype(dtype)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    dZ = rng.standard_normal((n_out, m)).astype(dtype)
    Xb = np.take(rows, rng.permutation(1500)[:m], axis=0).T
    rows_first = dtype == "float32" and 4 * n_out <= m
    eps = float(np.finfo(dtype).eps)
    W64, Xb64, dZ64 = (a.astype(np.float64) for a in (W, Xb, dZ))
    cases = (
        (blas_matmul(W, Xb), W64 @ Xb64, np.abs(W64) @ np.abs(Xb64), n_in),
        (blas_weight_gradient(dZ, Xb), dZ64 @ Xb64.T, np.abs(dZ64) @ np.abs(Xb64).T, m),
    )
    for got, exact, magnitude, n in cases:
        assert got.dtype == np.dtype(dtype) and got.shape == exact.shape
        assert np.all(np.abs(got - exact) <= n * eps * magnitude)
        # the rows-first call returns the transpose of a C-contiguous result
        assert (got.flags.f_contiguous and not got.flags.c_contiguous) == rows_first
    # another layout (a hidden layer's C-contiguous activations) is never taken from the rows' side
    A = np.ascontiguousarray(Xb)
    for got, expected in ((blas_matmul(W, A), W @ A), (blas_weight_gradient(dZ, A), dZ @ A.T)):
        np.testing.assert_array_equal(got, expected)
        assert got.flags.c_contiguous


def test_the_linear_kernels_take_the_backends_products() -> None:
    """``ops_for(mutable, backend.matmul, backend.weight_gradient, backend.input_gradient)``: every forward
    product, weight gradient and gradient handed down goes through the backend's own product, with the results
    of the plain step to float32 rounding."""
    from backend_mlp.backends import NumpyBackend
    from backend_mlp.initialization import initialize_parameters_host
    from backend_mlp.network import _backward, _forward
    from backend_mlp.ops import PURE, ops_for

    calls = []

    def counting(a, b):
        calls.append(("matmul", a.shape, b.shape))
        return NumpyBackend.matmul(a, b)

    def counting_gradient(dZ, A_prev):
        calls.append(("weight_gradient", dZ.shape, A_prev.shape))
        return NumpyBackend.weight_gradient(dZ, A_prev)

    def counting_input_gradient(W, dZ):
        calls.append(("input_gradient", W.shape, dZ.shape))
        return W.T @ dZ

    dims = [784, 20, 7, 10]
    params = {k: v.astype(np.float32) for k, v in initialize_parameters_host(dims, 0, None).items()}
    rng = np.random.default_rng(0)
    rows = rng.random((300, 784), dtype=np.float32)
    Xb = np.take(rows, np.arange(256), axis=0).T
    Y = np.eye(10, dtype=np.float32)[:, rng.integers(0, 10, 256)]
    ops = ops_for(True, counting, counting_gradient, counting_input_gradient)
    assert ops.inplace and ops is ops_for(True, counting, counting_gradient, counting_input_gradient)
    assert ops_for(True) is not ops
    # one hook alone: the other product stays the plain one
    only_gradient, only_matmul = ops_for(False, None, counting_gradient), ops_for(False, counting)
    assert not only_gradient.inplace and only_gradient.matmul(params["W1"], Xb).flags.c_contiguous
    assert only_gradient.weight_gradient is counting_gradient and only_matmul.matmul is counting
    np.testing.assert_array_equal(only_matmul.weight_gradient(Y, Xb), Y @ Xb.T)
    only_input = ops_for(False, None, None, counting_input_gradient)
    assert only_input.input_gradient is counting_input_gradient and not only_input.inplace
    assert only_input.matmul(params["W1"], Xb).flags.c_contiguous  # the plain product
    calls.clear()
    AL, caches, _ = _forward(np, ops, Xb, params, 3, None, True, None)
    grads = _backward(np, ops, AL, Y, caches, 0.0)
    reference, ref_caches, _ = _forward(np, PURE, Xb, params, 3, None, True, None)
    ref_grads = _backward(np, PURE, reference, Y, ref_caches, 0.0)
    assert [c[:2] for c in calls] == [
        ("matmul", (20, 784)), ("matmul", (7, 20)), ("matmul", (10, 7)),
        ("weight_gradient", (10, 256)), ("input_gradient", (10, 7)),
        ("weight_gradient", (7, 256)), ("input_gradient", (7, 20)),
        ("weight_gradient", (20, 256)),  # the first layer hands nothing down
    ]
    np.testing.assert_allclose(AL, reference, rtol=1e-5, atol=1e-7)
    assert sorted(grads) == sorted(ref_grads)
    for k in grads:  # each product agrees to rounding (above); a rows-first layer 1 hands the later
        # products and sums a transposed layout, which BLAS and the reductions may round differently
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-5, atol=1e-7)


def test_sides_and_per_dtype_workloads_from_the_command_line() -> None:
    args = cli.build_parser().parse_args(
        ["--sides", "numpy,jax", "--workloads", "report,wide2048-b256:float32", "--no-compile", "--no-bound"]
    )
    o = cli.options_from_args(args)
    assert o.sides == ("numpy", "jax") and o.workloads == ("report", "wide2048-b256:float32")
    assert not o.compile and not o.bound
    bench = Benchmark(o)
    assert bench.wanted == {"backend_mlp", "numpy by hand"}  # bm always; --no-compile drops jax.jit


def test_numpy_batches_are_fresh_arrays() -> None:
    """A batch is never overwritten by the next one (the step's caches and a record's AL may hold it)."""
    backend = resolve_backend("numpy")
    X_rows = np.arange(40.0).reshape(10, 4)
    Y_rows = np.eye(10)
    Xb, Yb = backend.take_batch(X_rows, Y_rows, np.array([3, 1]))
    kept = Xb.copy(), Yb.copy()
    Xb2, Yb2 = backend.take_batch(X_rows, Y_rows, np.array([0, 9]))
    np.testing.assert_array_equal(Xb, kept[0])
    np.testing.assert_array_equal(Yb, kept[1])
    np.testing.assert_array_equal(Xb, X_rows[[3, 1]].T)
    np.testing.assert_array_equal(Xb2, X_rows[[0, 9]].T)
    assert not np.shares_memory(Xb, Xb2) and not np.shares_memory(Xb, X_rows)


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


def test_blas_note_says_when_openblas_runs_without_avx512_on_a_cpu_that_has_it() -> None:
    def pool(kernel: str | None, api: str = "openblas") -> dict[str, object]:
        return {"internal_api": api, "version": "0.3.31", "architecture": kernel, "num_threads": 1}

    avx512, avx2 = AVX512_FLAGS | {"avx2", "fma"}, frozenset({"avx2", "fma"})
    held = blas_kernel_note([pool("Haswell")], avx512, {"OPENBLAS_CORETYPE": "haswell"})
    assert held is not None and held.startswith("OpenBLAS 0.3.31 on this AVX-512 CPU uses its Haswell kernels")
    assert "because OPENBLAS_CORETYPE=haswell; unset it" in held
    for environ in ({}, {"OPENBLAS_CORETYPE": ""}, {"OPENBLAS_CORETYPE": "SkylakeX"}):  # not what holds it there
        chosen = blas_kernel_note([pool("HASWELL")], avx512, environ)  # static builds name kernels in capitals
        assert chosen is not None and "chose its HASWELL kernels" in chosen and "OPENBLAS_CORETYPE=SkylakeX" in chosen
        assert "because" not in chosen
    for quiet in (
        blas_kernel_note([pool("SkylakeX")], avx512, {}),  # AVX-512 kernels already
        blas_kernel_note([pool("Cooperlake")], avx512, {"OPENBLAS_CORETYPE": "Cooperlake"}),
        blas_kernel_note([pool("Haswell")], avx2, {}),  # the CPU has no AVX-512: Haswell is its best
        blas_kernel_note([pool("Haswell")], AVX512_FLAGS - {"avx512bw"}, {}),  # SkylakeX needs every one
        blas_kernel_note([pool("Haswell", api="mkl")], avx512, {}),  # not OpenBLAS
        blas_kernel_note([pool(None)], avx512, {}),  # threadpoolctl could not tell
        blas_kernel_note([], avx512, {}),
    ):
        assert quiet is None
    info = machine_info()  # this machine's own verdict, recorded with every benchmark and report
    assert info["blas_note"] == blas_kernel_note(info["blas"])


def test_cpu_flags_are_read_from_cpuinfo_text_and_never_raise() -> None:
    text = "processor\t: 0\nflags\t\t: fpu avx2 avx512f\nbugs\t\t: spectre_v1\nprocessor\t: 1\nflags\t: other\n"
    assert cpu_flags(text) == {"fpu", "avx2", "avx512f"}  # the first processor's
    assert cpu_flags("flags without a colon\nvendor_id : x\n") == frozenset()
    assert cpu_flags("") == frozenset()
    assert isinstance(cpu_flags(), frozenset)  # this machine's (empty where there is no /proc/cpuinfo)


def test_the_table_prints_the_blas_note() -> None:
    report = {"device": "cpu", "on_host": True, "results": [], "machine": {"blas_note": "OpenBLAS x uses y"}}
    assert "note: OpenBLAS x uses y" in table.format_table(report).splitlines()
    report["machine"]["blas_note"] = None
    assert not any(line.startswith("note:") for line in table.format_table(report).splitlines())


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
        (["--sides", "bm,tensorflow"], "--sides"),
        (["--workloads", "report:float16"], "--workloads"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_options_fail_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*argv, "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmark: error: ") and needle in err[0], captured.err
    assert captured.out == ""
