"""Loading data sets from local folders (no network): MNIST, other specs and bare folders."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from backend_mlp.data import (
    MNIST,
    DatasetSpec,
    ImageData,
    default_cache_dir,
    load_dataset,
    load_mnist,
    locate_dataset,
)
from backend_mlp.data.idx import encode_idx, write_idx
from backend_mlp.errors import ChecksumError, DataError, DownloadError, InputValidationError

MNIST_FILES = MNIST.file_names

N_TRAIN, N_TEST = 50, 20


def fake_mnist(n_train: int = N_TRAIN, n_test: int = N_TEST, size: tuple[int, int] = (28, 28)) -> dict:
    rng = np.random.default_rng(123)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_folder(folder: Path, arrays: dict, spelling: str = "gz", skip: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        if name in skip:
            continue
        if spelling == "gz":
            write_idx(folder / f"{name}.gz", arr)
        elif spelling == "raw":
            write_idx(folder / name, arr)
        else:  # the 'train-images.idx3-ubyte' spelling
            write_idx(folder / name.replace("-idx", ".idx"), arr)
    return folder


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No BACKEND_MLP_DATA from the outside, and a private cache folder."""
    monkeypatch.delenv("BACKEND_MLP_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("BACKEND_MLP_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("spelling", ["gz", "raw", "dotted"])
def test_load_from_explicit_folder(tmp_path: Path, spelling: str) -> None:
    arrays = fake_mnist()
    folder = write_folder(tmp_path / "data", arrays, spelling)
    data = load_mnist(folder)
    assert type(data) is ImageData and data.class_names == MNIST.class_names
    assert data.train_images.shape == (N_TRAIN, 784) and data.train_images.dtype == np.float64
    assert data.test_images.shape == (N_TEST, 784)
    assert data.train_labels.shape == (N_TRAIN,) and data.train_labels.dtype == np.int64
    assert data.test_labels.dtype == np.int64
    assert data.image_shape == (28, 28)
    np.testing.assert_array_equal(
        data.train_images, arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1) / 255.0
    )
    np.testing.assert_array_equal(data.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    assert set(data.files) == set(MNIST_FILES)
    assert "ImageData(" in repr(data) and "n_classes=10" in repr(data)


def test_float32_and_other_image_size(tmp_path: Path) -> None:
    from backend_mlp.data import load_dataset
    from backend_mlp.data.sources import folder_spec

    folder = write_folder(tmp_path / "d", fake_mnist(size=(4, 3)))
    data = load_dataset(folder_spec(folder), folder, dtype="float32")  # a bare folder: any image size
    assert data.train_images.dtype == np.float32 and data.train_images.shape == (N_TRAIN, 12)
    assert data.image_shape == (4, 3)
    with pytest.raises(DataError, match="received 4x3 images; expected 28x28, the size of MNIST's"):
        load_mnist(str(folder))  # not MNIST's size: refused as MNIST


def test_bad_dtype(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d", fake_mnist())
    with pytest.raises(InputValidationError, match="dtype"):
        load_mnist(folder, dtype="int32")


def test_explicit_folder_missing_files(tmp_path: Path, isolated_env: Path) -> None:
    missing = ("t10k-images-idx3-ubyte", "train-labels-idx1-ubyte")
    folder = write_folder(tmp_path / "d", fake_mnist(), skip=missing)
    with pytest.raises(DataError) as info:
        load_mnist(folder, mirrors=["http://127.0.0.1:9/"])
    msg = str(info.value)
    assert str(folder) in msg and "missing 2 of 4 files" in msg
    listed = msg.split("files: ", 1)[1].split(". ", 1)[0]
    assert listed.split(", ") == ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
    assert "--data-dir" in msg and "BACKEND_MLP_DATA" in msg and "download" in msg
    # An explicit folder is never downloaded into, nor is the cache touched.
    assert sorted(p.name for p in folder.iterdir()) == ["t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"]
    assert not isolated_env.exists()


def test_explicit_folder_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        locate_dataset(MNIST, tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "BACKEND_MLP_DATA" in str(info.value)


def test_explicit_path_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        locate_dataset(MNIST, f)


def test_env_var_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "env_data", fake_mnist(), "raw")
    monkeypatch.setenv("BACKEND_MLP_DATA", str(folder))
    paths = locate_dataset(MNIST)
    assert paths == {name: folder / name for name in MNIST_FILES}
    assert load_mnist().train_images.shape == (N_TRAIN, 784)


def test_env_var_folder_missing_files_names_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "env_data", fake_mnist(), skip=("t10k-labels-idx1-ubyte",))
    monkeypatch.setenv("BACKEND_MLP_DATA", str(folder))
    with pytest.raises(DataError) as info:
        locate_dataset(MNIST)
    msg = str(info.value)
    assert "environment variable BACKEND_MLP_DATA" in msg and "files: t10k-labels-idx1-ubyte." in msg


def test_argument_overrides_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_MLP_DATA", str(tmp_path / "does-not-exist"))
    folder = write_folder(tmp_path / "arg", fake_mnist())
    assert load_mnist(folder).test_images.shape == (N_TEST, 784)


def test_cache_without_download(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    with pytest.raises(DataError) as info:
        locate_dataset(MNIST, download=False, cache_dir=cache)
    msg = str(info.value)
    assert "download=False" in msg and "--data-dir" in msg and "BACKEND_MLP_DATA" in msg
    for name in MNIST_FILES:
        assert name in msg
    arrays = fake_mnist()
    write_folder(cache, arrays)
    sums = {name: hashlib.sha256(encode_idx(a)).hexdigest() for name, a in arrays.items()}  # cached files are
    assert load_mnist(download=False, cache_dir=cache, checksums=sums).train_labels.shape == (N_TRAIN,)  # verified


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKEND_MLP_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit" / "mnist"  # a base folder: one sub-folder per data set
    assert default_cache_dir(_spec()) == tmp_path / "explicit" / "toy"
    monkeypatch.delenv("BACKEND_MLP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "backend_mlp" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "backend_mlp" / "mnist"


def test_count_mismatch(tmp_path: Path) -> None:
    arrays = fake_mnist()
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:-1]
    folder = write_folder(tmp_path / "d", arrays)
    with pytest.raises(DataError) as info:
        load_mnist(folder)
    msg = str(info.value)
    assert "test split" in msg and "20 images" in msg and "19 labels" in msg and "equal counts" in msg


def test_labels_out_of_range(tmp_path: Path) -> None:
    arrays = fake_mnist()
    arrays["train-labels-idx1-ubyte"][7] = 12
    folder = write_folder(tmp_path / "d", arrays)
    with pytest.raises(DataError) as info:
        load_mnist(folder)
    msg = str(info.value)
    assert "outside 0..9" in msg and "12 at index 7" in msg and "train-labels-idx1-ubyte" in msg


def test_image_size_differs_between_splits(tmp_path: Path) -> None:
    arrays = fake_mnist()
    arrays["t10k-images-idx3-ubyte"] = np.zeros((N_TEST, 20, 20), np.uint8)
    with pytest.raises(DataError, match="20x20 but the train images are 28x28"):
        load_mnist(write_folder(tmp_path / "d", arrays))


def test_swapped_files_wrong_magic(tmp_path: Path) -> None:
    arrays = fake_mnist()
    folder = write_folder(tmp_path / "d", arrays)
    # put a labels file where the test images should be
    write_idx(folder / "t10k-images-idx3-ubyte.gz", arrays["t10k-labels-idx1-ubyte"])
    with pytest.raises(DataError, match="wrong magic number 2049.*expected 2051"):
        load_mnist(folder)


def test_truncated_file_in_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d", fake_mnist())
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*damaged"):
        load_mnist(folder)


def test_explicit_checksums_verify_local_files(tmp_path: Path) -> None:
    arrays = fake_mnist()
    folder = write_folder(tmp_path / "d", arrays)
    sums = {name: hashlib.sha256(encode_idx(a)).hexdigest() for name, a in arrays.items()}
    load_mnist(folder, checksums=sums)
    sums["t10k-labels-idx1-ubyte"] = "0" * 64
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.*expected 0000"):
        load_mnist(folder, checksums=sums)
    # sha of the uncompressed content, not of the .gz
    gz_sum = hashlib.sha256((folder / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert gz_sum != hashlib.sha256(gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())).hexdigest()


# --------------------------------------------------------------------------- other specs


def _spec(**overrides: object) -> DatasetSpec:
    fields: dict = {
        "name": "toy",
        "title": "Toy",
        "files": {
            "train_images": "toy-train-images-idx3-ubyte",
            "train_labels": "toy-train-labels-idx1-ubyte",
            "test_images": "toy-test-images-idx3-ubyte",
            "test_labels": "toy-test-labels-idx1-ubyte",
        },
        "class_names": ("circle", "square", "triangle"),
    }
    fields.update(overrides)
    return DatasetSpec(**fields)


def _write_toy(folder: Path, spec: DatasetSpec, n_classes: int = 3, size: tuple[int, int] = (5, 4)) -> dict:
    rng = np.random.default_rng(5)
    arrays = {
        spec.files["train_images"]: rng.integers(0, 256, (30, *size), dtype=np.uint8),
        spec.files["train_labels"]: (np.arange(30) % n_classes).astype(np.uint8),
        spec.files["test_images"]: rng.integers(0, 256, (12, *size), dtype=np.uint8),
        spec.files["test_labels"]: (np.arange(12) % n_classes).astype(np.uint8),
    }
    write_folder(folder, arrays)
    return arrays


def test_load_dataset_for_another_spec(tmp_path: Path) -> None:
    spec = _spec()
    arrays = _write_toy(tmp_path / "toy", spec)
    data = load_dataset(spec, tmp_path / "toy", dtype="float32")
    assert type(data) is ImageData
    assert data.train_images.shape == (30, 20) and data.n_features == 20 and data.image_shape == (5, 4)
    assert data.n_classes == 3 and data.class_names == ("circle", "square", "triangle")
    np.testing.assert_array_equal(data.test_labels, arrays[spec.files["test_labels"]])
    assert set(data.files) == set(spec.file_names)
    assert "ImageData(" in repr(data) and "n_classes=3" in repr(data)


def test_labels_beyond_the_specs_classes(tmp_path: Path) -> None:
    spec = _spec()
    _write_toy(tmp_path / "toy", spec, n_classes=4)
    with pytest.raises(DataError) as info:
        load_dataset(spec, tmp_path / "toy")
    msg = str(info.value)
    assert "outside 0..2" in msg and "3 at index 3" in msg and "3 classes of Toy" in msg


def test_bare_folder_counts_classes_from_the_labels(tmp_path: Path) -> None:
    spec = _spec(class_names=())
    assert spec.n_classes is None
    _write_toy(tmp_path / "toy", spec, n_classes=7)
    data = load_dataset(spec, tmp_path / "toy")
    assert data.n_classes == 7 and data.class_names == tuple("0123456")


def test_load_dataset_uses_the_env_var_and_names_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec()
    _write_toy(tmp_path / "toy", spec)
    monkeypatch.setenv("BACKEND_MLP_DATA", str(tmp_path / "toy"))
    assert load_dataset(spec).test_images.shape == (12, 20)
    # the MNIST files are not there: the message names MNIST's files and the variable
    with pytest.raises(DataError, match="MNIST data folder .* environment variable BACKEND_MLP_DATA"):
        load_mnist()


def test_spec_without_mirrors_cannot_download(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="Toy has no download mirrors"):
        load_dataset(_spec(), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_default_cache_dir_is_per_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BACKEND_MLP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir(_spec()) == tmp_path / "backend_mlp" / "toy"
    assert default_cache_dir(MNIST) == default_cache_dir() == tmp_path / "backend_mlp" / "mnist"


def test_mnist_spec() -> None:
    assert MNIST.name == "mnist" and MNIST.n_classes == 10 and MNIST.image_shape == (28, 28)
    assert MNIST.file_names == (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
    )
    assert set(MNIST.sha256) == set(MNIST.file_names) and all(len(d) == 64 for d in MNIST.sha256.values())
    assert MNIST.magic("t10k-images-idx3-ubyte") == 2051 and MNIST.magic("train-labels-idx1-ubyte") == 2049
    with pytest.raises(TypeError):
        MNIST.sha256["train-images-idx3-ubyte"] = "0" * 64  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        MNIST.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"name": "my data"}, "name"),
        ({"title": ""}, "title"),
        ({"files": {"train_images": "a"}}, "train_labels"),
        ({"files": dict.fromkeys(("train_images", "train_labels", "test_images", "test_labels"), "same")},
         "four different"),
        ({"sha256": {"unknown-file": "0" * 64}}, "sha256"),
        ({"sha256": {"toy-test-labels-idx1-ubyte": "xyz"}}, "64-digit"),
        ({"mirrors": ("",)}, "mirrors"),
        ({"class_names": ("a", "a")}, "class_names"),
        ({"image_shape": (28,)}, "image_shape"),
    ],
)
def test_spec_validation(overrides: dict, words: str) -> None:
    with pytest.raises(InputValidationError, match=words):
        _spec(**overrides)
