"""Batch normalisation with learnable scale/shift, exact backward and running statistics.

Each feature (row) of ``A`` (n, m) is normalised over the batch (columns):
``xhat = (A - mean) / sqrt(var + eps)`` with the biased batch variance, then
``out = gamma * xhat + beta`` (``gamma``, ``beta`` of shape (n, 1)).  With
``gamma=None`` the scale/shift is skipped (the report's plain normalisation).
In inference the running mean/variance replace the batch statistics.
Running variance uses the unbiased batch variance (as PyTorch does).
:class:`BatchNormConfig` holds the one set of defaults (``eps``, ``momentum``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import validation as V
from .backends import namespace_of
from .errors import InputValidationError
from .ops import PURE, Ops

Array = Any

BATCHNORM_POSITIONS = ("after", "before")


@dataclass(frozen=True)
class BatchNormConfig:
    """How batch normalisation is applied to every hidden layer.

    ``position``: ``"after"`` the ReLU (the report's placement) or ``"before"`` it.
    ``affine``: learnable scale ``gamma`` and shift ``beta`` (``False`` gives the
    report's plain normalisation).  ``backprop_statistics``: differentiate
    through the batch mean/variance (``False`` reproduces a common mistake and
    exists for ablations only).  ``momentum``/``eps`` as in PyTorch.
    """

    position: str = "after"
    affine: bool = True
    momentum: float = 0.1
    eps: float = 1e-5
    backprop_statistics: bool = True

    def __post_init__(self) -> None:
        if self.position not in BATCHNORM_POSITIONS:
            raise InputValidationError(
                f"position: received {self.position!r}; expected 'after' or 'before' (BatchNormConfig)"
            )
        for name in ("affine", "backprop_statistics"):
            V.check_bool(name, getattr(self, name))
        momentum = self.momentum
        if not (V.is_real_number(momentum) and 0.0 <= momentum <= 1.0):
            raise InputValidationError(
                f"momentum: received {momentum!r}; expected a number in [0, 1] (BatchNormConfig)"
            )
        V.check_positive_number("eps", self.eps, "1e-5")


def as_batchnorm_config(use_batchnorm: bool | BatchNormConfig | None) -> BatchNormConfig | None:
    """``False``/``None`` -> ``None``; ``True`` -> defaults; a config is returned as is."""
    if isinstance(use_batchnorm, BatchNormConfig):
        return use_batchnorm
    if use_batchnorm is None or use_batchnorm is False:
        return None
    if use_batchnorm is True:
        return BatchNormConfig()
    raise InputValidationError(
        f"use_batchnorm: received {use_batchnorm!r}; expected True, False or a BatchNormConfig"
    )


@dataclass(frozen=True)
class BatchNormCache:
    """What the backward pass needs: normalised input, 1/std, scale, and the batch statistics."""

    xhat: Array
    inv_std: Array
    gamma: Array | None
    mean: Array
    var: Array
    batch_statistics: bool


# ----------------------------------------------------------------------------- kernels


def _batchnorm_forward(
    xp: Any,
    ops: Ops,
    A: Array,
    gamma: Array | None,
    beta: Array | None,
    eps: float,
    running_mean: Array | None,
    running_var: Array | None,
    training: bool,
) -> tuple[Array, BatchNormCache]:
    # sum / m gives the same bits as xp.mean and skips its Python-level overhead (a hot path)
    if training:
        m = A.shape[1]
        mean = xp.sum(A, axis=1, keepdims=True) / m
        centred = A - mean
        var = xp.sum(centred * centred, axis=1, keepdims=True) / m
    else:
        if running_mean is None or running_var is None:
            raise InputValidationError(
                "bn_state: received no running_mean/running_var; expected running statistics for "
                "inference-mode batch norm (initialize_batchnorm_state, updated during training)"
            )
        mean, var = running_mean, running_var
        centred = A - mean
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = ops.mul(centred, inv_std)
    out = xhat if gamma is None else ops.add(gamma * xhat, beta)
    return out, BatchNormCache(xhat, inv_std, gamma, mean, var, training)


def _batchnorm_backward(
    xp: Any, ops: Ops, dout: Array, cache: BatchNormCache
) -> tuple[Array, Array | None, Array | None]:
    """Given ``dout`` = dcost/dout (n, m): ``(dA, dgamma, dbeta)`` (``None`` without scale/shift).

    ``dbeta = sum(dout)``, ``dgamma = sum(dout * xhat)`` over the batch, and
    through the batch statistics ``dA = gamma * inv_std * (dout - dbeta/m - xhat * dgamma/m)``.
    """
    if cache.gamma is None and not cache.batch_statistics:
        return dout * cache.inv_std, None, None
    m = dout.shape[1]
    xhat = cache.xhat
    sum_dout = xp.sum(dout, axis=1, keepdims=True)
    sum_dout_xhat = xp.sum(dout * xhat, axis=1, keepdims=True)
    if cache.gamma is None:
        dgamma = dbeta = None
        scale = cache.inv_std
    else:
        dgamma, dbeta = sum_dout_xhat, sum_dout
        scale = cache.gamma * cache.inv_std
    if not cache.batch_statistics:
        return dout * scale, dgamma, dbeta
    # dxhat = gamma * dout, so the means through the statistics are gamma * dbeta / m and gamma * dgamma / m
    dA = dout - sum_dout / m
    dA = ops.sub(dA, xhat * (sum_dout_xhat / m))
    return ops.mul(dA, scale), dgamma, dbeta


def updated_running_statistics(
    running_mean: Array, running_var: Array, cache: BatchNormCache, momentum: float = BatchNormConfig.momentum
) -> tuple[Array, Array]:
    """Exponential moving averages after one training batch: ``r <- (1-momentum) r + momentum x``.

    The batch variance is made unbiased (``* m / (m-1)``) when ``m > 1``.  Returns new arrays.
    """
    m = cache.xhat.shape[1]
    unbiased = cache.var * (m / (m - 1)) if m > 1 else cache.var
    new_mean = (1.0 - momentum) * running_mean + momentum * cache.mean
    new_var = (1.0 - momentum) * running_var + momentum * unbiased
    return new_mean, new_var


# ----------------------------------------------------------------------------- public functions


def apply_batchnorm(
    A: Array,
    gamma: Array | None = None,
    beta: Array | None = None,
    *,
    eps: float = BatchNormConfig.eps,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    training: bool = True,
) -> tuple[Array, BatchNormCache]:
    """Normalise ``A`` (n, m) per feature; returns ``(out, cache)``.

    ``training=True`` uses the batch statistics (and is differentiable through
    them); ``training=False`` uses ``running_mean``/``running_var`` (n, 1).
    Stays finite for a constant feature and for a batch of one (``xhat = 0``).
    """
    xp = namespace_of(A, gamma, beta, running_mean, running_var)
    V.check_ndim("A", A, 2, "(n, m), one column per sample")
    column = (int(A.shape[0]), 1)
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if v is not None and V.shape_of(v) != column:
            raise InputValidationError(
                f"{name}: received shape {V.shape_of(v)}; expected {column}, one entry per row of A"
            )
    if (gamma is None) != (beta is None):
        raise InputValidationError("gamma, beta: received only one of them; expected both or neither")
    training = V.check_bool("training", training)
    return _batchnorm_forward(xp, PURE, A, gamma, beta, eps, running_mean, running_var, training)


def batchnorm_backward(dout: Array, cache: BatchNormCache) -> tuple[Array, Array | None, Array | None]:
    """Exact backward of :func:`apply_batchnorm`; returns ``(dA, dgamma, dbeta)``.

    ``dout`` and ``dA`` are per-sample (see :mod:`backend_mlp.layers`);
    ``dgamma``/``dbeta`` are gradients of the batch-mean cost (``None``
    without scale/shift).  In training mode the gradient flows through the
    batch mean and variance.
    """
    if not isinstance(cache, BatchNormCache):
        raise InputValidationError(
            f"cache: received {type(cache).__name__}; expected the BatchNormCache returned by apply_batchnorm"
        )
    xp = namespace_of(dout, cache.xhat)
    if V.shape_of(dout) != V.shape_of(cache.xhat):
        raise InputValidationError(
            f"dout: received shape {V.shape_of(dout)}; expected {V.shape_of(cache.xhat)}, the shape of "
            "apply_batchnorm's output"
        )
    dA, dgamma, dbeta = _batchnorm_backward(xp, PURE, dout, cache)
    m = dout.shape[1]
    return dA, None if dgamma is None else dgamma / m, None if dbeta is None else dbeta / m
