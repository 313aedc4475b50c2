"""Host data preparation: to_host, one_hot, split_train_validation, Dataset.from_host and prepare_mnist's split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_mnist import write_synthetic_mnist

from backend_mlp.backends import to_numpy
from backend_mlp.data import Dataset, load_mnist, one_hot, prepare_mnist, split_train_validation, to_host
from backend_mlp.data.splits import _permute_rows_in_place
from backend_mlp.errors import InputValidationError

# --------------------------------------------------------------------------- one_hot


def test_one_hot_shape_and_values() -> None:
    y = np.array([3, 0, 9, 3], dtype=np.int64)
    out = one_hot(y)
    assert out.shape == (10, 4) and out.dtype == np.float64
    np.testing.assert_array_equal(out.argmax(axis=0), y)
    np.testing.assert_array_equal(out.sum(axis=0), np.ones(4))
    assert one_hot([1, 2], n_classes=3, dtype="float32").dtype == np.float32
    np.testing.assert_array_equal(one_hot(np.array([2], np.uint8), 3), [[0.0], [0.0], [1.0]])
    assert one_hot(np.array([], dtype=np.int64), 10).shape == (10, 0)
    assert one_hot(np.array([0, 2])).shape == (3, 2)  # n_classes defaults to labels.max() + 1


def test_one_hot_rows_is_the_transpose() -> None:
    y = np.random.default_rng(0).integers(0, 7, 50)
    rows = one_hot(y, 7, dtype="float32", samples_as="rows")
    assert rows.shape == (50, 7) and rows.dtype == np.float32 and rows.flags.c_contiguous
    np.testing.assert_array_equal(rows, one_hot(y, 7, dtype="float32").T)


@pytest.mark.parametrize(
    ("labels", "kwargs", "words"),
    [
        (np.array([0, 10]), {"n_classes": 10}, "outside 0..9"),
        (np.array([-1, 2]), {}, "-1 at index 0"),
        (np.array([], dtype=np.int64), {}, "n_classes: received None"),
        (np.array([0, 3]), {"n_classes": 3}, "3 at index 1"),
        (np.array([0.0, 1.0]), {}, "integer"),
        (np.array([True, False]), {}, "integer"),
        (np.array([[1, 2]]), {}, "1-D"),
        (np.array([1, 2]), {"n_classes": 0}, "n_classes"),
        (np.array([1, 2]), {"dtype": "int8"}, "dtype"),
        (np.array([1, 2]), {"samples_as": "cols"}, "samples_as"),
    ],
)
def test_one_hot_errors(labels: np.ndarray, kwargs: dict, words: str) -> None:
    with pytest.raises(InputValidationError, match=words):
        one_hot(labels, **kwargs)


# ----------------------------------------------------------------- split_train_validation


def test_split_sizes_and_partition() -> None:
    x = np.arange(100 * 3).reshape(100, 3)
    y = np.arange(100)
    xt, yt, xv, yv = split_train_validation(x, y, 0.2, seed=5)
    assert xt.shape == (80, 3) and yt.shape == (80,) and xv.shape == (20, 3) and yv.shape == (20,)
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(100))
    np.testing.assert_array_equal(xt[:, 0] // 3, yt)  # rows stay paired with their labels
    perm = np.random.default_rng(5).permutation(100)
    np.testing.assert_array_equal(yt, perm[:80])
    np.testing.assert_array_equal(yv, perm[80:])


def test_split_is_seeded() -> None:
    x, y = np.zeros((50, 2)), np.arange(50)
    a = split_train_validation(x, y, 0.3, seed=1)[1]
    b = split_train_validation(x, y, 0.3, seed=1)[1]
    c = split_train_validation(x, y, 0.3, seed=2)[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.2"])
def test_split_rejects_bad_fraction(fraction: object) -> None:
    with pytest.raises(InputValidationError, match="validation_fraction"):
        split_train_validation(np.zeros((10, 2)), np.zeros(10), fraction)  # type: ignore[arg-type]


def test_split_rejects_empty_part_and_mismatch() -> None:
    # a small fraction still validates on one sample; a single sample cannot be split at all
    _, _, val_x, _ = split_train_validation(np.zeros((10, 2)), np.zeros(10), 0.01)
    assert val_x.shape == (1, 2)
    with pytest.raises(InputValidationError, match="at least one"):
        split_train_validation(np.zeros((1, 2)), np.zeros(1), 0.5)
    with pytest.raises(InputValidationError, match="same number of samples"):
        split_train_validation(np.zeros((10, 2)), np.zeros(9), 0.2)


# --------------------------------------------------------------------------- to_host


class _NotAnArray:
    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        raise TypeError("no conversion")


def test_to_host() -> None:
    x = np.arange(6.0).reshape(2, 3)
    assert to_host("x", x) is x  # host NumPy arrays are not copied
    np.testing.assert_array_equal(to_host("x", [[1, 2], [3, 4]]), [[1, 2], [3, 4]])
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(to_host("x", torch.arange(3)), [0, 1, 2])


def test_to_host_error_names_the_argument() -> None:
    with pytest.raises(InputValidationError, match=r"images: received an object of type _NotAnArray.*expected"):
        to_host("images", _NotAnArray())


# --------------------------------------------------------------------------- Dataset.from_host


def test_dataset_n_classes_defaults_to_the_labels() -> None:
    X = np.zeros((5, 3))
    assert Dataset.from_host(X, np.array([0, 1, 3, 1, 0])).n_classes == 4
    assert Dataset.from_host(X, np.array([0, 1, 3, 1, 0]), n_classes=10).n_classes == 10
    data = Dataset.from_host(X, np.array([0.0, 1.0, 2.0, 1.0, 0.0]), dtype="float32")  # integral floats
    assert data.n_classes == 3 and data.Y_rows.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(data.Y).argmax(axis=0), [0, 1, 2, 1, 0])


# --------------------------------------------------------------------------- prepare_mnist


def _old_split_formula(m: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The report protocol's split as it was defined before the data package: pinned here on purpose."""
    n_val = round(m * fraction)
    order = np.random.default_rng(seed).permutation(m)
    return order[: m - n_val], order[m - n_val :]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("prep_mnist"), n_train=503, n_test=101)


