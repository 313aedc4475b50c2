"""The scikit-learn peer: ``MLPClassifier(solver="sgd")`` trained by ``partial_fit`` on the same batches.

Made comparable as far as its API allows: ``batch_size`` and
``learning_rate_init`` as backend_mlp's, constant learning rate, no momentum,
no L2 (``alpha=0``), ReLU, no shuffling (the batches are backend_mlp's: one
``partial_fit`` call per epoch segment of a block, on the rows of that
segment in the training loop's order, which ``partial_fit`` cuts into the
same batches).  scikit-learn has no argument for initial weights: a first
``partial_fit`` call builds the model, then backend_mlp's initial weights are
copied into ``coefs_``/``intercepts_`` (in place: its SGD updates those
arrays), so the identical-workload check compares it like the others.  What
it still does that the others do not, and is part of its time: input
validation of every call (a pass over the segment), the loss of every batch,
and the per-call bookkeeping (``loss_curve_``).  No batch norm.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..initialization import initialize_parameters_host
from .workloads import LEARNING_RATE, N_CLASSES, SKLEARN, BlockIndices, HostData, Workload


def import_sklearn_mlp() -> Any:
    """``sklearn.neural_network.MLPClassifier``, or ``None`` when scikit-learn is not installed."""
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    return MLPClassifier


class SklearnSide:
    """``MLPClassifier(solver="sgd")`` on backend_mlp's initial weights and batches."""

    label = SKLEARN
    predicts = False
    optional = True

    def __init__(self, mlp_classifier: Any, data: HostData, dtype: str, seed: int) -> None:
        self.MLPClassifier = mlp_classifier
        self.dtype = dtype
        self.seed = seed
        self.X = np.ascontiguousarray(data.train_images, dtype=dtype)
        self.y = data.train_labels
        self.n_samples = int(self.X.shape[0])
        self.model: Any = None

    def supports(self, workload: Workload) -> str | None:
        return "MLPClassifier has no batch norm" if workload.batchnorm else None

    def _model(self, workload: Workload) -> Any:
        """A fresh classifier holding backend_mlp's initial weights."""
        dims = workload.layer_dims
        model = self.MLPClassifier(
            hidden_layer_sizes=dims[1:-1],
            activation="relu",
            solver="sgd",
            alpha=0.0,
            batch_size=workload.batch_size,
            learning_rate="constant",
            learning_rate_init=LEARNING_RATE,
            momentum=0.0,
            nesterovs_momentum=False,
            shuffle=False,
            early_stopping=False,
            n_iter_no_change=2**31 - 1,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(self.X[: workload.batch_size], self.y[: workload.batch_size], classes=range(N_CLASSES))
        host = initialize_parameters_host(list(dims), self.seed, None)
        for l in range(1, len(dims)):
            model.coefs_[l - 1][...] = host[f"W{l}"].T
            model.intercepts_[l - 1][...] = host[f"b{l}"].ravel()
        return model

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        model = self._model(workload)
        block = BlockIndices.of(self.n_samples, workload.batch_size, self.seed, n_steps)
        # one partial_fit call per epoch segment (a smaller last batch ends an epoch)
        segments, first = [], 0
        for i, (start, stop) in enumerate(block.spans()):
            if stop - start < workload.batch_size or i == block.n_steps - 1:
                segments.append(block.flat[block.offsets[first] : stop])
                first = i + 1
        X, y = self.X, self.y
        self.model = model

        def run() -> float:
            for rows in segments:
                model.partial_fit(X[rows], y[rows])
            return float(model.loss_)  # the mean loss of the last call's batches

        return run

    def host_parameters(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for l, (W, b) in enumerate(zip(self.model.coefs_, self.model.intercepts_, strict=True), start=1):
            out[f"W{l}"] = W.T.astype(np.float64)
            out[f"b{l}"] = b.astype(np.float64).reshape(-1, 1)
        return out
