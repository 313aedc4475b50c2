"""Softmax cross-entropy cost with optional L2 regularisation.

``cost = -sum(Y * log(AL)) / m + l2_lambda / (2 m) * sum_l ||W_l||_F^2``
for probabilities ``AL`` and one-hot ``Y``, both (n_classes, m).  Only weights
(``W1, W2, ...``) are regularised, never biases or batch-norm parameters.
"""

from __future__ import annotations

from typing import Any

from .backend import namespace_of

Array = Any


def weight_keys(parameters: dict[str, Array]) -> list[str]:
    """``["W1", "W2", ...]`` in layer order."""
    n_layers = sum(1 for k in parameters if k.startswith("W") and k[1:].isdigit())
    return [f"W{l}" for l in range(1, n_layers + 1)]


def compute_cost(
    AL: Array, Y: Array, parameters: dict[str, Array] | None = None, l2_lambda: float = 0.0
) -> Array:
    """Mean cross-entropy of ``AL`` against one-hot ``Y`` (+ L2 term); a 0-d array.

    Probabilities are clipped below at the dtype's smallest normal number, so
    ``log(0)`` is never taken and the cost stays finite.  ``float(cost)``
    brings it to the host.  ``parameters`` is needed only when ``l2_lambda > 0``.
    """
    weights = [parameters[k] for k in weight_keys(parameters)] if (parameters and l2_lambda) else []
    xp = namespace_of(AL, Y, *weights)
    cost = _cross_entropy(xp, AL, Y)
    if l2_lambda:
        if parameters is None:
            raise ValueError("compute_cost: l2_lambda > 0 needs the parameters (their weights)")
        cost = cost + _l2_penalty(xp, weights, l2_lambda, AL.shape[1])
    return cost


def _cross_entropy(xp: Any, AL: Array, Y: Array) -> Array:
    tiny = xp.finfo(AL.dtype).smallest_normal
    m = AL.shape[1]
    return -xp.sum(Y * xp.log(xp.clip(AL, min=tiny))) / m


def _l2_penalty(xp: Any, weights: list[Array], l2_lambda: float, m: int) -> Array:
    total = sum(xp.sum(W * W) for W in weights)
    return (l2_lambda / (2 * m)) * total
