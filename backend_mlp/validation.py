"""Argument checks shared by the public entry points.

Every public function checks its arguments here once per call and then hands
over to a private hot-path function (``_forward``, ``_backward``, ...) that
checks nothing; the training loop calls only the private functions, so
validation costs nothing per step.  Checks of array *metadata* (type, shape,
dtype, backend, device) are O(1); the checks of array *values* (:func:`check_finite`,
:func:`check_one_hot`) are O(data) and one host read-back each, and are used
only on data (``X``, ``Y``), never on parameters or gradients, whose NaNs are
the training loop's business (:class:`~backend_mlp.errors.TrainingDivergedError`).

Errors raised (see :mod:`backend_mlp.errors`):

* :class:`~backend_mlp.errors.InputValidationError` (a ``ValueError``): wrong
  type, shape, orientation, dtype, value or range.
* :class:`~backend_mlp.errors.BackendMismatchError` (a ``ValueError``): arrays
  of one call come from different libraries or devices.

Messages read ``"<argument>: received <what>; expected <what>"``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np  # scalar type checks only

from .backends import check_array, common_namespace, dtype_name
from .errors import InputValidationError

Array = Any



# ----------------------------------------------------------------------------- describing things


def shape_of(x: Array) -> tuple[int, ...]:
    return tuple(x.shape)


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- scalars


def is_real_host_dtype(dtype: np.dtype) -> bool:
    """An integer or floating NumPy dtype (booleans, complex, strings and objects are not)."""
    return dtype != np.bool_ and (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))


def is_real_number(value: Any) -> bool:
    if type(value) is float or type(value) is int:  # the common case, without the slow ABC check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_positive_number(name: str, value: Any, example: str = "0.009") -> float:
    """A finite real number ``> 0`` (booleans refused)."""
    if not is_real_number(value) or not (math.isfinite(value) and value > 0):
        raise InputValidationError(
            f"{name}: received {short_repr(value)}; expected a finite positive number such as {example}"
        )
    return float(value)


def check_nonnegative_number(name: str, value: Any, hint: str = "") -> float:
    """A finite real number ``>= 0`` (booleans refused)."""
    if not is_real_number(value) or not (math.isfinite(value) and value >= 0):
        raise InputValidationError(
            f"{name}: received {short_repr(value)}; expected a finite number >= 0{hint}"
        )
    return float(value)


def check_positive_int(name: str, value: Any) -> int:
    """An integer ``>= 1`` (Python or NumPy; booleans and floats refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise InputValidationError(f"{name}: received {short_repr(value)}; expected a positive integer")
    return int(value)


def check_seed(name: str, value: Any) -> int:
    """A non-negative integer seed."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise InputValidationError(f"{name}: received {short_repr(value)}; expected a non-negative integer seed")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy booleans accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputValidationError(f"{name}: received {short_repr(value)}; expected True or False")
    return bool(value)


def check_fraction(name: str, value: Any) -> float:
    """A number strictly between 0 and 1."""
    if not is_real_number(value) or not (0.0 < value < 1.0):
        raise InputValidationError(f"{name}: received {short_repr(value)}; expected a number strictly between 0 and 1")
    return float(value)


def check_layer_dims(layer_dims: Any, name: str = "layer_dims") -> list[int]:
    """``[n_x, n_1, ..., n_L]``: at least two positive integers (integral floats accepted)."""
    example = "a list of positive integers such as [784, 20, 7, 5, 10]"
    if isinstance(layer_dims, (str, bytes)) or not isinstance(layer_dims, Iterable):
        raise InputValidationError(f"{name}: received {short_repr(layer_dims)}; expected {example}")
    entries = list(layer_dims)
    dims: list[int] = []
    for i, d in enumerate(entries):
        integral = isinstance(d, numbers.Integral) and not isinstance(d, bool)
        integral_float = is_real_number(d) and math.isfinite(d) and float(d).is_integer()
        if not (integral or integral_float):
            raise InputValidationError(
                f"{name}: entry {i} is {short_repr(d)} in {short_repr(entries)}; expected {example}"
            )
        dims.append(int(d))
    if len(dims) < 2:
        raise InputValidationError(
            f"{name}: received {dims!r}; expected at least two entries (number of features, ..., "
            "number of classes), e.g. [784, 20, 7, 5, 10]"
        )
    bad = [(i, d) for i, d in enumerate(dims) if d <= 0]
    if bad:
        i, d = bad[0]
        raise InputValidationError(
            f"{name}: entry {i} is {d} in {dims!r}; expected every layer size to be a positive integer"
        )
    return dims


# ----------------------------------------------------------------------------- arrays: metadata


def check_ndim(name: str, x: Array, ndim: int, layout: str) -> None:
    """``x.ndim == ndim``; ``layout`` describes the expected shape, e.g. ``"(n_features, m)"``."""
    if x.ndim != ndim:
        raise InputValidationError(
            f"{name}: received an array of shape {shape_of(x)} ({x.ndim}-D); expected a {ndim}-D array {layout}"
        )


def is_real_floating(dtype: Any, xp: Any) -> bool:
    """``dtype`` is float32 or float64 of namespace ``xp`` (``xp.isdtype`` is ten times slower on NumPy)."""
    return dtype == xp.float64 or dtype == xp.float32


def check_real_floating(name: str, x: Array, xp: Any) -> None:
    """``x`` has a real floating dtype (float32 or float64)."""
    if not is_real_floating(x.dtype, xp):
        raise InputValidationError(
            f"{name}: received dtype {dtype_name(x.dtype)}; expected float32 or float64 "
            "(convert first, e.g. X.astype('float64'))"
        )


def check_same_dtype(named: Mapping[str, Array], reference: str, dtype: Any) -> None:
    """Every named array has ``dtype``, the dtype of argument ``reference`` (no silent up-casting)."""
    for name, a in named.items():
        if a is not None and a.dtype != dtype:
            raise InputValidationError(
                f"{name}: received dtype {dtype_name(a.dtype)}; expected {dtype_name(dtype)} like {reference} "
                "(arrays of one call must share a dtype; convert one of them, there is no silent up-casting)"
            )


def check_samples_as_columns(name: str, x: Array, n_rows: int, row_meaning: str) -> None:
    """``x`` is ``(n_rows, m)``; a transposed ``(m, n_rows)`` input gets an ``x.T`` hint."""
    check_ndim(name, x, 2, f"({row_meaning}={n_rows}, m) with one column per sample")
    rows, cols = shape_of(x)
    if rows == n_rows:
        return
    if cols == n_rows:
        raise InputValidationError(
            f"{name}: received shape {shape_of(x)}; expected ({row_meaning}={n_rows}, m): samples must be "
            f"columns, so {name} is ({row_meaning}, m) = ({n_rows}, {rows}) here; pass {name}.T"
        )
    raise InputValidationError(
        f"{name}: received shape {shape_of(x)}; expected ({row_meaning}={n_rows}, m) with one column per sample"
    )


def check_has_samples(name: str, x: Array, axis: int = 1) -> None:
    """At least one sample along ``axis``."""
    if x.shape[axis] == 0:
        raise InputValidationError(
            f"{name}: received shape {shape_of(x)} with 0 samples; expected at least one sample"
        )


def check_parameter_shapes(parameters: Mapping[str, Array], L: int) -> list[int]:
    """Shapes chain: ``W{l}`` (n_l, n_{l-1}), ``b{l}``/``gamma{l}``/``beta{l}`` (n_l, 1); returns the sizes.

    The common case (every shape right) is decided without building any message;
    anything else goes through the detailed checks that name the argument.
    """
    dims = _chained_sizes(parameters, L)
    return dims if dims is not None else _check_parameter_shapes_in_detail(parameters, L)


def _chained_sizes(parameters: Mapping[str, Array], L: int) -> list[int] | None:
    """``[n_0, ..., n_L]`` when every parameter has its shape, else ``None``."""
    try:
        dims = [int(parameters["W1"].shape[1])]
        for l in range(1, L + 1):
            shape = tuple(parameters[f"W{l}"].shape)
            if len(shape) != 2 or shape[1] != dims[-1] or shape[0] == 0 or shape[1] == 0:
                return None
            column = (shape[0], 1)
            if tuple(parameters[f"b{l}"].shape) != column:
                return None
            scale_shift = (f"gamma{l}", f"beta{l}") if l < L else ()
            if any(k in parameters and tuple(parameters[k].shape) != column for k in scale_shift):
                return None
            dims.append(shape[0])
        return dims
    except (AttributeError, TypeError, IndexError, KeyError):
        return None


def _check_parameter_shapes_in_detail(parameters: Mapping[str, Array], L: int) -> list[int]:
    W1 = check_array("parameters['W1']", parameters["W1"])
    check_ndim("parameters['W1']", W1, 2, "(n_1, n_features)")
    dims = [int(W1.shape[1])]
    for l in range(1, L + 1):
        key = f"W{l}"
        W = check_array(f"parameters[{key!r}]", parameters[key])
        check_ndim(f"parameters[{key!r}]", W, 2, f"(n_{l}, n_{l - 1})")
        n, n_prev = shape_of(W)
        if n_prev != dims[-1] or n == 0 or n_prev == 0:
            raise InputValidationError(
                f"parameters[{key!r}]: received shape {(n, n_prev)}; expected (n_{l}, {dims[-1]}) with positive "
                f"sizes, consistent with the previous layer (see initialize_parameters)"
            )
        keys = [f"b{l}"] + [k for k in (f"gamma{l}", f"beta{l}") if k in parameters and l < L]
        for k in keys:
            v = check_array(f"parameters[{k!r}]", parameters[k])
            if shape_of(v) != (n, 1):
                raise InputValidationError(
                    f"parameters[{k!r}]: received shape {shape_of(v)}; expected ({n}, 1), a column "
                    f"matching {key} of shape {(n, n_prev)}"
                )
        dims.append(n)
    return dims


def check_bn_state_shapes(bn_state: Mapping[str, Array], dims: list[int]) -> None:
    """Running statistics ``running_mean{l}``/``running_var{l}`` present in ``bn_state`` are (n_l, 1)."""
    if not isinstance(bn_state, Mapping):
        raise InputValidationError(
            f"bn_state: received {type(bn_state).__name__}; expected a dict from initialize_batchnorm_state"
        )
    for l in range(1, len(dims) - 1):
        for k in (f"running_mean{l}", f"running_var{l}"):
            if k in bn_state:
                v = check_array(f"bn_state[{k!r}]", bn_state[k])
                if shape_of(v) != (dims[l], 1):
                    raise InputValidationError(
                        f"bn_state[{k!r}]: received shape {shape_of(v)}; expected ({dims[l]}, 1)"
                    )


def check_dict(name: str, value: Any, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputValidationError(f"{name}: received {type(value).__name__}; expected {expected}")
    return value


# ----------------------------------------------------------------------------- arrays: values (O(data))


def check_finite(name: str, x: Array, xp: Any) -> None:
    """No NaN or infinity in ``x`` (one reduction and one read-back)."""
    if math.prod(shape_of(x)) == 0:
        return
    if not bool(xp.all(xp.isfinite(x))):
        raise InputValidationError(
            f"{name}: received values that include NaN or infinity; expected finite numbers "
            "(clean or impute the data first)"
        )


def check_one_hot(name: str, Y: Array, xp: Any) -> None:
    """Columns of ``Y`` are one-hot: entries 0 or 1, exactly one 1 per column (one read-back)."""
    if Y.shape[1] == 0:
        return
    binary = xp.all((Y == 0) | (Y == 1))
    one_per_column = xp.all(xp.sum(Y, axis=0) == 1)
    if not bool(binary & one_per_column):
        raise InputValidationError(
            f"{name}: received values that are not one-hot; expected one-hot columns of shape "
            f"(n_classes, m) = {shape_of(Y)}: exactly one 1 per column, zeros elsewhere (labels must be "
            f"class indices 0..{Y.shape[0] - 1})"
        )


__all__ = [
    "check_array",
    "check_bn_state_shapes",
    "check_bool",
    "check_dict",
    "check_finite",
    "check_fraction",
    "check_has_samples",
    "check_layer_dims",
    "check_ndim",
    "check_nonnegative_number",
    "check_one_hot",
    "check_parameter_shapes",
    "check_positive_int",
    "check_positive_number",
    "check_real_floating",
    "check_same_dtype",
    "check_samples_as_columns",
    "check_seed",
    "common_namespace",
    "dtype_name",
    "shape_of",
]
