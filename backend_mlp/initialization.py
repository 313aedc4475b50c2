"""Parameter and batch-norm state initialisation, drawn on the host.

Weights are He-initialised, ``W_l ~ N(0, 2 / n_{l-1})`` of shape
(n_l, n_{l-1}), biases are zero (n_l, 1).  Numbers come from a seeded host
NumPy generator and are then placed on the chosen backend, so every backend
starts from the identical bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # host-side RNG only

from . import validation as V
from .backends import Backend, resolve_backend, resolve_dtype_name
from .batchnorm import BatchNormConfig, as_batchnorm_config

Array = Any


def parameter_shapes(
    layer_dims: list[int] | tuple[int, ...], use_batchnorm: bool | BatchNormConfig | None = False
) -> dict[str, tuple[int, int]]:
    """The keys and shapes :func:`initialize_parameters` returns, in its order, without drawing anything."""
    dims = list(layer_dims)
    bn = as_batchnorm_config(use_batchnorm)
    n_layers = len(dims) - 1
    shapes: dict[str, tuple[int, int]] = {}
    for l in range(1, n_layers + 1):
        shapes[f"W{l}"], shapes[f"b{l}"] = (dims[l], dims[l - 1]), (dims[l], 1)
        if bn is not None and bn.affine and l < n_layers:
            shapes[f"gamma{l}"] = shapes[f"beta{l}"] = (dims[l], 1)
    return shapes


def batchnorm_state_shapes(layer_dims: list[int] | tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """The keys and shapes :func:`initialize_batchnorm_state` returns (every hidden layer)."""
    dims = list(layer_dims)
    return {k: (dims[l], 1) for l in range(1, len(dims) - 1) for k in (f"running_mean{l}", f"running_var{l}")}


def initialize_parameters_host(
    layer_dims: list[int], seed: int = 0, use_batchnorm: bool | BatchNormConfig = False
) -> dict[str, np.ndarray]:
    """The float64 host arrays of :func:`initialize_parameters` (keys ``W1, b1, gamma1, beta1, ...``)."""
    dims = V.check_layer_dims(layer_dims)
    seed = V.check_seed("seed", seed)
    bn = as_batchnorm_config(use_batchnorm)
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    n_layers = len(dims) - 1
    for l in range(1, n_layers + 1):
        params[f"W{l}"] = rng.standard_normal((dims[l], dims[l - 1])) * np.sqrt(2.0 / dims[l - 1])
        params[f"b{l}"] = np.zeros((dims[l], 1))
        if bn is not None and bn.affine and l < n_layers:
            params[f"gamma{l}"] = np.ones((dims[l], 1))
            params[f"beta{l}"] = np.zeros((dims[l], 1))
    return params


def initialize_parameters(
    layer_dims: list[int],
    seed: int = 0,
    *,
    device: str | Backend = "cpu",
    dtype: str = "float64",
    use_batchnorm: bool | BatchNormConfig = False,
) -> dict[str, Array]:
    """He-initialised parameters for ``layer_dims = [n_x, n_1, ..., n_L]`` on ``device``.

    Returns ``{"W1": (n_1, n_x), "b1": (n_1, 1), ...}``; with batch norm (and
    its default learnable scale/shift) also ``gamma{l}`` = 1 and ``beta{l}`` = 0
    of shape (n_l, 1) for every hidden layer ``l``.
    """
    V.check_layer_dims(layer_dims)
    backend = resolve_backend(device)
    dtype = resolve_dtype_name(dtype)
    host = initialize_parameters_host(layer_dims, seed, use_batchnorm)
    return {k: backend.asarray(v, dtype) for k, v in host.items()}


def initialize_batchnorm_state(
    layer_dims: list[int], *, device: str | Backend = "cpu", dtype: str = "float64"
) -> dict[str, Array]:
    """Running statistics for every hidden layer: ``running_mean{l}`` = 0, ``running_var{l}`` = 1, (n_l, 1)."""
    dims = V.check_layer_dims(layer_dims)
    backend = resolve_backend(device)
    dtype = resolve_dtype_name(dtype)
    fill = {"running_mean": np.zeros, "running_var": np.ones}
    shapes = batchnorm_state_shapes(dims)
    return {k: backend.asarray(fill[k.rstrip("0123456789")](shape), dtype) for k, shape in shapes.items()}
