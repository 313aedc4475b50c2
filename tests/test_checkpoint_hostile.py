"""Hostile checkpoint and model files (issue 12, problems 6 to 10): each is refused with one CheckpointError line.

Every file here starts as a valid one written by ``save_checkpoint``, ``save_model`` or
``MLPClassifier.save`` and is then edited the way an attacker (or a broken disk) would: the
metadata JSON rewritten, entries added, removed or replaced, ``.npy`` headers crafted, an entry
deflated so that 3 MB expand to 3 GiB.

* problem 6, the architecture bomb: metadata declaring a network far larger than the file;
* problem 7, the archive bomb and unknown, compressed, oversized or pickled entries;
* problem 8, every field of the training state (type, range, consistency), huge array headers;
* problem 9, non-finite parameters, statistics and optimizer state;
* problem 10, ``MLPClassifier.load`` with crafted estimator metadata.

The bombs are loaded in a child process (:func:`load_in_child`) under an address-space limit
(``RLIMIT_AS``, a safety net so that a regression fails with ``MemoryError`` instead of taking
the machine's memory); the child reports its peak resident memory (``VmHWM``), which must stay
under :data:`PEAK_LIMIT`.

The archive helpers (:func:`read_entries`, :func:`write_zip`, :func:`npy`, ...) are shared with
``tests/test_fuzz_checkpoint.py``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import interrupted_state

from backend_mlp import BatchNormConfig, CheckpointError, MLPClassifier
from backend_mlp import checkpoint as ck
from backend_mlp.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from backend_mlp.data import Dataset
from backend_mlp.training import TrainingConfig, TrainingState

REPO = Path(__file__).resolve().parents[1]
MiB, GiB = 2**20, 2**30
#: the peak resident memory allowed while refusing a bomb (issue 12)
PEAK_LIMIT = 500 * 10**6
#: the child's address-space limit: far below what the bombs ask for, far above what refusing them needs
CHILD_ADDRESS_SPACE = 2 * GiB


# --------------------------------------------------------------------------- archive helpers (shared with the fuzz)


@dataclass
class Entry:
    """One member of a zip archive as it is stored: ``data`` compressed when ``method`` is 8 (deflate)."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    crc: int | None = None  # default: the CRC-32 of ``data`` (right for stored entries)
    size: int | None = None  # the declared uncompressed size; default ``len(data)``


def read_entries(path: Path) -> list[Entry]:
    """Every member of a (valid, small) archive, stored, in archive order."""
    with zipfile.ZipFile(path) as zf:
        return [Entry(info.filename, zf.read(info)) for info in zf.infolist()]


def zip_bytes(entries: list[Entry]) -> bytes:
    """A zip archive of ``entries`` written by hand, so that sizes, CRCs, duplicates and methods can lie."""
    out, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        size = len(e.data) if e.size is None else e.size
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, e.method, 0, 0x21, crc, len(e.data), size,
                           len(name), 0) + name + e.data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x800, e.method, 0, 0x21, crc,
                               len(e.data), size, len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name
    start = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0)
    return bytes(out)


def write_zip(path: Path, entries: list[Entry]) -> Path:
    path.write_bytes(zip_bytes(entries))
    return path