@pytest.mark.parametrize(
    ("seed", "fraction", "dtype"), [(0, 0.2, "float64"), (3, 0.2, "float32"), (1, 0.37, "float64")]
)
def test_prepare_mnist_split_is_the_old_formula_bit_for_bit(
    synthetic_dir: Path, seed: int, fraction: float, dtype: str
) -> None:
    raw = load_mnist(synthetic_dir, dtype=dtype)
    splits = prepare_mnist(synthetic_dir, dtype=dtype, split_seed=seed, validation_fraction=fraction)
    train_idx, val_idx = _old_split_formula(503, fraction, seed)
    for data, idx in ((splits.train, train_idx), (splits.val, val_idx)):
        X, Y = to_numpy(data.X_rows), to_numpy(data.Y_rows)
        assert X.dtype == np.dtype(dtype) and data.n_classes == 10
        np.testing.assert_array_equal(X, raw.train_images[idx])  # exact, bitwise for floats
        np.testing.assert_array_equal(Y.argmax(axis=1), raw.train_labels[idx])
    np.testing.assert_array_equal(to_numpy(splits.test.X_rows), raw.test_images)
    assert splits.split_seed == seed and splits.dtype == dtype
    # and it is split_train_validation's split
    _, tr_y, _, va_y = split_train_validation(raw.train_images, raw.train_labels, fraction, seed=seed)
    np.testing.assert_array_equal(to_numpy(splits.train.Y_rows).argmax(axis=1), tr_y)
    np.testing.assert_array_equal(to_numpy(splits.val.Y_rows).argmax(axis=1), va_y)


def test_prepare_mnist_keeps_every_class_when_a_split_lacks_one(tmp_path: Path) -> None:
    folder = write_synthetic_mnist(tmp_path, n_train=40, n_test=3)  # 3 test images cannot hold 10 digits
    splits = prepare_mnist(folder)
    assert splits.train.n_classes == splits.val.n_classes == splits.test.n_classes == 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permute_rows_in_place(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((57, 4))
    order = rng.permutation(57)
    expected = x[order]
    _permute_rows_in_place(x, order)
    np.testing.assert_array_equal(x, expected)
