"""Named data sets (Fashion-MNIST, KMNIST) and any IDX folder: registry, download through a local
HTTP server on 127.0.0.1, one cache sub-folder per data set, other image sizes and class counts,
prepare_splits and the ``source`` it reports."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from local_mirror import Server, isolate_downloads
from test_data_download import CHECKSUMS, GZ

import backend_mlp.data.sources as sources
from backend_mlp.backends import to_numpy
from backend_mlp.data import (
    DATASETS,
    FASHION_MNIST,
    KMNIST,
    MNIST,
    DatasetSpec,
    DataSplits,
    MnistSplits,
    get_dataset,
    load_dataset,
    prepare_mnist,
    prepare_splits,
)
from backend_mlp.data.idx import encode_idx, write_idx
from backend_mlp.errors import ChecksumError, DataError, InputValidationError

TIMEOUT = 5
TRAIN, TEST = MNIST.files["train_labels"], MNIST.files["test_labels"]


def make_arrays(seed: int, n_train: int = 40, n_test: int = 15, size: tuple[int, int] = (28, 28), k: int = 10):
    """The four files (by MNIST name) of a small data set; every class appears in the training labels."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % k).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, k, n_test, dtype=np.uint8),
    }


def served(arrays: dict[str, np.ndarray]) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, str]]:
    """(uncompressed bytes, gzip bytes as a mirror serves them, SHA-256 of those gzip bytes)."""
    raw = {name: encode_idx(a) for name, a in arrays.items()}
    gz = {name: gzip.compress(data, compresslevel=9, mtime=0) for name, data in raw.items()}
    return raw, gz, {name: hashlib.sha256(body).hexdigest() for name, body in gz.items()}


