"""The L-layer network: [LINEAR -> RELU (-> BATCHNORM)] x (L-1) -> LINEAR -> SOFTMAX.

Shapes follow the report: ``X`` is (n_x, m), ``Y`` one-hot (n_classes, m),
parameters ``W{l}`` (n_l, n_{l-1}), ``b{l}`` (n_l, 1), and with batch norm
``gamma{l}``, ``beta{l}`` (n_l, 1) for hidden layers.  Gradients come back as
``dW{l}``, ``db{l}``, ``dgamma{l}``, ``dbeta{l}``.  Batch-norm running
statistics live in a separate ``bn_state`` dict (``running_mean{l}``,
``running_var{l}``) because they are not trained by gradient descent.

The network composes the pieces of :mod:`.layers`, :mod:`.batchnorm` and
:mod:`.losses` (each forward beside its backward).  The public functions
check their arguments once and call the private ``_forward``/``_backward``,
which return new arrays and never write into their inputs; the training
step calls those directly.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np  # host labels in accuracy only

from . import validation as V
from .backends import backend_of, has_mutable_arrays, namespace_of, shared_namespace
from .batchnorm import (
    BatchNormCache,
    BatchNormConfig,
    _batchnorm_backward,
    _batchnorm_forward,
    as_batchnorm_config,
    updated_running_statistics,
)
from .errors import InputValidationError
from .layers import _linear_backward, _linear_forward, _relu_backward, _relu_forward, _softmax
from .losses import _l2_gradient, cross_entropy_backward, weight_keys
from .ops import Ops, ops_for
from .optimizers import SGD

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
    required, allowed = _layer_keys(L)
    if L and required.issubset(parameters) and allowed.issuperset(parameters):
        return L  # the common case, decided with two set operations
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


@functools.lru_cache(maxsize=64)
def _layer_keys(L: int) -> tuple[frozenset[str], frozenset[str]]:
    """The keys an ``L``-layer parameter dict must have, and those it may have."""
    required = frozenset(k for l in range(1, L + 1) for k in (f"W{l}", f"b{l}"))
    return required, required | frozenset(k for l in range(1, L) for k in (f"gamma{l}", f"beta{l}"))


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

    Raises :class:`InputValidationError` (bad shape, orientation, dtype, mixed dtypes)
    or :class:`BackendMismatchError` (arrays of two backends/devices).  The checks
    read metadata only, so a call costs what the arithmetic costs: the values of
    ``X`` are not scanned (NaN or infinity in ``X`` give NaN probabilities).  Data
    that enters through :class:`~backend_mlp.data.Dataset`, :func:`L_layer_model`
    or :class:`~backend_mlp.MLPClassifier` is checked for NaN/inf once, there.
    """
    L = count_layers(parameters)
    bn = as_batchnorm_config(use_batchnorm)
    training = V.check_bool("training", training)
    if bn is not None:
        _check_batchnorm_arguments(parameters, L, bn, training, bn_state)
    xp, _ = _check_forward_inputs(X, parameters, L, bn, training, bn_state)
    AL, caches, new_bn_state = _forward(xp, _ops_of(X), X, parameters, L, bn, training, bn_state)
    if bn_state is not None and new_bn_state is not bn_state:
        bn_state.update(new_bn_state)  # the report's API: the caller's dict now holds the new statistics
    return AL, caches