def npy(arr: Any, *, allow_pickle: bool = False) -> bytes:
    """``arr`` as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(arr), allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    """A ``.npy`` header (version 1.0) declaring ``descr`` and ``shape``, without any data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buffer.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def deflated_zeros(n_bytes: int) -> Entry:
    """The body of an entry that inflates to ``n_bytes`` zero bytes from about ``n_bytes / 1000`` bytes.

    Raw deflate of 1 MiB of zeros ended by a full flush is the same bytes each time, so the stream
    is that block repeated, then the final block; the CRC is computed chunk by chunk.
    """
    assert n_bytes % MiB == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush(zlib.Z_FINISH)
    crc, zeros = 0, bytes(MiB)
    for _ in range(n_bytes // MiB):
        crc = zlib.crc32(zeros, crc)
    return Entry("", block * (n_bytes // MiB) + end, method=zipfile.ZIP_DEFLATED, crc=crc, size=n_bytes)


def rewrite(path: Path, mutate: Callable[[dict[str, bytes], dict[str, Any]], Any]) -> Path:
    """Rewrite the archive at ``path``: ``mutate(arrays, meta)`` edits the entries (key without ``.npy`` ->
    ``.npy`` bytes, in archive order) and the metadata dict in place; the metadata entry is written last."""
    arrays = {e.name.removesuffix(".npy"): e.data for e in read_entries(path)}
    meta = json.loads(load_npy(arrays.pop("__metadata__")).tobytes())
    mutate(arrays, meta)
    arrays["__metadata__"] = npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return write_zip(path, [Entry(f"{k}.npy", v) for k, v in arrays.items()])


def edit_meta(path: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    return rewrite(path, lambda arrays, meta: change(meta))


_CHILD = r"""
import json, re, resource, sys, time
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from backend_mlp.checkpoint import load_checkpoint, load_model
from backend_mlp.estimator import MLPClassifier
load = {"checkpoint": load_checkpoint, "model": load_model, "estimator": MLPClassifier.load}[sys.argv[1]]
start = time.perf_counter()
try:
    load(sys.argv[2])
    outcome = "loaded"
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {exc}"
seconds = time.perf_counter() - start
status = open("/proc/self/status").read()
peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_bytes": peak}))
"""


def load_in_child(kind: str, path: Path, address_space: int = CHILD_ADDRESS_SPACE) -> dict[str, Any]:
    """Load ``path`` with ``load_checkpoint`` / ``load_model`` / ``MLPClassifier.load`` in a fresh process.

    Returns ``{"outcome": "loaded" or "<ErrorType>: <message>", "seconds": ..., "peak_bytes": VmHWM}``.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path), str(address_space)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{kind} {path.name}: {report}")  # shown with -s / on failure: the numbers for docs/reliability.md
    return report


def refusal(call: Callable[[], Any], match: str | None = None) -> str:
    """The message of the CheckpointError ``call()`` raises: one line, matching ``match``."""
    with pytest.raises(CheckpointError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message
    if match is not None:
        assert re.search(match, message), f"{match!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- valid files to start from


def _data(n: int = 100) -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n + 30, 12))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return Dataset.from_host(X[:n], y[:n], n_classes=3), Dataset.from_host(X[n:], y[n:], n_classes=3)


CONFIG = TrainingConfig(layer_dims=(12, 6, 5, 3), batch_size=16, num_iterations=200, record_every=10,
                        early_stopping=False, batchnorm=BatchNormConfig(), optimizer="adam", learning_rate=0.01)


@pytest.fixture(scope="module")
def state() -> TrainingState:
    """Interrupted mid-epoch at step 40: order, position, RNG state, Adam state, best parameters, costs."""
    train_data, val_data = _data()
    st = interrupted_state(train_data, CONFIG, 40, val_data)
    assert st.order is not None and 0 < st.position < 100 and st.best_parameters is not None
    return st


@pytest.fixture
def ckpt(tmp_path: Path, state: TrainingState) -> Path:
    return save_checkpoint(tmp_path / "checkpoint.npz", CONFIG, state, extra={"n_train": 100})


@pytest.fixture
def model(tmp_path: Path, state: TrainingState) -> Path:
    return save_model(tmp_path / "model.npz", CONFIG, state.best_parameters, state.best_bn_state, state=state)


def test_the_starting_files_load(ckpt: Path, model: Path) -> None:
    assert load_checkpoint(ckpt).state.step == 40 and load_model(model).kind == "model"
    # the helpers' own round trip writes a loadable archive
    rewrite(ckpt, lambda arrays, meta: None)
    assert load_checkpoint(ckpt).state.step == 40


# --------------------------------------------------------------------------- problem 6: the architecture bomb


def _declare_layers(layer_dims: list[int]) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        meta["config"]["layer_dims"] = layer_dims
        meta["layer_dims"] = layer_dims

    return change


def test_architecture_bomb_is_refused_quickly_with_little_memory(ckpt: Path, model: Path) -> None:
    """A small file (Adam state included) claiming a hidden layer of 3 million units on 784 inputs.

    Old code: the optimizer's ``init_state`` on full-size probes filled 2 x 18 GB of zeros
    (here: MemoryError under the child's 2 GiB address-space limit).
    """
    edit_meta(ckpt, _declare_layers([784, 3_000_000, 10]))
    assert ckpt.stat().st_size < 300_000
    report = load_in_child("checkpoint", ckpt)
    assert report["outcome"].startswith("CheckpointError"), report
    assert "layer_dims" in report["outcome"] and "MAX_PARAMETERS" in report["outcome"]
    assert report["peak_bytes"] < PEAK_LIMIT and report["seconds"] < 10, report


@pytest.mark.parametrize("layer_dims", [
    [784, 3_000_000, 10],
    [10**5, 10**5, 10**5, 10],
    [10**400, 3],
])  # fmt: skip
def test_declared_parameter_count_is_capped(ckpt: Path, layer_dims: list[int]) -> None:
    """Refused from arithmetic on the metadata alone, naming the field and the documented limit.

    (SGD, which has no state: in this process a regression must not fill an Adam state of that size.)
    """
    edit_meta(ckpt, _declare_layers(layer_dims))
    edit_meta(ckpt, lambda meta: meta["config"].update(optimizer={"name": "sgd"}))
    refusal(lambda: load_checkpoint(ckpt), r"layer_dims.*MAX_PARAMETERS")


def test_declared_layer_count_is_capped(ckpt: Path) -> None:
    edit_meta(ckpt, _declare_layers([12, *([2] * 100_000), 3]))
    edit_meta(ckpt, lambda meta: meta["config"].update(optimizer={"name": "sgd"}))
    refusal(lambda: load_checkpoint(ckpt), r"layer_dims.*MAX_LAYERS")


def test_shapes_are_checked_without_initialising_anything(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes come from arithmetic on the metadata; the optimizer sees probes that hold no bytes."""
    import backend_mlp.initialization as init

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an initialisation was drawn while loading")

    for name in ("initialize_parameters", "initialize_parameters_host", "initialize_batchnorm_state"):
        monkeypatch.setattr(init, name, forbidden)
    seen: list[int] = []
    real = CONFIG.optimizer.init_state.__func__  # type: ignore[attr-defined]

    def spy(self: Any, parameters: dict[str, Any]) -> dict[str, Any]:
        seen.extend(int(np.asarray(p).nbytes) for p in parameters.values())
        out = real(self, parameters)
        seen.extend(int(np.asarray(v).nbytes) for v in out.values())
        return out

    monkeypatch.setattr(type(CONFIG.optimizer), "init_state", spy)
    edit_meta(ckpt, _declare_layers([12, 500_000, 5, 3]))  # 9 million parameters: under the cap
    refusal(lambda: load_checkpoint(ckpt), r"parameters/W1")
    assert seen and max(seen) == 0  # every probe, and the state made from it, holds no bytes


# --------------------------------------------------------------------------- problem 7: archive entries


@pytest.mark.parametrize("name", ["padding.npy", "costs.npy"])
def test_archive_bomb_is_refused_before_it_is_inflated(ckpt: Path, name: str) -> None:
    """A 3 MB file holding a deflated 3 GiB entry: unknown (``padding``) or in place of a known one.

    Old code: every entry was inflated in full (MemoryError under the child's 2 GiB limit).
    """
    entries = [e for e in read_entries(ckpt) if e.name != name]
    bomb = deflated_zeros(3 * GiB)
    bomb.name = name
    write_zip(ckpt, [*entries, bomb])
    assert ckpt.stat().st_size < 4 * MiB
    report = load_in_child("checkpoint", ckpt)
    assert report["outcome"].startswith("CheckpointError"), report
    assert name.removesuffix(".npy") in report["outcome"]
    assert report["peak_bytes"] < PEAK_LIMIT and report["seconds"] < 10, report


def test_unknown_entry_is_refused_before_it_is_read(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old code: loaded, the extra entry read and ignored."""
    rewrite(ckpt, lambda arrays, meta: arrays.update(notes=npy(np.arange(10))))
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    refusal(lambda: load_checkpoint(ckpt), r"notes")
    assert "notes.npy" not in opened


@pytest.mark.parametrize("where", ["parameters/b3", "order", "__metadata__"])
def test_entry_declaring_more_bytes_than_its_shape_needs(ckpt: Path, where: str) -> None:
    """Old code: the extra bytes after the array were ignored."""
    entries = read_entries(ckpt)
    for e in entries:
        if e.name == f"{where}.npy":
            e.data += bytes(4096)
    write_zip(ckpt, entries)
    refusal(lambda: load_checkpoint(ckpt), where)


def test_duplicate_entries_are_refused(ckpt: Path) -> None:
    entries = read_entries(ckpt)
    w1 = next(e for e in entries if e.name == "parameters/W1.npy")
    write_zip(ckpt, [*entries, Entry(w1.name, npy(np.zeros((6, 12))))])
    refusal(lambda: load_checkpoint(ckpt), r"parameters/W1.*(twice|more than once)")


def test_compressed_archives_are_refused(ckpt: Path, state: TrainingState) -> None:
    """backend_mlp writes uncompressed archives (np.savez); inflating is what a bomb needs."""
    with zipfile.ZipFile(ckpt) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(ckpt, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    refusal(lambda: load_checkpoint(ckpt), r"compressed")


def test_entry_sizes_beyond_the_file_are_refused(ckpt: Path) -> None:
    """A stored entry whose header claims 3 GiB in a file of a few kB."""
    entries = read_entries(ckpt)
    for e in entries:
        if e.name == "order.npy":
            e.size = 3 * GiB
    write_zip(ckpt, entries)
    refusal(lambda: load_checkpoint(ckpt), r"order")


def overlapping_entries_zip(entries: list[Entry], shared: list[list[str]], region: dict[str, bytes]) -> bytes:
    """A zip archive in which each chain of ``shared`` names points at one data region, stored once.

    Entry ``j`` of a chain has its own local header, whose extra field holds the local headers of
    the chain's later entries; its data, ``region[first name]`` (npy bytes), follows the last of
    them, so every entry of the chain reads the same bytes: N entries, one region in the file.
    ``entries`` are written normally, after the chains.
    """
    out, central = bytearray(), bytearray()

    def directory(name: bytes, crc: int, size: int, offset: int) -> bytes:
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x800, 0, 0, 0x21, crc, size, size, len(name),
                           0, 0, 0, 0, 0o644 << 16, offset) + name

    for chain in shared:
        data = region[chain[0]]
        crc = zlib.crc32(data)
        headers = b""  # the nested local headers, innermost (last entry) first
        for name in reversed(chain):
            encoded = name.encode("utf-8")
            headers = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, 0, 0, 0x21, crc, len(data), len(data),
                                  len(encoded), len(headers)) + encoded + headers
        offset = len(out)
        out += headers + data
        for name in chain:
            encoded = name.encode("utf-8")
            central += directory(encoded, crc, len(data), offset)
            offset += 30 + len(encoded)
    count = sum(map(len, shared)) + len(entries)
    rest = zip_bytes(entries)
    start_rest = len(out)
    # append the normal entries, their directory records shifted by the chains before them
    (n_rest,) = struct.unpack("<H", rest[-12:-10])
    cd_size, cd_start = struct.unpack("<II", rest[-10:-2])
    out += rest[:cd_start]
    records = bytearray(rest[cd_start : cd_start + cd_size])
    pos = 0
    for _ in range(n_rest):
        name_len = struct.unpack("<H", records[pos + 28 : pos + 30])[0]
        (old,) = struct.unpack("<I", records[pos + 42 : pos + 46])
        records[pos + 42 : pos + 46] = struct.pack("<I", old + start_rest)
        pos += 46 + name_len
    central += records
    start = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), start, 0)
    return bytes(out)


def _overlapping_checkpoint(ckpt: Path, n_layers: int, width: int) -> Path:
    """The ``ckpt`` fixture made into a ``n_layers`` x ``width`` Adam checkpoint (best parameters included)
    whose arrays of one shape all share one stored region: a file of about one array, ``4 n_layers`` arrays."""
    arrays = {e.name.removesuffix(".npy"): e.data for e in read_entries(ckpt)}
    meta = json.loads(load_npy(arrays.pop("__metadata__")).tobytes())
    config = TrainingConfig(layer_dims=(width,) * (n_layers + 1), optimizer="adam", early_stopping=False)
    dtype = np.dtype(meta["dtype"])
    params, _ = ck.state_shapes(config)
    optimizer = ck._optimizer_shapes(config, params)
    meta.update(layer_dims=list(config.layer_dims), config=config.to_json(),
                arrays={"parameters": list(params), "optimizer_state": list(optimizer), "bn_state": [],
                        "best_parameters": list(params), "best_bn_state": []})
    shapes = {**{f"parameters/{k}": s for k, s in params.items()},
              **{f"optimizer_state/{k}": s for k, s in optimizer.items()},
              **{f"best_parameters/{k}": s for k, s in params.items()}}
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for key, shape in shapes.items():
        by_shape.setdefault(shape, []).append(f"{key}.npy")
    chains, region, single = [], {}, []
    for shape, names in by_shape.items():
        data = npy(np.zeros(shape, dtype=dtype))
        if len(names) == 1:
            single.append(Entry(names[0], data))
            continue
        chain: list[str] = []
        for name in names:  # a chain's nested headers must fit in one 64 KiB extra field
            if sum(30 + len(n) for n in [*chain, name]) > 60_000:
                chains.append(chain)
                chain = []
            chain.append(name)
        chains.append(chain)
        for c in chains:
            region.setdefault(c[0], data)
    others = [Entry(f"{k}.npy", arrays[k]) for k in ("order", "costs", "val_costs")]
    meta_entry = Entry("__metadata__.npy", npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)))
    ckpt.write_bytes(overlapping_entries_zip([*single, *others, meta_entry], chains, region))
    return ckpt


def test_overlapping_entries_are_refused_before_they_are_read(ckpt: Path) -> None:
    """A ~1.2 MB checkpoint of 200 layers (Adam state, best parameters) whose 800 (360, 360) arrays all
    point at one stored region: each entry has its own local header, the data is shared.

    Python 3.11's zipfile does not check for overlapping entries.  Old code: every entry read into its
    own buffer, 800 x 1 MB: the 1.3 MB file loaded with an 884 MB peak (a 3 MB one of 1,000 layers:
    3.1 GB, MemoryError under a 1 GB address-space limit).
    """
    _overlapping_checkpoint(ckpt, n_layers=200, width=360)
    size = ckpt.stat().st_size
    assert size < 2 * MiB
    with zipfile.ZipFile(ckpt) as zf:  # the archive is well formed for zipfile: every entry reads
        infos = zf.infolist()
        assert len(infos) > 1600 and zf.read("parameters/W7.npy") == zf.read("best_parameters/W200.npy")
        assert sum(info.file_size for info in infos) > 400 * size
    report = load_in_child("checkpoint", ckpt)
    outcome = report["outcome"].replace(str(ckpt), "<file>")  # the test's folder name says "overlapping"
    assert outcome.startswith("CheckpointError: checkpoint <file>:"), report
    assert "overlap" in outcome and "'parameters/W1'" in outcome, report
    assert "\n" not in outcome and len(outcome) < 1000, report
    assert report["peak_bytes"] < PEAK_LIMIT and report["seconds"] < 10, report
    for load in (load_checkpoint, load_model, MLPClassifier.load):
        message = refusal(lambda load=load: load(ckpt))
        assert "overlap" in message.replace(str(ckpt), "<file>"), message


def test_a_local_header_reaching_into_the_next_entry_is_refused(ckpt: Path) -> None:
    """The first entry's local extra field grown by 64 bytes: its data now starts inside the next entry.

    The directory alone cannot see it (a local header's size is read from the file).
    """
    data = bytearray(ckpt.read_bytes())
    with zipfile.ZipFile(ckpt) as zf:
        first, second = sorted(zf.infolist(), key=lambda i: i.header_offset)[:2]
    assert data[first.header_offset : first.header_offset + 4] == b"PK\x03\x04"
    (extra,) = struct.unpack("<H", data[first.header_offset + 28 : first.header_offset + 30])
    data[first.header_offset + 28 : first.header_offset + 30] = struct.pack("<H", extra + 64)
    ckpt.write_bytes(bytes(data))
    message = refusal(lambda: load_checkpoint(ckpt)).replace(str(ckpt), "<file>")
    assert "overlap" in message and first.filename.removesuffix(".npy") in message, message
    assert second.filename.removesuffix(".npy") in message, message

def test_entries_running_into_the_central_directory_are_refused(ckpt: Path) -> None:
    """A stored entry whose declared size reaches into the zip directory after it."""
    data = bytearray(ckpt.read_bytes())
    with zipfile.ZipFile(ckpt) as zf:
        info = max(zf.infolist(), key=lambda i: i.header_offset)  # the last entry before the directory
        start_dir = zf.start_dir
    # its central record: name length at +28, compressed and uncompressed sizes at +20 and +24
    record = start_dir
    while True:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[record + 28 : record + 34])
        if data[record + 46 : record + 46 + name_len].decode() == info.filename:
            break
        record += 46 + name_len + extra_len + comment_len
    grown = info.compress_size + 40
    data[record + 20 : record + 28] = struct.pack("<II", grown, grown)
    ckpt.write_bytes(bytes(data))
    refusal(lambda: load_checkpoint(ckpt), re.escape(info.filename.removesuffix(".npy")) + ".*directory")


def test_running_out_of_memory_is_one_checkpoint_error(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a MemoryError anywhere in decoding (here: converting the arrays) names the file."""

    def exhausted(*args: Any, **kwargs: Any) -> None:
        raise MemoryError

    monkeypatch.setattr(ck, "tree_to_backend", exhausted)
    for load in (load_checkpoint, load_model):
        refusal(lambda load=load: load(ckpt), re.escape(str(ckpt)) + r".*out of memory")


def test_crafted_class_names_make_a_short_message(model: Path) -> None:
    """``backend-mlp predict`` quoted crafted class_names in full (a 2 MB "one line")."""
    from backend_mlp.cli.predict import load_predict_model

    edit_meta(model, lambda meta: meta["extra"].update(class_names=["x" * 1000] * 2000))
    assert model.stat().st_size > 2 * 10**6
    refusal(lambda: load_predict_model(str(model)), r"class_names")

def test_pickled_entries_are_never_unpickled(ckpt: Path, tmp_path: Path) -> None:
    """An object array (pickled in its .npy) and a raw pickle in place of ``order``: refused, nothing runs.

    Old code: the raw pickle came back as bytes and failed with AttributeError.
    """
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    for payload in (npy(np.array([Payload()], dtype=object), allow_pickle=True), pickle.dumps(Payload())):
        rewrite(ckpt, lambda arrays, meta, payload=payload: arrays.update(order=payload))
        refusal(lambda: load_checkpoint(ckpt), r"order")
        assert not marker.exists()


# --------------------------------------------------------------------------- problem 8: the training state


def _state(**fields: Any) -> Callable[[dict[str, bytes], dict[str, Any]], None]:
    return lambda arrays, meta: meta["state"].update(fields)


def _array(key: str, make: Callable[[np.ndarray], Any]) -> Callable[[dict[str, bytes], dict[str, Any]], None]:
    """Replace entry ``key`` by ``make(current array)`` (raw bytes, or an array saved as .npy)."""

    def mutate(arrays: dict[str, bytes], meta: dict[str, Any]) -> None:
        new = make(load_npy(arrays[key]))
        arrays[key] = new if isinstance(new, bytes) else npy(new)

    return mutate


def _huge_header(descr: str, shape: tuple[int, ...]) -> Callable[[np.ndarray], bytes]:
    return lambda current: npy_header(descr, shape) + bytes(64)


def _garbled_header() -> bytes:
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (6,, 12), }".ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(6 * 12 * 8)


def _shuffled_out_of_range(order: np.ndarray) -> np.ndarray:
    out = order.copy()
    out[0] = len(order) + 5
    return out


def _duplicated(order: np.ndarray) -> np.ndarray:
    out = order.copy()
    out[1] = out[0]
    return out


BAD_STATES = [
    pytest.param(_state(step=-1), "step", id="negative-step"),
    pytest.param(_state(step=1e30), "step", id="huge-float-step"),
    pytest.param(_state(step=2**70), "step", id="huge-int-step"),
    pytest.param(_state(step="40"), "step", id="string-step"),
    pytest.param(_state(step=True), "step", id="bool-step"),
    pytest.param(_state(step=None), "step", id="null-step"),
    pytest.param(lambda a, m: m["state"].pop("step"), "step", id="missing-step"),
    pytest.param(_state(epochs_completed=-1), "epochs_completed", id="negative-epochs"),
    pytest.param(_state(epochs_completed=41), "epochs_completed", id="more-epochs-than-steps"),
    pytest.param(_state(epochs_completed=1.5), "epochs_completed", id="fractional-epochs"),
    pytest.param(_state(position=-3), "position", id="negative-position"),
    pytest.param(_state(position=10**9), "position", id="position-beyond-order"),
    pytest.param(_state(position="3"), "position", id="string-position"),
    pytest.param(_state(has_order="yes"), "has_order", id="string-has-order"),
    pytest.param(_state(has_order=False), "order", id="order-entry-not-declared"),
    pytest.param(_state(rng_state={}), "rng_state", id="empty-rng-state"),
    pytest.param(_state(rng_state="junk"), "rng_state", id="string-rng-state"),
    pytest.param(_state(rng_state=None), "rng_state", id="order-without-rng-state"),
    pytest.param(_state(rng_state={"bit_generator": "MT19937", "state": {"key": [1], "pos": 0}}), "rng_state",
                 id="other-bit-generator"),
    pytest.param(_state(rng_state={"bit_generator": "PCG64", "state": {"state": -1, "inc": 1}, "has_uint32": 0,
                                   "uinteger": 0}), "rng_state", id="negative-rng-state"),
    pytest.param(_state(rng_state={"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}, "has_uint32": 0,
                                   "uinteger": 0}), "rng_state", id="string-in-rng-state"),
    pytest.param(_state(best_step=-1), "best_step", id="negative-best-step"),
    pytest.param(_state(best_step=41), "best_step", id="best-step-after-step"),
    pytest.param(_state(best_val_cost="low"), "best_val_cost", id="string-best-val-cost"),
    pytest.param(_state(best_val_cost=float("nan")), "best_val_cost", id="nan-best-val-cost"),
    pytest.param(_state(stopped_reason="bored"), "stopped_reason", id="unknown-stopped-reason"),
    pytest.param(_state(stopped_reason=3), "stopped_reason", id="int-stopped-reason"),
    pytest.param(_state(elapsed_seconds=-1.0), "elapsed_seconds", id="negative-elapsed"),
    pytest.param(_state(elapsed_seconds=float("inf")), "elapsed_seconds", id="infinite-elapsed"),
    pytest.param(_state(elapsed_seconds="soon"), "elapsed_seconds", id="string-elapsed"),
    pytest.param(_state(compile_seconds=-0.5), "compile_seconds", id="negative-compile-seconds"),
    pytest.param(_state(compile_seconds=1e9), "compile_seconds", id="compiling-longer-than-the-run"),
    pytest.param(_state(surprise=1), "surprise", id="unknown-state-field"),
    pytest.param(lambda a, m: m.update(state=[1, 2]), "state", id="state-not-an-object"),
    pytest.param(lambda a, m: m.update(kind="weights"), "kind", id="unknown-kind"),
    pytest.param(lambda a, m: m.update(dtype=["float64"]), "dtype", id="list-dtype"),
    pytest.param(lambda a, m: m.update(extra="notes"), "extra", id="extra-not-an-object"),
    pytest.param(lambda a, m: m["arrays"].update(parameters="W1"), "arrays", id="array-names-not-a-list"),
    pytest.param(lambda a, m: m["arrays"].update(optimizer_state=None), "optimizer_state",
                 id="checkpoint-without-optimizer-state"),
    pytest.param(_array("order", _shuffled_out_of_range), "order", id="order-out-of-range"),
    pytest.param(_array("order", _duplicated), "order", id="order-not-a-permutation"),
    pytest.param(_array("order", lambda o: o.astype(np.float64)), "order", id="float-order"),
    pytest.param(_array("order", lambda o: o.reshape(-1, 1)), "order", id="2d-order"),
    pytest.param(_array("order", lambda o: o[:0]), "order", id="empty-order"),
    pytest.param(_array("order", _huge_header("<i8", (2**40,))), "order", id="huge-order-header"),
    pytest.param(_array("costs", lambda c: np.zeros((3, 3))), "costs", id="costs-three-columns"),
    pytest.param(_array("costs", lambda c: np.array([[1e9, 0.5]])), "costs", id="cost-step-after-step"),
    pytest.param(_array("costs", lambda c: np.array([[-10.0, 0.5]])), "costs", id="negative-cost-step"),
    pytest.param(_array("costs", lambda c: np.array([[2.5, 0.5]])), "costs", id="fractional-cost-step"),
    pytest.param(_array("val_costs", lambda c: np.zeros((10**4, 2))), "val_costs", id="more-records-than-steps"),
    pytest.param(_array("val_costs", _huge_header("<f8", (2**40, 2))), "val_costs", id="huge-costs-header"),
    pytest.param(_array("parameters/W1", lambda w: w.astype(np.float32)), "parameters/W1", id="other-dtype"),
    pytest.param(_array("parameters/W1", lambda w: w.T), "parameters/W1", id="transposed-weights"),
    pytest.param(_array("parameters/W1", lambda w: b"\x93NUMPY\x09\x00" + bytes(100)), "parameters/W1",
                 id="unknown-npy-version"),
    pytest.param(_array("parameters/W1", lambda w: _garbled_header()), "parameters/W1", id="garbled-npy-header"),
    pytest.param(_array("parameters/W1", lambda w: w.astype(">f8")), None, id="big-endian-is-fine"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_STATES)
def test_training_state_fields_are_checked(ckpt: Path, state: TrainingState, mutate: Any, field: str | None) -> None:
    """Each field of a checkpoint's state: refused with a CheckpointError naming it (old code: most loaded,
    the rest raised TypeError / ValueError / AttributeError / MemoryError)."""
    rewrite(ckpt, mutate)
    if field is None:
        loaded = load_checkpoint(ckpt).state
        np.testing.assert_array_equal(loaded.parameters["W1"], state.parameters["W1"])
        return
    refusal(lambda: load_checkpoint(ckpt), re.escape(field))


def test_huge_array_header_is_refused_with_little_memory(ckpt: Path) -> None:
    """``order`` declaring 2**40 int64 values (8 TiB) in a few bytes."""
    rewrite(ckpt, _array("order", _huge_header("<i8", (2**40,))))
    report = load_in_child("checkpoint", ckpt)
    assert report["outcome"].startswith("CheckpointError") and "order" in report["outcome"], report
    assert report["peak_bytes"] < PEAK_LIMIT, report


def test_a_checked_state_still_resumes_bit_for_bit(ckpt: Path, state: TrainingState) -> None:
    """The checks change nothing in a valid file: the loaded state is the saved one."""
    loaded = load_checkpoint(ckpt).state
    assert loaded.rng_state == state.rng_state and loaded.order.tolist() == state.order.tolist()
    assert (loaded.step, loaded.position, loaded.epochs_completed) == (state.step, state.position,
                                                                        state.epochs_completed)
    assert loaded.costs == state.costs and loaded.val_costs == state.val_costs
    assert isinstance(loaded.rng_state["state"]["state"], int)


# --------------------------------------------------------------------------- problem 9: non-finite values


@pytest.mark.parametrize(("key", "value"), [
    ("parameters/W1", np.nan),
    ("parameters/b2", np.inf),
    ("parameters/gamma1", -np.inf),
    ("bn_state/running_var1", np.nan),
    ("optimizer_state/exp_avg_sq.W1", np.inf),
    ("optimizer_state/step", np.nan),
    ("best_parameters/W2", np.nan),
    ("best_bn_state/running_mean2", np.inf),
])  # fmt: skip
def test_non_finite_arrays_in_a_checkpoint_are_refused(ckpt: Path, key: str, value: float) -> None:
    """Old code: accepted; training then 'diverged' and blamed the learning rate."""

    def poison(current: np.ndarray) -> np.ndarray:
        out = current.copy()
        out.flat[out.size // 2] = value
        return out

    rewrite(ckpt, _array(key, poison))
    refusal(lambda: load_checkpoint(ckpt), rf"{key}.*(NaN|infinit|finite)")
    refusal(lambda: load_model(ckpt), key)


def test_negative_running_variance_is_refused(ckpt: Path) -> None:
    rewrite(ckpt, _array("bn_state/running_var2", lambda v: -np.abs(v) - 1.0))
    refusal(lambda: load_checkpoint(ckpt), r"bn_state/running_var2.*negative")


@pytest.mark.parametrize("key", ["parameters/W1", "bn_state/running_mean1"])
def test_non_finite_arrays_in_a_model_are_refused(model: Path, key: str) -> None:
    rewrite(model, _array(key, lambda a: np.full_like(a, np.nan)))
    refusal(lambda: load_model(model), rf"{key}.*(NaN|finite)")
    refusal(lambda: MLPClassifier.load(model), key)


def test_a_diverged_checkpoint_with_non_finite_parameters_is_refused(ckpt: Path) -> None:
    """A run that diverged saves finite parameters (backend_mlp.runs); a file claiming a divergence does
    not make non-finite arrays loadable."""

    def diverge(arrays: dict[str, bytes], meta: dict[str, Any]) -> None:
        meta["state"]["stopped_reason"] = "diverged"
        arrays["parameters/W1"] = npy(np.full((6, 12), np.nan))

    rewrite(ckpt, diverge)
    refusal(lambda: load_checkpoint(ckpt), r"parameters/W1")
    refusal(lambda: load_model(ckpt), r"parameters/W1")


# --------------------------------------------------------------------------- problem 10: MLPClassifier.load


@pytest.fixture(scope="module")
def classifier() -> MLPClassifier:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 4))
    y = np.array(["cat", "dog", "eel"])[np.argmax(X[:, :3], axis=1)]
    return MLPClassifier((5,), batch_size=16, max_steps=30, record_every=10).fit(X, y)


@pytest.fixture
def saved_classifier(tmp_path: Path, classifier: MLPClassifier) -> Path:
    return classifier.save(tmp_path / "clf.npz")


def _extra(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta["extra"].update(fields)


def _params(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta["extra"]["params"].update(fields)


BAD_ESTIMATORS = [
    pytest.param(_extra(classes_dtype="V2000000000"), "classes_dtype", id="huge-void-dtype"),
    pytest.param(_extra(classes_dtype="(3,)i4"), "classes_dtype", id="subarray-dtype"),
    pytest.param(_extra(classes_dtype="not a dtype"), "classes_dtype", id="no-dtype"),
    pytest.param(_extra(classes_dtype=5), "classes_dtype", id="int-dtype"),
    pytest.param(_extra(classes_dtype="<i8"), "classes", id="strings-as-ints"),
    pytest.param(_extra(classes_dtype="<U1000000000"), "classes_dtype", id="huge-string-dtype"),
    pytest.param(_extra(classes="cde"), "classes", id="classes-a-string"),
    pytest.param(_extra(classes=[["c"], ["d"], ["e"]]), "classes", id="nested-classes"),
    pytest.param(_extra(classes=["c", "c", "e"]), "classes", id="duplicate-classes"),
    pytest.param(_extra(classes=["c", "d"]), "classes", id="too-few-classes"),
    pytest.param(_extra(n_features_in="four"), "n_features_in", id="string-n-features"),
    pytest.param(_extra(n_features_in=7), "n_features_in", id="n-features-not-the-network's"),
    pytest.param(_extra(best_step="last"), "best_step", id="string-best-step"),
    pytest.param(_extra(best_step=10**6), "best_step", id="best-step-after-the-last"),
    pytest.param(_extra(n_epochs="many"), "n_epochs", id="string-n-epochs"),
    pytest.param(_extra(n_epochs=-1.0), "n_epochs", id="negative-n-epochs"),
    pytest.param(_extra(params="fast"), "params", id="params-a-string"),
    pytest.param(_params(batchnorm={"bogus": 1}), "batchnorm", id="batchnorm-unknown-option"),
    pytest.param(_params(batchnorm={"position": "sideways"}), "batchnorm", id="batchnorm-bad-position"),
    pytest.param(_params(batchnorm="yes"), "batchnorm", id="batchnorm-a-string"),
    pytest.param(_params(batchnorm=True), "batchnorm", id="batchnorm-not-the-network's"),
    pytest.param(_params(learning_rate="fast"), "learning_rate", id="string-learning-rate"),
    pytest.param(_params(batch_size=[16]), "batch_size", id="list-batch-size"),
    pytest.param(_params(early_stopping="no"), "early_stopping", id="string-early-stopping"),
    pytest.param(_params(random_state=-4), "random_state", id="negative-random-state"),
    pytest.param(_params(momentum="high"), "momentum", id="string-momentum"),
    pytest.param(_params(optimizer=["adam"]), "optimizer", id="list-optimizer"),
    pytest.param(_params(hidden_layer_sizes="five"), "hidden_layer_sizes", id="string-hidden"),
    pytest.param(_params(hidden_layer_sizes=[9]), "hidden_layer_sizes", id="hidden-not-the-network's"),
    pytest.param(_params(dtype="float16"), "dtype", id="other-dtype"),
    pytest.param(_params(device=5), "device", id="int-device"),
    pytest.param(_params(device="abacus"), "device", id="unknown-device"),
]


@pytest.mark.parametrize(("change", "field"), BAD_ESTIMATORS)
def test_crafted_estimator_metadata_is_one_checkpoint_error(saved_classifier: Path, change: Any, field: str) -> None:
    """Old code: raw TypeError / ValueError / InputValidationError, or a loaded estimator that fails later."""
    edit_meta(saved_classifier, change)
    refusal(lambda: MLPClassifier.load(saved_classifier), re.escape(field))


def test_the_classifier_file_still_round_trips(saved_classifier: Path, classifier: MLPClassifier) -> None:
    loaded = MLPClassifier.load(saved_classifier)
    assert loaded.get_params() == classifier.get_params() and loaded.classes_.dtype == classifier.classes_.dtype
    X = np.random.default_rng(1).standard_normal((7, 4))
    np.testing.assert_array_equal(loaded.predict(X), classifier.predict(X))


def test_class_dtype_bomb_is_refused_with_little_memory(saved_classifier: Path) -> None:
    """``classes_dtype`` 'V2000000000' asks for 2 GB per class."""
    edit_meta(saved_classifier, _extra(classes_dtype="V2000000000"))
    report = load_in_child("estimator", saved_classifier)
    assert report["outcome"].startswith("CheckpointError") and "classes_dtype" in report["outcome"], report
    assert report["peak_bytes"] < PEAK_LIMIT, report


def test_limits_are_documented() -> None:
    for name in ("MAX_PARAMETERS", "MAX_LAYERS", "MAX_METADATA_BYTES", "MAX_STEPS"):
        assert isinstance(getattr(ck, name), int) and name in (ck.__doc__ or ""), name
