"""backend_mlp against PyTorch on the identical workload (``scripts/benchmark.py``).

Both sides get the same network, the same initial weights
(:func:`~backend_mlp.initialization.initialize_parameters_host`, copied into
PyTorch), the same mini-batches (the host permutation the training loop draws,
``training.shuffle_generator(seed)`` per epoch, replayed on the PyTorch
side), the same number of SGD steps, the same dtype and the same device.
backend_mlp runs its real training loop (:func:`~backend_mlp.training.train`);
PyTorch runs what a user would write: ``nn.Linear``/``nn.ReLU``/``nn.BatchNorm1d``
in an ``nn.Sequential``, ``F.cross_entropy``, ``torch.optim.SGD``, eager
autograd, and optionally the same model under ``torch.compile``.

Parts (``--parts``):

``steps``
    ``N`` SGD steps per timed block, for every workload (network x batch size x dtype).
``epoch``
    one full epoch over the 48,000 training images.
``predict``
    class predictions for the 10,000 test images (the public ``predict``,
    input checks included, against ``model.eval()`` under ``torch.inference_mode``).
``memory``
    peak host memory of the report's Section 4 on real MNIST in float32,
    measured in a fresh subprocess (``--memory``).

After a warm-up, the sides alternate ``--repeats`` times (the order flips
every repeat) and medians are reported.  Each side's peak host RSS is
measured per block (the kernel's high-water mark is reset before each block
through ``/proc/self/clear_refs``); on the GPU, device memory comes from
CuPy's memory pool and ``torch.cuda.max_memory_allocated``.  Every block
starts from the initial weights, and the parameters both sides reach after
the block are compared (``max_rel_diff``): that is the check that the
workload really is identical.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, resolve_backend, resolve_dtype_name, to_numpy
from .backends.blas_threads import BlasThreadLimit
from .config import BatchNormConfig
from .dataset import Dataset
from .errors import BackendMLPError, BackendUnavailableError, InputValidationError
from .initialization import initialize_batchnorm_state, initialize_parameters_host
from .jsonio import write_json
from .network import predict
from .training import TrainingConfig, TrainingState, shuffle_generator, train

REPORT_DIMS = (784, 20, 7, 5, 10)
N_TRAIN = 48_000
N_TEST = 10_000
N_FEATURES = 784
N_CLASSES = 10
LEARNING_RATE = 0.009
DTYPES = ("float32", "float64")
PARTS = ("steps", "epoch", "predict", "memory")
DEFAULT_PARTS = ("steps", "epoch", "predict")
#: steps after which both sides' parameters are compared (before chaotic growth of rounding
#: differences: batch norm on 5-unit layers amplifies float32 rounding within ~20 steps)
CHECK_STEPS = 3


@dataclass(frozen=True)
class Workload:
    """One network at one batch size (the dtype is chosen separately)."""

    name: str
    layer_dims: tuple[int, ...]
    batch_size: int
    batchnorm: bool = False

    @property
    def bn_config(self) -> BatchNormConfig | None:
        return BatchNormConfig() if self.batchnorm else None


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("report", REPORT_DIMS, 256),
        Workload("report-bn", REPORT_DIMS, 256, batchnorm=True),
        Workload("wide512-b256", (784, 512, 512, 10), 256),
        Workload("wide512-b1024", (784, 512, 512, 10), 1024),
        Workload("wide2048-b256", (784, 2048, 2048, 10), 256),
        Workload("wide2048-b1024", (784, 2048, 2048, 10), 1024),
    )
}
DEFAULT_EPOCH_WORKLOADS = ("report", "report-bn")
QUICK_WORKLOADS = ("report", "report-bn", "wide512-b256")


# ----------------------------------------------------------------------------- memory readings


def _proc_status_bytes(field: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process from /proc (bytes), or ``None`` off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM); ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak resident set size (bytes): VmHWM, else ``ru_maxrss``."""
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _device_memory_start(device: str, torch: Any) -> None:
    """Forget earlier device allocations so that the next readings are this block's peak."""
    if device != "gpu":
        return
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    except ImportError:
        pass


def _device_memory_peak(device: str, side: str, torch: Any) -> int | None:
    """Peak device memory of the block: CuPy's pool (it keeps freed blocks, so after
    ``free_all_blocks()`` its total is a high-water mark) or ``torch.cuda.max_memory_allocated``."""
    if device != "gpu":
        return None
    if side == "backend_mlp":
        import cupy

        return int(cupy.get_default_memory_pool().total_bytes())
    return int(torch.cuda.max_memory_allocated())


# ----------------------------------------------------------------------------- data


