"""IDX files, the format MNIST (and Fashion-MNIST, KMNIST) is distributed in: read, parse, encode, write.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian ``uint32`` dimensions, then the data in C order, big-endian.
MNIST label files have magic 2049 (``0x00000801``: uint8, 1-D) and image files
2051 (``0x00000803``: uint8, 3-D).  Files may be gzip-compressed (``.gz``).

Arrays come back as host NumPy arrays with the file's dimensions, in native byte
order (MNIST images ``(n, rows, cols)`` uint8, labels ``(n,)`` uint8).  Writing
goes through :func:`backend_mlp.files.atomic_write_bytes`.  Every problem with a
file raises :class:`backend_mlp.errors.DataError` whose message names the file,
what was wrong and what was expected; nothing else escapes for any content
(``tests/test_fuzz_idx.py`` feeds random and mutated files to check it).

Size limits, so that a small file cannot take memory out of proportion: a
file's size is checked against what its header declares (``header + prod(dims)
* itemsize`` bytes) before its data are read, gzip data are decompressed
incrementally and refused as soon as they expand beyond that size, and no file
may declare more than :data:`MAX_IDX_BYTES` (2 GiB; the environment variable
``BACKEND_MLP_MAX_IDX_BYTES`` or the ``limit`` argument sets another number of
bytes).  A 4 MB gzip bomb that expands to 4 GB is refused after reading its
header, in a few megabytes of memory.

Memory and time: a file within the limit is read (or decompressed, 1 MiB at a time)
into ONE buffer of the size its header declares, which :func:`read_idx` turns into
the array without a copy (single-byte data; wider types are byte-swapped in place),
so reading takes about the declared size once.  A declared size the process cannot
allocate is a :class:`DataError` naming the file and the size.  Gzip input is fed
to the decompressor in slices that start small at every member, so data made of
many tiny gzip members take linear time.
"""

from __future__ import annotations

import gzip as _gzip
import os
import re
import zlib
from math import prod
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError, InputValidationError
from ..files import atomic_write_bytes, read_at_most, reading

