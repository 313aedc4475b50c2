"""The L-layer network: [LINEAR -> RELU (-> BATCHNORM)] x (L-1) -> LINEAR -> SOFTMAX.

Shapes follow the report: ``X`` is (n_x, m), ``Y`` one-hot (n_classes, m),
parameters ``W{l}`` (n_l, n_{l-1}), ``b{l}`` (n_l, 1), and with batch norm
``gamma{l}``, ``beta{l}`` (n_l, 1) for hidden layers.  Gradients come back as
``dW{l}``, ``db{l}``, ``dgamma{l}``, ``dbeta{l}``.  Batch-norm running
statistics live in a separate ``bn_state`` dict (``running_mean{l}``,
``running_var{l}``) because they are not trained by gradient descent.

The public functions check their arguments and backend once and then call the
private ``_forward``/``_backward``, which the training loop calls directly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from .backend import namespace_of
from .batchnorm import (
    BatchNormCache,
    _batchnorm_backward,
    _batchnorm_forward,
    updated_running_statistics,
)
from .config import BatchNormConfig, as_batchnorm_config
from .errors import InputValidationError
from .layers import _linear_backward, _linear_forward, _relu_backward, _softmax
from .losses import weight_keys

Array = Any


class LayerCache(NamedTuple):
    """What one layer's backward needs.

    ``linear``: ``(A_prev, W, b)``; ``activation``: the array the activation
    was applied to (``Z``, or the batch-norm output when batch norm comes
    before the ReLU); ``batchnorm``: its cache or ``None``; ``position``:
    ``"after"``/``"before"``/``None``.
    """

    linear: tuple[Array, Array, Array]
    activation: Array
    batchnorm: BatchNormCache | None
    position: str | None


def count_layers(parameters: dict[str, Array]) -> int:
    """Number of weight layers ``L`` (keys ``W1..WL``); validates the dict's keys."""
    if not isinstance(parameters, dict):
        raise InputValidationError(
            f"parameters: received {type(parameters).__name__}; expected a dict with keys W1, b1, W2, b2, ..."
        )
    L = len(weight_keys(parameters))
    missing = [k for l in range(1, L + 1) for k in (f"W{l}", f"b{l}") if k not in parameters]
    if L == 0 or missing:
        raise InputValidationError(
            f"parameters: keys {sorted(parameters)!r} lack {missing or ['W1', 'b1']!r}; "
            "expected W1, b1, ..., WL, bL (see initialize_parameters)"
        )
    return L


def L_model_forward(
    X: Array,
    parameters: dict[str, Array],
    use_batchnorm: bool | BatchNormConfig = False,
    *,
    training: bool = True,
    bn_state: dict[str, Array] | None = None,
) -> tuple[Array, list[LayerCache]]:
    """Forward pass; returns ``(AL, caches)`` with ``AL`` (n_classes, m) softmax probabilities.

    With batch norm and ``training=True`` (the default) batch statistics are
    used and, if ``bn_state`` is given, its running statistics are updated in
    place.  With ``training=False`` the running statistics in ``bn_state`` are used.
    """
    L = count_layers(parameters)
    bn = as_batchnorm_config(use_batchnorm)
    if bn is not None:
        _check_batchnorm_arguments(parameters, L, bn, training, bn_state)
    xp = namespace_of(X, *parameters.values(), *(bn_state or {}).values())
    if X.ndim != 2 or X.shape[0] != parameters["W1"].shape[1]:
        raise InputValidationError(
            f"X: received shape {tuple(X.shape)}; expected (n_features={parameters['W1'].shape[1]}, m) "
            "with one column per sample"
        )
    return _forward(xp, X, parameters, L, bn, training, bn_state)


