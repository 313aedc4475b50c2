"""The PyTorch side: the same workload written as a PyTorch user would, on the hardware backend_mlp runs on.

``nn.Sequential(Linear, ReLU, BatchNorm1d, ...)`` (batch norm after the ReLU,
as in the report), ``F.cross_entropy``, ``torch.optim.SGD`` and eager autograd;
backend_mlp's initial weights copied bit for bit and the training loop's batches
replayed.  The ``torch.compile`` side compiles the whole step as one graph where
it can: the gather, forward, loss, gradient (``torch.func.grad_and_value``) and
SGD update (``fullgraph=True``, one static graph per batch size); with batch
norm, whose running statistics change in place, it compiles the model and keeps
autograd and ``torch.optim.SGD`` around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import Backend, torch_on_same_hardware
from ..backends.torch_backend import with_own_code
from ..errors import BackendUnavailableError
from ..initialization import initialize_parameters_host
from .workloads import COMPILE, LEARNING_RATE, TORCH, BlockIndices, HostData, Workload


def import_torch(backend: Backend) -> Any:
    """The ``torch`` module, or ``None`` when PyTorch is not installed.

    Raises :class:`BackendUnavailableError` when ``backend`` computes on a CUDA
    device that PyTorch cannot see (the comparison must run on the same hardware).
    """
    try:
        import torch
    except ImportError:
        return None
    try:
        torch_on_same_hardware(backend)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"device {backend.name!r} computes on {backend.hardware}, but PyTorch cannot use it ({exc}), "
            "so the comparison cannot run on the same hardware"
        ) from None
    return torch


class TorchSide:
    """The workload in PyTorch (eager autograd, or ``torch.compile`` with ``compiled=True``)."""

    predicts = True

    def __init__(
        self, torch: Any, hardware_of: Backend, data: HostData, dtype: str, seed: int, *, compiled: bool = False
    ) -> None:
        """``hardware_of``: the backend whose hardware (CPU or CUDA device) PyTorch computes on."""
        self.torch = torch
        #: the PyTorch backend of that hardware: synchronize() and device memory peaks
        self.backend = torch_on_same_hardware(hardware_of)
        self.device = self.backend.device
        self.tdtype = getattr(torch, dtype)
        self.dtype = dtype
        self.seed = seed
        self.compiled = compiled
        self.label = COMPILE if compiled else TORCH
        self.X = self._tensor(data.train_images.astype(dtype, copy=False))
        self.y = self._tensor(data.train_labels.astype(np.int64, copy=False))
        self.test_X = self._tensor(data.test_images.astype(dtype, copy=False))
        self.n_samples = int(self.X.shape[0])
        self._models: dict[str, Any] = {}
        self._steps: dict[str, Callable[[dict[str, Any], Any], tuple[dict[str, Any], Any]]] = {}
        self.model: Any = None

    def supports(self, workload: Workload) -> str | None:
        """``None``: every workload runs."""
        return None

    def _tensor(self, host: np.ndarray) -> Any:
        t = self.torch.from_numpy(np.ascontiguousarray(host))  # shares memory on the CPU
        return t.to(self.device)

    def synchronize(self) -> None:
        self.backend.synchronize()

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

    def _compiled_step(self, workload: Workload) -> Callable[[dict[str, Any], Any], tuple[dict[str, Any], Any]]:
        """``step(params, idx) -> (new params, loss)``: one SGD step as one compiled graph (no batch norm)."""
        if workload.name not in self._steps:
            torch, F = self.torch, self.torch.nn.functional
            from torch.func import functional_call, grad_and_value

            model, _ = self._build(workload)
            X, y = self.X, self.y

            def loss_of(params: dict[str, Any], xb: Any, yb: Any) -> Any:
                return F.cross_entropy(functional_call(model, params, (xb,)), yb)

            def step(params: dict[str, Any], idx: Any) -> tuple[dict[str, Any], Any]:
                grads, loss = grad_and_value(loss_of)(params, X[idx], y[idx])
                return {k: v - LEARNING_RATE * grads[k] for k, v in params.items()}, loss

            # a code object per workload: with fullgraph, a graph past the limit of one code object fails
            self._steps[workload.name] = torch.compile(with_own_code(step), fullgraph=True, dynamic=False)
        return self._steps[workload.name]

    def _whole_step_compiled(self, workload: Workload) -> bool:
        return self.compiled and not workload.batchnorm

    @staticmethod
    def _parameters(model: Any) -> dict[str, Any]:
        """The model's parameters by name, detached: the compiled step's input (it returns new ones)."""
        return {k: v.detach() for k, v in model.named_parameters()}

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
        block = BlockIndices.of(self.n_samples, workload.batch_size, self.seed, n_steps)
        spans = block.spans()
        X, y = self.X, self.y
        self.model = model
        if self._whole_step_compiled(workload):
            step = self._compiled_step(workload)

            def run_compiled() -> float:
                order = torch.from_numpy(block.flat).to(self.device)  # one index upload per block
                params = self._parameters(model)
                loss = None
                for start, stop in spans:
                    params, loss = step(params, order[start:stop])
                with torch.no_grad():  # the model holds the result: host_parameters() and predict read it
                    for k, v in model.named_parameters():
                        v.copy_(params[k])
                value = float(loss.item())  # one read-back, at the end
                self.synchronize()
                return value

            return run_compiled

        def run() -> float:
            order = torch.from_numpy(block.flat).to(self.device)  # one index upload per block
            loss = None
            for start, stop in spans:
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
        last = self.n_samples % workload.batch_size
        if not last:
            return
        model, runnable = self._build(workload)
        self._reset(model, workload)
        if self._whole_step_compiled(workload):
            self._compiled_step(workload)(self._parameters(model), self.torch.arange(last, device=self.device))
            self.synchronize()
            return
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
        """The parameters after the last block, in backend_mlp's names and shapes (float64 host copies)."""
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
