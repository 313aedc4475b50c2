"""Softmax cross-entropy cost with optional L2 regularisation, each beside its gradient.

``cost = -sum(Y * log(AL)) / m + l2_lambda / (2 m) * sum_l ||W_l||_F^2``
for probabilities ``AL`` and one-hot ``Y``, both (n_classes, m).  Only weights
(``W1, W2, ...``) are regularised, never biases or batch-norm parameters.

Gradients: through the fused softmax + cross-entropy the per-sample gradient
with respect to the logits is ``AL - Y`` (:func:`cross_entropy_backward`);
the L2 term adds ``(l2_lambda / m) * W_l`` to ``dW_l`` (:func:`_l2_gradient`).
"""

from __future__ import annotations

from typing import Any

from . import validation as V
from .errors import InputValidationError

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

    Raises :class:`~backend_mlp.errors.InputValidationError` when ``AL``/``Y`` differ in
    shape or dtype, ``Y`` is not one-hot, ``l2_lambda`` is not a finite number >= 0, or
    ``l2_lambda > 0`` comes without ``parameters``; :class:`~backend_mlp.errors.BackendMismatchError`
    for arrays of two backends or devices.
    """
    xp, weights = _check_cost_arguments(AL, Y, parameters, l2_lambda)
    cost = _cross_entropy(xp, AL, Y)
    if l2_lambda:
        cost = cost + _l2_penalty(xp, weights, l2_lambda, AL.shape[1])
    return cost


def _check_cost_arguments(
    AL: Array, Y: Array, parameters: dict[str, Array] | None, l2_lambda: float
) -> tuple[Any, list[Array]]:
    V.check_nonnegative_number("l2_lambda", l2_lambda, " (0 disables L2)")
    weights: list[Array] = []
    named = {"AL": AL, "Y": Y}
    if l2_lambda:
        if parameters is None:
            raise InputValidationError(
                f"parameters: received None with l2_lambda={l2_lambda!r}; expected the parameters dict "
                "(its weights W1..WL are penalised) whenever l2_lambda > 0"
            )
        V.check_dict("parameters", parameters, "a dict of arrays with keys W1, b1, ..., WL, bL")
        keys = weight_keys(parameters)
        if not keys or any(k not in parameters for k in keys):
            raise InputValidationError(
                f"parameters: received keys {sorted(parameters)!r}; expected weights W1, ..., WL "
                "for the L2 penalty (l2_lambda > 0)"
            )
        named.update({f"parameters[{k!r}]": parameters[k] for k in keys})
        weights = [parameters[k] for k in keys]
    xp = V.common_namespace(named)
    V.check_ndim("AL", AL, 2, "(n_classes, m) of probabilities")
    V.check_real_floating("AL", AL, xp)
    if V.shape_of(Y) != V.shape_of(AL):
        raise InputValidationError(
            f"Y: received shape {V.shape_of(Y)}; expected {V.shape_of(AL)}, the shape of AL "
            "(one-hot, (n_classes, m), samples as columns)"
        )
    V.check_same_dtype({k: v for k, v in named.items() if k != "AL"}, "AL", AL.dtype)
    V.check_has_samples("AL", AL)
    V.check_one_hot("Y", Y, xp)
    return xp, weights


def _cross_entropy(xp: Any, AL: Array, Y: Array) -> Array:
    tiny = xp.finfo(AL.dtype).smallest_normal
    m = AL.shape[1]
    return -xp.sum(Y * xp.log(xp.clip(AL, min=tiny))) / m


def cross_entropy_backward(AL: Array, Y: Array) -> Array:
    """Per-sample gradient of the cross-entropy of ``softmax(Z)`` with respect to the logits ``Z``: ``AL - Y``."""
    return AL - Y


def _l2_penalty(xp: Any, weights: list[Array], l2_lambda: float, m: int) -> Array:
    """``l2_lambda / (2 m) * sum_l ||W_l||_F^2`` (a 0-d array)."""
    total = sum(xp.sum(W * W) for W in weights)
    return (l2_lambda / (2 * m)) * total


def _l2_gradient(W: Array, l2_lambda: float, m: int, scale: float = 1.0) -> Array:
    """``scale`` times the penalty's gradient with respect to ``W``: ``(scale * l2_lambda / m) * W``."""
    return (scale * l2_lambda / m) * W