def _check_batchnorm_arguments(
    parameters: dict[str, Array],
    L: int,
    bn: BatchNormConfig,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> None:
    if bn.affine:
        missing = [k for l in range(1, L) for k in (f"gamma{l}", f"beta{l}") if k not in parameters]
        if missing:
            raise InputValidationError(
                f"parameters: batch norm with learnable scale/shift needs {missing!r}; initialise with "
                "initialize_parameters(..., use_batchnorm=True) or use BatchNormConfig(affine=False)"
            )
    if not training:
        missing = [] if bn_state is not None else ["bn_state"]
        if bn_state is not None:
            missing = [
                k for l in range(1, L) for k in (f"running_mean{l}", f"running_var{l}") if k not in bn_state
            ]
        if missing:
            raise InputValidationError(
                f"bn_state: inference with batch norm needs running statistics, missing {missing!r}; "
                "pass bn_state from initialize_batchnorm_state that was updated during training"
            )


def _forward(
    xp: Any,
    X: Array,
    parameters: dict[str, Array],
    L: int,
    bn: BatchNormConfig | None,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> tuple[Array, list[LayerCache]]:
    caches: list[LayerCache] = []
    A = X
    for l in range(1, L):
        W, b = parameters[f"W{l}"], parameters[f"b{l}"]
        Z = _linear_forward(xp, A, W, b)
        if bn is None:
            caches.append(LayerCache((A, W, b), Z, None, None))
            A = xp.maximum(Z, 0.0)
            continue
        if bn.position == "after":
            R = xp.maximum(Z, 0.0)
            A_next, bn_cache = _apply_bn(xp, R, parameters, l, bn, training, bn_state)
            caches.append(LayerCache((A, W, b), Z, bn_cache, "after"))
        else:
            N, bn_cache = _apply_bn(xp, Z, parameters, l, bn, training, bn_state)
            A_next = xp.maximum(N, 0.0)
            caches.append(LayerCache((A, W, b), N, bn_cache, "before"))
        A = A_next
    W, b = parameters[f"W{L}"], parameters[f"b{L}"]
    ZL = _linear_forward(xp, A, W, b)
    caches.append(LayerCache((A, W, b), ZL, None, None))
    return _softmax(xp, ZL), caches


def _apply_bn(
    xp: Any,
    A: Array,
    parameters: dict[str, Array],
    l: int,
    bn: BatchNormConfig,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> tuple[Array, BatchNormCache]:
    gamma = parameters.get(f"gamma{l}") if bn.affine else None
    beta = parameters.get(f"beta{l}") if bn.affine else None
    rm = rv = None
    if bn_state is not None:
        rm, rv = bn_state.get(f"running_mean{l}"), bn_state.get(f"running_var{l}")
    out, cache = _batchnorm_forward(xp, A, gamma, beta, bn.eps, rm, rv, training)
    if training and bn_state is not None:
        if rm is None or rv is None:
            raise InputValidationError(
                f"bn_state: lacks running_mean{l}/running_var{l}; create it with initialize_batchnorm_state"
            )
        bn_state[f"running_mean{l}"], bn_state[f"running_var{l}"] = updated_running_statistics(
            rm, rv, cache, bn.momentum
        )
    if training and not bn.backprop_statistics:
        cache = replace(cache, batch_statistics=False)
    return out, cache


def L_model_backward(
    AL: Array, Y: Array, caches: list[LayerCache], l2_lambda: float = 0.0
) -> dict[str, Array]:
    """Gradients of the batch-mean cost: ``{"dW1": ..., "db1": ..., "dgamma1": ..., ...}``.

    Uses the fused softmax + cross-entropy gradient ``dZ_L = AL - Y`` (exact
    and stable).  With ``l2_lambda > 0`` adds ``(l2_lambda / m) * W_l`` to each ``dW{l}``.
    """
    if not isinstance(caches, list) or not caches or not all(isinstance(c, LayerCache) for c in caches):
        raise InputValidationError("caches: expected the list of caches returned by L_model_forward")
    if tuple(AL.shape) != tuple(Y.shape):
        raise InputValidationError(
            f"Y: received shape {tuple(Y.shape)}; expected {tuple(AL.shape)} (one-hot, like AL)"
        )
    xp = namespace_of(AL, Y, caches[-1].linear[1])
    return _backward(xp, AL, Y, caches, l2_lambda)


def _backward(
    xp: Any, AL: Array, Y: Array, caches: list[LayerCache], l2_lambda: float
) -> dict[str, Array]:
    grads: dict[str, Array] = {}
    m = AL.shape[1]
    L = len(caches)
    dZ = AL - Y  # fused softmax + cross-entropy, per sample
    dA: Array = None  # gradient flowing into layer l's output, set by layer l + 1
    for l in range(L, 0, -1):
        cache = caches[l - 1]
        A_prev, W, _ = cache.linear
        if l < L:
            if cache.position == "after":
                dR, dgamma, dbeta = _batchnorm_backward(xp, dA, cache.batchnorm)
                dZ = _relu_backward(xp, dR, cache.activation)
            elif cache.position == "before":
                dN = _relu_backward(xp, dA, cache.activation)
                dZ, dgamma, dbeta = _batchnorm_backward(xp, dN, cache.batchnorm)
            else:
                dgamma = dbeta = None
                dZ = _relu_backward(xp, dA, cache.activation)
            if dgamma is not None:
                grads[f"dgamma{l}"], grads[f"dbeta{l}"] = dgamma, dbeta
        dA, dW, db = _linear_backward(xp, dZ, A_prev, W)
        if l2_lambda:
            dW = dW + (l2_lambda / m) * W
        grads[f"dW{l}"], grads[f"db{l}"] = dW, db
    return dict(sorted(grads.items(), key=lambda kv: _grad_order(kv[0])))


def _grad_order(key: str) -> tuple[int, int]:
    for rank, prefix in enumerate(("dW", "db", "dgamma", "dbeta")):
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            return int(key[len(prefix):]), rank
    return 10**9, 0


def update_parameters(
    parameters: dict[str, Array], grads: dict[str, Array], learning_rate: float
) -> dict[str, Array]:
    """One SGD step: ``p <- p - learning_rate * d{p}`` for every ``p`` that has a gradient.

    Returns a new dict; parameters without a gradient are carried over unchanged.
    """
    if not learning_rate > 0:
        raise InputValidationError(
            f"learning_rate: received {learning_rate!r}; expected a positive number such as 0.009"
        )
    unknown = [k for k in grads if k[1:] not in parameters]
    if unknown:
        raise InputValidationError(
            f"grads: keys {unknown!r} match no parameter; expected d<name> for names in {sorted(parameters)!r}"
        )
    return _sgd_step(parameters, grads, learning_rate)


def _sgd_step(parameters: dict[str, Array], grads: dict[str, Array], learning_rate: float) -> dict[str, Array]:
    return {
        k: (v - learning_rate * grads["d" + k]) if ("d" + k) in grads else v for k, v in parameters.items()
    }


def predict_proba(
    X: Array,
    parameters: dict[str, Array],
    use_batchnorm: bool | BatchNormConfig = False,
    bn_state: dict[str, Array] | None = None,
) -> Array:
    """Class probabilities (n_classes, m) in inference mode (running batch-norm statistics)."""
    AL, _ = L_model_forward(X, parameters, use_batchnorm, training=False, bn_state=bn_state)
    return AL


def predict(
    X: Array,
    parameters: dict[str, Array],
    use_batchnorm: bool | BatchNormConfig = False,
    bn_state: dict[str, Array] | None = None,
) -> Array:
    """Predicted class index for each column of ``X``: an integer array of shape (m,)."""
    AL = predict_proba(X, parameters, use_batchnorm, bn_state)
    xp = namespace_of(AL)
    return xp.argmax(AL, axis=0)


def accuracy(predictions: Array, Y: Array) -> float:
    """Fraction of ``predictions`` (m,) equal to the class of one-hot ``Y`` (n_classes, m)."""
    xp = namespace_of(predictions, Y)
    return float(xp.mean(xp.astype(predictions == xp.argmax(Y, axis=0), Y.dtype)))
