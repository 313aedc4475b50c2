"""The one-core lower bound of a training step, measured on the machine that runs the benchmark.

A step of an MLP on the host cannot be faster than its matrix products at
the best rate this core's BLAS reaches, plus the gather of the batch's rows
at the rate this machine's memory delivers them.  Measured here, with one
BLAS thread:

* ``gemm_gflops``: the best rate of the first layer's products (the largest
  ones), ``W1 @ Xb`` in both BLAS orientations and ``dZ1 @ Xb.T``, on a
  batch already in cache;
* ``gather_us``: ``np.take`` of ``batch_size`` random rows of an MNIST-sized
  training set (the median over many different batches, so from memory);
* ``step_flops``: ``2 m`` times the multiply-adds of every product of a step
  (forward ``W @ A``, ``dW = dZ @ A.T``, ``dA = W.T @ dZ`` except the first
  layer's, which is never formed);
* ``bound_us = step_flops / gemm_gflops + gather_us``.

The elementwise work (ReLU, softmax, sums, the update) is left out, so the
bound is optimistic: no implementation reaches it.
"""

from __future__ import annotations

import statistics
import time
from itertools import pairwise
from typing import Any

import numpy as np

from .workloads import N_FEATURES, Workload


def step_flops(layer_dims: tuple[int, ...], batch_size: int) -> int:
    """Floating-point operations of the products of one SGD step (2 per multiply-add)."""
    macs = sum(3 * a * b for a, b in pairwise(layer_dims)) - layer_dims[0] * layer_dims[1]
    return 2 * batch_size * macs


def _best_seconds(fn: Any, repeats: int = 7, number: int = 20) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def one_core_bound(workload: Workload, dtype: str, n_train: int, seed: int = 0) -> dict[str, Any]:
    """The bound of one step of ``workload`` in ``dtype`` and how it was derived (JSON-ready)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng((seed, 3))
    m, n1 = workload.batch_size, workload.layer_dims[1]
    X = rng.random((n_train, N_FEATURES), dtype=np.float32).astype(dtype, copy=False)
    W1 = rng.standard_normal((n1, N_FEATURES)).astype(dtype)
    dZ1 = rng.standard_normal((n1, m)).astype(dtype)
    rows = np.take(X, rng.permutation(n_train)[:m], axis=0)
    number = max(1, int(2e7 // (2 * m * n1 * N_FEATURES)))  # about 20 MFLOP per timing
    with threadpool_limits(1, user_api="blas"):
        products = {
            "W1 @ Xb": _best_seconds(lambda: W1 @ rows.T, number=number),
            "(Xb.T @ W1.T).T": _best_seconds(lambda: rows @ W1.T, number=number),
            "dZ1 @ Xb.T": _best_seconds(lambda: dZ1 @ rows, number=number),
        }
    flops_one = 2 * m * n1 * N_FEATURES
    gflops = {k: flops_one / s / 1e9 for k, s in products.items()}
    best_rate = max(gflops.values())
    batches = [rng.integers(0, n_train, m) for _ in range(400)]
    gathers = []
    for i in range(3):
        start = time.perf_counter()
        for idx in batches[i::3]:
            np.take(X, idx, axis=0)
        gathers.append((time.perf_counter() - start) / len(batches[i::3]))
    gather_s = statistics.median(gathers)
    row_bytes = N_FEATURES * np.dtype(dtype).itemsize
    flops = step_flops(workload.layer_dims, m)
    return {
        "layer1_products_gflops": gflops,
        "gemm_gflops": best_rate,
        "step_flops": flops,
        "products_us": flops / (best_rate * 1e9) * 1e6,
        "gather_us": gather_s * 1e6,
        "gather_gbytes_per_second": m * row_bytes / gather_s / 1e9,
        "bound_us": (flops / (best_rate * 1e9) + gather_s) * 1e6,
    }


def describe(bound: dict[str, Any]) -> str:
    """The bound's arithmetic in one line."""
    return (
        f"{bound['step_flops'] / 1e6:.1f} MFLOP at {bound['gemm_gflops']:.1f} GFLOP/s = "
        f"{bound['products_us']:.0f} us, + gather {bound['gather_us']:.0f} us "
        f"({bound['gather_gbytes_per_second']:.2f} GB/s) = {bound['bound_us']:.0f} us"
    )
