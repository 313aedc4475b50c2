"""Checks against the real MNIST files, found through the environment variable BACKEND_MLP_DATA."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from backend_mlp.backends import to_numpy
from backend_mlp.data import MNIST, ImageData, load_mnist, locate_dataset, one_hot, prepare_mnist
from backend_mlp.data.idx import read_idx_bytes
from backend_mlp.errors import DataError

MNIST_FILES = MNIST.file_names
MNIST_SHA256 = MNIST.sha256

pytestmark = pytest.mark.mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def paths() -> dict[str, Path]:
    folder = os.environ.get("BACKEND_MLP_DATA")
    if not folder:
        pytest.skip("real MNIST: set BACKEND_MLP_DATA to a folder with the four MNIST files")
    try:
        return locate_dataset(MNIST, download=False)  # reads BACKEND_MLP_DATA
    except DataError as exc:
        pytest.skip(f"real MNIST: BACKEND_MLP_DATA={folder} is not usable: {exc}")


@pytest.fixture(scope="module")
def mnist(paths: dict[str, Path]) -> ImageData:
    return load_mnist(download=False)


def test_shapes_and_dtypes(mnist: ImageData) -> None:
    assert mnist.train_images.shape == (60000, 784) and mnist.train_images.dtype == np.float64
    assert mnist.test_images.shape == (10000, 784) and mnist.test_images.dtype == np.float64
    assert mnist.train_labels.shape == (60000,) and mnist.train_labels.dtype == np.int64
    assert mnist.test_labels.shape == (10000,) and mnist.test_labels.dtype == np.int64
    assert mnist.image_shape == (28, 28)


def test_label_counts(mnist: ImageData) -> None:
    assert np.bincount(mnist.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_labels, minlength=10).tolist() == TEST_COUNTS


def test_first_labels(mnist: ImageData) -> None:
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_pixel_range_and_mean(mnist: ImageData) -> None:
    for images in (mnist.train_images, mnist.test_images):
        assert images.min() == 0.0 and images.max() == 1.0
    assert mnist.train_images.mean() == pytest.approx(0.13066, abs=5e-5)
    # every value is an exact k/255
    np.testing.assert_array_equal(np.round(mnist.test_images * 255) / 255, mnist.test_images)


def test_one_hot_of_real_labels(mnist: ImageData) -> None:
    y = one_hot(mnist.test_labels)
    assert y.shape == (10, 10000)
    assert y.sum(axis=1).tolist() == TEST_COUNTS


def test_uncompressed_sha256(paths: dict[str, Path]) -> None:
    for name in MNIST_FILES:
        digest = hashlib.sha256(read_idx_bytes(paths[name])).hexdigest()
        assert digest == MNIST_SHA256[name], f"{paths[name]}: SHA-256 {digest}"


def test_float32_load_with_checksums(paths: dict[str, Path]) -> None:
    data = load_mnist(download=False, dtype="float32", checksums=MNIST_SHA256)
    assert data.train_images.dtype == np.float32
    assert float(data.train_images.mean(dtype=np.float64)) == pytest.approx(0.13066, abs=5e-5)


# The report protocol's splits, fingerprinted with the code that produced REPORT.md (before the data
# package): sample counts, SHA-256 (first 16 hex digits) of the images' bytes and of the int64 labels,
# and the first labels.  Any change to loading, scaling or the split order changes these.
PINNED_SPLITS = {
    0: {
        "train": (48000, "bbd4d953eadd2d6a", "22be6f292c15673d", [1, 7, 1, 0, 9, 4, 6, 9]),
        "val": (12000, "fa50e4b3334cdc9a", "b4dc90ec90dad944", [7, 5, 5, 0, 0, 5, 2, 8]),
        "test": (10000, "66a1790b97c8e536", "2fd8de6bdb8d1178", [7, 2, 1, 0, 4, 1, 4, 9]),
    },
    1: {
        "train": (48000, "59fbf6b3989c7ba3", "9afcc5b60d16ef12", [1, 4, 9, 5, 9, 7, 2, 1]),
        "val": (12000, "18966e522e90d101", "e85a7cbe6ffb5b94", [3, 4, 3, 1, 6, 2, 3, 4]),
        "test": (10000, "66a1790b97c8e536", "2fd8de6bdb8d1178", [7, 2, 1, 0, 4, 1, 4, 9]),
    },
}


def _fingerprint(data) -> tuple[int, str, str, list[int]]:  # type: ignore[no-untyped-def]
    X = np.ascontiguousarray(to_numpy(data.X_rows))
    y = np.ascontiguousarray(to_numpy(data.Y_rows)).argmax(axis=1).astype(np.int64)
    sha = lambda b: hashlib.sha256(b).hexdigest()[:16]  # noqa: E731
    return data.n_samples, sha(X.tobytes()), sha(y.tobytes()), y[:8].tolist()


@pytest.mark.parametrize("seed", sorted(PINNED_SPLITS))
def test_prepare_mnist_splits_are_the_reports(paths: dict[str, Path], seed: int) -> None:
    splits = prepare_mnist(download=False, split_seed=seed)
    for part in ("train", "val", "test"):
        assert _fingerprint(getattr(splits, part)) == PINNED_SPLITS[seed][part], part


def test_prepare_mnist_float32_train_images_pinned(paths: dict[str, Path]) -> None:
    X = np.ascontiguousarray(to_numpy(prepare_mnist(download=False, dtype="float32").train.X_rows))
    assert hashlib.sha256(X.tobytes()).hexdigest()[:16] == "22ab0ee8f58d370f"


def test_source_records_the_published_checksums(mnist: ImageData, paths: dict[str, Path]) -> None:
    """The uncompressed SHA-256 computed while loading equals MNIST's published digests."""
    source = mnist.source
    assert source["dataset"] == "mnist" and source["folder"] == str(paths[MNIST_FILES[0]].parent.resolve())
    for role, name in MNIST.files.items():
        entry = source["files"][role]
        expected = {"file": paths[name].name, "sha256": MNIST_SHA256[name], "matches_published": True}
        if paths[name].suffix == ".gz":  # the stored file's own digest, to recognise it among data sets
            expected["sha256_gz"] = hashlib.sha256(paths[name].read_bytes()).hexdigest()
        assert entry == expected


def test_a_bare_folder_of_the_real_files_is_recognised_as_mnist(paths: dict[str, Path]) -> None:
    from backend_mlp.data import prepare_splits

    folder = next(iter(paths.values())).parent
    splits = prepare_splits(None, folder, validation_fraction=0.5)
    assert splits.spec.name == "mnist" and splits.source["dataset"] == "mnist"
    assert splits.class_names == tuple(str(d) for d in range(10))


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_mnist_files_are_refused_as_another_data_set(paths: dict[str, Path], name: str) -> None:
    from backend_mlp.data import get_dataset, load_dataset
    from backend_mlp.errors import DataError

    folder = next(iter(paths.values())).parent
    with pytest.raises(DataError, match=f"are MNIST .*not {get_dataset(name).title}"):
        load_dataset(get_dataset(name), folder)