@dataclass
class HostData:
    """Host arrays shared by both sides: ``(m, 784)`` images in [0, 1] and integer labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def cast(self, dtype: str) -> HostData:
        """The images in ``dtype`` (no copy when they already are), shared by both sides."""
        return HostData(
            self.train_images.astype(dtype, copy=False),
            self.train_labels,
            self.test_images.astype(dtype, copy=False),
            self.test_labels,
            self.source,
        )


def synthetic_data(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST) -> HostData:
    """MNIST-sized random data: uniform [0, 1) pixels, labels from a random linear map (learnable)."""
    rng = np.random.default_rng((seed, 2))
    images = rng.random((n_train + n_test, N_FEATURES), dtype=np.float32)
    weights = rng.standard_normal((N_FEATURES, N_CLASSES)).astype(np.float32)
    labels = np.argmax((images - 0.5) @ weights, axis=1).astype(np.int64)
    return HostData(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], f"synthetic (seed {seed})")


def mnist_data(data_dir: str | None) -> HostData:
    """Real MNIST split as in the report (80/20, split seed 0): 48,000 train, 10,000 test."""
    from .mnist import load_mnist, split_train_validation

    mnist = load_mnist(data_dir, dtype="float32")
    tr_x, tr_y, _, _ = split_train_validation(mnist.train_images, mnist.train_labels, 0.2, seed=0)
    return HostData(tr_x, tr_y, mnist.test_images, mnist.test_labels, f"MNIST ({data_dir or 'default location'})")


def batch_schedule(n_samples: int, batch_size: int, seed: int, n_steps: int) -> list[tuple[int, int, int]]:
    """``(epoch, start, stop)`` of every step, as the training loop draws them (see ``_Loop``)."""
    out = []
    epoch, position = -1, n_samples
    for _ in range(n_steps):
        if position >= n_samples:
            epoch, position = epoch + 1, 0
        stop = min(position + batch_size, n_samples)
        out.append((epoch, position, stop))
        position = stop
    return out


def epoch_orders(n_samples: int, seed: int, n_epochs: int) -> list[np.ndarray]:
    """The host permutations of the first ``n_epochs`` epochs (the training loop's generator)."""
    rng = shuffle_generator(seed)
    return [rng.permutation(n_samples) for _ in range(n_epochs)]


# ----------------------------------------------------------------------------- the two sides


class BackendMLPSide:
    """backend_mlp's training loop and ``predict`` on one backend."""

    label = "backend_mlp"

    def __init__(self, backend: Backend, data: HostData, dtype: str, seed: int) -> None:
        self.backend = backend
        self.dtype = dtype
        self.seed = seed
        self.train_data = Dataset.from_host(
            data.train_images, data.train_labels, n_classes=N_CLASSES, device=backend, dtype=dtype
        )
        self.test_X = Dataset.from_host(
            data.test_images, data.test_labels, n_classes=N_CLASSES, device=backend, dtype=dtype
        ).X
        self.parameters: dict[str, Any] = {}
        self.bn_state: dict[str, Any] = {}

    def config(self, workload: Workload, n_steps: int) -> TrainingConfig:
        return TrainingConfig(
            layer_dims=workload.layer_dims,
            learning_rate=LEARNING_RATE,
            num_iterations=n_steps,
            batch_size=workload.batch_size,
            batchnorm=workload.bn_config,
            seed=self.seed,
            record_every=n_steps,  # one cost read-back, at the end
            early_stopping=False,
        )

    def fresh_state(self, workload: Workload) -> TrainingState:
        host = initialize_parameters_host(list(workload.layer_dims), self.seed, workload.bn_config)
        params = {k: self.backend.asarray(v, self.dtype) for k, v in host.items()}
        bn_state = (
            initialize_batchnorm_state(list(workload.layer_dims), device=self.backend, dtype=self.dtype)
            if workload.batchnorm
            else {}
        )
        return TrainingState(parameters=params, bn_state=bn_state)

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        """Build everything outside the timed region; the returned callable runs the block."""
        config = self.config(workload, n_steps)
        state = self.fresh_state(workload)

        def run() -> float:
            result = train(self.train_data, config, state=state)
            self.backend.synchronize()
            self.parameters, self.bn_state = result.parameters, result.bn_state
            return result.costs[-1]

        return run

    def prepare_predict(self, workload: Workload) -> Callable[[], Any]:
        params, bn_state, bn = self.parameters, self.bn_state, workload.bn_config

        def run() -> Any:
            out = predict(self.test_X, params, bn, bn_state if bn is not None else None)
            self.backend.synchronize()
            return out

        return run

    def host_parameters(self) -> dict[str, np.ndarray]:
        """Final parameters in backend_mlp's names and shapes (float64 host copies)."""
        return {k: to_numpy(v).astype(np.float64) for k, v in self.parameters.items()}


class TorchSide:
    """The same workload written as a PyTorch user would (eager autograd, or ``torch.compile``)."""

    def __init__(
        self, torch: Any, device: str, data: HostData, dtype: str, seed: int, *, compiled: bool = False
    ) -> None:
        """``device``: ``"cpu"`` or a CUDA device such as ``"cuda:0"``."""
        self.torch = torch
        self.device = torch.device(device)
        self.tdtype = getattr(torch, dtype)
        self.dtype = dtype
        self.seed = seed
        self.compiled = compiled
        self.label = "torch.compile" if compiled else "torch"
        self.X = self._tensor(data.train_images.astype(dtype, copy=False))
        self.y = self._tensor(data.train_labels.astype(np.int64, copy=False))
        self.test_X = self._tensor(data.test_images.astype(dtype, copy=False))
        self.n = int(self.X.shape[0])
        self._models: dict[str, Any] = {}
        self.model: Any = None

    def _tensor(self, host: np.ndarray) -> Any:
        t = self.torch.from_numpy(np.ascontiguousarray(host))  # shares memory on the CPU
        return t if self.device.type == "cpu" else t.to(self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _build(self, workload: Workload) -> tuple[Any, Any]:
        """The model (built once per workload and dtype) and its runnable form."""
        if workload.name not in self._models:
            nn = self.torch.nn
            dims = workload.layer_dims
            layers: list[Any] = []
            for l in range(1, len(dims)):
                layers.append(nn.Linear(dims[l - 1], dims[l], device=self.device, dtype=self.tdtype))
                if l < len(dims) - 1:
                    layers.append(nn.ReLU())
                    if workload.batchnorm:  # the report's placement: after the ReLU
                        layers.append(nn.BatchNorm1d(dims[l], device=self.device, dtype=self.tdtype))
            model = nn.Sequential(*layers)
            runnable = self.torch.compile(model) if self.compiled else model
            self._models[workload.name] = (model, runnable)
        return self._models[workload.name]

    def _reset(self, model: Any, workload: Workload) -> None:
        """Load backend_mlp's initial weights (same bits) and fresh running statistics."""
        host = initialize_parameters_host(list(workload.layer_dims), self.seed, workload.bn_config)
        torch, nn = self.torch, self.torch.nn
        linears = [m for m in model if isinstance(m, nn.Linear)]
        norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]

        def put(dst: Any, src: np.ndarray) -> None:
            dst.copy_(torch.from_numpy(src.astype(self.dtype).reshape(tuple(dst.shape))))

        with torch.no_grad():
            for l, lin in enumerate(linears, start=1):
                put(lin.weight, host[f"W{l}"])
                put(lin.bias, host[f"b{l}"])
            for l, bn in enumerate(norms, start=1):
                put(bn.weight, host[f"gamma{l}"])
                put(bn.bias, host[f"beta{l}"])
                bn.reset_running_stats()
        model.train()

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        torch = self.torch
        F = torch.nn.functional
        model, runnable = self._build(workload)
        self._reset(model, workload)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        schedule = batch_schedule(self.n, workload.batch_size, self.seed, n_steps)
        orders = epoch_orders(self.n, self.seed, schedule[-1][0] + 1)
        X, y = self.X, self.y
        self.model = model

        def run() -> float:
            order, current = None, -1
            loss = None
            for epoch, start, stop in schedule:
                if epoch != current:  # one index upload per epoch, as in backend_mlp
                    order, current = torch.from_numpy(orders[epoch]).to(self.device), epoch
                idx = order[start:stop]
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(runnable(X[idx]), y[idx])
                loss.backward()
                optimizer.step()
            value = float(loss.item())  # one read-back, at the end
            self.synchronize()
            return value

        return run

    def warm_up_shapes(self, workload: Workload) -> None:
        """Run the last, smaller batch of an epoch once, so ``torch.compile`` recompiles outside the timing."""
        last = self.n % workload.batch_size
        if not last:
            return
        model, runnable = self._build(workload)
        self._reset(model, workload)
        loss = self.torch.nn.functional.cross_entropy(runnable(self.X[:last]), self.y[:last])
        loss.backward()
        model.zero_grad(set_to_none=True)
        self.synchronize()

    def prepare_predict(self, workload: Workload) -> Callable[[], Any]:
        torch = self.torch
        model, runnable = self._build(workload)
        model.eval()
        X = self.test_X

        def run() -> Any:
            with torch.inference_mode():
                out = runnable(X).argmax(dim=1)
            self.synchronize()
            return out

        return run

    def host_parameters(self) -> dict[str, np.ndarray]:
        """Final parameters in backend_mlp's names and shapes (float64 host copies)."""
        nn = self.torch.nn
        out: dict[str, np.ndarray] = {}
        linears = [m for m in self.model if isinstance(m, nn.Linear)]
        norms = [m for m in self.model if isinstance(m, nn.BatchNorm1d)]
        for l, lin in enumerate(linears, start=1):
            out[f"W{l}"] = lin.weight.detach().cpu().double().numpy()
            out[f"b{l}"] = lin.bias.detach().cpu().double().numpy().reshape(-1, 1)
        for l, bn in enumerate(norms, start=1):
            out[f"gamma{l}"] = bn.weight.detach().cpu().double().numpy().reshape(-1, 1)
            out[f"beta{l}"] = bn.bias.detach().cpu().double().numpy().reshape(-1, 1)
        return out


def max_rel_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """``max over parameters of max|a - b| / max|b|``; ``inf`` if the keys differ."""
    if set(a) != set(b):
        return math.inf
    worst = 0.0
    for k in a:
        scale = float(np.max(np.abs(b[k]))) or 1.0
        worst = max(worst, float(np.max(np.abs(a[k] - b[k]))) / scale)
    return worst


# ----------------------------------------------------------------------------- timing


def _alternate(
    sides: Sequence[Any], prepare: Callable[[Any], Callable[[], Any]], repeats: int
) -> dict[str, dict[str, Any]]:
    """Time every side ``repeats`` times, alternating (the order rotates every repeat).

    Only the returned callable is timed; ``prepare`` builds fresh state outside the timing.
    """
    times: dict[str, list[float]] = {s.label: [] for s in sides}
    for r in range(repeats):
        k = r % len(sides)
        order = list(sides[k:]) + list(sides[:k])
        if r % 2:
            order.reverse()
        for side in order:
            run = prepare(side)
            gc.collect()  # not inside the timing
            start = time.perf_counter()
            run()
            times[side.label].append(time.perf_counter() - start)
    return {label: {"seconds_median": statistics.median(ts), "seconds": ts} for label, ts in times.items()}


@dataclass
class Options:
    device: str = "cpu"
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    epoch_workloads: tuple[str, ...] = DEFAULT_EPOCH_WORKLOADS
    dtypes: tuple[str, ...] = DTYPES
    parts: tuple[str, ...] = DEFAULT_PARTS
    repeats: int = 5
    steps: int | None = None
    min_seconds: float = 1.0
    compile: bool = True
    torch_threads: int | None = None
    data_dir: str | None = None
    n_train: int = N_TRAIN
    n_test: int = N_TEST
    seed: int = 0
    side_memory: bool = True
    verbose: bool = True


def _steps_for(rates: list[float], min_seconds: float) -> int:
    """Enough steps for the slower side to take ``min_seconds`` (5 to 20,000)."""
    slowest = min(rates)
    return int(min(20_000, max(5, math.ceil(min_seconds * slowest))))


class Benchmark:
    """Runs the selected parts and collects JSON-ready records."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.backend = resolve_backend(options.device)  # BackendUnavailableError without a GPU
        self.torch = _import_torch(options.device)
        if self.torch is not None and options.torch_threads:
            self.torch.set_num_threads(options.torch_threads)
        self.device_kind = "gpu" if self.backend.name.startswith("cupy") else "cpu"
        self.torch_device = "cpu"
        if self.device_kind == "gpu":
            self.torch_device = f"cuda:{self.backend.device.id}"
        self.records: list[dict[str, Any]] = []
        self.compile_skipped: str | None = None if options.compile else "disabled (--no-compile)"
        if self.torch is None:
            self.compile_skipped = "PyTorch is not installed"

    def log(self, text: str) -> None:
        if self.o.verbose:
            print(text, file=sys.stderr, flush=True)

    def sides(self, data: HostData, dtype: str, with_compile: bool) -> list[Any]:
        sides: list[Any] = [BackendMLPSide(self.backend, data, dtype, self.o.seed)]
        if self.torch is not None:
            sides.append(TorchSide(self.torch, self.torch_device, data, dtype, self.o.seed))
            if with_compile and self.compile_skipped is None:
                sides.append(TorchSide(self.torch, self.torch_device, data, dtype, self.o.seed, compiled=True))
        return sides

    def run(self) -> dict[str, Any]:
        started = time.time()
        load_before = _loadavg()
        data: HostData | None = None
        timed = [p for p in self.o.parts if p != "memory"]
        if timed:
            if self.o.data_dir:
                data = mnist_data(self.o.data_dir)
            else:
                data = synthetic_data(self.o.seed, self.o.n_train, self.o.n_test)
            for dtype in self.o.dtypes:
                sides = self.sides(data.cast(dtype), dtype, with_compile="steps" in self.o.parts)
                if "steps" in self.o.parts:
                    for name in self.o.workloads:
                        self.steps_part(sides, WORKLOADS[name], dtype)
                if "epoch" in self.o.parts or "predict" in self.o.parts:
                    plain = [s for s in sides if not getattr(s, "compiled", False)]
                    for name in self.o.epoch_workloads:
                        self.epoch_and_predict(plain, WORKLOADS[name], dtype)
                del sides
        if "memory" in self.o.parts:
            self.records.append(self.memory_part())
        return {
            "device": self.backend.name,
            "data": data.source if data is not None else None,
            "options": {k: v for k, v in vars(self.o).items() if k != "verbose"},
            "torch_compile_skipped": self.compile_skipped,
            "machine": machine_info(self.torch),
            "load_average_before": load_before,
            "load_average_after": _loadavg(),
            "seconds_total": time.time() - started,
            "results": self.records,
        }

    # -- parts

    def _warm_and_size(self, sides: list[Any], workload: Workload) -> tuple[int, dict[str, Any]]:
        """Warm every side up (compiling where asked), check that all sides compute the same
        parameters after ``CHECK_STEPS`` steps, and choose the steps per block."""
        warm_steps = 3 if max(workload.layer_dims[1:]) >= 1024 else 20
        rates, info = [], {}
        for side in list(sides):
            try:
                run = side.prepare(workload, warm_steps)
                t = time.perf_counter()
                run()
                first = time.perf_counter() - t
                if getattr(side, "compiled", False):
                    side.warm_up_shapes(workload)
                    info["torch_compile_first_call_seconds"] = first
                run = side.prepare(workload, warm_steps)
                t = time.perf_counter()
                run()
                rates.append(warm_steps / (time.perf_counter() - t))
            except Exception as exc:  # torch.compile failing must not stop the benchmark
                if not getattr(side, "compiled", False):
                    raise
                self.compile_skipped = f"torch.compile failed: {type(exc).__name__}: {exc}".splitlines()[0]
                self.log(f"  {self.compile_skipped}")
                sides.remove(side)
        info.update(self._check(sides, workload))
        n = self.o.steps or _steps_for(rates, self.o.min_seconds)
        return n, info

    def _check(self, sides: list[Any], workload: Workload) -> dict[str, Any]:
        """Parameters of every side after ``CHECK_STEPS`` steps against backend_mlp's."""
        out: dict[str, Any] = {"check_steps": CHECK_STEPS}
        for side in sides:
            side.prepare(workload, CHECK_STEPS)()
        mine = sides[0].host_parameters()
        for side in sides[1:]:
            suffix = "_compile" if getattr(side, "compiled", False) else ""
            out["check_max_rel_diff" + suffix] = max_rel_diff(mine, side.host_parameters())
        return out

    def steps_part(self, sides: list[Any], workload: Workload, dtype: str) -> None:
        self.log(f"steps: {workload.name} {dtype} ...")
        n_steps, info = self._warm_and_size(sides, workload)
        results = _alternate(sides, lambda s: s.prepare(workload, n_steps), self.o.repeats)
        record = self._record("steps", workload, dtype, n_steps, results, sides)
        record.update(info)
        if self.o.side_memory:
            for side in sides:
                if not getattr(side, "compiled", False):
                    record[side.label]["memory"] = self.side_memory(side.label, workload, dtype, n_steps)
        self.records.append(record)
        self.log("  " + _short(record))

    def epoch_and_predict(self, sides: list[Any], workload: Workload, dtype: str) -> None:
        n_train = int(sides[0].train_data.n_samples)
        n_steps = math.ceil(n_train / workload.batch_size)
        for side in sides:  # warm-up
            side.prepare(workload, min(n_steps, 20))()
        if "epoch" in self.o.parts:
            self.log(f"epoch: {workload.name} {dtype} ...")
            check = self._check(sides, workload)
            results = _alternate(sides, lambda s: s.prepare(workload, n_steps), self.o.repeats)
            record = self._record("epoch", workload, dtype, n_steps, results, sides)
            record.update(check)
            record["samples"] = n_train
            self.records.append(record)
            self.log("  " + _short(record))
        if "predict" in self.o.parts:
            self.log(f"predict: {workload.name} {dtype} ...")
            for side in sides:  # trained parameters: predictions can be compared
                side.prepare(workload, n_steps)()
            preds = {s.label: s.prepare_predict(workload)() for s in sides}
            for side in sides:
                side.prepare_predict(workload)()  # warm-up
            results = _alternate(sides, lambda s: s.prepare_predict(workload), self.o.repeats)
            n_test = int(sides[0].test_X.shape[1])
            record = self._record("predict", workload, dtype, 1, results, sides, samples_per_block=n_test)
            if "torch" in preds:
                a, b = to_numpy(preds["backend_mlp"]), preds["torch"].cpu().numpy()
                record["prediction_agreement"] = float(np.mean(a == b))
            self.records.append(record)
            self.log("  " + _short(record))

    def _record(
        self,
        part: str,
        workload: Workload,
        dtype: str,
        n_steps: int,
        results: dict[str, dict[str, Any]],
        sides: list[Any],
        samples_per_block: int | None = None,
    ) -> dict[str, Any]:
        samples = samples_per_block
        if samples is None:
            schedule = batch_schedule(int(sides[0].train_data.n_samples), workload.batch_size, 0, n_steps)
            samples = sum(stop - start for _, start, stop in schedule)
        for entry in results.values():
            entry["steps_per_second"] = n_steps / entry["seconds_median"] if part != "predict" else None
            entry["samples_per_second"] = samples / entry["seconds_median"]
        record: dict[str, Any] = {
            "part": part,
            "workload": workload.name,
            "layer_dims": list(workload.layer_dims),
            "batch_size": workload.batch_size,
            "batchnorm": workload.batchnorm,
            "dtype": dtype,
            "steps_per_block": n_steps if part != "predict" else None,
            "samples_per_block": samples,
            "repeats": self.o.repeats,
            **results,
        }
        bm = results["backend_mlp"]["seconds_median"]
        for label, key in (("torch", "ratio_vs_torch"), ("torch.compile", "ratio_vs_torch_compile")):
            if label in results:
                record[key] = bm / results[label]["seconds_median"]
        if part != "predict":
            # the host BLAS threads train(blas_threads="auto") used for the steps (None: not managed, e.g. CuPy)
            record["backend_mlp_blas_threads"] = BlasThreadLimit(
                sides[0].backend, workload.layer_dims, workload.batch_size
            ).threads
            mine = sides[0].host_parameters()
            for side in sides[1:]:
                suffix = "_compile" if getattr(side, "compiled", False) else ""
                record["max_rel_diff_end" + suffix] = max_rel_diff(mine, side.host_parameters())
        if "torch.compile" not in results and part == "steps" and self.torch is not None:
            record["torch_compile_skipped"] = self.compile_skipped
        return record

    def side_memory(self, side: str, workload: Workload, dtype: str, n_steps: int) -> dict[str, Any]:
        """Peak memory of one block of one side, in a fresh process (see :func:`side_memory_child`)."""
        spec = {
            "side": side,
            "workload": workload.name,
            "dtype": dtype,
            "n_steps": n_steps,
            "device": self.o.device,
            "data_dir": self.o.data_dir,
            "n_train": self.o.n_train,
            "n_test": self.o.n_test,
            "seed": self.o.seed,
            "torch_threads": self.o.torch_threads,
        }
        return _run_child("side_memory_child", spec)

    def memory_part(self) -> dict[str, Any]:
        self.log("memory: Section 4 on MNIST, float32, in a fresh subprocess ...")
        return measure_section_memory(self.o.data_dir)


def _short(record: dict[str, Any]) -> str:
    bm = record["backend_mlp"]["seconds_median"]
    text = f"backend_mlp {bm * 1e3:.1f} ms"
    for label in ("torch", "torch.compile"):
        if label in record:
            text += f", {label} {record[label]['seconds_median'] * 1e3:.1f} ms"
    if "ratio_vs_torch" in record:
        text += f", ratio {record['ratio_vs_torch']:.3f}"
    if "check_max_rel_diff" in record:
        text += f", max rel diff after {record['check_steps']} steps {record['check_max_rel_diff']:.1e}"
    return text


def _import_torch(device: str) -> Any:
    try:
        import torch
    except ImportError:
        return None
    if device.startswith(("gpu", "cuda", "cupy")) and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device {device!r}: PyTorch sees no CUDA device, so the comparison cannot run on the GPU"
        )
    return torch


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------- peak memory of Section 4


