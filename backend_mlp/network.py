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

from . import validation as V
from .backends import namespace_of
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
    stray = [k for k in parameters if _layer_of(k) > (L - 1 if str(k).startswith(("gamma", "beta")) else L)]
    if stray:
        raise InputValidationError(
            f"parameters: received keys {sorted(stray)!r} that belong to no layer of W1..W{L}; expected W1, b1, "
            f"..., W{L}, b{L} (and gamma/beta of the hidden layers 1..{L - 1} only)"
        )
    return L


def _layer_of(key: Any) -> int:
    """The layer number of a parameter key ``W3``, ``b3``, ``gamma3``, ``beta3``; 0 for other keys."""
    if isinstance(key, str):
        for prefix in ("W", "b", "gamma", "beta"):
            if key.startswith(prefix) and key[len(prefix):].isdigit():
                return int(key[len(prefix):])
    return 0


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

    Raises :class:`InputValidationError` (bad shape, orientation, dtype, mixed dtypes,
    NaN/inf in ``X``) or :class:`BackendMismatchError` (arrays of two backends/devices).
    """
    L = count_layers(parameters)
    bn = as_batchnorm_config(use_batchnorm)
    training = V.check_bool("training", training)
    if bn is not None:
        _check_batchnorm_arguments(parameters, L, bn, training, bn_state)
    xp = _check_forward_inputs(X, parameters, L, bn, training, bn_state)
    return _forward(xp, X, parameters, L, bn, training, bn_state)


def _check_forward_inputs(
    X: Array,
    parameters: dict[str, Array],
    L: int,
    bn: BatchNormConfig | None,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> Any:
    """Backend, dtype, shapes and finiteness of a forward call's arguments; returns the namespace."""
    if bn_state is not None:
        V.check_dict("bn_state", bn_state, "a dict from initialize_batchnorm_state")
    named = {"X": X, **{f"parameters[{k!r}]": v for k, v in parameters.items()}}
    if bn is not None and bn_state:
        named.update({f"bn_state[{k!r}]": v for k, v in bn_state.items()})
    xp = V.common_namespace(named)
    dims = V.check_parameter_shapes(parameters, L)
    W1 = parameters["W1"]
    V.check_real_floating("parameters['W1']", W1, xp)
    V.check_same_dtype(named, "parameters['W1']", W1.dtype)
    V.check_samples_as_columns("X", X, dims[0], "n_features")
    if bn is not None:
        V.check_bn_state_shapes(bn_state or {}, dims)
        if training:
            V.check_has_samples("X", X)
    V.check_finite("X", X, xp)
    return xp


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
    Raises :class:`InputValidationError` (shapes, dtypes, ``Y`` not one-hot, bad ``l2_lambda``)
    or :class:`BackendMismatchError`.
    """
    if not isinstance(caches, list) or not caches or not all(isinstance(c, LayerCache) for c in caches):
        raise InputValidationError(
            f"caches: received {type(caches).__name__}; expected the non-empty list of caches returned by "
            "L_model_forward"
        )
    l2_lambda = V.check_nonnegative_number("l2_lambda", l2_lambda, " (0 disables L2)")
    W_last = caches[-1].linear[1]
    xp = V.common_namespace({"AL": AL, "Y": Y, "caches": W_last})
    V.check_ndim("AL", AL, 2, "(n_classes, m) as returned by L_model_forward")
    V.check_real_floating("AL", AL, xp)
    V.check_same_dtype({"Y": Y, "caches": W_last}, "AL", AL.dtype)
    expected = (int(W_last.shape[0]), int(caches[0].linear[0].shape[1]))
    if V.shape_of(AL) != expected:
        raise InputValidationError(
            f"AL: received shape {V.shape_of(AL)}; expected {expected}, the output of the forward pass "
            "that produced caches"
        )
    if V.shape_of(Y) != V.shape_of(AL):
        raise InputValidationError(
            f"Y: received shape {V.shape_of(Y)}; expected {V.shape_of(AL)} (one-hot, like AL)"
        )
    V.check_has_samples("AL", AL)
    V.check_one_hot("Y", Y, xp)
    return _backward(xp, AL, Y, caches, l2_lambda)


def _backward(
    xp: Any, AL: Array, Y: Array, caches: list[LayerCache], l2_lambda: float, scale: float | None = None
) -> dict[str, Array]:
    """Gradients in the order dW1, db1, (dgamma1, dbeta1), dW2, ...; every array is fresh.

    The first layer's ``dA_prev`` (the gradient with respect to the input) is
    never needed and not computed.  In-place updates act on fresh arrays only,
    so the results are bit for bit those of the out-of-place formulas.

    With ``scale`` every returned gradient is multiplied by it (the training
    loop passes ``-learning_rate`` to get the SGD increments): ``scale / m``
    is folded into the output layer's small ``dZ`` once instead of making two
    more passes over every weight-sized ``dW`` (equal up to rounding).
    """
    m = AL.shape[1]
    L = len(caches)
    per_layer: list[tuple[Array, Array, Array | None, Array | None]] = [None] * L  # type: ignore[list-item]
    dZ = AL - Y  # fused softmax + cross-entropy, per sample
    if scale is not None:
        # the whole backward pass is linear in dZ_L, so one pass over the small (n_L, m) array
        # scales every gradient: dZ, dA and dW below are then ``scale`` times the gradients
        # of the batch-mean cost, and no weight-sized array is touched twice
        dZ *= scale / m
    dA: Array = None  # gradient flowing into layer l's output, set by layer l + 1
    for l in range(L, 0, -1):
        cache = caches[l - 1]
        A_prev, W, _ = cache.linear
        dgamma = dbeta = None
        if l < L:
            if cache.position is None:
                dZ = _relu_backward(xp, dA, cache.activation)
            elif cache.position == "after":
                dR, dgamma, dbeta = _batchnorm_backward(xp, dA, cache.batchnorm)
                dZ = _relu_backward(xp, dR, cache.activation)
            else:
                dN = _relu_backward(xp, dA, cache.activation)
                dZ, dgamma, dbeta = _batchnorm_backward(xp, dN, cache.batchnorm)
        if scale is None:
            dA, dW, db = _linear_backward(xp, dZ, A_prev, W, need_dA_prev=l > 1)
            if l2_lambda:
                dW += (l2_lambda / m) * W  # dW is fresh: same bits as dW + (l2_lambda / m) * W
        else:
            dW = dZ @ A_prev.T
            db = xp.sum(dZ, axis=1, keepdims=True)
            dA = W.T @ dZ if l > 1 else None
            if l2_lambda:
                dW += (scale * l2_lambda / m) * W
            if dgamma is not None:
                # batch-norm backward divides its parameter sums by m, taking dA as per-sample
                dgamma *= m
                dbeta *= m
        per_layer[l - 1] = (dW, db, dgamma, dbeta)
    grads: dict[str, Array] = {}
    for l, (dW, db, dgamma, dbeta) in enumerate(per_layer, start=1):
        grads[f"dW{l}"], grads[f"db{l}"] = dW, db
        if dgamma is not None:
            grads[f"dgamma{l}"], grads[f"dbeta{l}"] = dgamma, dbeta
    return grads


def update_parameters(
    parameters: dict[str, Array], grads: dict[str, Array], learning_rate: float
) -> dict[str, Array]:
    """One SGD step: ``p <- p - learning_rate * d{p}`` for every ``p`` that has a gradient.

    Returns a new dict; parameters without a gradient are carried over unchanged.
    Raises :class:`InputValidationError` (learning rate not a finite positive number, unknown
    gradient names, shape or dtype mismatches) or :class:`BackendMismatchError`.
    """
    V.check_dict("parameters", parameters, "a dict of arrays from initialize_parameters")
    V.check_dict("grads", grads, "a dict of arrays from L_model_backward")
    learning_rate = V.check_positive_number("learning_rate", learning_rate, "0.009")
    unknown = [k for k in grads if not (isinstance(k, str) and k.startswith("d") and k[1:] in parameters)]
    if unknown:
        raise InputValidationError(
            f"grads: received keys {unknown!r} that match no parameter; expected d<name> for names in "
            f"{sorted(parameters)!r}"
        )
    named = {f"parameters[{k!r}]": v for k, v in parameters.items()}
    named.update({f"grads[{k!r}]": v for k, v in grads.items()})
    xp = V.common_namespace(named)
    for k, g in grads.items():
        p = parameters[k[1:]]
        V.check_real_floating(f"parameters[{k[1:]!r}]", p, xp)
        if V.shape_of(g) != V.shape_of(p):
            raise InputValidationError(
                f"grads[{k!r}]: received shape {V.shape_of(g)}; expected {V.shape_of(p)}, the shape of "
                f"parameters[{k[1:]!r}]"
            )
        V.check_same_dtype({f"grads[{k!r}]": g}, f"parameters[{k[1:]!r}]", p.dtype)
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
    xp = V.common_namespace({"predictions": predictions, "Y": Y})
    V.check_ndim("predictions", predictions, 1, "(m,) of class indices, as returned by predict")
    V.check_ndim("Y", Y, 2, "(n_classes, m), one-hot")
    if predictions.shape[0] != Y.shape[1]:
        raise InputValidationError(
            f"predictions, Y: received {predictions.shape[0]} predictions and {Y.shape[1]} columns of Y; "
            "expected one prediction per column (sample) of Y"
        )
    V.check_has_samples("Y", Y)
    V.check_real_floating("Y", Y, xp)
    V.check_one_hot("Y", Y, xp)
    return float(xp.mean(xp.astype(predictions == xp.argmax(Y, axis=0), Y.dtype)))
