"""Preparing host data: the one host conversion, the one one-hot encoder and the one train/validation split.

Everything here works on host NumPy arrays.  Labels are integer class indices
``(m,)``; :func:`one_hot` returns ``(n_classes, m)`` (``samples_as="columns"``,
the model's column-per-sample convention, the default) or ``(m, n_classes)``
(``samples_as="rows"``, the sample-major layout of
:class:`~backend_mlp.data.dataset.Dataset`).  :func:`split_train_validation`
takes images ``(m, ...)`` with one sample per row.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np  # host-side preparation of data

from .. import validation as V
from ..backends import resolve_dtype_name, to_numpy
from ..errors import InputValidationError

__all__ = ["to_host", "one_hot", "split_train_validation"]


def to_host(name: str, x: Any) -> np.ndarray:
    """A host NumPy array of ``x``: an array of any supported backend, a NumPy array or an array-like.

    Device arrays are copied to the host; NumPy arrays are returned as they are.
    Raises :class:`InputValidationError` naming ``name`` for what NumPy cannot read.
    """
    try:
        if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
            return to_numpy(x)
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputValidationError(
            f"{name}: received an object of type {type(x).__name__} that NumPy cannot read ({exc}); "
            "expected a NumPy array, an array of a supported backend, or a nested list of numbers"
        ) from None


def one_hot(
    labels: Any,
    n_classes: int | None = None,
    *,
    dtype: str = "float64",
    samples_as: str = "columns",
) -> np.ndarray:
    """One-hot encode integer class labels ``(m,)`` into a host array.

    ``n_classes`` defaults to ``labels.max() + 1`` (pass it explicitly for empty
    labels, or when a class may be absent from ``labels``).  Returns
    ``(n_classes, m)`` for ``samples_as="columns"`` (the library's convention) or
    ``(m, n_classes)`` for ``samples_as="rows"``.  Raises
    :class:`InputValidationError` for labels that are not 1-D integers (booleans
    and floats are refused) or lie outside ``0..n_classes-1``.
    """
    if samples_as not in ("columns", "rows"):
        raise InputValidationError(f"samples_as: received {samples_as!r}; expected 'columns' or 'rows'")
    if n_classes is not None and (
        isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1
    ):
        raise InputValidationError(f"n_classes: received {n_classes!r}; expected a positive integer or None")
    dtype_name = resolve_dtype_name(dtype)
    arr = to_host("labels", labels)
    if arr.ndim != 1:
        raise InputValidationError(f"labels: received shape {arr.shape}; expected a 1-D array of class labels (m,)")
    expected = "0, 1, ..." if n_classes is None else f"0..{n_classes - 1}"
    if arr.dtype.kind not in "iu":
        raise InputValidationError(f"labels: received dtype {arr.dtype}; expected integer class indices {expected}")
    if n_classes is None:
        if arr.size == 0:
            raise InputValidationError(
                "n_classes: received None with no labels to count the classes from; expected a positive integer"
            )
        n_classes = max(int(arr.max()) + 1, 1)
    n_classes = int(n_classes)
    bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
    if bad.size:
        raise InputValidationError(
            f"labels: received values in [{arr.min()}, {arr.max()}], {bad.size} outside 0..{n_classes - 1}, "
            f"first {int(arr[bad[0]])} at index {int(bad[0])}; expected integers in 0..{n_classes - 1} "
            f"(n_classes={n_classes})"
        )
    m = arr.shape[0]
    if samples_as == "rows":
        out = np.zeros((m, n_classes), dtype=dtype_name)
        out[np.arange(m), arr] = 1
    else:
        out = np.zeros((n_classes, m), dtype=dtype_name)
        out[arr, np.arange(m)] = 1
    return out


def split_train_validation(
    images: Any,
    labels: Any,
    validation_fraction: float = 0.2,
    seed: int | tuple[int, ...] | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``np.random.default_rng(seed).permutation`` and split off a validation set.

    ``images`` ``(m, ...)`` and ``labels`` ``(m,)`` have one sample per row.
    Returns ``(train_images, train_labels, val_images, val_labels)``; the first
    ``m - max(1, round(m * validation_fraction))`` shuffled samples are the training part.
    ``seed`` is anything ``np.random.default_rng`` takes (an integer, a tuple of them, ``None``).
    This is the report protocol's split (:func:`~backend_mlp.data.splits.prepare_mnist`
    applies the same order).
    """
    V.check_fraction("validation_fraction", validation_fraction)
    x = to_host("images", images)
    y = to_host("labels", labels)
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise InputValidationError(
            f"images/labels: received shapes {x.shape} and {y.shape}; expected (m, ...) and (m,) "
            "with the same number of samples m"
        )
    m = x.shape[0]
    n_val = max(1, round(m * float(validation_fraction)))  # at least one sample to validate on
    if n_val > m - 1:
        raise InputValidationError(
            f"validation_fraction: {validation_fraction} of {m} samples gives {n_val} validation and "
            f"{m - n_val} training samples; expected at least one in each part"
        )
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise InputValidationError(
            f"seed: received {seed!r}; expected a non-negative integer, a tuple of them, or None"
        ) from None
    order = rng.permutation(m)
    train_idx, val_idx = order[: m - n_val], order[m - n_val :]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]