def section_memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: load MNIST, train the report's section and report the peak RSS (bytes).

    ``spec``: ``data_dir`` (``None``: the default MNIST location), ``section``, ``dtype``.
    """
    from .experiment import SECTIONS, prepare_mnist, run_experiment

    data_dir, section, dtype = spec.get("data_dir"), spec.get("section", "4"), spec.get("dtype", "float32")
    baseline = peak_rss_bytes()
    start = time.perf_counter()
    splits = prepare_mnist(data_dir, dtype=dtype, download=data_dir is None)
    after_load = peak_rss_bytes()
    result, metrics = run_experiment(splits, SECTIONS[section])
    train_set_bytes = (
        int(splits.train.X_rows.shape[0]) * int(splits.train.X_rows.shape[1]) * (4 if dtype == "float32" else 8)
    )
    peak = peak_rss_bytes()
    return {
        "baseline_rss_bytes": baseline,
        "peak_rss_after_load_bytes": after_load,
        "peak_rss_bytes": peak,
        "train_set_bytes": train_set_bytes,
        "peak_over_train_set": peak / train_set_bytes,
        "target_peak_over_train_set": 3.0,
        "steps": metrics["steps"],
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - start,
    }


def measure_section_memory(data_dir: str | None, section: str = "4", dtype: str = "float32") -> dict[str, Any]:
    """:func:`section_memory_child` in a fresh interpreter (PyTorch is never imported there)."""
    out = _run_child("section_memory_child", {"data_dir": data_dir, "section": section, "dtype": dtype})
    return {"part": "memory", "section": section, "dtype": dtype, **out}


def side_memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: place the data, run one block of one side, report its memory.

    ``peak_rss_bytes`` is the peak during the block (the high-water mark is
    reset just before it), so it includes the resident data and libraries;
    ``rss_before_bytes`` is the RSS just before the block.
    """
    device = spec["device"]
    backend = resolve_backend(device)
    gpu = backend.name.startswith("cupy")
    torch = None
    if spec["side"] != "backend_mlp":
        torch = _import_torch(device)
        if torch is None:
            raise BackendUnavailableError("PyTorch is not installed")
        if spec.get("torch_threads"):
            torch.set_num_threads(spec["torch_threads"])
    source = (
        mnist_data(spec["data_dir"])
        if spec["data_dir"]
        else synthetic_data(spec["seed"], spec["n_train"], spec["n_test"])
    )
    data = source.cast(spec["dtype"])
    del source
    workload = WORKLOADS[spec["workload"]]
    if torch is None:
        side: Any = BackendMLPSide(backend, data, spec["dtype"], spec["seed"])
    else:
        torch_device = f"cuda:{backend.device.id}" if gpu else "cpu"
        side = TorchSide(torch, torch_device, data, spec["dtype"], spec["seed"])
    del data
    run = side.prepare(workload, spec["n_steps"])
    _device_memory_start("gpu" if gpu else "cpu", torch)
    rss_before = _proc_status_bytes("VmRSS")
    per_block = _reset_peak_rss()
    run()
    out: dict[str, Any] = {
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_bytes": rss_before,
        "peak_is_per_block": per_block,
    }
    device_peak = _device_memory_peak("gpu" if gpu else "cpu", spec["side"], torch)
    if device_peak is not None:
        out["device_peak_bytes"] = device_peak
    return out


