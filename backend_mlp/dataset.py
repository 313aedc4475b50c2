"""A labelled dataset placed on a backend once, stored sample-major for fast batching.

The report's layout is feature-major (``X`` is (n_features, m)).  For training,
the data is kept sample-major: ``X_rows`` (m, n_features) and one-hot
``Y_rows`` (m, n_classes), so a mini-batch is a contiguous row gather and its
transpose ``X_rows[idx].T`` is the report's (n_features, batch) view, no copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np  # host-side conversion of user data only

from .backend import Backend, namespace_of, resolve_backend, resolve_dtype_name
from .errors import InputValidationError

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
        xp = namespace_of(X, Y)
        check_xy_columns(xp, X, Y)
        order = xp.arange(X.shape[1], device=_device(X))
        # a gather yields fresh sample-major (row-contiguous) arrays on every backend
        return cls(xp.take(X.T, order, axis=0), xp.take(Y.T, order, axis=0))

    @classmethod
    def from_host(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        n_classes: int = 10,
        device: str | Backend = "cpu",
        dtype: str = "float64",
    ) -> Dataset:
        """From host arrays ``images`` (m, n_features) and integer ``labels`` (m,)."""
        backend = resolve_backend(device)
        dtype = resolve_dtype_name(dtype)
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 2:
            raise InputValidationError(
                f"images: received shape {images.shape}; expected (n_samples, n_features)"
            )
        Y_rows = one_hot_rows(labels, n_classes, images.shape[0])
        return cls(backend.asarray(images, dtype), backend.asarray(Y_rows, dtype))


def _device(x: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


def one_hot_rows(labels: np.ndarray, n_classes: int, n_samples: int) -> np.ndarray:
    """Host one-hot matrix (m, n_classes) of integer ``labels``; validates range and length."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise InputValidationError(
            f"labels: received shape {labels.shape}; expected ({n_samples},), one label per sample"
        )
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputValidationError(
                f"labels: received non-integer values of dtype {labels.dtype}; expected class indices"
            )
        labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputValidationError(
            f"labels: received values in [{labels.min()}, {labels.max()}]; expected 0..{n_classes - 1}"
        )
    out = np.zeros((n_samples, n_classes))
    out[np.arange(n_samples), labels] = 1.0
    return out


def check_xy_columns(xp: Any, X: Array, Y: Array) -> None:
    """Validate the report layout: X (n_features, m) and one-hot Y (n_classes, m), finite, same m."""
    if X.ndim != 2 or Y.ndim != 2:
        raise InputValidationError(
            f"X, Y: received shapes {tuple(X.shape)} and {tuple(Y.shape)}; expected 2-D arrays "
            "X (n_features, m) and one-hot Y (n_classes, m)"
        )
    if X.shape[1] != Y.shape[1]:
        raise InputValidationError(
            f"X, Y: X has {X.shape[1]} columns (samples) but Y has {Y.shape[1]}; expected the same m. "
            "Samples are columns: X is (n_features, m), Y is (n_classes, m)"
        )
    if not xp.isdtype(X.dtype, "real floating"):
        raise InputValidationError(f"X: received dtype {X.dtype}; expected float32 or float64")
    if not bool(xp.all(xp.isfinite(X))):
        raise InputValidationError("X: contains NaN or infinite values; expected finite numbers")
    is_binary = xp.all((Y == 0) | (Y == 1))
    if not bool(is_binary) or not bool(xp.all(xp.sum(Y, axis=0) == 1)):
        raise InputValidationError(
            "Y: expected one-hot columns (exactly one 1 per column, zeros elsewhere) of shape (n_classes, m)"
        )
