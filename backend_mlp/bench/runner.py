"""Running the comparison: warm-up, the identical-workload check, alternating timed blocks, medians, ratios.

Sides (each a ``label``, ``prepare(workload, n_steps)`` returning the
callable to time, ``host_parameters()`` and ``supports(workload)``):
backend_mlp's paths (``train`` eager on the chosen device, the functional API
in a user's loop, ``train`` eager on PyTorch, ``train(compile=True)`` on JAX
and on PyTorch) and the peers (PyTorch eager and ``torch.compile``, a
hand-written ``jax.jit`` step (alone, and fused in a ``lax.scan``), a minimal hand-written NumPy step,
scikit-learn's ``MLPClassifier``); the PyTorch sides run on
``backend.hardware``, where backend_mlp computes.  A side whose library is
missing, that cannot run a workload (batch norm) or whose compiler fails is
skipped with a note, never a crash.  Results are JSON-ready records, one per
part, workload and dtype.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import resolve_backend
from ..backends.blas_threads import BlasThreadLimit
from ..errors import BackendMLPError
from ..machine import machine_info
from .backend_mlp_side import BackendMLPSide, FunctionalSide
from .bound import describe as describe_bound
from .bound import one_core_bound
from .memory import SIDES as MEMORY_SIDES
from .memory import measure_section_memory, measure_side_memory
from .torch_side import TorchSide, import_torch
from .workloads import (
    BACKEND_MLP_PATHS,
    BM_JAX,
    BM_TORCH,
    BM_TORCH_COMPILE,
    CHECK_STEPS,
    COMPILE,
    DEFAULT_EPOCH_WORKLOADS,
    DTYPES,
    FAST_PEERS,
    FUNCTIONAL,
    HAND_NUMPY,
    JAX,
    JAX_SCAN,
    N_TEST,
    N_TRAIN,
    SKLEARN,
    TORCH,
    TRAIN,
    WORKLOADS,
    HostData,
    Workload,
    mnist_data,
    samples_in_steps,
    synthetic_data,
)

PARTS = ("steps", "epoch", "predict", "memory")
DEFAULT_PARTS = ("steps", "epoch", "predict")

#: the ``--sides`` names of the sides, in the order they are built (``bm``, the reference, always runs)
SIDE_KEYS = {
    "bm": TRAIN,
    "fn": FUNCTIONAL,
    "bm-torch": BM_TORCH,
    "bm-jax": BM_JAX,
    "bm-torch-compile": BM_TORCH_COMPILE,
    "torch": TORCH,
    "torch-compile": COMPILE,
    "jax": JAX,
    "jax-scan": JAX_SCAN,
    "numpy": HAND_NUMPY,
    "sklearn": SKLEARN,
}
#: the sides timed unless ``--sides`` says otherwise (those of earlier rounds: the full set takes longer)
DEFAULT_SIDES = ("bm", "fn", "torch", "torch-compile")
#: the sides ``--no-compile`` leaves out
COMPILED_SIDES = (BM_JAX, BM_TORCH_COMPILE, COMPILE, JAX, JAX_SCAN)
#: suffix of the ``check_max_rel_diff`` / ``max_rel_diff_end`` keys of each side compared with ``train``
DIFF_SUFFIX = {
    TORCH: "",
    COMPILE: "_compile",
    FUNCTIONAL: "_functional",
    BM_TORCH: "_bm_torch",
    BM_JAX: "_bm_jax",
    BM_TORCH_COMPILE: "_bm_torch_compile",
    JAX: "_jax",
    JAX_SCAN: "_jax_scan",
    HAND_NUMPY: "_numpy_by_hand",
    SKLEARN: "_sklearn",
}
#: ``key: (numerator side, denominator side)``: ratios of median block times
RATIOS = {
    "ratio_vs_torch": (TRAIN, TORCH),
    "ratio_vs_torch_compile": (TRAIN, COMPILE),
    "ratio_functional_vs_train": (FUNCTIONAL, TRAIN),
    "ratio_functional_vs_torch": (FUNCTIONAL, TORCH),
    "ratio_vs_numpy_by_hand": (TRAIN, HAND_NUMPY),
    "ratio_vs_jax": (TRAIN, JAX),
    "ratio_vs_sklearn": (TRAIN, SKLEARN),
    "ratio_bm_jax_vs_jax": (BM_JAX, JAX),
    "ratio_bm_jax_vs_jax_scan": (BM_JAX, JAX_SCAN),
    "ratio_bm_torch_vs_torch": (BM_TORCH, TORCH),
    "ratio_bm_torch_compile_vs_torch_compile": (BM_TORCH_COMPILE, COMPILE),
}


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
    functional: bool = True
    #: ``--sides`` names (see :data:`SIDE_KEYS`); ``compile``/``functional`` still leave theirs out
    sides: tuple[str, ...] = DEFAULT_SIDES
    torch_threads: int | None = None
    data_dir: str | None = None
    n_train: int = N_TRAIN
    n_test: int = N_TEST
    seed: int = 0
    side_memory: bool = True
    #: measure the one-core bound of each steps record (CPU only, see :mod:`.bound`)
    bound: bool = True
    verbose: bool = True


def max_rel_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """``max over parameters of max|a - b| / max|b|``; ``inf`` if the keys differ."""
    if set(a) != set(b):
        return math.inf
    worst = 0.0
    for k in a:
        scale = float(np.max(np.abs(b[k]))) or 1.0
        worst = max(worst, float(np.max(np.abs(a[k] - b[k]))) / scale)
    return worst


def alternate(
    sides: Sequence[Any], prepare: Callable[[Any], Callable[[], Any]], repeats: int
) -> dict[str, dict[str, Any]]:
    """Time every side ``repeats`` times, alternating (the order rotates, and flips every other repeat).

    Only the callable ``prepare(side)`` returns is timed; ``prepare`` builds
    fresh state outside the timing.  Returns ``{label: {"seconds_median", "seconds"}}``.
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


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The :data:`RATIOS` whose two sides were both timed, and the fastest backend_mlp path against the
    fastest peer of :data:`FAST_PEERS` (``fastest_backend_mlp``, ``fastest_peer``, ``ratio_fastest_vs_peer``)."""
    out: dict[str, Any] = {
        key: results[a]["seconds_median"] / results[b]["seconds_median"]
        for key, (a, b) in RATIOS.items()
        if a in results and b in results
    }
    ours = [s for s in BACKEND_MLP_PATHS if s in results]
    peers = [s for s in FAST_PEERS if s in results]
    if ours and peers:
        best = min(ours, key=lambda s: results[s]["seconds_median"])
        peer = min(peers, key=lambda s: results[s]["seconds_median"])
        out.update(
            fastest_backend_mlp=best,
            fastest_peer=peer,
            ratio_fastest_vs_peer=results[best]["seconds_median"] / results[peer]["seconds_median"],
        )
    return out


#: the slowest side's block may take at most this many times ``min_seconds``
SLOWEST_BLOCK_FACTOR = 10


def steps_for(rates: list[float], min_seconds: float) -> int:
    """Steps per block (5 to 20,000): enough for the *fastest* side to take ``min_seconds``, so that no
    side's block is dominated by its per-call costs (``train()``'s checks, a compiled function's upload
    and read-back), but no more than the slowest side runs in ``SLOWEST_BLOCK_FACTOR * min_seconds``."""
    wanted = math.ceil(min_seconds * max(rates))
    ceiling = math.ceil(SLOWEST_BLOCK_FACTOR * min_seconds * min(rates))
    return int(min(20_000, max(5, min(wanted, ceiling))))


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _compiled(side: Any) -> bool:
    return side.label in COMPILED_SIDES


class Benchmark:
    """Runs the selected parts and collects JSON-ready records."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.backend = resolve_backend(options.device)  # BackendUnavailableError without the library/device
        self.torch = import_torch(self.backend)  # ... or when PyTorch cannot use backend.hardware
        if self.torch is not None and options.torch_threads:
            self.torch.set_num_threads(options.torch_threads)
        self.records: list[dict[str, Any]] = []
        self.compile_skipped: str | None = None if options.compile else "disabled (--no-compile)"
        if self.torch is None:
            self.compile_skipped = "PyTorch is not installed"
        wanted = {SIDE_KEYS[k] for k in options.sides} | {TRAIN}
        if not options.compile:
            wanted -= set(COMPILED_SIDES)
        if not options.functional:
            wanted.discard(FUNCTIONAL)
        self.wanted = wanted
        #: ``{side label: why it did not run}``, for the report and the table's notes
        self.skipped: dict[str, str] = {}

    def log(self, text: str) -> None:
        if self.o.verbose:
            print(text, file=sys.stderr, flush=True)

    def skip(self, label: str, why: str) -> None:
        if label not in self.skipped:
            self.skipped[label] = why
            self.log(f"  {label} skipped: {why}")

    def sides(self, data: HostData, dtype: str, with_compile: bool) -> list[Any]:
        """backend_mlp's ``train`` first (every other side is compared with it), then the others that
        were asked for and can run here (the others are noted in :attr:`skipped`)."""
        train_side = BackendMLPSide(self.backend, data, dtype, self.o.seed)
        sides: list[Any] = [train_side]
        want = self.wanted if with_compile else self.wanted - set(COMPILED_SIDES)
        if FUNCTIONAL in want:
            sides.append(FunctionalSide(self.backend, data, dtype, self.o.seed, placed=train_side))
        for label, build in self._builders(data, dtype):
            if label not in want:
                continue
            try:
                side = build()
            except (ImportError, BackendMLPError) as exc:
                side = None
                self.skip(label, f"{type(exc).__name__}: {exc}".splitlines()[0])
            if side is not None:
                sides.append(side)
        return sides

    def _builders(self, data: HostData, dtype: str) -> list[tuple[str, Callable[[], Any]]]:
        """``(label, build)`` of every side after ``train`` and the functional API; ``build`` returns
        ``None`` (after noting why) or raises ImportError / BackendMLPError when the side cannot run here."""
        seed, torch = self.o.seed, self.torch

        def on(library: str, label: str, compile: bool = False) -> Any:
            """``train()`` on ``library`` where ``--device`` computes: ``torch:cpu`` / ``jax:cpu`` on the
            CPU, ``torch:cuda:N`` / ``jax:cuda:N`` beside a GPU backend on CUDA device N."""
            device = f"{library}:{self.backend.hardware}"
            return BackendMLPSide(resolve_backend(device), data, dtype, seed, label=label, compile=compile)

        def torch_side(compiled: bool) -> Any:
            if torch is None:
                return self.skip(COMPILE if compiled else TORCH, "PyTorch is not installed")
            if compiled and self.compile_skipped is not None:
                return self.skip(COMPILE, self.compile_skipped)
            return TorchSide(torch, self.backend, data, dtype, seed, compiled=compiled)

        def peer(label: str, importer: Callable[[], Any], what: str, make: Callable[[Any], Any]) -> Any:
            if self.backend.hardware != "cpu":
                return self.skip(label, f"timed on the CPU only, not {self.backend.hardware}")
            module = importer()
            return self.skip(label, f"{what} is not installed") if module is None else make(module)

        from .jax_side import JaxJitSide, JaxScanSide, import_jax
        from .numpy_side import HandNumpySide
        from .sklearn_side import SklearnSide, import_sklearn_mlp

        return [
            (BM_TORCH, lambda: on("torch", BM_TORCH)),
            (BM_JAX, lambda: on("jax", BM_JAX, compile=True)),
            (BM_TORCH_COMPILE, lambda: on("torch", BM_TORCH_COMPILE, compile=True)),
            (TORCH, lambda: torch_side(False)),
            (COMPILE, lambda: torch_side(True)),
            (JAX, lambda: peer(JAX, import_jax, "JAX", lambda jax: JaxJitSide(jax, data, dtype, seed))),
            (JAX_SCAN, lambda: peer(JAX_SCAN, import_jax, "JAX", lambda jax: JaxScanSide(jax, data, dtype, seed))),
            (HAND_NUMPY, lambda: peer(HAND_NUMPY, lambda: np, "NumPy", lambda _: HandNumpySide(data, dtype, seed))),
            (SKLEARN, lambda: peer(SKLEARN, import_sklearn_mlp, "scikit-learn",
                                   lambda mlp: SklearnSide(mlp, data, dtype, seed))),
        ]

    def run(self) -> dict[str, Any]:
        started = time.time()
        load_before = _loadavg()
        data: HostData | None = None
        if any(p != "memory" for p in self.o.parts):
            if self.o.data_dir:
                data = mnist_data(self.o.data_dir)
            else:
                data = synthetic_data(self.o.seed, self.o.n_train, self.o.n_test)
            for dtype in self.o.dtypes:
                sides = self.sides(data.cast(dtype), dtype, with_compile="steps" in self.o.parts)
                if "steps" in self.o.parts:
                    for entry in self.o.workloads:
                        name, _, only = entry.partition(":")  # "wide2048-b256:float32": that dtype only
                        if not only or only == dtype:
                            self.steps_part(sides, WORKLOADS[name], dtype)
                if "epoch" in self.o.parts or "predict" in self.o.parts:
                    eager = [s for s in sides if s.label in (TRAIN, FUNCTIONAL, TORCH)]
                    for name in self.o.epoch_workloads:
                        self.epoch_and_predict(eager, WORKLOADS[name], dtype)
                del sides
        if "memory" in self.o.parts:
            self.log("memory: Section 4 on MNIST, float32, in a fresh subprocess ...")
            self.records.append(measure_section_memory(self.o.data_dir))
        return {
            "device": self.backend.name,
            "hardware": self.backend.hardware,
            "on_host": self.backend.on_host,
            "data": data.source if data is not None else None,
            "options": {k: v for k, v in vars(self.o).items() if k != "verbose"},
            "torch_compile_skipped": self.compile_skipped,
            "sides_skipped": self.skipped,
            "matmul_libraries": matmul_libraries(self.torch),
            "machine": machine_info(self.backend, self.torch),
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
            why = side.supports(workload)
            if why is not None:
                info.setdefault("sides_not_run", {})[side.label] = why
                sides.remove(side)
                continue
            try:
                run = side.prepare(workload, warm_steps)
                t = time.perf_counter()
                run()
                first = time.perf_counter() - t
                if hasattr(side, "warm_up_shapes"):
                    side.warm_up_shapes(workload)
                if _compiled(side):
                    info[f"first_call_seconds_{side.label}"] = first
                    if side.label == COMPILE:
                        info["torch_compile_first_call_seconds"] = first
                run = side.prepare(workload, warm_steps)
                t = time.perf_counter()
                run()
                rates.append(warm_steps / (time.perf_counter() - t))
            except Exception as exc:  # a compiler or an optional peer failing must not stop the benchmark
                if not (_compiled(side) or getattr(side, "optional", False)):
                    raise
                why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
                if side.label == COMPILE:
                    self.compile_skipped = f"torch.compile {why}"
                info.setdefault("sides_not_run", {})[side.label] = why
                self.log(f"  {side.label} {why}")
                sides.remove(side)
        info.update(self.check(sides, workload))
        n = self.o.steps or steps_for(rates, self.o.min_seconds)
        return n, info

    def check(self, sides: list[Any], workload: Workload) -> dict[str, Any]:
        """Parameters of every side after ``CHECK_STEPS`` steps against ``train``'s (``sides[0]``)."""
        for side in sides:
            side.prepare(workload, CHECK_STEPS)()
        return {"check_steps": CHECK_STEPS, **self._diffs(sides, "check_max_rel_diff")}

    @staticmethod
    def _diffs(sides: list[Any], key: str) -> dict[str, float]:
        """``key + suffix``: each side's last parameters against ``sides[0]``'s (see :data:`DIFF_SUFFIX`)."""
        mine = sides[0].host_parameters()
        return {key + DIFF_SUFFIX[s.label]: max_rel_diff(mine, s.host_parameters()) for s in sides[1:]}

    def steps_part(self, sides: list[Any], workload: Workload, dtype: str) -> None:
        self.log(f"steps: {workload.name} {dtype} ...")
        n_steps, info = self._warm_and_size(sides, workload)
        results = alternate(sides, lambda s: s.prepare(workload, n_steps), self.o.repeats)
        record = self._record("steps", workload, dtype, n_steps, results, sides)
        record.update(info)
        if self.o.bound and self.backend.hardware == "cpu":
            bound = one_core_bound(workload, dtype, sides[0].n_samples, self.o.seed)
            record["one_core_bound"] = bound
            best = record.get("fastest_backend_mlp", TRAIN)
            record["ratio_fastest_vs_bound"] = record[best]["us_per_step_median"] / bound["bound_us"]
            self.log(f"  one-core bound: {describe_bound(bound)}")
        if self.o.side_memory:
            for side in sides:
                if side.label in MEMORY_SIDES:
                    record[side.label]["memory"] = self.side_memory(side.label, workload, dtype, n_steps)
        self.records.append(record)
        self.log("  " + short_summary(record))

    def epoch_and_predict(self, sides: list[Any], workload: Workload, dtype: str) -> None:
        n_train = sides[0].n_samples
        n_steps = math.ceil(n_train / workload.batch_size)
        for side in sides:  # warm-up
            side.prepare(workload, min(n_steps, 20))()
        if "epoch" in self.o.parts:
            self.log(f"epoch: {workload.name} {dtype} ...")
            check = self.check(sides, workload)
            results = alternate(sides, lambda s: s.prepare(workload, n_steps), self.o.repeats)
            record = self._record("epoch", workload, dtype, n_steps, results, sides)
            record.update(check)
            record["samples"] = n_train
            self.records.append(record)
            self.log("  " + short_summary(record))
        if "predict" in self.o.parts:
            self.log(f"predict: {workload.name} {dtype} ...")
            predicting = [s for s in sides if s.predicts]
            for side in predicting:  # trained parameters: predictions can be compared
                side.prepare(workload, n_steps)()
            preds = {s.label: s.prepare_predict(workload)() for s in predicting}  # also the warm-up
            results = alternate(predicting, lambda s: s.prepare_predict(workload), self.o.repeats)
            n_test = int(sides[0].test_X.shape[1])
            record = self._record("predict", workload, dtype, 1, results, predicting, samples_per_block=n_test)
            if TORCH in preds:
                a, b = sides[0].backend.to_numpy(preds[TRAIN]), preds[TORCH].cpu().numpy()
                record["prediction_agreement"] = float(np.mean(a == b))
            self.records.append(record)
            self.log("  " + short_summary(record))

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
            samples = samples_in_steps(sides[0].n_samples, workload.batch_size, n_steps)
        for entry in results.values():
            entry["steps_per_second"] = n_steps / entry["seconds_median"] if part != "predict" else None
            if part != "predict":
                entry["us_per_step"] = [t / n_steps * 1e6 for t in entry["seconds"]]
                entry["us_per_step_median"] = entry["seconds_median"] / n_steps * 1e6
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
            **ratios(results),
        }
        if part != "predict":
            # the host BLAS threads train(blas_threads="auto") used for the steps (None: not managed, e.g. CuPy)
            record["backend_mlp_blas_threads"] = BlasThreadLimit(
                self.backend, workload.layer_dims, workload.batch_size
            ).threads
            record.update(self._diffs(sides, "max_rel_diff_end"))
        if COMPILE not in results and part == "steps" and self.torch is not None:
            record["torch_compile_skipped"] = self.compile_skipped
        return record

    def side_memory(self, side: str, workload: Workload, dtype: str, n_steps: int) -> dict[str, Any]:
        """Peak memory of one block of one side, in a fresh process (see :mod:`.memory`)."""
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
        return measure_side_memory(spec)


