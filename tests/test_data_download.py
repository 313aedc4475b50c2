"""Downloading data sets (MNIST and another spec), against a local HTTP server on 127.0.0.1 serving small IDX files."""

from __future__ import annotations

import gzip
import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
from local_mirror import Server, isolate_downloads

from backend_mlp.data import MNIST, DatasetSpec, load_dataset, load_mnist, locate_dataset
from backend_mlp.data.idx import encode_idx
from backend_mlp.errors import ChecksumError, DataError, DownloadError

MNIST_FILES = MNIST.file_names

N_TRAIN, N_TEST = 50, 20
TIMEOUT = 5


def fake_arrays(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


ARRAYS = fake_arrays()
RAW = {name: encode_idx(a) for name, a in ARRAYS.items()}
GZ = {name: gzip.compress(data, mtime=0) for name, data in RAW.items()}
CHECKSUMS = {name: hashlib.sha256(data).hexdigest() for name, data in RAW.items()}
WRONG_GZ = {name: gzip.compress(encode_idx(a), mtime=0) for name, a in fake_arrays(seed=8).items()}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads isolated (``local_mirror.isolate_downloads``); returns ``$BACKEND_MLP_CACHE/mnist``."""
    isolate_downloads(monkeypatch, tmp_path / "cache")
    return tmp_path / "cache" / "mnist"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_arrays(data) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(
        data.train_images, ARRAYS["train-images-idx3-ubyte"].reshape(N_TRAIN, 784) / 255.0
    )
    np.testing.assert_array_equal(data.train_labels, ARRAYS["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(
        data.test_images, ARRAYS["t10k-images-idx3-ubyte"].reshape(N_TEST, 784) / 255.0
    )
    np.testing.assert_array_equal(data.test_labels, ARRAYS["t10k-labels-idx1-ubyte"])


def test_download_into_cache(server: Server, isolated_env: Path) -> None:
    url = server.mirror("good", GZ)
    calls: list[tuple[str, int, int | None]] = []
    data = load_mnist(
        mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT, progress=lambda *a: calls.append(a)
    )
    check_arrays(data)
    assert sorted(p.name for p in isolated_env.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)
    for name in MNIST_FILES:
        assert gzip.decompress((isolated_env / f"{name}.gz").read_bytes()) == RAW[name]
    assert len(server.hits) == 4
    # progress: (name, bytes so far, total), ending at the full size
    last = {name: (got, total) for name, got, total in calls}
    assert last == {name: (len(GZ[name]), len(GZ[name])) for name in MNIST_FILES}


def test_second_load_uses_cache(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "explicit-cache"
    url = server.mirror("good", GZ)
    load_mnist(cache_dir=cache, mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT)
    assert len(server.hits) == 4
    check_arrays(load_mnist(cache_dir=cache, mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT))
    check_arrays(load_mnist(cache_dir=cache, mirrors=[url], checksums=CHECKSUMS, download=False))
    assert len(server.hits) == 4


def test_only_missing_files_are_downloaded(server: Server, isolated_env: Path) -> None:
    url = server.mirror("good", GZ)
    isolated_env.mkdir(parents=True)
    (isolated_env / "train-images-idx3-ubyte").write_bytes(RAW["train-images-idx3-ubyte"])  # raw is fine
    paths = locate_dataset(MNIST, mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT)
    assert paths["train-images-idx3-ubyte"].name == "train-images-idx3-ubyte"
    assert sorted(server.hits) == sorted(f"/good/{n}.gz" for n in MNIST_FILES[1:])


def test_first_mirror_404_second_works(server: Server) -> None:
    missing = server.mirror("empty")
    good = server.mirror("good", GZ)
    check_arrays(load_mnist(mirrors=[missing, good], checksums=CHECKSUMS, timeout=TIMEOUT))
    assert [h.split("/")[1] for h in server.hits] == ["empty", "good"] * 4


def test_unreachable_first_mirror_then_good(server: Server) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/mnist/"
    good = server.mirror("good", GZ)
    check_arrays(load_mnist(mirrors=[dead, good], checksums=CHECKSUMS, timeout=TIMEOUT))


def test_wrong_content_checksum_error_leaves_nothing(server: Server, isolated_env: Path) -> None:
    bad = server.mirror("bad", WRONG_GZ)
    with pytest.raises(ChecksumError) as info:
        load_mnist(mirrors=[bad], checksums=CHECKSUMS, timeout=TIMEOUT)
    msg = str(info.value)
    assert "train-images-idx3-ubyte" in msg and "SHA-256 mismatch" in msg and bad in msg
    assert CHECKSUMS["train-images-idx3-ubyte"] in msg
    assert "--data-dir" in msg and "BACKEND_MLP_DATA" in msg
    assert list(isolated_env.iterdir()) == []  # no file, no temp file


def test_one_bad_file_only_that_one_missing(server: Server, isolated_env: Path) -> None:
    files = dict(GZ)
    files["t10k-labels-idx1-ubyte"] = WRONG_GZ["t10k-labels-idx1-ubyte"]
    url = server.mirror("mixed", files)
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte"):
        load_mnist(mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT)
    assert sorted(p.name for p in isolated_env.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES[:3])


def test_bad_mirror_then_good_mirror(server: Server, isolated_env: Path) -> None:
    bad = server.mirror("bad", WRONG_GZ)
    good = server.mirror("good", GZ)
    check_arrays(load_mnist(mirrors=[bad, good], checksums=CHECKSUMS, timeout=TIMEOUT))
    assert len(list(isolated_env.iterdir())) == 4


def test_truncated_gzip_from_mirror(server: Server, isolated_env: Path) -> None:
    truncated = {name: body[: len(body) // 2] for name, body in GZ.items()}
    url = server.mirror("trunc", truncated)
    with pytest.raises(ChecksumError, match=r"is damaged \(truncated"):
        load_mnist(mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT)
    assert list(isolated_env.iterdir()) == []


def test_uncompressed_body_is_accepted_and_stored_gzipped(server: Server, isolated_env: Path) -> None:
    url = server.mirror("raw", RAW)
    check_arrays(load_mnist(mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT))
    for name in MNIST_FILES:
        assert gzip.decompress((isolated_env / f"{name}.gz").read_bytes()) == RAW[name]


def test_without_checksum_entry_structure_is_still_checked(server: Server, isolated_env: Path) -> None:
    files = dict(GZ)
    files["train-labels-idx1-ubyte"] = gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"ab")
    url = server.mirror("nosum", files)
    with pytest.raises(ChecksumError, match="not a valid IDX file"):
        load_mnist(mirrors=[url], checksums={}, timeout=TIMEOUT)


def test_no_network_download_error(isolated_env: Path) -> None:
    mirrors = [f"http://127.0.0.1:{closed_port()}/a/", f"http://127.0.0.1:{closed_port()}/b/"]
    with pytest.raises(DownloadError) as info:
        load_mnist(mirrors=mirrors, checksums=CHECKSUMS, timeout=TIMEOUT)
    msg = str(info.value)
    assert "BACKEND_MLP_DATA" in msg and "--data-dir" in msg
    assert all(m in msg for m in mirrors) and "Last error" in msg
    assert isinstance(info.value, DataError) and not isinstance(info.value, ChecksumError)
    assert not any(isolated_env.iterdir())


def test_all_mirrors_404_download_error(server: Server) -> None:
    url = server.mirror("empty")
    with pytest.raises(DownloadError, match="HTTP 404"):
        load_mnist(mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT)


def test_interrupted_download_leaves_no_file(server: Server, isolated_env: Path) -> None:
    url = server.mirror("good", GZ)

    def interrupt(name: str, got: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_mnist(mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT, progress=interrupt)
    assert list(isolated_env.iterdir()) == []


def test_explicit_folder_is_never_downloaded_into(server: Server, tmp_path: Path) -> None:
    url = server.mirror("good", GZ)
    folder = tmp_path / "user-data"
    folder.mkdir()
    with pytest.raises(DataError, match="missing 4 of 4 files"):
        load_mnist(folder, mirrors=[url], checksums=CHECKSUMS, timeout=TIMEOUT)
    assert server.hits == [] and list(folder.iterdir()) == []


# the MNIST test files under other names, as another data set would have them
TOY = {mnist_name: f"toy-{role}" for role, mnist_name in MNIST.files.items()}


def toy(files: dict[str, bytes]) -> dict[str, bytes]:
    return {TOY[name]: body for name, body in files.items()}


def test_another_spec_downloads_into_its_own_cache(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same routine serves every DatasetSpec: its file names, checksums, mirrors and cache folder."""
    monkeypatch.delenv("BACKEND_MLP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    url = server.mirror("toy", toy(GZ))
    files = {role: TOY[name] for role, name in MNIST.files.items()}
    spec = DatasetSpec(
        name="toy", title="Toy", files=files, sha256=toy(CHECKSUMS), mirrors=(url,), class_names=tuple("abcdefghij")
    )
    data = load_dataset(spec, timeout=TIMEOUT)
    check_arrays(data)
    assert data.class_names == tuple("abcdefghij")
    cache = tmp_path / "xdg" / "backend_mlp" / "toy"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in TOY.values())
    assert len(server.hits) == 4
    load_dataset(spec, download=False)
    assert len(server.hits) == 4


def test_another_spec_checksum_error_names_it(server: Server, tmp_path: Path) -> None:
    url = server.mirror("bad", toy(WRONG_GZ))
    files = {role: TOY[name] for role, name in MNIST.files.items()}
    spec = DatasetSpec(name="toy", title="Toy", files=files, sha256=toy(CHECKSUMS), mirrors=(url,))
    with pytest.raises(ChecksumError, match="valid copy of Toy file toy-train_images.*SHA-256 mismatch"):
        load_dataset(spec, cache_dir=tmp_path / "c", timeout=TIMEOUT)