def _run_child(function: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``function(spec)`` of this module in a fresh interpreter; its JSON result, or ``{"error": ...}``."""
    code = (
        "import json, sys; import backend_mlp.benchmarking as b; "
        f"print(json.dumps(b.{function}(json.loads(sys.argv[1]))))"
    )
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["(no output)"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- machine description


def machine_info(torch: Any = None) -> dict[str, Any]:
    """CPU model and cores, RAM, library versions and BLAS, for the record."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": None,
        "logical_cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    info["ram_bytes"] = mem
    import array_api_compat

    info["array_api_compat"] = array_api_compat.__version__
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: v for k, v in p.items() if k in ("internal_api", "prefix", "num_threads", "version", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_blas"] = "mkl" if torch.backends.mkl.is_available() else "other"
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except ImportError:
        pass
    return info


# ----------------------------------------------------------------------------- output


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def format_table(report: dict[str, Any]) -> str:
    """The results as a plain-text table (medians; ratio = backend_mlp time / PyTorch time)."""
    gpu = str(report["device"]).startswith("cupy")
    head = (
        f"{'part':8} {'workload':15} {'dtype':7} {'steps':>6} "
        f"{'bm it/s':>9} {'torch it/s':>10} {'ratio':>6} {'compile it/s':>12} {'ratio_c':>7} "
        f"{'bm samples/s':>12} {'torch samples/s':>15} {'bm MB':>6} {'torch MB':>8} {'max rel diff':>12} "
        f"{'bm thr':>6}"
    )
    lines = [head, "-" * len(head)]
    mem_key = "device_peak_bytes" if gpu else "peak_rss_bytes"
    for r in report["results"]:
        if r["part"] == "memory":
            continue
        bm, th, tc = r["backend_mlp"], r.get("torch"), r.get("torch.compile")
        per_s = "steps_per_second" if r["part"] != "predict" else None

        def rate(e: dict[str, Any] | None, per_s: str | None = per_s) -> str:
            if e is None:
                return "-"
            if per_s is None:
                return f"{1 / e['seconds_median']:.1f}"
            return f"{e[per_s]:.1f}"

        def mem(e: dict[str, Any] | None) -> str:
            return _mb((e or {}).get("memory", {}).get(mem_key))

        lines.append(
            f"{r['part']:8} {r['workload']:15} {r['dtype']:7} {r['steps_per_block'] or '-':>6} "
            f"{rate(bm):>9} {rate(th):>10} {_fmt(r.get('ratio_vs_torch'), '.3f'):>6} "
            f"{rate(tc):>12} {_fmt(r.get('ratio_vs_torch_compile'), '.3f'):>7} "
            f"{bm['samples_per_second']:>12.0f} {_fmt(th and th['samples_per_second'], '.0f'):>15} "
            f"{mem(bm):>6} {mem(th):>8} {_fmt(r.get('check_max_rel_diff'), '.1e'):>12} "
            f"{r.get('backend_mlp_blas_threads') or '-':>6}"
        )
    lines.append("it/s: steps per second (epoch: steps of that epoch; predict: calls per second over 10,000 images)")
    lines.append(
        "ratio: backend_mlp time / PyTorch eager time (below 1: backend_mlp is faster); ratio_c: vs torch.compile"
    )
    if gpu:
        lines.append("MB: peak device memory of one block, each side in a fresh process (CuPy pool / torch.cuda)")
    else:
        lines.append("MB: peak host RSS during one block, each side in a fresh process (data and libraries included)")
    lines.append(f"max rel diff: max|a - b| / max|b| over the parameters of both sides after {CHECK_STEPS} steps")
    lines.append("bm thr: host BLAS threads of backend_mlp's steps (blas_threads='auto'); PyTorch uses its default")
    if report.get("torch_compile_skipped"):
        lines.append(f"torch.compile skipped: {report['torch_compile_skipped']}")
    for r in report["results"]:
        if r["part"] == "memory":
            if "error" in r:
                lines.append(f"memory (Section {r['section']}, {r['dtype']}): failed: {r['error']}")
            else:
                lines.append(
                    f"memory (Section {r['section']}, MNIST, {r['dtype']}): peak RSS {_mb(r['peak_rss_bytes'])} MB "
                    f"= {r['peak_over_train_set']:.2f} x the training set ({_mb(r['train_set_bytes'])} MB; "
                    f"target < 3); after loading {_mb(r['peak_rss_after_load_bytes'])} MB, interpreter "
                    f"{_mb(r['baseline_rss_bytes'])} MB; {r['steps']} steps"
                )
    return "\n".join(lines)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


# ----------------------------------------------------------------------------- command line


def _names(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InputValidationError(
            f"--{what}: received {text!r}; expected a comma separated subset of {', '.join(known)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Time backend_mlp against PyTorch on the identical MLP workload "
        "(same weights, batches, steps, dtype and device).",
    )
    p.add_argument("--device", default="cpu", help="cpu (NumPy vs PyTorch CPU) or gpu / gpu:N (CuPy vs PyTorch CUDA)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"steps part; any of {', '.join(WORKLOADS)}")
    p.add_argument(
        "--epoch-workloads", default=",".join(DEFAULT_EPOCH_WORKLOADS), help="networks for the epoch and predict parts"
    )
    p.add_argument("--dtypes", default=",".join(DTYPES), help="float32,float64")
    p.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"any of {', '.join(PARTS)}")
    p.add_argument("--memory", action="store_true", help="also measure Section 4's peak memory (real MNIST)")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per side (alternating), medians reported")
    p.add_argument("--steps", type=int, default=None, help="SGD steps per block (default: about --min-seconds)")
    p.add_argument(
        "--min-seconds", type=float, default=1.0, help="target duration of one block when --steps is not given"
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument(
        "--no-side-memory", action="store_true", help="skip the per-side peak memory (a fresh process per side)"
    )
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's choice)")
    p.add_argument("--data-dir", default=None, help="real MNIST folder (default: synthetic MNIST-sized data)")
    p.add_argument("--n-train", type=int, default=N_TRAIN, help="synthetic training images (default 48,000)")
    p.add_argument("--n-test", type=int, default=N_TEST, help="synthetic test images (default 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small workloads, 2 repeats, 20 steps, no compile or side memory",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the full results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    parts = _names(args.parts, PARTS, "parts")
    if args.memory and "memory" not in parts:
        parts = (*parts, "memory")
    o = Options(
        device=args.device,
        workloads=_names(args.workloads, tuple(WORKLOADS), "workloads"),
        epoch_workloads=_names(args.epoch_workloads, tuple(WORKLOADS), "epoch-workloads"),
        dtypes=tuple(resolve_dtype_name(d) for d in _names(args.dtypes, DTYPES, "dtypes")),
        parts=parts,
        repeats=args.repeats,
        steps=args.steps,
        min_seconds=args.min_seconds,
        compile=not args.no_compile,
        side_memory=not args.no_side_memory,
        torch_threads=args.torch_threads,
        data_dir=args.data_dir,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        verbose=not args.quiet,
    )
    if args.quick:
        default_workloads = args.workloads == ",".join(WORKLOADS)
        o.workloads = QUICK_WORKLOADS if default_workloads else o.workloads
        o.repeats = min(o.repeats, 2)
        o.steps = args.steps or 20
        o.compile = False
        o.side_memory = False
    if o.repeats < 1 or (o.steps is not None and o.steps < 1) or o.n_train < 1 or o.n_test < 1:
        raise InputValidationError("--repeats, --steps, --n-train, --n-test: expected positive integers")
    too_big = [w for w in (*o.workloads, *o.epoch_workloads) if WORKLOADS[w].batch_size > o.n_train]
    if too_big and not o.data_dir:
        raise InputValidationError(f"--n-train: {o.n_train} is smaller than the batch size of {too_big[0]}")
    return o


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        bench = Benchmark(options)
        report = bench.run()
    except BackendMLPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, report)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
