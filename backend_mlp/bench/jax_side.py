"""The JAX peer: the workload hand-written as one ``jax.jit`` step, as a JAX user would write it.

Parameters ``W`` (n_l, n_{l-1}) and ``b`` (n_l,) in a list, samples as rows,
``jax.nn.log_softmax`` cross-entropy, ``jax.grad`` and plain SGD; the row
gather of the batch happens inside the jitted function (the indices of a
whole block uploaded once, each step slicing its span with
``lax.dynamic_slice``), and the parameters are donated, so XLA updates them
in place.  Same initial weights and batches as backend_mlp's ``train()``;
float64 through ``jax_enable_x64``.  No batch norm.

:class:`JaxScanSide` runs the same step :data:`~backend_mlp.training.compiled.FUSED_STEPS`
at a time in one :func:`jax.lax.scan`, as backend_mlp's compiled run on JAX does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..initialization import initialize_parameters_host
from ..training.compiled import FUSED_STEPS
from .workloads import JAX, JAX_SCAN, LEARNING_RATE, BlockIndices, HostData, Workload


def import_jax() -> Any:
    """The ``jax`` module with float64 enabled, or ``None`` when JAX is not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64; float32 ones stay float32
    return jax


class JaxJitSide:
    """A hand-written ``jax.jit`` SGD step (gather included) on JAX's CPU device."""

    label = JAX
    predicts = False
    optional = True

    def __init__(self, jax: Any, data: HostData, dtype: str, seed: int) -> None:
        self.jax = jax
        jnp = jax.numpy
        self.dtype = dtype
        self.seed = seed
        self.device = jax.devices("cpu")[0]
        self.X = jax.device_put(np.ascontiguousarray(data.train_images, dtype=dtype), self.device)
        self.y = jax.device_put(data.train_labels.astype(np.int32), self.device)
        self.n_samples = int(self.X.shape[0])
        self._steps: dict[int, Any] = {}  # one compiled step per batch size
        self.parameters: list[tuple[Any, Any]] = []
        self._jnp = jnp

    def supports(self, workload: Workload) -> str | None:
        return "no batch norm in the hand-written step" if workload.batchnorm else None

    def _step(self, size: int) -> Any:
        if size not in self._steps:
            self._steps[size] = self.jax.jit(self._step_function(size), donate_argnums=0)
        return self._steps[size]

    def _step_function(self, size: int) -> Callable[..., Any]:
        """``step(params, X, y, order, start) -> (params, loss)`` on the batch ``order[start:start + size]``."""
        jax, jnp = self.jax, self._jnp

        def loss_fn(params: list[tuple[Any, Any]], xb: Any, yb: Any) -> Any:
            a = xb
            for W, b in params[:-1]:
                a = jax.nn.relu(a @ W.T + b)
            W, b = params[-1]
            logp = jax.nn.log_softmax(a @ W.T + b, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        def step(params: list[tuple[Any, Any]], X: Any, y: Any, order: Any, start: Any) -> Any:
            idx = jax.lax.dynamic_slice(order, (start,), (size,))
            loss, grads = jax.value_and_grad(loss_fn)(params, X[idx], y[idx])
            new = jax.tree_util.tree_map(lambda p, g: p - LEARNING_RATE * g, params, grads)
            return new, loss

        return step

    def _initial(self, workload: Workload) -> list[tuple[Any, Any]]:
        dims = workload.layer_dims
        host = initialize_parameters_host(list(dims), self.seed, None)
        def put(a: np.ndarray) -> Any:
            return self.jax.device_put(a.astype(self.dtype), self.device)

        return [(put(host[f"W{l}"]), put(host[f"b{l}"].ravel())) for l in range(1, len(dims))]

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        block = BlockIndices.of(self.n_samples, workload.batch_size, self.seed, n_steps)
        plan = [(self._step(stop - start), start) for start, stop in block.spans()]
        return self._runner(workload, block, plan)

    def _runner(self, workload: Workload, block: BlockIndices, plan: list[tuple[Any, int]]) -> Callable[[], float]:
        """The timed callable: the compiled calls of ``plan``, ``(function, start in the block's order)``.

        Each function is called once here, from fresh parameters, on an order as long as the block's: a
        jitted function compiles again for every new length of its arguments, and that is not timed."""
        flat = block.flat.astype(np.int32)
        X, y, jax = self.X, self.y, self.jax
        warm = jax.device_put(flat, self.device)
        for fn in {id(fn): fn for fn, _ in plan}.values():
            jax.block_until_ready(fn(self._initial(workload), X, y, warm, 0))
        params = self._initial(workload)

        def run() -> float:
            nonlocal params
            order = jax.device_put(flat, self.device)  # one index upload per block
            loss = None
            for step, start in plan:
                params, loss = step(params, X, y, order, start)
            value = float(loss)  # one read-back, at the end (waits for the queued steps)
            jax.block_until_ready(params)
            self.parameters = params
            return value

        return run

    def host_parameters(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for l, (W, b) in enumerate(self.parameters, start=1):
            out[f"W{l}"] = np.asarray(W, dtype=np.float64)
            out[f"b{l}"] = np.asarray(b, dtype=np.float64).reshape(-1, 1)
        return out


class JaxScanSide(JaxJitSide):
    """:class:`JaxJitSide`'s step, :data:`FUSED_STEPS` consecutive full batches at a time in one
    ``jax.lax.scan`` under ``jax.jit`` (parameters donated), the leftover steps one by one."""

    label = JAX_SCAN

    def _scan(self, size: int) -> Any:
        key = -size  # beside the single steps, keyed by batch size
        if key not in self._steps:
            jax, jnp = self.jax, self._jnp
            one = self._step_function(size)

            def steps(params: list[tuple[Any, Any]], X: Any, y: Any, order: Any, start: Any) -> Any:
                def body(p: Any, i: Any) -> Any:
                    return one(p, X, y, order, start + i * size)

                params, losses = jax.lax.scan(body, params, jnp.arange(FUSED_STEPS))
                return params, losses[-1]

            self._steps[key] = jax.jit(steps, donate_argnums=0)
        return self._steps[key]

    def prepare(self, workload: Workload, n_steps: int) -> Callable[[], float]:
        """The calls ``train(compile=True)`` makes for a block (one record step, its last): runs of
        :data:`FUSED_STEPS` full batches within one epoch as one scan, every other step alone."""
        block = BlockIndices.of(self.n_samples, workload.batch_size, self.seed, n_steps)
        m, n, spans = workload.batch_size, self.n_samples, block.spans()
        plan, i = [], 0
        while i < len(spans):
            run = spans[i : i + FUSED_STEPS]
            if (
                i + FUSED_STEPS < len(spans)  # the block's last step is a record step, alone
                and all(stop - start == m for start, stop in run)
                and run[0][0] // n == (run[-1][1] - 1) // n  # one epoch: an epoch is n samples of the order
            ):
                plan.append((self._scan(m), run[0][0]))
                i += FUSED_STEPS
            else:
                plan.append((self._step(spans[i][1] - spans[i][0]), spans[i][0]))
                i += 1
        return self._runner(workload, block, plan)