def matmul_libraries(torch: Any) -> dict[str, str]:
    """Which library forms each side's matrix products on the CPU (versions from the installed packages)."""
    from importlib.metadata import PackageNotFoundError, version

    from ..machine import blas_threadpools

    host = ", ".join(
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, {p.get('num_threads')} threads)"
        for p in blas_threadpools()
        if p.get("internal_api") != "openmp"
    ) or "unknown"
    out = {"numpy (backend_mlp on NumPy, functional, numpy by hand, sklearn)": host}
    if torch is not None:
        config = torch.__config__.show()
        blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith(
            "BLAS_INFO=")), "unknown")
        out["torch (backend_mlp torch, torch, torch.compile)"] = f"{blas}, {torch.get_num_threads()} threads"
    try:
        out["jax (backend_mlp jax.jit, jax.jit, jax.jit scan)"] = (
            f"XLA CPU (own GEMMs: XNNPACK fusions, Eigen), jaxlib {version('jaxlib')}"
        )
    except PackageNotFoundError:
        pass
    return out


def short_summary(record: dict[str, Any]) -> str:
    """One progress line: median block times, ratios and the check."""
    parts = [
        f"{label} {record[label]['seconds_median'] * 1e3:.1f} ms"
        for label in SIDE_KEYS.values()
        if label in record
    ]
    for key, name in (
        ("ratio_vs_torch", "ratio"),
        ("ratio_functional_vs_train", "functional/train"),
        ("ratio_vs_numpy_by_hand", "numpy/by hand"),
        ("ratio_fastest_vs_peer", "fastest/fastest peer"),
    ):
        if key in record:
            parts.append(f"{name} {record[key]:.3f}")
    if "check_max_rel_diff" in record:
        parts.append(f"max rel diff after {record['check_steps']} steps {record['check_max_rel_diff']:.1e}")
    if "check_max_rel_diff_functional" in record:
        parts.append(f"functional {record['check_max_rel_diff_functional']:.1e}")
    return ", ".join(parts)
