"""Fuzzing the IDX reader: random bytes and mutated valid IDX files, raw and gzipped, never produce
anything but :class:`~backend_mlp.errors.DataError` (the one error :mod:`backend_mlp.data.idx` documents
for a file's content), and never take memory out of proportion (no ``MemoryError``, no huge allocation:
a declared size is checked before anything of that size is read or decompressed).

What is fed: random bytes to :func:`parse_idx`, :func:`gunzip_idx` (behind a valid gzip header, to get
past it) and :func:`read_idx` (as ``x`` and ``x.gz``); valid IDX files of every data type and up to four
dimensions, gzipped or not, then truncated, bit-flipped, with bytes inserted or appended, header bytes
(dtype code, number of dimensions) or dimensions (0, 1, 2**31, 2**32 - 1, ...) changed, before or
after compression, read with the default limit or a 1 MiB one.  An unmutated file must read back equal.

By default each property runs 200 examples (a few seconds, part of the normal test run); for a longer
run set ``BACKEND_MLP_FUZZ_EXAMPLES``, e.g.::

    BACKEND_MLP_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:cacheprovider tests/test_fuzz_idx.py

No example database is written (``database=None``); a failure prints the example to reproduce it.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterator
from math import prod
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend_mlp.data.idx import IDX_DTYPES, encode_idx, gunzip_idx, parse_idx, read_idx, read_idx_file
from backend_mlp.errors import DataError

EXAMPLES = int(os.environ.get("BACKEND_MLP_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIMITS = st.sampled_from([None, 1 << 20])
DIMS = st.one_of(st.integers(0, 8), st.sampled_from([2**31, 2**32 - 1, 60000, 65536]), st.integers(0, 2**32 - 1))
#: a gzip member header (no flags), so that random bytes after it reach the deflate decoder
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def read_or_refuse(path: Path, limit: int | None) -> np.ndarray | None:
    """``read_idx(path)``, or None when it raises DataError; any other exception fails the test."""
    try:
        return read_idx(path, limit=limit)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@FUZZ
@given(data=st.binary(max_size=2048))
def test_parse_idx_of_random_bytes(data: bytes) -> None:
    try:
        parse_idx(data, source="fuzz")
    except DataError:
        pass


@FUZZ
@given(body=st.binary(max_size=4096), limit=LIMITS)
def test_gunzip_idx_of_random_deflate_data(body: bytes, limit: int | None) -> None:
    try:
        out = gunzip_idx(GZIP_HEADER + body, "fuzz.gz", limit=limit)
    except DataError:
        return
    assert len(out) <= (limit or 1 << 31)


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(["", ".gz"]), limit=LIMITS)
def test_read_idx_of_random_files(folder: Path, data: bytes, suffix: str, limit: int | None) -> None:
    path = folder / f"random{suffix}"
    path.write_bytes(data)
    read_or_refuse(path, limit)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from(sorted(IDX_DTYPES.values(), key=str))).newbyteorder("=")
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=4)))
    raw = draw(st.binary(min_size=prod(shape) * dtype.itemsize, max_size=prod(shape) * dtype.itemsize))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """``data`` after one to three random mutations (the IDX header is the first bytes)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "append", "header", "dim"]))
        pos = draw(st.integers(0, len(out)))
        if kind == "truncate":
            del out[pos:]
        elif kind == "flip" and pos < len(out):
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "append":
            out += draw(st.binary(min_size=1, max_size=64))
        elif kind == "header" and len(out) >= 4:
            out[draw(st.integers(0, 3))] = draw(st.integers(0, 255))
        elif kind == "dim" and len(out) >= 8:
            i = draw(st.integers(0, max(0, min(out[3], (len(out) - 8) // 4))))
            out[4 + 4 * i : 8 + 4 * i] = draw(DIMS).to_bytes(4, "big")
    return bytes(out)


@FUZZ
@given(array=arrays(), where=st.sampled_from(["none", "content", "file"]), gz=st.booleans(), limit=LIMITS,
       data=st.data())
def test_read_idx_of_mutated_files(folder: Path, array: np.ndarray, where: str, gz: bool, limit: int | None,
                                   data: st.DataObject) -> None:
    content = encode_idx(array)
    if where == "content":
        content = mutate(content, data.draw)
    body = gzip.compress(content, compresslevel=1, mtime=0) if gz else content
    if where == "file":
        body = mutate(body, data.draw)
    path = folder / ("mutated.gz" if gz else "mutated")
    path.write_bytes(body)
    out = read_or_refuse(path, limit)
    if where == "none":
        assert out is not None and out.shape == array.shape
        np.testing.assert_array_equal(out, array)
    if out is not None:  # whatever was accepted is what its header declares, and the content as read
        assert read_idx_file(path, limit=limit)[0] == encode_idx(out)


@FUZZ
@given(dims=st.lists(DIMS, min_size=1, max_size=4), code=st.sampled_from(sorted(IDX_DTYPES)),
       tail=st.binary(max_size=256), gz=st.booleans(), limit=LIMITS)
def test_headers_declaring_anything(folder: Path, dims: list[int], code: int, tail: bytes, gz: bool,
                                    limit: int | None) -> None:
    """Headers that declare huge (or zero) sizes, followed by a little data: refused or read, never allocated."""
    content = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + tail
    path = folder / ("declared.gz" if gz else "declared")
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    out = read_or_refuse(path, limit)
    if out is not None:
        assert out.shape == tuple(dims) and out.nbytes == len(tail)
