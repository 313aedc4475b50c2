"""Linear, ReLU and softmax layers: each forward sits next to its backward.

Conventions (the report's): activations are ``(n_units, m)`` with one column
per sample; ``W`` is ``(n_l, n_{l-1})`` and ``b`` is ``(n_l, 1)``.  Gradients
flowing backwards through activations (``dA``, ``dZ``) are *per-sample*
gradients, i.e. ``m`` times the gradient of the batch-mean cost; parameter
gradients (``dW``, ``db``) are gradients of the batch-mean cost.  Every
function keeps its input dtype.
"""

from __future__ import annotations

from typing import Any

from .backend import namespace_of
from .errors import InputValidationError

Array = Any
LinearCache = tuple[Array, Array, Array]  # (A_prev, W, b)

ACTIVATIONS = ("relu", "softmax")


def linear_forward(A_prev: Array, W: Array, b: Array) -> tuple[Array, LinearCache]:
    """``Z = W @ A_prev + b`` for ``A_prev`` (n_{l-1}, m); returns ``(Z, (A_prev, W, b))``."""
    xp = namespace_of(A_prev, W, b)
    return _linear_forward(xp, A_prev, W, b), (A_prev, W, b)


def _linear_forward(xp: Any, A_prev: Array, W: Array, b: Array) -> Array:
    return xp.matmul(W, A_prev) + b


def linear_backward(dZ: Array, cache: LinearCache) -> tuple[Array, Array, Array]:
    """Given per-sample ``dZ`` (n_l, m), return ``(dA_prev, dW, db)``.

    ``dW = dZ @ A_prev.T / m``, ``db = sum(dZ, axis=1) / m``, ``dA_prev = W.T @ dZ``.
    """
    A_prev, W, b = cache
    xp = namespace_of(dZ, A_prev, W, b)
    return _linear_backward(xp, dZ, A_prev, W)


def _linear_backward(xp: Any, dZ: Array, A_prev: Array, W: Array) -> tuple[Array, Array, Array]:
    m = dZ.shape[1]
    dW = xp.matmul(dZ, A_prev.T) / m
    db = xp.sum(dZ, axis=1, keepdims=True) / m
    dA_prev = xp.matmul(W.T, dZ)
    return dA_prev, dW, db


def relu(Z: Array) -> tuple[Array, Array]:
    """``A = max(Z, 0)``; returns ``(A, Z)`` (``Z`` is the activation cache)."""
    xp = namespace_of(Z)
    return xp.maximum(Z, 0.0), Z


def relu_backward(dA: Array, cache: Array) -> Array:
    """``dZ = dA * (Z > 0)`` for the cached pre-activation ``Z``."""
    xp = namespace_of(dA, cache)
    return _relu_backward(xp, dA, cache)


def _relu_backward(xp: Any, dA: Array, Z: Array) -> Array:
    return xp.where(Z > 0, dA, 0.0)


def softmax(Z: Array) -> tuple[Array, Array]:
    """Column-wise softmax of logits ``Z`` (n_classes, m); returns ``(A, Z)``.

    The column maximum is subtracted first, so logits of any finite size
    (``±1e4`` included) give finite probabilities that sum to one.
    """
    xp = namespace_of(Z)
    return _softmax(xp, Z), Z


def _softmax(xp: Any, Z: Array) -> Array:
    E = xp.exp(Z - xp.max(Z, axis=0, keepdims=True))
    return E / xp.sum(E, axis=0, keepdims=True)


def softmax_backward(dA: Array, cache: Array) -> Array:
    """Vector-Jacobian product of softmax: ``dZ = S * (dA - sum(S * dA, axis=0))``.

    ``cache`` is the logits ``Z``.  Training uses the fused, exact
    softmax + cross-entropy gradient ``AL - Y`` instead (see ``L_model_backward``).
    """
    xp = namespace_of(dA, cache)
    S = _softmax(xp, cache)
    return S * (dA - xp.sum(S * dA, axis=0, keepdims=True))


def linear_activation_forward(
    A_prev: Array, W: Array, b: Array, activation: str
) -> tuple[Array, tuple[LinearCache, Array]]:
    """One layer: linear then ``activation`` (``"relu"`` or ``"softmax"``).

    Returns ``(A, (linear_cache, activation_cache))``.
    """
    check_activation(activation)
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = relu(Z) if activation == "relu" else softmax(Z)
    return A, (linear_cache, activation_cache)


def linear_activation_backward(
    dA: Array, cache: tuple[LinearCache, Array], activation: str
) -> tuple[Array, Array, Array]:
    """Backward of :func:`linear_activation_forward`; returns ``(dA_prev, dW, db)``."""
    check_activation(activation)
    linear_cache, activation_cache = cache
    if activation == "relu":
        dZ = relu_backward(dA, activation_cache)
    else:
        dZ = softmax_backward(dA, activation_cache)
    return linear_backward(dZ, linear_cache)


def check_activation(activation: str) -> None:
    """Raise :class:`InputValidationError` unless ``activation`` is known."""
    if activation not in ACTIVATIONS:
        raise InputValidationError(
            f"activation: received {activation!r}; expected one of {', '.join(map(repr, ACTIVATIONS))}"
        )