def write_folder(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        write_idx(folder / f"{name}.gz", a)
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads isolated; returns the private cache base folder ``$BACKEND_MLP_CACHE``."""
    isolate_downloads(monkeypatch, tmp_path / "cache")
    return tmp_path / "cache"


# --------------------------------------------------------------------------- registry


def test_registry_and_specs() -> None:
    assert dict(DATASETS) == {"mnist": MNIST, "fashion-mnist": FASHION_MNIST, "kmnist": KMNIST}
    assert get_dataset("Fashion_MNIST") is FASHION_MNIST and get_dataset(" kmnist") is KMNIST
    assert get_dataset(KMNIST) is KMNIST
    assert FASHION_MNIST.class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
    )
    assert KMNIST.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    for spec in (FASHION_MNIST, KMNIST):
        assert spec.file_names == MNIST.file_names and spec.image_shape == (28, 28) and spec.mirrors
        assert set(spec.sha256_gz) == set(spec.file_names) and not spec.sha256
    assert len({s.sha256_gz["train-images-idx3-ubyte"] for s in (FASHION_MNIST, KMNIST)}) == 2


@pytest.mark.parametrize("bad", ["emnist", "", None, 3])
def test_get_dataset_names_argument_value_and_known_names(bad: object) -> None:
    with pytest.raises(InputValidationError) as info:
        get_dataset(bad)  # type: ignore[arg-type]
    msg = str(info.value)
    assert msg.startswith(f"dataset: received {bad!r}; expected one of ")
    assert all(repr(name) in msg for name in DATASETS)
    with pytest.raises(InputValidationError, match="dataset: received 'cifar10'"):
        prepare_splits("cifar10")


def test_spec_refuses_a_bad_gz_digest() -> None:
    with pytest.raises(InputValidationError, match="sha256_gz: received .*served .gz files"):
        dataclasses.replace(KMNIST, sha256_gz={"train-images-idx3-ubyte": "abc"})


# --------------------------------------------------------------------------- named downloads


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_named_download_verifies_the_gz_digest_and_caches_per_name(server: Server, cache: Path, name: str) -> None:
    arrays = make_arrays(seed=len(name))
    raw, gz, gz_sums = served(arrays)
    spec = dataclasses.replace(get_dataset(name), mirrors=(server.mirror(name, gz),), sha256_gz=gz_sums)
    splits = prepare_splits(spec, timeout=TIMEOUT, split_seed=3)
    assert isinstance(splits, DataSplits) and splits.spec is spec
    assert splits.class_names == get_dataset(name).class_names and splits.n_classes == 10
    assert splits.image_shape == (28, 28) and splits.train.n_features == 784
    assert splits.train.n_samples + splits.val.n_samples == 40 and splits.val.n_samples == 8
    np.testing.assert_array_equal(
        to_numpy(splits.test.X_rows), arrays["t10k-images-idx3-ubyte"].reshape(15, 784) / 255.0
    )
    np.testing.assert_array_equal(to_numpy(splits.test.Y_rows).argmax(1), arrays[TEST])
    # the cache is $BACKEND_MLP_CACHE/<name>, holding the served .gz bytes unchanged
    assert [p.name for p in cache.iterdir()] == [name]
    for file_name, body in gz.items():
        assert (cache / name / f"{file_name}.gz").read_bytes() == body
    assert len(server.hits) == 4
    source = splits.source
    assert source["dataset"] == name and source["title"] == spec.title
    assert source["folder"] == str((cache / name).resolve())
    for role, file_name in spec.files.items():
        assert source["files"][role] == {
            "file": f"{file_name}.gz",
            "sha256": hashlib.sha256(raw[file_name]).hexdigest(),
            "matches_published": True,
            "sha256_gz": hashlib.sha256(gz[file_name]).hexdigest(),
        }
    json.dumps(source)  # JSON-ready
    # the second time, from the cache only
    again = prepare_splits(spec, download=False, split_seed=3)
    assert len(server.hits) == 4 and again.source == source


def test_each_data_set_has_its_own_cache_folder(server: Server, cache: Path) -> None:
    """MNIST, Fashion-MNIST and KMNIST share file names: each lands in (and loads from) its own sub-folder."""
    load_dataset(MNIST, mirrors=[server.mirror("mnist", GZ)], checksums=CHECKSUMS, timeout=TIMEOUT)
    specs = {}
    for seed, base in enumerate((FASHION_MNIST, KMNIST), start=20):
        arrays = make_arrays(seed)
        _, gz, gz_sums = served(arrays)
        spec = dataclasses.replace(base, mirrors=(server.mirror(base.name, gz),), sha256_gz=gz_sums)
        specs[base.name] = (spec, arrays)
        load_dataset(specs[base.name][0], timeout=TIMEOUT)
    assert sorted(p.name for p in cache.iterdir()) == ["fashion-mnist", "kmnist", "mnist"]
    for folder in cache.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in MNIST.file_names)
    assert len(server.hits) == 12
    for spec, arrays in specs.values():
        data = load_dataset(spec, download=False)
        np.testing.assert_array_equal(data.train_labels, arrays[TRAIN])
        np.testing.assert_array_equal(data.test_labels, arrays[TEST])
    assert len(server.hits) == 12


def test_wrong_gz_digest_is_refused_and_nothing_written(server: Server, cache: Path) -> None:
    _, gz, gz_sums = served(make_arrays(1))
    _, other_gz, _ = served(make_arrays(2))
    spec = dataclasses.replace(FASHION_MNIST, mirrors=(server.mirror("bad", other_gz),), sha256_gz=gz_sums)
    with pytest.raises(ChecksumError) as info:
        prepare_splits(spec, timeout=TIMEOUT)
    msg = str(info.value)
    assert "Fashion-MNIST file train-images-idx3-ubyte" in msg and "of the .gz file" in msg
    assert gz_sums["train-images-idx3-ubyte"] in msg
    assert not any((cache / "fashion-mnist").iterdir())
    # a good mirror after the bad one is used
    spec = dataclasses.replace(spec, mirrors=(spec.mirrors[0], server.mirror("good", gz)))
    assert prepare_splits(spec, timeout=TIMEOUT).n_classes == 10


def test_gz_digest_cannot_vouch_for_uncompressed_data(server: Server, cache: Path) -> None:
    raw, _, gz_sums = served(make_arrays(1))
    spec = dataclasses.replace(KMNIST, mirrors=(server.mirror("raw", raw),), sha256_gz=gz_sums)
    with pytest.raises(ChecksumError, match="served uncompressed data; only the SHA-256 of the .gz file"):
        load_dataset(spec, timeout=TIMEOUT)


def test_uncompressed_digest_decides_over_the_gz_digest(server: Server, cache: Path) -> None:
    """A mirror that recompressed the same content: the uncompressed SHA-256, when known, accepts it."""
    raw, gz, gz_sums = served(make_arrays(1))
    recompressed = {name: gzip.compress(data, compresslevel=1, mtime=1) for name, data in raw.items()}
    assert recompressed != gz
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in raw.items()}
    spec = dataclasses.replace(
        KMNIST, mirrors=(server.mirror("re", recompressed),), sha256=sums, sha256_gz=gz_sums
    )
    data = load_dataset(spec, timeout=TIMEOUT)
    assert all(entry["matches_published"] is True for entry in data.source["files"].values())


# --------------------------------------------------------------------------- any IDX folder


def test_any_idx_folder_14x14_with_5_classes(tmp_path: Path, cache: Path) -> None:
    arrays = make_arrays(4, n_train=50, n_test=20, size=(14, 14), k=5)  # every class in the training labels
    folder = write_folder(tmp_path / "my data", arrays)
    splits = prepare_splits(data_dir=folder, split_seed=1, validation_fraction=0.2, dtype="float32")
    assert splits.image_shape == (14, 14) and splits.class_names == ("0", "1", "2", "3", "4")
    for part, m in (("train", 40), ("val", 10), ("test", 20)):
        data = getattr(splits, part)
        assert (data.n_samples, data.n_features, data.n_classes) == (m, 196, 5), part
        assert to_numpy(data.X_rows).dtype == np.float32
    np.testing.assert_array_equal(to_numpy(splits.test.Y_rows).argmax(1), arrays[TEST])
    assert splits.spec.name == "my-data" and splits.spec.n_classes is None
    source = splits.source
    assert source["dataset"] == "idx folder" and source["folder"] == str(folder.resolve())
    for role, name in MNIST.files.items():
        content = gzip.decompress((folder / f"{name}.gz").read_bytes())
        assert source["files"][role] == {
            "file": f"{name}.gz",
            "sha256": hashlib.sha256(content).hexdigest(),
            "matches_published": None,
            "sha256_gz": hashlib.sha256((folder / f"{name}.gz").read_bytes()).hexdigest(),
        }
    assert not cache.exists()  # an explicit folder never touches the cache


def test_named_data_set_from_a_folder_uses_its_class_names(tmp_path: Path) -> None:
    arrays = make_arrays(6, k=10)
    folder = tmp_path / "k"
    folder.mkdir(parents=True)
    for name, a in arrays.items():
        write_idx(folder / name, a)  # raw: nothing to compare with the published .gz digests
    splits = prepare_splits("kmnist", folder)
    assert splits.spec is KMNIST and splits.class_names == KMNIST.class_names
    assert splits.source["dataset"] == "kmnist"
    assert {e["matches_published"] for e in splits.source["files"].values()} == {None}
    write_folder(folder, arrays)  # now gzipped (raw names are found first: remove them)
    for name in arrays:
        (folder / name).unlink()
    files = prepare_splits("fashion-mnist", folder).source["files"]
    assert {e["matches_published"] for e in files.values()} == {False}  # not the published .gz files


def test_mixed_image_sizes_one_clear_line(tmp_path: Path) -> None:
    arrays = make_arrays(7)
    arrays["t10k-images-idx3-ubyte"] = np.zeros((15, 14, 14), np.uint8)
    with pytest.raises(DataError) as info:
        prepare_splits(data_dir=write_folder(tmp_path / "d", arrays))
    msg = str(info.value)
    assert "\n" not in msg and "t10k-images-idx3-ubyte.gz are 14x14 but the train images are 28x28" in msg
    assert "expected the same image size in both splits" in msg


def test_label_outside_the_specs_classes_one_clear_line(tmp_path: Path) -> None:
    five = DatasetSpec(name="five", title="Five", files=MNIST.files, class_names=tuple("abcde"))
    arrays = make_arrays(8, size=(14, 14), k=5)
    arrays[TEST][:] = 0
    arrays[TEST][3] = 7
    folder = write_folder(tmp_path / "d", arrays)
    with pytest.raises(DataError) as info:
        prepare_splits(five, folder)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("test labels ") and "t10k-labels-idx1-ubyte.gz" in msg
    assert "1 labels outside 0..4, first value 7 at index 3" in msg
    assert "expected class indices 0..4, the 5 classes of Five" in msg
    # a named data set's class count holds for its folder too
    arrays = make_arrays(8)
    arrays[TRAIN][11] = 12
    with pytest.raises(DataError, match=r"train labels .*outside 0\.\.9, first value 12 at index 11"):
        prepare_splits("fashion-mnist", write_folder(tmp_path / "f", arrays))


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    arrays = make_arrays(9)
    arrays[TRAIN] = arrays[TRAIN][:-2]
    with pytest.raises(DataError, match="train split: .*40 images but .*38 labels; expected equal counts"):
        prepare_splits(data_dir=write_folder(tmp_path / "d", arrays))


def test_prepare_mnist_is_prepare_splits_for_mnist(tmp_path: Path) -> None:
    assert MnistSplits is DataSplits
    folder = write_folder(tmp_path / "m", make_arrays(10))
    a, b = prepare_mnist(folder, split_seed=2), prepare_splits("mnist", folder, split_seed=2)
    assert a.spec is MNIST and a.class_names == tuple("0123456789") and a.source == b.source
    assert a.source["dataset"] == "mnist"
    assert {e["matches_published"] for e in a.source["files"].values()} == {False}  # synthetic, not MNIST
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(to_numpy(getattr(a, part).X_rows), to_numpy(getattr(b, part).X_rows))


def test_the_data_variable_serves_each_data_set_from_its_sub_folder(tmp_path: Path, monkeypatch) -> None:
    base = tmp_path / "data"
    write_folder(base, make_arrays(1))  # MNIST-named files at the top: any data set without a sub-folder
    write_folder(base / "kmnist", make_arrays(2, n_train=30))
    monkeypatch.setenv("BACKEND_MLP_DATA", str(base))
    assert prepare_splits("kmnist").source["folder"] == str((base / "kmnist").resolve())
    assert prepare_splits("fashion-mnist").source["folder"] == str(base.resolve())


def test_files_of_another_registered_data_set_are_refused(tmp_path: Path, monkeypatch) -> None:
    """Files that are, by their published digests, one data set are not loaded as another."""
    arrays = make_arrays(3)
    folder = write_folder(tmp_path / "x", arrays)
    digests = {f"{n}": hashlib.sha256((folder / f"{n}.gz").read_bytes()).hexdigest() for n in arrays}
    stand_in = dataclasses.replace(KMNIST, sha256_gz=digests)  # the test's files play KMNIST's published ones
    monkeypatch.setattr(sources, "DATASETS", MappingProxyType({**DATASETS, "kmnist": stand_in}))
    with pytest.raises(DataError, match="are Kuzushiji-MNIST .*not Fashion-MNIST"):
        load_dataset(FASHION_MNIST, folder)
    assert load_dataset(stand_in, folder).source["dataset"] == "kmnist"


def test_a_stray_test_label_in_a_bare_folder_is_refused(tmp_path: Path) -> None:
    """The training labels decide K in a bare folder: a test label beyond them is an error, not an empty class."""
    arrays = make_arrays(8, k=5)
    arrays[TEST][3] = 7
    folder = write_folder(tmp_path / "d", arrays)
    with pytest.raises(DataError, match=r"first value 7 at index 3; expected class indices 0..4, the 5 classes of "
                                        r"the training labels"):
        prepare_splits(None, folder)


def test_a_named_data_set_refuses_images_of_another_size(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d", make_arrays(9, size=(14, 14)))
    with pytest.raises(DataError, match="received 14x14 images; expected 28x28, the size of Fashion-MNIST's"):
        prepare_splits("fashion-mnist", folder)
    assert prepare_splits(None, folder).image_shape == (14, 14)
