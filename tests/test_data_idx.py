"""IDX reading/writing: round trips and every failure mode."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from backend_mlp.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    MAX_IDX_BYTES,
    MAX_IDX_BYTES_ENV,
    encode_idx,
    gunzip_idx,
    idx_size_limit,
    parse_idx,
    read_idx,
    write_idx,
)
from backend_mlp.errors import DataError, InputValidationError


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_uint8(tmp_path: Path, images: np.ndarray, suffix: str) -> None:
    path = write_idx(tmp_path / f"imgs{suffix}", images)
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path, expected_magic=IMAGES_MAGIC)
    assert out.dtype == np.uint8 and out.shape == (7, 5, 4)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0] = 1  # the result is writable


def test_explicit_gzip_flag_overrides_suffix(tmp_path: Path, images: np.ndarray) -> None:
    p = write_idx(tmp_path / "plain", images, gzip=True)
    assert p.read_bytes().startswith(b"\x1f\x8b")
    np.testing.assert_array_equal(read_idx(p), images)  # gzip detected from content
    q = write_idx(tmp_path / "raw.gz", images, gzip=False)
    with pytest.raises(DataError, match="gzip"):
        read_idx(q)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_round_trip_dtypes(tmp_path: Path, dtype: str) -> None:
    arr = (np.arange(12) - 3).astype(dtype).reshape(3, 4)
    out = read_idx(write_idx(tmp_path / "a.gz", arr))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_header_layout_matches_mnist() -> None:
    labels = np.array([5, 0, 4], dtype=np.uint8)
    data = encode_idx(labels)
    assert int.from_bytes(data[:4], "big") == LABELS_MAGIC == 2049
    assert int.from_bytes(data[4:8], "big") == 3
    assert data[8:] == bytes([5, 0, 4])
    assert int.from_bytes(encode_idx(np.zeros((2, 3, 3), np.uint8))[:4], "big") == IMAGES_MAGIC == 2051


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="int64"):
        write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))
    with pytest.raises(InputValidationError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-idx1-ubyte.gz"
    with pytest.raises(DataError, match="not found") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder"):
        read_idx(tmp_path)


def test_truncated_gzip(tmp_path: Path, images: np.ndarray) -> None:
    good = write_idx(tmp_path / "good.gz", images).read_bytes()
    bad = tmp_path / "bad.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as info:
        read_idx(bad)
    msg = str(info.value)
    assert str(bad) in msg and "truncated" in msg and "gzip" in msg


def test_corrupted_gzip_bytes(tmp_path: Path) -> None:
    # Incompressible-ish content so the deflate stream is long; flip bytes in its middle.
    arr = np.random.default_rng(1).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    good = bytearray(write_idx(tmp_path / "good.gz", arr).read_bytes())
    mid = len(good) // 2
    good[mid : mid + 16] = bytes(b ^ 0xFF for b in good[mid : mid + 16])
    bad = tmp_path / "bad.gz"
    bad.write_bytes(bytes(good))
    with pytest.raises(DataError) as info:
        read_idx(bad)
    msg = str(info.value)
    assert str(bad) in msg and "damaged" in msg and "gzip" in msg


def test_not_gzip_with_gz_suffix(tmp_path: Path) -> None:
    bad = tmp_path / "plain.gz"
    bad.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="not valid gzip"):
        read_idx(bad)


def test_bad_crc(tmp_path: Path, images: np.ndarray) -> None:
    good = bytearray(gzip.compress(encode_idx(images)))
    good[-8] ^= 0xFF  # CRC32 lives in the 8-byte trailer
    bad = tmp_path / "crc.gz"
    bad.write_bytes(bytes(good))
    with pytest.raises(DataError, match="gzip"):
        read_idx(bad)


def test_wrong_magic(tmp_path: Path) -> None:
    bad = tmp_path / "magic"
    bad.write_bytes(b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError) as info:
        read_idx(bad)
    msg = str(info.value)
    assert "wrong magic number" in msg and "2049" in msg and "2051" in msg and str(bad) in msg


def test_unexpected_magic(tmp_path: Path) -> None:
    labels = write_idx(tmp_path / "labels", np.arange(4, dtype=np.uint8))
    with pytest.raises(DataError) as info:
        read_idx(labels, expected_magic=IMAGES_MAGIC)
    msg = str(info.value)
    assert "wrong magic number 2049" in msg and "expected 2051" in msg


def test_unknown_dtype_code(tmp_path: Path) -> None:
    bad = tmp_path / "code"
    bad.write_bytes(b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"a")
    with pytest.raises(DataError, match="dtype code 0x07"):
        read_idx(bad)


def test_too_short_for_header() -> None:
    with pytest.raises(DataError, match="too short to hold a header"):
        parse_idx(b"\x00\x00", source="x")
    with pytest.raises(DataError, match="truncated inside its header"):
        parse_idx(b"\x00\x00\x08\x03" + (1).to_bytes(4, "big"), source="x")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_payload_too_short(tmp_path: Path, images: np.ndarray, suffix: str) -> None:
    data = encode_idx(images)[:-10]
    bad = tmp_path / f"short{suffix}"
    bad.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError) as info:
        read_idx(bad)
    msg = str(info.value)
    assert "too short" in msg and "10 bytes missing" in msg and "(7, 5, 4)" in msg and str(bad) in msg


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_payload_too_long(tmp_path: Path, images: np.ndarray, suffix: str) -> None:
    data = encode_idx(images) + b"\x00" * 3
    bad = tmp_path / f"long{suffix}"
    bad.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError) as info:
        read_idx(bad)
    msg = str(info.value)
    assert "too long" in msg and str(bad) in msg
    # raw: the file's size says how much; gzip data are cut where they pass the declared size
    assert ("expand beyond the 156 bytes its header declares" if suffix else "3 extra bytes") in msg


def test_write_is_atomic_on_failure(tmp_path: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    target = tmp_path / "a.gz"
    write_idx(target, images)
    before = target.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_idx(target, images[:2])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


# --------------------------------------------------------------------------- size limits and gzip streams


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_limit_argument_and_environment_variable(tmp_path: Path, images: np.ndarray, suffix: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_idx(tmp_path / f"imgs{suffix}", images)  # 16 + 140 bytes
    np.testing.assert_array_equal(read_idx(path, limit=156), images)
    with pytest.raises(DataError, match="declares 156 bytes .*more than the limit of 155 bytes"):
        read_idx(path, limit=155)
    monkeypatch.setenv(MAX_IDX_BYTES_ENV, "100")
    with pytest.raises(DataError, match=f"limit of 100 bytes .*{MAX_IDX_BYTES_ENV}"):
        read_idx(path)
    monkeypatch.setenv(MAX_IDX_BYTES_ENV, "lots")
    with pytest.raises(InputValidationError, match=f"{MAX_IDX_BYTES_ENV}: received 'lots'"):
        read_idx(path)
    with pytest.raises(InputValidationError, match="limit: received 0"):
        read_idx(path, limit=0)
    assert idx_size_limit(7) == 7 and MAX_IDX_BYTES == 2**31


def test_gzip_larger_than_any_file_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(1, np.uint8))) + bytes(3 << 20))
    with pytest.raises(DataError, match="big.gz has 3145757 bytes, more than 1052688, .* limit of 4096 bytes"):
        read_idx(path, limit=4096)


def test_gzip_members_and_padding_as_gzip_decompress_reads_them(tmp_path: Path, images: np.ndarray) -> None:
    data = encode_idx(images)
    path = tmp_path / "parts.gz"
    path.write_bytes(gzip.compress(data[:10]) + gzip.compress(data[10:]) + bytes(5))  # two members, zero padding
    np.testing.assert_array_equal(read_idx(path), images)
    path.write_bytes(gzip.compress(data) + b"junk")
    with pytest.raises(DataError, match="damaged .*4 bytes of something else after the end"):
        read_idx(path)
    assert gunzip_idx(gzip.compress(data[:30]), "x.gz") == data[:30]  # short content: parse_idx reports it


def test_dimensions_too_large_for_numpy_even_with_a_zero() -> None:
    """Found by tests/test_fuzz_idx.py: NumPy refuses such a shape with ValueError even when it holds a 0."""
    data = bytes([0, 0, 0x0B, 3]) + b"".join(n.to_bytes(4, "big") for n in (0, 2**31, 2**31))
    with pytest.raises(DataError, match=r"dimensions \(0, 2147483648, 2147483648\), too large for an array"):
        parse_idx(data, source="x")


def test_read_bytes_with_a_limit(tmp_path: Path) -> None:
    from backend_mlp.files import read_bytes

    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert read_bytes(path, "test file", "a file", max_bytes=5) == b"12345"
    with pytest.raises(DataError, match="test file .* has 5 bytes, more than the limit of 4"):
        read_bytes(path, "test file", "a file", max_bytes=4)
