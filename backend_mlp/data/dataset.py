"""A labelled dataset placed on a backend once, stored sample-major for fast batching.

The report's layout is feature-major (``X`` is (n_features, m)).  For training,
the data is kept sample-major: ``X_rows`` (m, n_features) and one-hot
``Y_rows`` (m, n_classes), so a mini-batch is a contiguous row gather and its
transpose ``X_rows[idx].T`` is the report's (n_features, batch) view, no copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np  # host-side conversion of user data only

from .. import validation as V
from ..backends import Backend, backend_of, namespace_of, resolve_backend, resolve_dtype_name
from ..errors import InputValidationError
from .prep import one_hot, to_host

__all__ = ["Dataset", "check_xy_columns"]

Array = Any


@dataclass(frozen=True)
class Dataset:
    """``X_rows`` (m, n_features) and one-hot ``Y_rows`` (m, n_classes) on one backend."""

    X_rows: Array
    Y_rows: Array

    @property
    def n_samples(self) -> int:
        return int(self.X_rows.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X_rows.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.Y_rows.shape[1])

    @property
    def labels(self) -> Array:
        """Class indices (m,), integers on the dataset's backend (``argmax`` of the one-hot ``Y_rows``)."""
        with backend_of(self.Y_rows).device_context():
            return namespace_of(self.Y_rows).argmax(self.Y_rows, axis=1)

    @property
    def X(self) -> Array:
        """The report's (n_features, m) view."""
        return self.X_rows.T

    @property
    def Y(self) -> Array:
        """The report's one-hot (n_classes, m) view."""
        return self.Y_rows.T

    @classmethod
    def from_columns(cls, X: Array, Y: Array) -> Dataset:
        """From the report's layout: ``X`` (n_features, m), one-hot ``Y`` (n_classes, m), same backend."""
        xp = V.common_namespace({"X": X, "Y": Y})
        with backend_of(X).device_context():
            check_xy_columns(xp, X, Y)
            order = xp.arange(X.shape[1], device=array_api_compat.device(X))
            # a gather yields fresh sample-major (row-contiguous) arrays on every backend
            return cls(xp.take(X.T, order, axis=0), xp.take(Y.T, order, axis=0))

    @classmethod
    def from_host(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        n_classes: int | None = None,
        device: str | Backend = "cpu",
        dtype: str = "float64",
    ) -> Dataset:
        """From host arrays ``images`` (m, n_features) and integer class indices ``labels`` (m,).

        ``n_classes`` defaults to ``labels.max() + 1``; pass it (e.g. the data set's
        ``n_classes``) when a subset may lack the highest class.  Labels may be
        integers or integral floats.
        """
        backend = resolve_backend(device)
        dtype = resolve_dtype_name(dtype)
        if n_classes is not None:
            n_classes = V.check_positive_int("n_classes", n_classes)
        images = to_host("images", images)
        labels = to_host("labels", labels)
        if images.ndim != 2:
            raise InputValidationError(
                f"images: received shape {images.shape}; expected (n_samples, n_features), one row per sample"
            )
        if images.shape[0] == 0 or images.shape[1] == 0:
            raise InputValidationError(
                f"images: received shape {images.shape}; expected at least one sample and one feature"
            )
        if not V.is_real_host_dtype(images.dtype):
            raise InputValidationError(
                f"images: received dtype {images.dtype}; expected real numbers (an integer or float dtype)"
            )
        Y_rows = one_hot(
            _class_indices(labels, images.shape[0], n_classes), n_classes, dtype=dtype, samples_as="rows"
        )
        with np.errstate(over="ignore"):
            converted = images.astype(dtype, copy=False)
        if not np.all(np.isfinite(converted)):
            raise InputValidationError(
                f"images: received values that include NaN or infinity, or that overflow {dtype}; "
                "expected finite numbers"
            )
        return cls(backend.asarray(converted), backend.asarray(Y_rows, dtype))


def _class_indices(labels: np.ndarray, n_samples: int, n_classes: int | None) -> np.ndarray:
    """``labels`` (n_samples,) as integers: integral floats are converted, anything else is refused."""
    expected = "0, 1, ..." if n_classes is None else f"0..{n_classes - 1}"
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise InputValidationError(
            f"labels: received shape {labels.shape}; expected ({n_samples},), one label per sample"
        )
    if not V.is_real_host_dtype(labels.dtype):
        raise InputValidationError(
            f"labels: received dtype {labels.dtype}; expected integer class indices {expected} "
            "(backend_mlp.MLPClassifier accepts arbitrary labels such as strings)"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputValidationError(
                f"labels: received non-integer values of dtype {labels.dtype}; expected class indices {expected}"
            )
        labels = labels.astype(np.int64)
    return labels


def check_xy_columns(xp: Any, X: Array, Y: Array) -> None:
    """Validate the report layout: X (n_features, m) and one-hot Y (n_classes, m), finite, same m, same dtype."""
    if X.ndim != 2 or Y.ndim != 2:
        raise InputValidationError(
            f"X, Y: received shapes {tuple(X.shape)} and {tuple(Y.shape)}; expected 2-D arrays "
            "X (n_features, m) and one-hot Y (n_classes, m)"
        )
    if X.shape[1] != Y.shape[1]:
        hint = ""
        if X.shape[0] == Y.shape[1]:
            hint = f"; X looks transposed: pass X.T, of shape {tuple(X.shape[::-1])}"
        elif Y.shape[0] == X.shape[1]:
            hint = f"; Y looks transposed: pass Y.T, of shape {tuple(Y.shape[::-1])}"
        raise InputValidationError(
            f"X, Y: received X with {X.shape[1]} columns (samples) and Y with {Y.shape[1]}; expected the same m. "
            f"Samples are columns: X is (n_features, m), Y is (n_classes, m){hint}"
        )
    if X.shape[0] == 0 or X.shape[1] == 0 or Y.shape[0] == 0:
        raise InputValidationError(
            f"X, Y: received shapes {tuple(X.shape)} and {tuple(Y.shape)}; expected at least one feature, "
            "one class and one sample"
        )
    V.check_real_floating("X", X, xp)
    V.check_same_dtype({"Y": Y}, "X", X.dtype)
    V.check_finite("X", X, xp)
    V.check_one_hot("Y", Y, xp)
