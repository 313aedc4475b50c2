"""backend_mlp's two sides: its training loop (``train``) and the report's functional API in a user's loop.

Both place the data on the backend once, start every block from
:func:`~backend_mlp.initialization.initialize_parameters_host`'s weights and
read the cost back once, at the end of the block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import Backend
from ..backends.blas_threads import BlasThreadLimit
from ..data import Dataset
from ..losses import compute_cost
from ..network import L_model_backward, L_model_forward, predict, update_parameters
from ..training import TrainingConfig, TrainingState, new_training_state, train
from ..training.compiled import FUSED_STEPS
from .workloads import FUNCTIONAL, LEARNING_RATE, N_CLASSES, TRAIN, BlockIndices, HostData, Workload

#: samples of the validation set ``train()`` checks on (see :class:`BackendMLPSide`)
CHECK_SAMPLES = 256


class BackendMLPSide:
    """backend_mlp's training loop (:func:`~backend_mlp.training.train`) and public ``predict``.

    ``label`` and ``compile`` make the other paths of ``train()``: eager on
    PyTorch, ``compile=True`` on JAX (``jax.jit``) or PyTorch (``torch.compile``).

    ``train()`` checks its network at the start (the initial cost, its divergence
    reference) and at the record step that ends a block, on the validation set or
    else on 4,096 training samples: two forward passes that cost 8-10 ms on the
    report network and about a second on wide2048, more than a short block's steps,
    and that no peer makes.  The side therefore passes a validation set of
    :data:`CHECK_SAMPLES` test images, so the checks cost about two batches' forwards.
    """

    label = TRAIN
    #: whether the predict part times this side
    predicts = True
    #: whether a failure (a missing library, a compiler error) skips the side instead of stopping the benchmark
    optional = False

    def __init__(
        self,
        backend: Backend,
        data: HostData,
        dtype: str,
        seed: int,
        *,
        placed: BackendMLPSide | None = None,
        label: str | None = None,
        compile: bool = False,
    ) -> None:
        """``placed``: a side on the same backend and dtype whose data this one shares (else placed here)."""
        if label is not None:
            self.label = label
            self.predicts = False
            self.optional = True
        self.compile = compile
        self.backend = backend
        self.dtype = dtype
        self.seed = seed
        if placed is not None:
            self.train_data, self.test_X, self.check_data = placed.train_data, placed.test_X, placed.check_data
        else:
            self.train_data = Dataset.from_host(
                data.train_images, data.train_labels, n_classes=N_CLASSES, device=backend, dtype=dtype
            )
            test = Dataset.from_host(
                data.test_images, data.test_labels, n_classes=N_CLASSES, device=backend, dtype=dtype
            )
            self.test_X = test.X
            k = min(CHECK_SAMPLES, test.n_samples)
            self.check_data = Dataset(test.X_rows[:k, ...], test.Y_rows[:k, ...])
        self.n_samples = self.train_data.n_samples
        self.parameters: dict[str, Any] = {}
        self.bn_state: dict[str, Any] = {}

    def fresh_state(self, workload: Workload) -> TrainingState:
        """The initial weights (same bits on every side) and fresh running statistics, on the backend."""
        return new_training_state(self.config(workload, 1), self.train_data.X_rows)

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

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        """Build everything outside the timed region; the returned callable runs the block."""
        config = self.config(workload, n_steps)
        state = self.fresh_state(workload)

        options = {"compile": True} if self.compile else {}

        def run() -> float:
            result = train(self.train_data, config, self.check_data, state=state, **options)
            self.backend.synchronize()
            self.parameters, self.bn_state = result.parameters, result.bn_state
            return result.costs[-1]

        return run

    def supports(self, workload: Workload) -> str | None:
        """``None``: every workload runs."""
        return None

    def warm_up_shapes(self, workload: Workload) -> None:
        """Compiled paths: run past an epoch's last, smaller batch, and past one fused call of
        :data:`FUSED_STEPS` steps, once, so that they compile outside the timing."""
        if self.compile:
            steps = FUSED_STEPS + 1  # the fused call, then the record step
            if self.n_samples % workload.batch_size:
                steps = max(steps, self.n_samples // workload.batch_size + 1)
            self.prepare(workload, steps)()

    def prepare_predict(self, workload: Workload) -> Callable[[], Any]:
        params, bn_state, bn = self.parameters, self.bn_state, workload.bn_config

        def run() -> Any:
            out = predict(self.test_X, params, bn, bn_state if bn is not None else None)
            self.backend.synchronize()
            return out

        return run

    def host_parameters(self) -> dict[str, np.ndarray]:
        """The parameters after the last block, in backend_mlp's names and shapes (float64 host copies)."""
        return {k: self.backend.to_numpy(v).astype(np.float64) for k, v in self.parameters.items()}


class FunctionalSide(BackendMLPSide):
    """The report's public functional API in a user's own loop, on the same batches as ``train``.

    Per step: gather the batch, ``L_model_forward`` (training mode, running
    statistics updated in ``bn_state``), ``L_model_backward``,
    ``update_parameters``, with the checks those public functions make.  The
    block runs with the host BLAS threads ``train()`` uses for this network
    (what ``threadpoolctl.threadpool_limits`` gives a user), so the comparison
    measures the API, not the BLAS thread count.
    """

    label = FUNCTIONAL
    predicts = False

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        state = self.fresh_state(workload)
        block = BlockIndices.of(self.n_samples, workload.batch_size, self.seed, n_steps)
        spans = block.spans()
        xp, backend = self.backend.xp, self.backend
        X_rows, Y_rows = self.train_data.X_rows, self.train_data.Y_rows
        use_batchnorm = workload.batchnorm
        blas = BlasThreadLimit(backend, workload.layer_dims, workload.batch_size)

        def run() -> float:
            with blas.steps():
                return loop()

        def loop() -> float:
            params = state.parameters
            bn_state = dict(state.bn_state) if use_batchnorm else None
            order = backend.asarray(block.flat)  # one index upload per block
            AL = Yb = before = None
            for start, stop in spans:
                idx = order[start:stop]
                Xb = xp.take(X_rows, idx, axis=0).T
                Yb = xp.take(Y_rows, idx, axis=0).T
                AL, caches = L_model_forward(Xb, params, use_batchnorm=use_batchnorm, bn_state=bn_state)
                grads = L_model_backward(AL, Yb, caches)
                before, params = params, update_parameters(params, grads, LEARNING_RATE)
            cost = float(compute_cost(AL, Yb, before))  # one read-back, at the end
            backend.synchronize()
            self.parameters, self.bn_state = params, bn_state or {}
            return cost

        return run
