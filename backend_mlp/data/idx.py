"""IDX files, the format MNIST (and Fashion-MNIST, KMNIST) is distributed in: read, parse, encode, write.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian ``uint32`` dimensions, then the data in C order, big-endian.
MNIST label files have magic 2049 (``0x00000801``: uint8, 1-D) and image files
2051 (``0x00000803``: uint8, 3-D).  Files may be gzip-compressed (``.gz``).

Arrays come back as host NumPy arrays with the file's dimensions, in native byte
order (MNIST images ``(n, rows, cols)`` uint8, labels ``(n,)`` uint8).  Writing
goes through :func:`backend_mlp.files.atomic_write_bytes`.  Every problem with a
file raises :class:`backend_mlp.errors.DataError` whose message names the file,
what was wrong and what was expected.
"""

from __future__ import annotations

import gzip as _gzip
import os
import zlib
from math import prod
from pathlib import Path

import numpy as np

from ..errors import DataError, InputValidationError
from ..files import atomic_write_bytes, read_bytes

__all__ = [
    "IDX_DTYPES",
    "LABELS_MAGIC",
    "IMAGES_MAGIC",
    "read_idx",
    "read_idx_bytes",
    "decompress_idx_bytes",
    "is_gzip",
    "parse_idx",
    "encode_idx",
    "write_idx",
]

#: IDX data-type code -> NumPy dtype (big-endian, as stored in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

#: Magic number of a 1-D uint8 IDX file (MNIST labels).
LABELS_MAGIC = 0x00000801
#: Magic number of a 3-D uint8 IDX file (MNIST images).
IMAGES_MAGIC = 0x00000803

_GZIP_SIGNATURE = b"\x1f\x8b"


def _describe_codes() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def _magic_text(magic: int) -> str:
    return f"{magic} (0x{magic:08X})"


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """The uncompressed content of an IDX file (gunzipped when it is gzip data).

    A file is treated as gzip when its name ends in ``.gz`` or its content starts
    with the gzip signature.  Raises :class:`DataError` for a missing or unreadable
    file and for truncated or corrupted gzip data.
    """
    p = Path(path)
    return decompress_idx_bytes(read_bytes(p, "IDX file", "an existing file, gzipped or raw"), p)


def decompress_idx_bytes(raw: bytes, path: str | os.PathLike[str]) -> bytes:
    """``raw``, the bytes of the file ``path``, gunzipped when the name ends in ``.gz`` or the
    content starts with the gzip signature (else returned as they are)."""
    if is_gzip(raw, path):
        return _gunzip(raw, str(path))
    return raw


def is_gzip(raw: bytes, path: str | os.PathLike[str] = "") -> bool:
    """Whether ``raw`` (the bytes of ``path``) is gzip data: a ``.gz`` name or the gzip signature."""
    return Path(path).suffix == ".gz" or raw.startswith(_GZIP_SIGNATURE)


def _gunzip(raw: bytes, source: str) -> bytes:
    """Decompress gzip data, turning every kind of damage into :class:`DataError`."""
    try:
        return _gzip.decompress(raw)
    except EOFError as exc:
        detail = f"truncated: {exc}"
    except _gzip.BadGzipFile as exc:
        detail = f"not valid gzip data: {exc}"
    except zlib.error as exc:
        detail = f"corrupted compressed data: {exc}"
    raise DataError(
        f"gzip file {source} is damaged ({detail}; {len(raw)} compressed bytes); "
        "expected a complete gzip stream. Delete the file and download it again."
    )


def parse_idx(data: bytes, *, source: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Decode uncompressed IDX bytes into a NumPy array in native byte order.

    ``source`` names the data in error messages; ``expected_magic`` (e.g.
    :data:`IMAGES_MAGIC`) additionally requires that exact magic number.
    Raises :class:`DataError` for a bad magic number, unknown data type, truncated
    header, or a payload shorter or longer than the header's dimensions require.
    """
    if len(data) < 4:
        raise DataError(
            f"IDX file {source} is too short to hold a header: {len(data)} bytes, expected at least 4"
        )
    magic = int.from_bytes(data[:4], "big")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"IDX file {source} has wrong magic number {_magic_text(magic)}; expected bytes "
            f"0x00 0x00 <dtype code> <ndim>, e.g. {_magic_text(LABELS_MAGIC)} for labels or "
            f"{_magic_text(IMAGES_MAGIC)} for images (is it an IDX file?)"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"IDX file {source} has wrong magic number {_magic_text(magic)} (dtype code 0x{code:02X}, "
            f"{ndim} dimensions); expected {_magic_text(expected_magic)} (dtype code "
            f"0x{(expected_magic >> 8) & 0xFF:02X}, {expected_magic & 0xFF} dimensions)"
        )
    if code not in IDX_DTYPES:
        raise DataError(
            f"IDX file {source} has wrong magic number {_magic_text(magic)}: unknown dtype code "
            f"0x{code:02X}; expected one of {_describe_codes()}"
        )
    if ndim == 0:
        raise DataError(
            f"IDX file {source} has wrong magic number {_magic_text(magic)}: 0 dimensions; "
            "expected at least 1"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"IDX file {source} is truncated inside its header: {len(data)} bytes, expected at least "
            f"{header_len} for {ndim} dimensions"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    need = prod(shape) * dtype.itemsize
    have = len(data) - header_len
    if have != need:
        if have < need:
            what = f"payload too short (truncated): {need - have} bytes missing"
        else:
            what = f"payload too long: {have - need} extra bytes after the data"
        raise DataError(
            f"IDX file {source}: {what}; header dimensions {shape} of {dtype.name} need "
            f"{need} bytes of data, the file has {have}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # astype copies: the result is writable, native-endian and does not pin ``data``.
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped ``.gz`` or raw) into a NumPy array.

    The array has the file's dimensions (MNIST images: ``(n, 28, 28)`` uint8,
    labels: ``(n,)`` uint8).  ``expected_magic`` optionally requires a given magic
    number (2049 labels, 2051 images).  Raises :class:`DataError` on any problem.
    """
    return parse_idx(read_idx_bytes(path), source=str(path), expected_magic=expected_magic)


def encode_idx(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    arr = np.asarray(array)
    code = _CODE_OF_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise InputValidationError(
            f"array: received dtype {arr.dtype}; expected one of uint8, int8, int16, int32, "
            "float32, float64 (cast it first, e.g. labels.astype(np.uint8))"
        )
    if not 1 <= arr.ndim <= 255:
        raise InputValidationError(f"array: received {arr.ndim} dimensions; expected 1 to 255")
    if any(n >= 2**32 for n in arr.shape):
        raise InputValidationError(f"array: shape {arr.shape} has a dimension too large for IDX (>= 2**32)")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, gzip: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, atomically; returns the path written.

    ``gzip=None`` compresses when the name ends in ``.gz``.  The file is written to
    a temporary file in the same folder and renamed into place, so an interrupted
    write never leaves a partial file.
    """
    p = Path(path)
    data = encode_idx(array)
    if gzip is None:
        gzip = p.suffix == ".gz"
    if gzip:
        data = _gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(p, data)
    return p
