"""The yardstick: a minimal hand-written NumPy step of the same workload (preallocated buffers, ``out=``).

What a performance-minded NumPy user writes for this one network and
nothing else: samples as rows (the gather is contiguous and the matmuls take
the rows as they come), every intermediate preallocated once per block and
written with ``out=`` (except the gathered images: a fresh ``np.take`` measured
faster than gathering into a reused buffer), the softmax
cross-entropy gradient ``(p - y) * (-lr / m)`` folded into the output layer
once, and the SGD increments added into the weights in place.  No checks, no
batch norm, no other optimizer.  Same initial weights
(:func:`~backend_mlp.initialization.initialize_parameters_host`), same batches
and the same host BLAS threads as backend_mlp's ``train()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import resolve_backend
from ..backends.blas_threads import BlasThreadLimit
from ..data.prep import one_hot
from ..initialization import initialize_parameters_host
from .workloads import HAND_NUMPY, LEARNING_RATE, N_CLASSES, BlockIndices, HostData, Workload


class HandNumpySide:
    """The workload as one hand-written NumPy function per step (no batch norm)."""

    label = HAND_NUMPY
    predicts = False
    optional = True

    def __init__(self, data: HostData, dtype: str, seed: int) -> None:
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.X = np.ascontiguousarray(data.train_images, dtype=self.dtype)  # (n, 784), samples as rows
        self.Y = one_hot(data.train_labels, N_CLASSES, dtype=dtype, samples_as="rows")  # (n, 10)
        self.n_samples = int(self.X.shape[0])
        self.parameters: dict[str, np.ndarray] = {}

    def supports(self, workload: Workload) -> str | None:
        """``None``, or why this side cannot run ``workload``."""
        return "no batch norm in the hand-written step" if workload.batchnorm else None

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        dims = workload.layer_dims
        L = len(dims) - 1
        host = initialize_parameters_host(list(dims), self.seed, None)
        Ws = [host[f"W{l}"].astype(self.dtype) for l in range(1, L + 1)]  # (n_l, n_{l-1})
        bs = [host[f"b{l}"].astype(self.dtype).reshape(-1) for l in range(1, L + 1)]  # (n_l,)
        block = BlockIndices.of(self.n_samples, workload.batch_size, self.seed, n_steps)
        steps = {size: _Buffers(dims, size, self.dtype) for size in {b - a for a, b in block.spans()}}
        blas = BlasThreadLimit(resolve_backend("numpy"), dims, workload.batch_size)
        X, Y, flat, spans = self.X, self.Y, block.flat, block.spans()
        self.parameters = {}

        def run() -> float:
            with blas.steps():
                for start, stop in spans[:-1]:
                    steps[stop - start].step(X, Y, flat[start:stop], Ws, bs)
                start, stop = spans[-1]  # the loss once per block, as train() records it
                loss = float(steps[stop - start].step(X, Y, flat[start:stop], Ws, bs, with_loss=True))
            self.parameters = {
                **{f"W{l}": W for l, W in enumerate(Ws, start=1)},
                **{f"b{l}": b.reshape(-1, 1) for l, b in enumerate(bs, start=1)},
            }
            return loss

        return run

    def host_parameters(self) -> dict[str, np.ndarray]:
        return {k: v.astype(np.float64) for k, v in self.parameters.items()}


class _Buffers:
    """Every intermediate of one step at one batch size, allocated once."""

    def __init__(self, dims: tuple[int, ...], m: int, dtype: np.dtype) -> None:
        L = len(dims) - 1
        self.m = m
        self.scale = -LEARNING_RATE / m
        self.xb = np.empty((m, dims[0]), dtype)  # replaced by each step's gather
        self.yb = np.empty((m, dims[-1]), dtype)
        self.Z = [np.empty((m, n), dtype) for n in dims[1:]]  # pre-activations (the last: logits)
        # the first product in the faster BLAS call for this dtype and shape (see numpy_backend.blas_matmul):
        # rows @ W1.T in float32 with a narrow first layer, else W1 @ rows.T into a transposed buffer
        self.first_by_rows = dtype == np.float32 and 4 * dims[1] <= m
        if not self.first_by_rows:
            self.Z[0] = np.empty((dims[1], m), dtype).T
        self.A = [np.empty((m, n), dtype) for n in dims[1:-1]]  # ReLU outputs
        self.dZ = [np.empty((m, n), dtype) for n in dims[1:]]
        self.dW = [np.empty((dims[l], dims[l - 1]), dtype) for l in range(1, L + 1)]
        self.db = [np.empty(dims[l], dtype) for l in range(1, L + 1)]
        self.mask = [np.empty((m, n), dtype) for n in dims[1:-1]]
        self.col = np.empty((m, 1), dtype)

    def step(
        self, X: np.ndarray, Y: np.ndarray, idx: np.ndarray, Ws: list[np.ndarray], bs: list[np.ndarray],
        with_loss: bool = False,
    ) -> Any:
        """One SGD step on rows ``idx``, updating ``Ws``/``bs`` in place; with ``with_loss``, returns the
        batch's cross-entropy before the update."""
        xb, yb, Z, A, dZ = self.xb, self.yb, self.Z, self.A, self.dZ
        # the images into a fresh array: np.take(..., mode="clip", out=<reused buffer>) measured slower in
        # float32 (113 against 85 microseconds for 256 random rows; the same in float64), the labels in place
        self.xb = xb = np.take(X, idx, axis=0)
        np.take(Y, idx, axis=0, out=yb, mode="clip")
        L = len(Ws)
        prev = xb
        for l in range(L):
            if l == 0 and not self.first_by_rows:
                np.matmul(Ws[0], xb.T, out=Z[0].T)
            else:
                np.matmul(prev, Ws[l].T, out=Z[l])
            Z[l] += bs[l]
            if l < L - 1:
                np.maximum(Z[l], 0, out=A[l])
                prev = A[l]
        # softmax over each row, then the fused cross-entropy gradient (p - y) * (-lr / m)
        logits, col = Z[-1], self.col
        np.max(logits, axis=1, keepdims=True, out=col)
        np.subtract(logits, col, out=logits)
        np.exp(logits, out=logits)
        np.sum(logits, axis=1, keepdims=True, out=col)
        np.divide(logits, col, out=logits)
        loss = -np.vdot(yb, np.log(np.maximum(logits, np.finfo(logits.dtype).tiny))) / self.m if with_loss else None
        np.subtract(logits, yb, out=dZ[-1])
        dZ[-1] *= self.scale
        for l in range(L - 1, -1, -1):
            inputs = A[l - 1] if l else xb
            np.matmul(dZ[l].T, inputs, out=self.dW[l])
            np.sum(dZ[l], axis=0, out=self.db[l])
            if l:
                np.matmul(dZ[l], Ws[l], out=dZ[l - 1])
                np.greater(Z[l - 1], 0, out=self.mask[l - 1])
                dZ[l - 1] *= self.mask[l - 1]
            Ws[l] += self.dW[l]
            bs[l] += self.db[l]
        return loss
