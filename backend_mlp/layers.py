"""Linear, ReLU and softmax layers: each forward sits next to its backward.

Conventions (the report's): activations are ``(n_units, m)`` with one column
per sample; ``W`` is ``(n_l, n_{l-1})`` and ``b`` is ``(n_l, 1)``.  Every
function keeps its input dtype and never writes into its arguments.

Two gradient conventions, kept apart on purpose:

* the private kernels (``_linear_backward``, ``_relu_backward``) take the
  gradient of the *cost* with respect to their output, whatever the cost is
  (the network folds the ``1/m`` of the batch mean, and an optimizer's
  scale, into the output layer's ``dZ`` once: the backward is linear in it);
* the report's public functions take *per-sample* gradients ``dA``/``dZ``
  (``m`` times the gradient of the batch-mean cost) and return ``dW``/``db``
  of the batch-mean cost, as in the report.

Kernels that create a temporary and then combine it use an
:class:`~backend_mlp.ops.Ops` (pure, or in place on backends with mutable arrays).
"""

from __future__ import annotations

from typing import Any

from . import validation as V
from .errors import InputValidationError
from .ops import PURE, Ops

Array = Any
LinearCache = tuple[Array, Array, Array]  # (A_prev, W, b)

ACTIVATIONS = ("relu", "softmax")


# ----------------------------------------------------------------------------- linear


def _linear_forward(ops: Ops, A_prev: Array, W: Array, b: Array) -> Array:
    """``Z = W @ A_prev + b`` (n_l, m)."""
    return ops.add(ops.matmul(W, A_prev), b)


def _linear_backward(
    xp: Any, ops: Ops, dZ: Array, A_prev: Array, W: Array, *, need_dA_prev: bool = True
) -> tuple[Array | None, Array, Array]:
    """Given ``dZ`` = dcost/dZ (n_l, m): ``(dA_prev, dW, db)``, each a fresh array.

    ``dW = dZ @ A_prev.T`` (``ops.weight_gradient``), ``db = sum(dZ, axis=1)``,
    ``dA_prev = W.T @ dZ`` (``ops.input_gradient``); ``dA_prev`` is ``None`` when ``need_dA_prev`` is
    false (the first layer).
    """
    dW = ops.weight_gradient(dZ, A_prev)
    db = xp.sum(dZ, axis=1, keepdims=True)
    dA_prev = ops.input_gradient(W, dZ) if need_dA_prev else None
    return dA_prev, dW, db


def linear_forward(A_prev: Array, W: Array, b: Array) -> tuple[Array, LinearCache]:
    """``Z = W @ A_prev + b`` for ``A_prev`` (n_{l-1}, m); returns ``(Z, (A_prev, W, b))``."""
    _check_linear(A_prev, W, b)
    return _linear_forward(PURE, A_prev, W, b), (A_prev, W, b)


def linear_backward(dZ: Array, cache: LinearCache) -> tuple[Array, Array, Array]:
    """Given per-sample ``dZ`` (n_l, m), return ``(dA_prev, dW, db)``.

    ``dW = dZ @ A_prev.T / m``, ``db = sum(dZ, axis=1) / m``, ``dA_prev = W.T @ dZ``.
    """
    if not isinstance(cache, tuple) or len(cache) != 3:
        raise InputValidationError(
            f"cache: received {type(cache).__name__}; expected the (A_prev, W, b) tuple returned by linear_forward"
        )
    A_prev, W, b = cache
    V.common_namespace({"dZ": dZ, "A_prev": A_prev, "W": W, "b": b})
    xp = _check_linear(A_prev, W, b)
    V.check_same_dtype({"dZ": dZ}, "W", W.dtype)
    _check_same_shape("dZ", dZ, (int(W.shape[0]), int(A_prev.shape[1])), "Z = W @ A_prev + b")
    if A_prev.shape[1] == 0:
        raise InputValidationError("dZ: received 0 samples (columns); expected at least one sample")
    m = dZ.shape[1]
    dA_prev, dW, db = _linear_backward(xp, PURE, dZ, A_prev, W)
    return dA_prev, dW / m, db / m