def _check_forward_inputs(
    X: Array,
    parameters: dict[str, Array],
    L: int,
    bn: BatchNormConfig | None,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> tuple[Any, list[int]]:
    """Backend, dtype and shapes of a forward call's arguments (O(1), no pass over the data).

    Returns the namespace and the layer sizes ``[n_0, ..., n_L]`` the parameters chain.
    """
    if bn_state is not None:
        V.check_dict("bn_state", bn_state, "a dict from initialize_batchnorm_state")
    states = bn_state.items() if bn is not None and bn_state else ()

    def named() -> dict[str, Array]:
        return {"X": X, **{f"parameters[{k!r}]": v for k, v in parameters.items()},
                **{f"bn_state[{k!r}]": v for k, v in states}}

    arrays = [X, *parameters.values(), *(v for _, v in states)]
    xp = shared_namespace(arrays) or V.common_namespace(named())
    dims = V.check_parameter_shapes(parameters, L)
    W1 = parameters["W1"]
    V.check_real_floating("parameters['W1']", W1, xp)
    if any(a.dtype != W1.dtype for a in arrays):
        V.check_same_dtype(named(), "parameters['W1']", W1.dtype)
    V.check_samples_as_columns("X", X, dims[0], "n_features")
    if bn is not None:
        V.check_bn_state_shapes(bn_state or {}, dims)
        if training:
            V.check_has_samples("X", X)
    return xp, dims


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
    ops: Ops,
    X: Array,
    parameters: dict[str, Array],
    L: int,
    bn: BatchNormConfig | None,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> tuple[Array, list[LayerCache], dict[str, Array] | None]:
    """``(AL, caches, new_bn_state)``: nothing is mutated; with batch norm in training mode
    ``new_bn_state`` holds the updated running statistics (a new dict), else it is ``bn_state``."""
    caches: list[LayerCache] = []
    new_bn_state = dict(bn_state) if (bn is not None and training and bn_state is not None) else bn_state
    A = X
    for l in range(1, L):
        W, b = parameters[f"W{l}"], parameters[f"b{l}"]
        Z = _linear_forward(ops, A, W, b)
        if bn is None:
            caches.append(LayerCache((A, W, b), Z, None, None))
            A = _relu_forward(xp, Z)
        elif bn.position == "after":
            A_next, bn_cache = _apply_bn(xp, ops, _relu_forward(xp, Z), parameters, l, bn, training, new_bn_state)
            caches.append(LayerCache((A, W, b), Z, bn_cache, "after"))
            A = A_next
        else:
            N, bn_cache = _apply_bn(xp, ops, Z, parameters, l, bn, training, new_bn_state)
            caches.append(LayerCache((A, W, b), N, bn_cache, "before"))
            A = _relu_forward(xp, N)
    W, b = parameters[f"W{L}"], parameters[f"b{L}"]
    ZL = _linear_forward(ops, A, W, b)
    caches.append(LayerCache((A, W, b), ZL, None, None))
    return _softmax(xp, ops, ZL), caches, new_bn_state


def _apply_bn(
    xp: Any,
    ops: Ops,
    A: Array,
    parameters: dict[str, Array],
    l: int,
    bn: BatchNormConfig,
    training: bool,
    bn_state: dict[str, Array] | None,
) -> tuple[Array, BatchNormCache]:
    """Batch norm of layer ``l``; in training mode stores new running statistics into the (new) dict ``bn_state``."""
    gamma = parameters.get(f"gamma{l}") if bn.affine else None
    beta = parameters.get(f"beta{l}") if bn.affine else None
    rm = rv = None
    if bn_state is not None:
        rm, rv = bn_state.get(f"running_mean{l}"), bn_state.get(f"running_var{l}")
    out, cache = _batchnorm_forward(xp, ops, A, gamma, beta, bn.eps, rm, rv, training)
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
    xp = shared_namespace([AL, Y, W_last]) or V.common_namespace({"AL": AL, "Y": Y, "caches": W_last})
    V.check_ndim("AL", AL, 2, "(n_classes, m) as returned by L_model_forward")
    V.check_real_floating("AL", AL, xp)
    if Y.dtype != AL.dtype or W_last.dtype != AL.dtype:
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
    return _backward(xp, _ops_of(AL), AL, Y, caches, l2_lambda)


def _backward(
    xp: Any, ops: Ops, AL: Array, Y: Array, caches: list[LayerCache], l2_lambda: float, scale: float = 1.0
) -> dict[str, Array]:
    """``scale`` times the gradients of the batch-mean cost, in the order dW1, db1, (dgamma1, dbeta1), dW2, ...

    The backward pass is linear in the output layer's ``dZ``, so ``scale / m``
    is folded into that small (n_L, m) array once and every gradient comes
    out scaled (an optimizer's :meth:`~backend_mlp.optimizers.Optimizer.gradient_scale`).
    Every returned array is fresh; the first layer's input gradient is never computed.
    """
    m = AL.shape[1]
    L = len(caches)
    per_layer: list[tuple[Array, Array, Array | None, Array | None]] = []
    dZ = ops.mul(cross_entropy_backward(AL, Y), scale / m)
    dA: Array = None  # gradient flowing into layer l's output, set by layer l + 1
    for l in range(L, 0, -1):
        cache = caches[l - 1]
        A_prev, W, _ = cache.linear
        dgamma = dbeta = None
        if l < L:
            dZ, dgamma, dbeta = _hidden_backward(xp, ops, dA, cache)
        dA, dW, db = _linear_backward(xp, ops, dZ, A_prev, W, need_dA_prev=l > 1)
        if l2_lambda:
            dW = ops.add(dW, _l2_gradient(W, l2_lambda, m, scale))
        per_layer.append((dW, db, dgamma, dbeta))
    grads: dict[str, Array] = {}
    for l, (dW, db, dgamma, dbeta) in enumerate(reversed(per_layer), start=1):
        grads[f"dW{l}"], grads[f"db{l}"] = dW, db
        if dgamma is not None:
            grads[f"dgamma{l}"], grads[f"dbeta{l}"] = dgamma, dbeta
    return grads


def _hidden_backward(xp: Any, ops: Ops, dA: Array, cache: LayerCache) -> tuple[Array, Array | None, Array | None]:
    """``(dZ, dgamma, dbeta)`` of a hidden layer: ReLU, and batch norm after or before it."""
    if cache.position is None:
        return _relu_backward(xp, dA, cache.activation, ops), None, None
    if cache.position == "after":
        dR, dgamma, dbeta = _batchnorm_backward(xp, ops, dA, cache.batchnorm)
        return _relu_backward(xp, dR, cache.activation, ops), dgamma, dbeta
    dN = _relu_backward(xp, dA, cache.activation, ops)
    return _batchnorm_backward(xp, ops, dN, cache.batchnorm)


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
    if not parameters:
        raise InputValidationError("parameters: received an empty dict; expected the arrays from initialize_parameters")
    learning_rate = V.check_positive_number("learning_rate", learning_rate, "0.009")
    unknown = [k for k in grads if not (isinstance(k, str) and k.startswith("d") and k[1:] in parameters)]
    if unknown:
        raise InputValidationError(
            f"grads: received keys {unknown!r} that match no parameter; expected d<name> for names in "
            f"{sorted(parameters)!r}"
        )
    # the named check runs only when the fast one finds two libraries or devices, to say which argument differs
    xp = shared_namespace([*parameters.values(), *grads.values()]) or V.common_namespace(
        {**{f"parameters[{k!r}]": v for k, v in parameters.items()}, **{f"grads[{k!r}]": v for k, v in grads.items()}}
    )
    for k, g in grads.items():
        p = parameters[k[1:]]
        if not V.is_real_floating(p.dtype, xp):  # names are built only for the error message
            V.check_real_floating(f"parameters[{k[1:]!r}]", p, xp)
        if g.shape != p.shape:
            raise InputValidationError(
                f"grads[{k!r}]: received shape {V.shape_of(g)}; expected {V.shape_of(p)}, the shape of "
                f"parameters[{k[1:]!r}]"
            )
        if g.dtype != p.dtype:
            V.check_same_dtype({f"grads[{k!r}]": g}, f"parameters[{k[1:]!r}]", p.dtype)
    sgd = SGD()
    scale = sgd.gradient_scale(learning_rate)
    scaled = {k: g * scale for k, g in grads.items()}  # fresh arrays, owned by the update
    new_parameters, _ = sgd.update(parameters, scaled, {}, learning_rate, _ops_of(next(iter(parameters.values()))))
    return new_parameters


def _ops_of(x: Array) -> Ops:
    """In-place arithmetic on fresh temporaries where ``x``'s library honours it, pure otherwise."""
    return ops_for(has_mutable_arrays(x))


def predict_proba(
    X: Array,
    parameters: dict[str, Array],
    use_batchnorm: bool | BatchNormConfig = False,
    bn_state: dict[str, Array] | None = None,
) -> Array:
    """Class probabilities (n_classes, m) in inference mode (running batch-norm statistics).

    Unlike :func:`L_model_forward`, refuses NaN or infinity in ``X`` (one pass over it).
    """
    AL, _ = L_model_forward(X, parameters, use_batchnorm, training=False, bn_state=bn_state)
    V.check_finite("X", X, namespace_of(X))
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
    """Fraction of ``predictions`` (m,) equal to the true classes.

    ``Y`` is either integer class labels (m,) or one-hot (n_classes, m), on
    the same backend as ``predictions`` or on the host as a NumPy array (labels
    as :func:`~backend_mlp.load_mnist` returns them), which is then placed there.
    """
    if isinstance(Y, np.ndarray) and not isinstance(predictions, np.ndarray):
        Y = backend_of(V.check_array("predictions", predictions)).asarray(Y)
    xp = V.common_namespace({"predictions": predictions, "Y": Y})
    V.check_ndim("predictions", predictions, 1, "(m,) of class indices, as returned by predict")
    if Y.ndim == 1:
        labels = Y
        if xp.isdtype(labels.dtype, "real floating"):
            if not bool(xp.all(labels == xp.round(labels))):
                raise InputValidationError("Y: received non-integer labels; expected class indices 0..n_classes-1")
            labels = xp.astype(labels, xp.int64)
        elif not xp.isdtype(labels.dtype, "integral"):
            raise InputValidationError(
                f"Y: received dtype {V.dtype_name(labels.dtype)}; expected integer class labels (m,) or one-hot "
                "(n_classes, m)"
            )
    else:
        V.check_ndim("Y", Y, 2, "(n_classes, m), one-hot, or labels (m,)")
        V.check_real_floating("Y", Y, xp)
        V.check_one_hot("Y", Y, xp)
        labels = xp.argmax(Y, axis=0)
    if predictions.shape[0] != labels.shape[0]:
        raise InputValidationError(
            f"predictions, Y: received {predictions.shape[0]} predictions and {labels.shape[0]} samples in Y; "
            "expected one prediction per sample"
        )
    V.check_has_samples("predictions", predictions, axis=0)
    return _accuracy(xp, predictions, labels)


def _accuracy(xp: Any, predicted: Array, labels: Array) -> float:
    """Fraction of equal entries of two (m,) integer arrays (counted exactly, no float dtype needed)."""
    return int(_hits(xp, predicted, labels)) / int(predicted.shape[0])


def _hits(xp: Any, predicted: Array, labels: Array) -> Array:
    """How many entries of two (m,) integer arrays are equal: a 0-d int64 array (no host transfer)."""
    return xp.sum(xp.astype(predicted == labels, xp.int64))
