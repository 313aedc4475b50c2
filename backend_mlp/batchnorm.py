"""Batch normalisation with learnable scale/shift, exact backward and running statistics.

Each feature (row) of ``A`` (n, m) is normalised over the batch (columns):
``xhat = (A - mean) / sqrt(var + eps)`` with the biased batch variance, then
``out = gamma * xhat + beta`` (``gamma``, ``beta`` of shape (n, 1)).  With
``gamma=None`` the scale/shift is skipped (the report's plain normalisation).
In inference the running mean/variance replace the batch statistics.
Running variance uses the unbiased batch variance (as PyTorch does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backends import namespace_of

Array = Any
DEFAULT_EPS = 1e-5
DEFAULT_MOMENTUM = 0.1


@dataclass(frozen=True)
class BatchNormCache:
    """What the backward pass needs: normalised input, 1/std, scale, and the batch statistics."""

    xhat: Array
    inv_std: Array
    gamma: Array | None
    mean: Array
    var: Array
    batch_statistics: bool


def apply_batchnorm(
    A: Array,
    gamma: Array | None = None,
    beta: Array | None = None,
    *,
    eps: float = DEFAULT_EPS,
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
    return _batchnorm_forward(xp, A, gamma, beta, eps, running_mean, running_var, training)


def _batchnorm_forward(
    xp: Any,
    A: Array,
    gamma: Array | None,
    beta: Array | None,
    eps: float,
    running_mean: Array | None,
    running_var: Array | None,
    training: bool,
) -> tuple[Array, BatchNormCache]:
    # sum / m gives the same bits as xp.mean and skips its Python-level overhead (a hot path);
    # the in-place operations act on fresh temporaries only
    if training:
        m = A.shape[1]
        mean = xp.sum(A, axis=1, keepdims=True) / m
        centred = A - mean
        var = xp.sum(centred * centred, axis=1, keepdims=True) / m
    else:
        if running_mean is None or running_var is None:
            raise ValueError("inference-mode batch norm needs running_mean and running_var")
        mean, var = running_mean, running_var
        centred = A - mean
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = centred
    xhat *= inv_std
    if gamma is None:
        out = xhat
    else:
        out = gamma * xhat
        out += beta
    return out, BatchNormCache(xhat, inv_std, gamma, mean, var, training)


def batchnorm_backward(dout: Array, cache: BatchNormCache) -> tuple[Array, Array | None, Array | None]:
    """Exact backward of :func:`apply_batchnorm`; returns ``(dA, dgamma, dbeta)``.

    ``dout`` is per-sample (see :mod:`backend_mlp.layers`); ``dgamma``/``dbeta``
    are gradients of the batch-mean cost (``None`` without scale/shift).  In
    training mode the gradient flows through the batch mean and variance:
    ``dA = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``.
    """
    xp = namespace_of(dout, cache.xhat)
    return _batchnorm_backward(xp, dout, cache)


def _batchnorm_backward(
    xp: Any, dout: Array, cache: BatchNormCache
) -> tuple[Array, Array | None, Array | None]:
    if cache.gamma is None and not cache.batch_statistics:
        return dout * cache.inv_std, None, None
    m = dout.shape[1]
    xhat = cache.xhat
    # sum / m: the same bits as xp.mean without its overhead; in place on fresh arrays only
    mean_dout = xp.sum(dout, axis=1, keepdims=True) / m
    mean_dout_xhat = xp.sum(dout * xhat, axis=1, keepdims=True) / m
    if cache.gamma is None:
        dgamma = dbeta = None
        scale = cache.inv_std
    else:
        dgamma, dbeta = mean_dout_xhat, mean_dout
        scale = cache.gamma * cache.inv_std
    if not cache.batch_statistics:
        return dout * scale, dgamma, dbeta
    # dxhat = gamma * dout, so mean(dxhat) = gamma * dbeta and mean(dxhat * xhat) = gamma * dgamma:
    # dA = gamma * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat)), three (n, m) passes fewer
    dA = dout - mean_dout
    dA -= xhat * mean_dout_xhat
    dA *= scale
    return dA, dgamma, dbeta


def updated_running_statistics(
    running_mean: Array, running_var: Array, cache: BatchNormCache, momentum: float = DEFAULT_MOMENTUM
) -> tuple[Array, Array]:
    """Exponential moving averages after one training batch: ``r <- (1-momentum) r + momentum x``.

    The batch variance is made unbiased (``* m / (m-1)``) when ``m > 1``.
    """
    m = cache.xhat.shape[1]
    unbiased = cache.var * (m / (m - 1)) if m > 1 else cache.var
    new_mean = (1.0 - momentum) * running_mean + momentum * cache.mean
    new_var = (1.0 - momentum) * running_var + momentum * unbiased
    return new_mean, new_var