def _check_linear(A_prev: Array, W: Array, b: Array) -> Any:
    xp = V.common_namespace({"A_prev": A_prev, "W": W, "b": b})
    V.check_ndim("W", W, 2, "(n_l, n_{l-1})")
    V.check_real_floating("W", W, xp)
    V.check_same_dtype({"A_prev": A_prev, "b": b}, "W", W.dtype)
    V.check_samples_as_columns("A_prev", A_prev, int(W.shape[1]), "n_{l-1}")
    if V.shape_of(b) != (int(W.shape[0]), 1):
        raise InputValidationError(
            f"b: received shape {V.shape_of(b)}; expected ({W.shape[0]}, 1), one entry per row of W"
        )
    return xp


# ----------------------------------------------------------------------------- ReLU


def _relu_forward(xp: Any, Z: Array) -> Array:
    return xp.maximum(Z, 0.0)


def _relu_backward(xp: Any, dA: Array, Z: Array, ops: Ops = PURE) -> Array:
    """``dZ = dA * (Z > 0)``."""
    # mask * dA rather than where(Z > 0, dA, 0): the same values (a zero may carry dA's sign),
    # and about ten times faster on NumPy, whose where() branches on every element; the mask is
    # fresh, so in place it becomes dZ without another allocation
    return ops.mul(xp.astype(Z > 0, dA.dtype), dA)


def relu(Z: Array) -> tuple[Array, Array]:
    """``A = max(Z, 0)``; returns ``(A, Z)`` (``Z`` is the activation cache)."""
    xp = _check_floating("Z", Z)
    return _relu_forward(xp, Z), Z


def relu_backward(dA: Array, cache: Array) -> Array:
    """``dZ = dA * (Z > 0)`` for the cached pre-activation ``Z``."""
    xp = _check_pair(dA, cache)
    return _relu_backward(xp, dA, cache)


# ----------------------------------------------------------------------------- softmax


def _softmax(xp: Any, ops: Ops, Z: Array) -> Array:
    """Column-wise softmax, the column maximum subtracted first (finite for any finite logits)."""
    E = xp.exp(Z - xp.max(Z, axis=0, keepdims=True))
    return ops.div(E, xp.sum(E, axis=0, keepdims=True))


def _softmax_backward(xp: Any, dA: Array, S: Array) -> Array:
    """Vector-Jacobian product of softmax with output ``S``: ``S * (dA - sum(S * dA, axis=0))``."""
    return S * (dA - xp.sum(S * dA, axis=0, keepdims=True))


def softmax(Z: Array) -> tuple[Array, Array]:
    """Column-wise softmax of logits ``Z`` (n_classes, m); returns ``(A, Z)``.

    The column maximum is subtracted first, so logits of any finite size
    (``±1e4`` included) give finite probabilities that sum to one.
    """
    xp = _check_floating("Z", Z)
    V.check_ndim("Z", Z, 2, "(n_classes, m) of logits, one column per sample")
    if Z.shape[0] == 0:
        raise InputValidationError(f"Z: received shape {V.shape_of(Z)}; expected at least one class (row)")
    return _softmax(xp, PURE, Z), Z


def softmax_backward(dA: Array, cache: Array) -> Array:
    """Vector-Jacobian product of softmax for the cached logits ``Z``.

    Training uses the fused, exact softmax + cross-entropy gradient ``AL - Y``
    instead (:func:`backend_mlp.losses.cross_entropy_backward`).
    """
    xp = _check_pair(dA, cache)
    V.check_ndim("cache", cache, 2, "(n_classes, m), the logits returned by softmax")
    return _softmax_backward(xp, dA, _softmax(xp, PURE, cache))


# ----------------------------------------------------------------------------- one layer


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


def _check_floating(name: str, x: Array) -> Any:
    xp = V.common_namespace({name: x})
    V.check_real_floating(name, x, xp)
    return xp


def _check_same_shape(name: str, x: Array, shape: tuple[int, ...], what: str) -> None:
    if V.shape_of(x) != shape:
        raise InputValidationError(f"{name}: received shape {V.shape_of(x)}; expected {shape}, the shape of {what}")


def _check_pair(dA: Array, cache: Array) -> Any:
    """``dA`` and the activation cache: same backend, floating dtype, same shape and dtype."""
    xp = V.common_namespace({"dA": dA, "cache": cache})
    V.check_real_floating("cache", cache, xp)
    V.check_same_dtype({"dA": dA}, "cache", cache.dtype)
    _check_same_shape("dA", dA, V.shape_of(cache), "the cached activation input")
    return xp