__all__ = [
    "IDX_DTYPES",
    "LABELS_MAGIC",
    "IMAGES_MAGIC",
    "MAX_IDX_BYTES",
    "MAX_IDX_BYTES_ENV",
    "idx_size_limit",
    "read_idx",
    "read_idx_bytes",
    "read_idx_file",
    "decompress_idx_bytes",
    "gunzip_idx",
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

#: Upper limit on the uncompressed size of one IDX file, header included (2 GiB), unless
#: :data:`MAX_IDX_BYTES_ENV` or a ``limit`` argument says otherwise.
MAX_IDX_BYTES = 2 << 30
#: Environment variable setting another limit for :data:`MAX_IDX_BYTES`, in bytes.
MAX_IDX_BYTES_ENV = "BACKEND_MLP_MAX_IDX_BYTES"

_GZIP_SIGNATURE = b"\x1f\x8b"
_NOT_ZERO = re.compile(rb"[^\0]")
_OUT_STEP = 1 << 20  # the most bytes one call decompresses
_IN_FIRST, _IN_MOST = 256, 1 << 20  # input slices: small at each gzip member's start, doubling to 1 MiB
_HEADER_MAX = 4 + 4 * 255  # the longest header: 255 dimensions
_DAMAGED_HINT = " Delete the file and download it again."
_Header = tuple[np.dtype, tuple[int, ...], int]  # dtype, dimensions, header length


def _describe_codes() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def _magic_text(magic: int) -> str:
    return f"{magic} (0x{magic:08X})"


def idx_size_limit(limit: int | None = None) -> int:
    """The limit in force on one IDX file's uncompressed size: ``limit`` when given, else
    ``$BACKEND_MLP_MAX_IDX_BYTES``, else :data:`MAX_IDX_BYTES`."""
    if limit is None:
        env = os.environ.get(MAX_IDX_BYTES_ENV, "").strip()
        if not env:
            return MAX_IDX_BYTES
        if not env.isdigit() or int(env) <= 0:
            raise InputValidationError(
                f"{MAX_IDX_BYTES_ENV}: received {env!r}; expected a positive number of bytes, e.g. {MAX_IDX_BYTES}"
            )
        return int(env)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise InputValidationError(f"limit: received {limit!r}; expected a positive number of bytes")
    return limit


def read_idx_file(
    path: str | os.PathLike[str], *, limit: int | None = None, what: str = "IDX file"
) -> tuple[bytearray | bytes, bytearray | None]:
    """``(content, gzip bytes)`` of an IDX file: its uncompressed content, and the file's own bytes
    when it is gzip data (None for a raw file).

    A file is gzip when its name ends in ``.gz`` or it starts with the gzip signature.  A raw file's
    size must be what its header declares, checked before its data are read; gzip data are
    decompressed by :func:`gunzip_idx`.  Either is read into one buffer of the declared size (a
    ``bytearray``), without further copies.  ``what`` names the file in messages (``"MNIST file"``).
    Raises :class:`DataError` for a missing, unreadable or damaged file and one over the limit
    (:func:`idx_size_limit`).
    """
    p, cap = Path(path), idx_size_limit(limit)
    with reading(p, what, "an existing file, gzipped or raw") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(_HEADER_MAX)
        if is_gzip(head, p):
            most = cap + (cap >> 8) + (1 << 20)  # deflate's worst case for `cap` bytes, generously
            raw = head if size > most else _read_rest(fh, head, size, most, p)
            if len(raw) > most or size > most:  # (read to the limit: a file without a size, or one that grew)
                raise DataError(
                    f"gzip file {p} has {max(size, len(raw))} bytes, more than {most}, the most that gzip data of an "
                    f"IDX file within the limit of {cap} bytes can have; refused ({MAX_IDX_BYTES_ENV} sets another "
                    "limit)"
                )
            return gunzip_idx(raw, p, limit=cap), raw
        header = _header(head, str(p))
        if header is None:  # too short for a header: parse_idx says so
            return head, None
        need = _declared_size(header, str(p), cap)
        if size > 0 and size != need:  # size 0: not a regular file, so read and compare
            raise DataError(f"IDX file {p}: {_length_problem(header, size - header[2])} ({size} bytes in all); "
                            "refused before reading its data")
        if len(head) > need:
            raise DataError(f"IDX file {p}: {_length_problem(header, len(head) - header[2])}")
        data = _allocate(need, header, str(p))
        data[: len(head)] = head
        got = len(head) + _read_into(fh, data, len(head))
        got += len(fh.read(1))  # one more byte tells that there were more
    if got != need:
        raise DataError(f"IDX file {p}: {_length_problem(header, got - header[2])}")
    return data, None


def _allocate(size: int, header: _Header | None, source: str) -> bytearray:
    """A buffer of ``size`` bytes; :class:`DataError` naming ``source`` and what it declares when the process
    cannot allocate it (a MemoryError, e.g. under an address-space limit)."""
    try:
        return bytearray(size)
    except MemoryError:
        what = "" if header is None else f" (dimensions {header[1]} of {header[0].name}, header included)"
        raise DataError(
            f"IDX file {source} declares {size} bytes{what}, more memory than this process could allocate; "
            "free some memory or raise the process's memory limit"
        ) from None


def _read_into(fh: BinaryIO, buf: bytearray, start: int) -> int:
    """Fill ``buf[start:]`` from ``fh`` (in place, without a copy); the number of bytes read."""
    got = start
    with memoryview(buf) as view:
        while got < len(buf) and (n := fh.readinto(view[got:])):
            got += n
    return got - start


def _read_rest(fh: BinaryIO, head: bytes, size: int, most: int, path: Path) -> bytearray:
    """``head`` and the rest of ``fh`` (``size`` bytes in all by its ``fstat``), read into one buffer; up to
    ``most + 1`` bytes for a file without a size or one that grew."""
    buf = _allocate(max(size, len(head)), None, str(path))
    buf[: len(head)] = head
    got = len(head) + _read_into(fh, buf, len(head))
    del buf[got:]
    if got >= size:  # a file without a size, or one that grew: read on, up to the limit
        buf += read_at_most(fh, most - got)
    return buf


def read_idx_bytes(path: str | os.PathLike[str], *, limit: int | None = None) -> bytearray | bytes:
    """The uncompressed content of an IDX file (gunzipped when it is gzip data), within the limits of
    :func:`read_idx_file`.  Raises :class:`DataError` for a missing, unreadable, damaged or too large file."""
    return read_idx_file(path, limit=limit)[0]


def decompress_idx_bytes(
    raw: bytes, path: str | os.PathLike[str], *, limit: int | None = None
) -> bytearray | bytes:
    """``raw``, the bytes of the file ``path``, gunzipped by :func:`gunzip_idx` when the name ends in
    ``.gz`` or the content starts with the gzip signature (else returned as they are)."""
    if is_gzip(raw, path):
        return gunzip_idx(raw, path, limit=limit)
    return raw


def is_gzip(raw: bytes, path: str | os.PathLike[str] = "") -> bool:
    """Whether ``raw`` (the bytes of ``path``) is gzip data: a ``.gz`` name or the gzip signature."""
    return Path(path).suffix == ".gz" or raw.startswith(_GZIP_SIGNATURE)


def gunzip_idx(
    raw: bytes | bytearray | memoryview,
    source: str | os.PathLike[str],
    *,
    limit: int | None = None,
    hint: str = _DAMAGED_HINT,
) -> bytearray:
    """Decompress the gzip data ``raw`` of an IDX file (``source`` names it), bounded by its header.

    Decompression is incremental: the IDX header is read from the first bytes, and the output may
    never exceed the size it declares (``header + prod(dims) * itemsize``), nor may that size exceed
    the limit (:func:`idx_size_limit`).  Concatenated gzip members are read as one stream, as by
    :func:`gzip.decompress`.  The content is decompressed into one buffer of the declared size (returned;
    shortened in place when the data are shorter), so memory is the declared size once, and time is linear
    in the input, however many gzip members it has.  Raises :class:`DataError` (ending in ``hint``) for truncated or
    corrupted data, a bad header, or data beyond the declared size; content shorter than its header
    declares is returned for :func:`parse_idx` to report.  A declared size the process cannot allocate
    raises :class:`DataError` naming it.
    """
    cap, source = idx_size_limit(limit), str(source)
    view = memoryview(raw).cast("B")
    head, buf = bytearray(), None  # the first bytes, until the header is known; then the whole content
    total, need, header = 0, None, None
    stream, pos, step = zlib.decompressobj(31), 0, _IN_FIRST
    try:
        while True:
            piece = view[pos : pos + step]
            room = (_HEADER_MAX if need is None else need) + 1 - total
            chunk = stream.decompress(piece, min(room, _OUT_STEP))
            used = len(piece) - len(stream.unconsumed_tail) - len(stream.unused_data)
            pos += used
            if buf is None:
                head += chunk
                total = len(head)
                header = _header(head, source)
                if header is not None:
                    need = _declared_size(header, source, cap)
                    if total <= need:
                        buf = _allocate(need, header, source)
                        buf[:total] = head
            elif total + len(chunk) <= need:  # type: ignore[operator]
                buf[total : total + len(chunk)] = chunk
                total += len(chunk)
            else:
                total += len(chunk)
            if need is not None and total > need:
                assert header is not None
                raise DataError(
                    f"IDX file {source}: payload too long: the gzip data expand beyond the {need} bytes its header "
                    f"declares (dimensions {header[1]} of {header[0].name}, header included); refused there"
                )
            if stream.eof:
                found = _NOT_ZERO.search(view, pos)  # gzip.decompress ignores zero padding
                if found is None:
                    break
                pos = found.start()
                if view[pos : pos + 2] != _GZIP_SIGNATURE:
                    raise _Damaged(f"not valid gzip data: {len(view) - pos} bytes of something else after the end "
                                   "of the stream")
                stream, step = zlib.decompressobj(31), _IN_FIRST
            elif not chunk and not used:
                raise _Damaged("truncated: the data end before the end of the gzip stream")
            else:
                step = min(2 * step, _IN_MOST)
    except zlib.error as exc:
        text = str(exc)
        kind = "not valid gzip data" if "header" in text or "unknown compression" in text else "corrupted data"
        detail = f"{kind}: {text}"
    except _Damaged as exc:
        detail = str(exc)
    else:
        if buf is None:  # shorter than its header: parse_idx reports it
            return head
        del buf[total:]  # shorter than declared (in place): parse_idx reports it
        return buf
    raise DataError(
        f"gzip file {source} is damaged ({detail}; {len(view)} compressed bytes); "
        f"expected a complete gzip stream.{hint}"
    )


class _Damaged(Exception):
    """Internal: why gzip data are damaged."""


def _header(data: bytes, source: str, expected_magic: int | None = None) -> _Header | None:
    """``(dtype, dims, header length)`` from the first bytes of an IDX file; None while ``data`` is too
    short to hold the whole header.  Raises :class:`DataError` for a bad magic number."""
    if len(data) < 4:
        return None
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
        return None
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if prod(n for n in shape if n) * IDX_DTYPES[code].itemsize > np.iinfo(np.intp).max:  # NumPy's own limit
        raise DataError(
            f"IDX file {source} has dimensions {shape}, too large for an array even where one of them is 0; "
            "expected dimensions whose product fits in memory"
        )
    return IDX_DTYPES[code], shape, header_len


def _declared_size(header: _Header, source: str, limit: int) -> int:
    """The size in bytes a file with ``header`` must have; refuses one above ``limit``."""
    dtype, shape, header_len = header
    size = header_len + prod(shape) * dtype.itemsize
    if size > limit:
        raise DataError(
            f"IDX file {source} declares {size} bytes (dimensions {shape} of {dtype.name}), more than the limit of "
            f"{limit} bytes for one IDX file; refused before reading its data ({MAX_IDX_BYTES_ENV} sets another limit)"
        )
    return size


def _length_problem(header: _Header, have: int) -> str:
    """What is wrong with a payload of ``have`` bytes after ``header``."""
    dtype, shape, _ = header
    need = prod(shape) * dtype.itemsize
    if have < need:
        what = f"payload too short (truncated): {need - have} bytes missing"
    else:
        what = f"payload too long: {have - need} extra bytes after the data"
    return f"{what}; header dimensions {shape} of {dtype.name} need {need} bytes of data, the file has {have}"


def parse_idx(
    data: bytes | bytearray | memoryview,
    *,
    source: str = "<bytes>",
    expected_magic: int | None = None,
    copy: bool = True,
) -> np.ndarray:
    """Decode uncompressed IDX bytes into a NumPy array in native byte order.

    ``source`` names the data in error messages; ``expected_magic`` (e.g.
    :data:`IMAGES_MAGIC`) additionally requires that exact magic number.  The array
    is a copy unless ``copy=False`` and ``data`` is writable (a ``bytearray``): then
    it uses ``data``'s memory (byte-swapped in place for wider types), which
    ``data`` must not be used for afterwards.
    Raises :class:`DataError` for a bad magic number, unknown data type, truncated
    header, or a payload shorter or longer than the header's dimensions require.
    """
    header = _header(data, source, expected_magic)
    if header is None:
        if len(data) < 4:
            raise DataError(
                f"IDX file {source} is too short to hold a header: {len(data)} bytes, expected at least 4"
            )
        raise DataError(
            f"IDX file {source} is truncated inside its header: {len(data)} bytes, expected at least "
            f"{4 + 4 * data[3]} for {data[3]} dimensions"
        )
    dtype, shape, header_len = header
    if len(data) - header_len != prod(shape) * dtype.itemsize:
        raise DataError(f"IDX file {source}: {_length_problem(header, len(data) - header_len)}")
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    native = dtype.newbyteorder("=")
    if copy or not arr.flags.writeable:
        # astype copies: the result is writable, native-endian and does not pin ``data``.
        return arr.astype(native)
    if native != dtype:
        arr = arr.byteswap(inplace=True).view(native)
    return arr


def read_idx(
    path: str | os.PathLike[str], *, expected_magic: int | None = None, limit: int | None = None
) -> np.ndarray:
    """Read an IDX file (gzipped ``.gz`` or raw) into a NumPy array.

    The array has the file's dimensions (MNIST images: ``(n, 28, 28)`` uint8,
    labels: ``(n,)`` uint8).  ``expected_magic`` optionally requires a given magic
    number (2049 labels, 2051 images); ``limit`` bounds the uncompressed size in bytes
    (default :func:`idx_size_limit`).  Raises :class:`DataError` on any problem.
    """
    content = read_idx_bytes(path, limit=limit)  # one buffer of the declared size, which becomes the array
    return parse_idx(content, source=str(path), expected_magic=expected_magic, copy=False)


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
