"""Save and load models and training checkpoints as one ``.npz`` file, without pickle.

File layout (``format_version`` 3; 2 added optimizer state, 3 the state's
``compile_seconds``): an uncompressed NumPy ``.npz`` archive
holding every array as host NumPy data, under ``"<group>/<name>"`` keys
(groups ``parameters``, ``optimizer_state``, ``bn_state``, ``best_parameters``,
``best_bn_state``; version 1 files, which predate optimizer state, load as SGD),
``order`` (the current epoch's permutation, int64), ``costs``/``val_costs``
(``(k, 2)`` float64: step, cost), and ``__metadata__``: UTF-8 JSON (as uint8)
with the format name and version, library version, architecture, dtype, the
:class:`~backend_mlp.training.TrainingConfig`, the step counters, the shuffling
RNG's ``bit_generator.state`` and a free-form ``extra`` dict.

Files are written atomically (temporary file, fsync, ``os.replace``).  Arrays
travel through host NumPy, so a file saved from any backend loads on any other.
``kind`` is ``"checkpoint"`` (resumable) or ``"model"`` (parameters only).

Loading treats the file as untrusted, and every problem raises one
:class:`CheckpointError` line naming the entry or field (no other exception
escapes; resolving ``device`` may raise its own errors):

* **The archive is never inflated, and nothing is read that the format does not
  have.**  From the zip directory alone, before any byte is read: an entry whose
  name is not part of the format, a name given twice, an encrypted or compressed
  entry (backend_mlp writes stored entries, as ``np.savez`` does), or one whose
  declared size does not fit in the file is refused, and so are entries that overlap
  (each local header, its size read from the file, and its data must be disjoint from the
  others and end before the zip directory: Python 3.11's zipfile does not check this, and
  N entries sharing one stored region would be read N times).  Then the metadata is read
  (at most :data:`MAX_METADATA_BYTES`), and any entry it does not list is
  refused before it is read.
* **Every array is read with a bound.**  Its ``.npy`` header (at most
  :data:`MAX_NPY_HEADER_BYTES`) must give the dtype and the shape the metadata
  implies, and exactly the entry's declared size; only then is the data read,
  once, into the array's own buffer (its CRC-32 checked).  Object arrays and raw
  pickles are refused: nothing is ever unpickled.  Peak memory is therefore
  about the file's size plus a constant; a ``MemoryError`` anyway (a memory limit below
  that) is one :class:`CheckpointError` line naming the file.
* **The architecture is checked by arithmetic on the metadata**, without drawing
  an initialisation or creating arrays: at most :data:`MAX_LAYERS` layers and
  :data:`MAX_PARAMETERS` parameters, and the optimizer's state shapes come from
  its ``init_state`` applied to probes that hold no bytes.
* **Every field of the state is checked** for type, range and consistency:
  ``step`` (``0..``:data:`MAX_STEPS`), ``epochs_completed`` and ``best_step``
  (``0..step``), ``order`` (a permutation of ``0..n-1``), ``position``
  (``0..n``, or at most the samples seen), ``rng_state`` (accepted by the
  shuffling generator's bit generator), ``costs``/``val_costs`` (at most one
  record per step, integral steps in ``0..step``; the costs themselves may be
  non-finite: the record that found a diverging cost), ``best_val_cost``
  (finite or null), ``stopped_reason`` (null or one of :data:`STOPPED_REASONS`),
  ``elapsed_seconds`` (finite, >= 0), ``compile_seconds`` (the part of it spent
  compiling, ``0..elapsed_seconds``; 0 in files of formats 1 and 2, which
  lack it); unknown fields are refused.
* **Non-finite values are refused** in parameters, batch-norm statistics
  (running variances must also be >= 0) and optimizer state, naming the array
  (a run that diverged saves only finite parameters: see :mod:`backend_mlp.runs`).

The limits are module constants: raise one (``backend_mlp.checkpoint.MAX_PARAMETERS
= ...``) to load a larger file you trust; saving refuses a file that loading
would refuse.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import math
import os
import re
import stat
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, resolve_backend, resolve_dtype_name, tree_to_backend, tree_to_numpy
from .errors import BackendMLPError, CheckpointError, DataError
from .files import atomic_write_bytes
from .training import TrainingConfig, TrainingState, shuffle_generator
from .training.state import state_shapes

FORMAT_NAME = "backend_mlp.checkpoint"
#: the newest format this library reads and the one it writes (2: optimizer state; 3: compile_seconds in the state)
FORMAT_VERSION = 3

#: the most parameters (weights, biases, batch-norm scales and shifts) a file may declare: 10**8, 800 MB in float64
MAX_PARAMETERS = 100_000_000
#: the most layers (``len(layer_dims) - 1``) a file may declare
MAX_LAYERS = 1_000
#: the most bytes of JSON metadata
MAX_METADATA_BYTES = 4 * 2**20
#: the largest step count: 2**53, the last integer a float64 cost history records exactly
MAX_STEPS = 2**53
#: the longest ``.npy`` header read (NumPy writes 128 bytes)
MAX_NPY_HEADER_BYTES = 4096
#: why a run stopped, as the training loop records it (``null`` while it can continue)
STOPPED_REASONS = ("num_iterations", "early_stopping", "diverged")

_META_KEY = "__metadata__"
_GROUPS = ("parameters", "optimizer_state", "bn_state", "best_parameters", "best_bn_state")
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_KINDS = ("checkpoint", "model")
_EXPECTED = "a .npz file written by backend_mlp"
_ENTRY_NAME = re.compile(r"(?:__metadata__|order|costs|val_costs|(?:" + "|".join(_GROUPS) + r")/[^/]{1,200})\.npy")
_META_FIELDS = frozenset({"format", "format_version", "kind", "library_version", "created", "layer_dims", "dtype",
                          "config", "arrays", "state", "extra"})
_STATE_FIELDS = frozenset({"step", "epochs_completed", "position", "has_order", "rng_state", "best_val_cost",
                           "best_step", "stopped_reason", "elapsed_seconds", "compile_seconds"})

Array = Any


@dataclass
class Checkpoint:
    """A loaded file: ``state`` holds arrays on the requested device.

    ``parameters``/``bn_state`` are what inference should use: the best
    validation check when the file has one, else the current parameters.
    """

    config: TrainingConfig
    state: TrainingState
    dtype: str
    format_version: int
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "checkpoint"
    library_version: str | None = None
    path: Path | None = None

    @property
    def parameters(self) -> dict[str, Array]:
        if self.state.best_parameters is not None:
            return self.state.best_parameters
        return self.state.parameters

    @property
    def bn_state(self) -> dict[str, Array]:
        if self.state.best_parameters is not None:
            return self.state.best_bn_state or {}
        return self.state.bn_state


# --------------------------------------------------------------------------- config <-> JSON


def config_from_json(data: Any) -> TrainingConfig:
    """Inverse of :meth:`TrainingConfig.to_json`; raises :class:`CheckpointError` on unknown or bad fields."""
    try:
        return TrainingConfig.from_json(data)
    except (BackendMLPError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise CheckpointError(f"metadata 'config' is invalid: {_clip(str(exc), 300)}") from None


# --------------------------------------------------------------------------- saving


def _library_version() -> str:
    from . import __version__  # late: the package may import this module

    return __version__


def _dtype_of(trees: list[dict[str, np.ndarray] | None]) -> str:
    names = {a.dtype.name for t in trees if t for a in t.values()}
    if len(names) != 1:
        raise CheckpointError(
            f"cannot save: parameters and statistics must share one dtype (float32 or float64); "
            f"found {sorted(names) or 'no arrays'}"
        )
    try:
        return resolve_dtype_name(names.pop())
    except BackendMLPError as exc:
        raise CheckpointError(f"cannot save: {exc}") from None


def _pairs_array(pairs: list[tuple[int, float]]) -> np.ndarray:
    return np.array([(float(s), float(c)) for s, c in pairs], dtype=np.float64).reshape(-1, 2)


def _encode(
    kind: str, config: TrainingConfig, state: TrainingState, extra: dict[str, Any] | None, with_arrays: bool
) -> bytes:
    problem = _architecture_problem(config)
    if problem is not None:
        raise CheckpointError(f"cannot save: {problem}, so the file could not be loaded")
    if not 0.0 <= state.compile_seconds <= state.elapsed_seconds:
        raise CheckpointError(
            f"cannot save: state.compile_seconds is {state.compile_seconds!r}; expected a number in "
            f"0..state.elapsed_seconds ({state.elapsed_seconds!r}), of which it is a part, so the file could be loaded"
        )
    trees = {
        "parameters": tree_to_numpy(state.parameters),
        "optimizer_state": tree_to_numpy(state.optimizer_state or {}) if with_arrays else None,
        "bn_state": tree_to_numpy(state.bn_state or {}),
        "best_parameters": tree_to_numpy(state.best_parameters) if with_arrays else None,
        "best_bn_state": tree_to_numpy(state.best_bn_state or {}) if with_arrays and state.best_parameters else None,
    }
    dtype = _dtype_of(list(trees.values()))
    arrays: dict[str, np.ndarray] = {}
    for group, tree in trees.items():
        for name, arr in (tree or {}).items():
            arrays[f"{group}/{name}"] = arr
    if with_arrays and state.order is not None:
        arrays["order"] = np.asarray(state.order, dtype=np.int64)
    arrays["costs"] = _pairs_array(state.costs)
    arrays["val_costs"] = _pairs_array(state.val_costs)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "library_version": _library_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layer_dims": list(config.layer_dims),
        "dtype": dtype,
        "config": config.to_json(),
        "arrays": {group: (None if tree is None else list(tree)) for group, tree in trees.items()},
        "state": {
            "step": int(state.step),
            "epochs_completed": int(state.epochs_completed),
            "position": int(state.position),
            "has_order": with_arrays and state.order is not None,
            "rng_state": state.rng_state if with_arrays else None,
            "best_val_cost": state.best_val_cost if math.isfinite(state.best_val_cost) else None,
            "best_step": int(state.best_step),
            "stopped_reason": state.stopped_reason,
            "elapsed_seconds": float(state.elapsed_seconds),
            "compile_seconds": float(state.compile_seconds),
        },
        "extra": dict(extra or {}),
    }
    try:
        text = json.dumps(meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot save: metadata is not JSON-serialisable ({exc}); 'extra' must hold only "
            "strings, finite numbers, booleans, None, lists and dicts"
        ) from None
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_METADATA_BYTES:
        raise CheckpointError(
            f"cannot save: the metadata is {len(encoded):,} bytes (mostly 'extra'?); at most MAX_METADATA_BYTES = "
            f"{MAX_METADATA_BYTES:,} are loaded"
        )
    arrays[_META_KEY] = np.frombuffer(encoded, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _write(path: str | os.PathLike[str], data: bytes) -> Path:
    p = Path(path)
    try:
        atomic_write_bytes(p, data)
    except DataError as exc:
        raise CheckpointError(f"cannot write checkpoint {p}: {exc}") from None
    return p


def save_checkpoint(
    path: str | os.PathLike[str],
    config: TrainingConfig,
    state: TrainingState,
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write everything needed to resume ``state`` exactly; atomic.  Returns the path."""
    return _write(path, _encode("checkpoint", config, state, extra, with_arrays=True))


def save_model(
    path: str | os.PathLike[str],
    config: TrainingConfig,
    parameters: dict[str, Array],
    bn_state: dict[str, Array] | None = None,
    *,
    extra: dict[str, Any] | None = None,
    state: TrainingState | None = None,
) -> Path:
    """Write ``parameters``/``bn_state`` for inference; atomic.  Returns the path.

    ``state`` optionally contributes its step counters and recorded costs
    (not its arrays), so the file says how the model was trained.
    """
    info = dataclasses.replace(state) if state is not None else TrainingState(parameters={}, bn_state={})
    info.parameters, info.bn_state = parameters, dict(bn_state or {})
    info.best_parameters = info.best_bn_state = None
    return _write(path, _encode("model", config, info, extra, with_arrays=False))


# --------------------------------------------------------------------------- loading: the archive


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a file's content never makes a message long."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python prints
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, on one line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(n: int) -> str:
    """``n`` with thousands separators, or its order of magnitude when it is astronomically large."""
    return f"{n:,}" if n < 10**18 else f"about 2**{n.bit_length()}"


def _open(path: Path) -> Any:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path} (expected {_EXPECTED})") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint file {path} is a folder; expected {_EXPECTED}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise CheckpointError(f"checkpoint file {path} is not a regular file; expected {_EXPECTED}")
    return f


#: what reading a damaged archive can raise from zipfile, zlib and struct, besides our own errors
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, struct.error, ValueError,
                   OSError, KeyError, IndexError, OverflowError, NotImplementedError, RuntimeError,
                   UnicodeDecodeError)


def _corrupted(path: Path, exc: BaseException) -> CheckpointError:
    if isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile) and exc.errno is not None:
        return CheckpointError(f"cannot read checkpoint file {path}: {exc.strerror or exc}")
    return CheckpointError(
        f"checkpoint {path} is truncated or corrupted ({type(exc).__name__}: {_clip(str(exc), 160)}); "
        "expected a complete .npz file written by backend_mlp.checkpoint"
    )


def _entries(path: Path, zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by key (name without ``.npy``), checked from the central directory alone.

    Nothing is read or inflated here: a name the format does not have, a name given twice, an
    encrypted or compressed entry, or one whose declared size does not fit in the file is refused.
    """
    infos = zf.infolist()
    if not any(info.filename == f"{_META_KEY}.npy" for info in infos):
        raise CheckpointError(
            f"checkpoint {path} has no '{_META_KEY}' entry; it is an .npz file but not one "
            "written by backend_mlp.checkpoint"
        )
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if not _ENTRY_NAME.fullmatch(name):
            raise CheckpointError(
                f"checkpoint {path}: the archive holds an entry {_short(name)} that is not part of the format "
                "(refused before reading it); expected only the metadata, the arrays it lists, 'order', 'costs' "
                "and 'val_costs', each a .npy entry"
            )
        key = name[: -len(".npy")]
        if key in entries:
            raise CheckpointError(f"checkpoint {path}: the archive holds the entry {key!r} more than once (crafted)")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"checkpoint {path}: entry {key!r} is encrypted; backend_mlp writes plain archives")
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} is compressed (zip method {info.compress_type}); backend_mlp "
                "writes uncompressed archives (np.savez) and never inflates an entry (refused before reading it)"
            )
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} declares {_count(info.file_size)} bytes "
                f"({_count(info.compress_size)} stored) in a file of {_count(size)} bytes; truncated or crafted "
                "(refused before reading it)"
            )
        entries[key] = info
    return entries


def _check_layout(path: Path, f: Any, zf: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], size: int) -> None:
    """Refuse entries that share bytes: each one's local header and data must be its own.

    Python 3.11's zipfile does not check this, so entries pointing at one stored region would each
    be read in full (N arrays from the bytes of one).  First from the directory alone (each local
    header is at least 30 bytes and the name), then with each local header's size read from the
    file (30 bytes, name and extra field): the spans, sorted by offset, must be disjoint, end
    before the zip directory, and together fit in the file.
    """
    by_offset = sorted(entries.items(), key=lambda item: item[1].header_offset)

    def overlap(first: str, second: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {path}: entries {first!r} and {second!r} overlap in the archive (they share stored "
            "bytes; crafted, refused before reading them)"
        )

    total, previous = 0, None
    for key, info in by_offset:  # the directory alone: a lower bound of each span
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        span = 30 + len(info.orig_filename.encode(encoding, "replace")) + info.compress_size
        if previous is not None and info.header_offset < previous[1]:
            raise overlap(previous[0], key)
        total += span
        previous = (key, info.header_offset + span)
    if total > size:
        raise CheckpointError(
            f"checkpoint {path}: its {len(by_offset):,} entries declare {_count(total)} bytes in a file of "
            f"{_count(size)} bytes (truncated or crafted; refused before reading them)"
        )
    directory = getattr(zf, "start_dir", size)
    previous = None
    for key, info in by_offset:  # each local header's actual size
        f.seek(info.header_offset)
        header = f.read(30)
        if len(header) < 30 or header[:4] != _ZIP_MAGIC:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} has no local header at offset {info.header_offset:,} "
                "(truncated or crafted)"
            )
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        end = info.header_offset + 30 + name_length + extra_length + info.compress_size
        if previous is not None and info.header_offset < previous[1]:
            raise overlap(previous[0], key)
        if end > directory:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} runs into the zip directory at offset {directory:,} (its "
                f"local header and {_count(info.compress_size)} bytes end at {end:,}; truncated or crafted, "
                "refused before reading it)"
            )
        previous = (key, end)


def _read_exact(f: Any, n: int) -> bytearray:
    """``n`` bytes of ``f`` in one buffer filled in 1 MiB reads; shorter when ``f`` ends first."""
    buffer = bytearray(n)
    view, filled = memoryview(buffer), 0
    while filled < n:
        chunk = f.read(min(n - filled, 1 << 20))
        if not chunk:
            return buffer[:filled]
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return buffer


def _npy_header(path: Path, key: str, f: Any) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header length)`` of a .npy entry, its header read with a bound."""
    prefix = bytes(_read_exact(f, 10))
    if len(prefix) < 10 or not prefix.startswith(_NPY_MAGIC):
        raise CheckpointError(
            f"checkpoint {path}: entry {key!r} is not a NumPy array (.npy): no .npy signature (a raw pickle or "
            "other data; backend_mlp never unpickles)"
        )
    version = (prefix[6], prefix[7])
    if version == (1, 0):
        length, used = struct.unpack("<H", prefix[8:10])[0], 10
    elif version == (2, 0):
        rest = bytes(_read_exact(f, 2))
        if len(rest) < 2:
            raise CheckpointError(f"checkpoint {path}: entry {key!r} is truncated in its .npy header")
        length, used = struct.unpack("<I", prefix[8:10] + rest)[0], 12
    else:
        raise CheckpointError(
            f"checkpoint {path}: entry {key!r} has .npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0"
        )
    if length > MAX_NPY_HEADER_BYTES:
        raise CheckpointError(
            f"checkpoint {path}: entry {key!r} has a .npy header of {_count(length)} bytes; at most "
            f"MAX_NPY_HEADER_BYTES = {MAX_NPY_HEADER_BYTES} are read"
        )
    raw = bytes(_read_exact(f, length))
    bad = f"checkpoint {path}: entry {key!r} has a malformed .npy header"
    if len(raw) < length:
        raise CheckpointError(f"{bad} (truncated)")
    try:
        header = ast.literal_eval(raw.decode("latin1"))
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, UnicodeDecodeError):
        raise CheckpointError(f"{bad}: {_short(raw.decode('latin1'))}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise CheckpointError(f"{bad}: {_short(header)}")
    shape, fortran = header["shape"], header["fortran_order"]
    if (
        not isinstance(shape, tuple)
        or len(shape) > 8
        or not all(type(d) is int and d >= 0 for d in shape)
        or not isinstance(fortran, bool)
    ):
        raise CheckpointError(f"{bad}: shape {_short(shape)}, fortran_order {_short(fortran)}")
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except Exception:  # noqa: BLE001 - any failure to understand a foreign descriptor is a refusal
        raise CheckpointError(f"{bad}: dtype {_short(header['descr'])} is not a NumPy dtype") from None
    return shape, fortran, dtype, used + length


def _read_npy(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, want: np.dtype,
              shape: tuple[int | None, ...]) -> np.ndarray:
    """The array in entry ``key``: dtype ``want`` (either byte order), ``shape`` (``None``: any length).

    The header is checked against the expectation and against the entry's declared size before a
    single byte of data is read; the data is read once, into the array's own buffer.
    """
    with zf.open(info) as f:
        got_shape, fortran, dtype, header_bytes = _npy_header(path, key, f)
        if dtype.hasobject:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} holds Python objects (dtype {dtype}, pickled data); "
                "backend_mlp never unpickles"
            )
        if dtype.kind != want.kind or dtype.itemsize != want.itemsize or dtype.fields or dtype.subdtype:
            raise CheckpointError(f"checkpoint {path}: {key} is {_clip(str(dtype))}; expected {want.name}")
        if len(got_shape) != len(shape) or any(w is not None and w != g for g, w in zip(got_shape, shape, strict=True)):
            wanted = ", ".join("n" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "")
            wanted = f"({wanted})"
            raise CheckpointError(
                f"checkpoint {path}: {key} has shape {_short(got_shape)}; the metadata's architecture needs {wanted}"
            )
        nbytes = math.prod(got_shape) * dtype.itemsize
        if header_bytes + nbytes != info.file_size:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} declares {_short(got_shape)} {want.name} ({_count(nbytes)} bytes) "
                f"but holds {_count(info.file_size - header_bytes)} bytes of data (truncated or crafted)"
            )
        data = _read_exact(f, nbytes)  # reading to the entry's end also checks its CRC-32
        if len(data) < nbytes:
            raise CheckpointError(f"checkpoint {path}: entry {key!r} is truncated")
    arr = np.frombuffer(data, dtype=dtype).reshape(got_shape, order="F" if fortran else "C")
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- loading: the metadata


def _metadata(path: Path, zf: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    info = entries[_META_KEY]
    if info.file_size > MAX_METADATA_BYTES + MAX_NPY_HEADER_BYTES + 12:
        raise CheckpointError(
            f"checkpoint {path}: entry {_META_KEY!r} declares {_count(info.file_size)} bytes; the metadata is at "
            f"most MAX_METADATA_BYTES = {MAX_METADATA_BYTES:,} bytes (refused before reading it)"
        )
    raw = _read_npy(path, zf, info, _META_KEY, np.dtype(np.uint8), (None,))
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint {path}: metadata is corrupted ({_clip(str(exc), 120)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"checkpoint {path}: metadata does not name the format {FORMAT_NAME!r}; "
            "not a file written by backend_mlp.checkpoint"
        )
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(
            f"checkpoint {path}: format_version {_short(version)} is invalid; expected an integer >= 1"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version}, written by a newer backend_mlp "
            f"({_short(meta.get('library_version', 'unknown version'))}); this backend_mlp "
            f"({_library_version()}) reads format_version <= {FORMAT_VERSION}: upgrade backend_mlp"
        )
    missing = [k for k in ("kind", "dtype", "config", "arrays", "state") if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path}: metadata is missing {', '.join(missing)}")
    unknown = sorted(set(meta) - _META_FIELDS)
    if unknown:
        raise CheckpointError(
            f"checkpoint {path}: metadata has fields this backend_mlp does not know: {_short(unknown)}"
        )
    for name, kinds, expected in (("arrays", dict, "an object"), ("state", dict, "an object"),
                                  ("extra", dict, "an object"), ("library_version", (str, type(None)), "a string"),
                                  ("created", str, "a string")):
        if name in meta and not isinstance(meta[name], kinds):
            raise CheckpointError(
                f"checkpoint {path}: metadata '{name}' is {_short(meta[name])}; expected {expected} (corrupted)"
            )
    if meta["kind"] not in _KINDS:
        raise CheckpointError(
            f"checkpoint {path}: metadata 'kind' is {_short(meta['kind'])}; expected {' or '.join(map(repr, _KINDS))}"
        )
    if meta["dtype"] not in ("float32", "float64"):
        raise CheckpointError(f"checkpoint {path}: dtype {_short(meta['dtype'])} is not float32 or float64")
    return meta


def _architecture_problem(config: TrainingConfig) -> str | None:
    """Why ``config`` declares more than :data:`MAX_LAYERS` layers or :data:`MAX_PARAMETERS` parameters (arithmetic)."""
    dims = config.layer_dims
    if len(dims) - 1 > MAX_LAYERS:
        return (
            f"config.layer_dims declares {_count(len(dims) - 1)} layers; at most MAX_LAYERS = {MAX_LAYERS:,} are loaded"
        )
    affine = config.batchnorm is not None and config.batchnorm.affine
    n = sum(dims[l] * (dims[l - 1] + 1) for l in range(1, len(dims)))
    n += 2 * sum(dims[1:-1]) if affine else 0
    if n > MAX_PARAMETERS:
        return (
            f"config.layer_dims {_short(list(dims))} declares {_count(n)} parameters; at most "
            f"MAX_PARAMETERS = {MAX_PARAMETERS:,} are loaded"
        )
    return None


def _check_architecture(path: Path, config: TrainingConfig) -> None:
    problem = _architecture_problem(config)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: metadata {problem} (checked before reading any array)")


def _shape_probe(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Host arrays of the given shapes holding no bytes at all (a zero-size dtype, zero strides).

    An optimizer's ``init_state`` asked about them answers with arrays of the state's shapes that
    hold no bytes either, however large the declared network.
    """
    nothing = np.zeros((), dtype=np.dtype([]))
    return {k: np.broadcast_to(nothing, shape) for k, shape in shapes.items()}


def _optimizer_shapes(config: TrainingConfig, param_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    try:
        state = config.optimizer.init_state(_shape_probe(param_shapes))
    except Exception:  # noqa: BLE001 - an update rule that computes with its inputs: float probes, bounded
        # by MAX_PARAMETERS (checked before), read-only and zero-strided
        state = config.optimizer.init_state(
            {k: np.broadcast_to(np.zeros((), dtype=np.float64), s) for k, s in param_shapes.items()}
        )
    return {k: tuple(int(d) for d in v.shape) for k, v in state.items()}


@dataclass
class _Layout:
    """What the metadata says the archive holds: every array's key with its dtype and shape."""

    kind: str
    version: int
    dtype: str
    config: TrainingConfig
    groups: dict[str, list[str] | None]
    shapes: dict[str, tuple[int | None, ...]]
    wants: dict[str, np.dtype]
    optional: set[str]


def _names(path: Path, group: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not all(isinstance(n, str) and 0 < len(n) <= 200 and "/" not in n for n in value)
        or len(set(value)) != len(value)
    ):
        raise CheckpointError(
            f"checkpoint {path}: metadata arrays.{group} is {_short(value)}; expected a list of distinct array names"
        )
    return value


def _check_names(path: Path, group: str, names: list[str], expected: dict[str, tuple[int, ...]]) -> None:
    listed = set(names)
    missing = [k for k in expected if k not in listed]
    if missing:
        raise CheckpointError(f"checkpoint {path}: {group} is missing arrays {_clip(', '.join(missing), 200)}")
    extra = [k for k in names if k not in expected]
    if extra:
        raise CheckpointError(
            f"checkpoint {path}: {group} has arrays {_clip(', '.join(extra), 200)} that the architecture does not use"
        )


def _screen_layer_dims(path: Path, raw: Any) -> None:
    """Refuse, before the configuration is even built, a ``layer_dims`` far beyond the limits."""
    dims = raw.get("layer_dims") if isinstance(raw, dict) else None
    if not isinstance(dims, list):
        return
    if len(dims) - 1 > MAX_LAYERS:
        raise CheckpointError(
            f"checkpoint {path}: metadata config.layer_dims declares {_count(len(dims) - 1)} layers; at most "
            f"MAX_LAYERS = {MAX_LAYERS:,} are loaded"
        )
    for i, d in enumerate(dims):
        if type(d) in (int, float) and d > MAX_PARAMETERS:
            raise CheckpointError(
                f"checkpoint {path}: metadata config.layer_dims entry {i} is {_short(d, 40)} units: more "
                f"parameters than MAX_PARAMETERS = {MAX_PARAMETERS:,}, the most that are loaded"
            )


def _layout(path: Path, meta: dict[str, Any]) -> _Layout:
    _screen_layer_dims(path, meta["config"])
    config = config_from_json(meta["config"])
    _check_architecture(path, config)
    if "layer_dims" in meta and meta["layer_dims"] != list(config.layer_dims):
        raise CheckpointError(
            f"checkpoint {path}: metadata layer_dims {_short(meta['layer_dims'])} differs from config.layer_dims "
            f"{_short(list(config.layer_dims))} (corrupted)"
        )
    kind, version, dtype = meta["kind"], meta["format_version"], meta["dtype"]
    spec = meta["arrays"]
    unknown = sorted(set(spec) - set(_GROUPS))
    if unknown:
        raise CheckpointError(f"checkpoint {path}: metadata arrays has unknown groups {_short(unknown)}")
    groups = {g: _names(path, g, spec.get(g)) for g in _GROUPS}
    param_shapes, stat_shapes = state_shapes(config)
    expected = {"parameters": param_shapes, "optimizer_state": _optimizer_shapes(config, param_shapes),
                "bn_state": stat_shapes, "best_parameters": param_shapes, "best_bn_state": stat_shapes}
    if groups["parameters"] is None:
        raise CheckpointError(f"checkpoint {path}: metadata lists no parameters")
    if groups["bn_state"] is None:
        groups["bn_state"] = []
    if groups["optimizer_state"] is None and kind == "checkpoint" and expected["optimizer_state"]:
        raise CheckpointError(
            f"checkpoint {path}: metadata arrays.optimizer_state is null but optimizer "
            f"{config.optimizer.name!r} has a state to resume ({_clip(', '.join(expected['optimizer_state']))})"
        )
    if (groups["best_parameters"] is None) != (groups["best_bn_state"] is None):
        raise CheckpointError(
            f"checkpoint {path}: metadata arrays.best_parameters and arrays.best_bn_state must be listed together"
        )
    want = np.dtype(dtype)
    shapes: dict[str, tuple[int | None, ...]] = {}
    wants: dict[str, np.dtype] = {}
    for group, names in groups.items():
        if names is None:
            continue
        _check_names(path, group, names, expected[group])
        for n in names:
            shapes[f"{group}/{n}"], wants[f"{group}/{n}"] = expected[group][n], want
    has_order = meta["state"].get("has_order", False)
    if not isinstance(has_order, bool):
        raise _field(path, "has_order", f"is {_short(has_order)}; expected true or false")
    if has_order:
        shapes["order"], wants["order"] = (None,), np.dtype(np.int64)
    for key in ("costs", "val_costs"):
        shapes[key], wants[key] = (None, 2), np.dtype(np.float64)
    return _Layout(kind, version, dtype, config, groups, shapes, wants, optional={"costs", "val_costs"})


# --------------------------------------------------------------------------- loading: the training state


def _field(path: Path, name: str, message: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: metadata state.{name} {message}")


def _int_field(path: Path, st: dict[str, Any], name: str, low: int, high: int, what: str) -> int:
    if name not in st:
        raise _field(path, name, "is missing")
    value = st[name]
    if type(value) is not int or not low <= value <= high:
        raise _field(path, name, f"is {_short(value)}; expected an integer from {low} to {_count(high)} ({what})")
    return value


def _number_field(path: Path, st: dict[str, Any], name: str, default: float | None, low: float) -> float | None:
    value = st.get(name, default)
    if value is None and default is None:
        return None
    finite = (type(value) is int and abs(value) < 2**1000) or (type(value) is float and math.isfinite(value))
    if not finite or value < low:
        raise _field(path, name, f"is {_short(value)}; expected a finite number >= {low:g}")
    return float(value)


def _rng_state(path: Path, value: Any) -> dict[str, Any] | None:
    """The shuffling generator's state, as its bit generator accepts it (validated by setting it)."""
    if value is None:
        return None
    bad = "is not a state of the shuffling generator (NumPy's {})".format
    generator = shuffle_generator(0).bit_generator
    if not isinstance(value, dict):
        raise _field(path, "rng_state", f"{bad(type(generator).__name__)}: {_short(value)}")
    try:
        generator.state = value
    except Exception as exc:  # noqa: BLE001 - whatever NumPy refuses in a foreign state is a refusal
        raise _field(path, "rng_state", f"{bad(type(generator).__name__)} ({type(exc).__name__}: "
                                        f"{_clip(str(exc))})") from None
    return generator.state


def _check_order(path: Path, order: np.ndarray) -> None:
    n = order.shape[0]
    if n == 0:
        raise CheckpointError(f"checkpoint {path}: 'order' is empty; expected a permutation of the training samples")
    if int(order.min()) < 0 or int(order.max()) >= n:
        raise CheckpointError(
            f"checkpoint {path}: 'order' holds indices from {int(order.min())} to {int(order.max())}; expected a "
            f"permutation of 0..{n - 1}"
        )
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    if not seen.all():
        raise CheckpointError(f"checkpoint {path}: 'order' repeats indices; expected a permutation of 0..{n - 1}")


def _history(path: Path, key: str, arr: np.ndarray | None, step: int) -> list[tuple[int, float]]:
    """``(step, cost)`` pairs: at most one record per step, steps integral in ``0..step``; costs may be
    non-finite (the record that found a diverging cost)."""
    if arr is None:
        return []
    if arr.shape[0] > step + 1:
        raise CheckpointError(
            f"checkpoint {path}: '{key}' holds {_count(arr.shape[0])} records after {step} steps; expected at most "
            "one per step"
        )
    steps = arr[:, 0]
    if not (np.all(np.isfinite(steps)) and np.all(steps == np.floor(steps)) and np.all((steps >= 0) & (steps <= step))):
        raise CheckpointError(
            f"checkpoint {path}: '{key}' records steps that are not integers from 0 to {step} (the state's step)"
        )
    return [(int(s), float(c)) for s, c in arr]


def _training_state(path: Path, layout: _Layout, st: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every field of ``meta["state"]`` checked for type, range and consistency, with the arrays it refers to."""
    unknown = sorted(map(str, set(st) - _STATE_FIELDS))
    if unknown:
        raise CheckpointError(f"checkpoint {path}: metadata state has unknown fields {_short(unknown)}")
    step = _int_field(path, st, "step", 0, MAX_STEPS, "steps taken")
    epochs = _int_field(path, st, "epochs_completed", 0, step, "epochs completed, at most one per step")
    order = arrays.get("order")
    if order is not None:
        _check_order(path, order)
    limit, what = (
        (order.shape[0], "samples of the current epoch's order") if order is not None
        else (step * layout.config.batch_size, "samples seen so far")
    )
    position = _int_field(path, st, "position", 0, limit, what)
    best_step = _int_field(path, st, "best_step", 0, step, "the step of the best validation check")
    rng_state = _rng_state(path, st.get("rng_state"))
    if order is not None and rng_state is None and layout.kind == "checkpoint":
        raise _field(path, "rng_state", "is missing; a checkpoint with an epoch order needs the generator state "
                                        "that drew it to resume exactly")
    reason = st.get("stopped_reason")
    if reason is not None and reason not in STOPPED_REASONS:
        raise _field(path, "stopped_reason", f"is {_short(reason)}; expected null or one of "
                                             f"{', '.join(map(repr, STOPPED_REASONS))}")
    best = _number_field(path, st, "best_val_cost", None, -math.inf)
    elapsed = _number_field(path, st, "elapsed_seconds", 0.0, 0.0)
    compiling = _number_field(path, st, "compile_seconds", 0.0, 0.0)
    if compiling > elapsed:  # type: ignore[operator]
        raise _field(path, "compile_seconds", f"is {_short(compiling)}; expected at most elapsed_seconds "
                                              f"({_short(elapsed)}), of which it is a part")
    return {
        "step": step, "epochs_completed": epochs, "order": order, "position": position, "rng_state": rng_state,
        "costs": _history(path, "costs", arrays.get("costs"), step),
        "val_costs": _history(path, "val_costs", arrays.get("val_costs"), step),
        "best_val_cost": math.inf if best is None else best, "best_step": best_step, "stopped_reason": reason,
        "elapsed_seconds": elapsed, "compile_seconds": compiling,
    }


def _check_values(path: Path, key: str, arr: np.ndarray) -> str | None:
    """Why array ``key`` cannot be used (non-finite values, a negative variance), or ``None``."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = arr[~finite]
        kinds = sorted({"NaN" if np.isnan(v) else "infinity" for v in bad[:1000].tolist()})
        n_bad = _count(int(bad.size))
        return f"{key} holds {' and '.join(kinds)} ({n_bad} of {_count(arr.size)} values are not finite)"
    if key.rsplit("/", 1)[-1].startswith("running_var") and (arr < 0).any():
        return f"{key} has negative values; a variance is >= 0"
    return None


# --------------------------------------------------------------------------- loading: putting it together


def _decode(path: Path, backend: Backend) -> Checkpoint:
    """:func:`_decode_file`, with running out of memory anywhere in it one :class:`CheckpointError` line."""
    try:
        return _decode_file(path, backend)
    except MemoryError:
        pass  # leave the except block first: the traceback holds whatever filled the memory
    try:
        size = f"{os.stat(path).st_size:,} bytes"
    except OSError:
        size = "size unknown"
    raise CheckpointError(
        f"checkpoint {path} ({size}): ran out of memory while loading it (MemoryError); a crafted file, or "
        "more than this machine or its memory limit can hold"
    )


def _decode_file(path: Path, backend: Backend) -> Checkpoint:
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(4) != _ZIP_MAGIC:
            raise CheckpointError(
                f"checkpoint {path} is not an .npz file ({size} bytes, no zip signature); "
                "expected a file written by backend_mlp.checkpoint"
            )
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                entries = _entries(path, zf, size)
                _check_layout(path, f, zf, entries, size)
                meta = _metadata(path, zf, entries)
                layout = _layout(path, meta)
                unexpected = [k for k in entries if k != _META_KEY and k not in layout.shapes]
                if unexpected:
                    raise CheckpointError(
                        f"checkpoint {path}: the archive holds {_clip(', '.join(map(repr, unexpected)), 200)}, "
                        "which the metadata does not list (refused before reading)"
                    )
                if "order" in layout.shapes and "order" not in entries:
                    raise CheckpointError(
                        f"checkpoint {path} is missing the array 'order' (the current epoch's order)"
                    )
                absent = [k for k in layout.shapes if k not in entries and k not in layout.optional]
                if absent:
                    group = absent[0].split("/")[0]
                    names = [k.split("/", 1)[1] for k in absent if k.startswith(group + "/")]
                    missing = _clip(", ".join(names), 200)
                    raise CheckpointError(f"checkpoint {path}: {group} is missing arrays {missing}")
                arrays = {
                    key: _read_npy(path, zf, entries[key], key, layout.wants[key], shape)
                    for key, shape in layout.shapes.items()
                    if key in entries
                }
        except CheckpointError:
            raise
        except _ARCHIVE_ERRORS as exc:
            raise _corrupted(path, exc) from None
    fields = _training_state(path, layout, meta["state"], arrays)
    trees: dict[str, dict[str, np.ndarray] | None] = {}
    for group in _GROUPS:
        names = layout.groups[group]
        if names is None:
            trees[group] = None
            continue
        trees[group] = {n: arrays[f"{group}/{n}"] for n in names}
        for n, a in trees[group].items():
            problem = _check_values(path, f"{group}/{n}", a)
            if problem is not None:
                raise CheckpointError(f"checkpoint {path}: {problem}; refused (such a state cannot be used)")
    state = TrainingState(
        parameters=tree_to_backend(trees["parameters"], backend),
        bn_state=tree_to_backend(trees["bn_state"] or {}, backend),
        optimizer_state=tree_to_backend(trees["optimizer_state"] or {}, backend),
        best_parameters=tree_to_backend(trees["best_parameters"], backend),
        best_bn_state=tree_to_backend(trees["best_bn_state"], backend),
        **fields,
    )
    return Checkpoint(
        config=layout.config,
        state=state,
        dtype=layout.dtype,
        format_version=layout.version,
        extra=meta.get("extra", {}),
        kind=layout.kind,
        library_version=meta.get("library_version"),
        path=path,
    )


def load_checkpoint(path: str | os.PathLike[str], device: str | Backend = "cpu") -> Checkpoint:
    """Load a resumable checkpoint written by :func:`save_checkpoint`, arrays on ``device``.

    Every problem with the file, however it was made, raises one :class:`CheckpointError` (see the module).
    """
    p = Path(path)
    ckpt = _decode(p, resolve_backend(device))
    if ckpt.kind != "checkpoint":
        raise CheckpointError(
            f"{p} is a {ckpt.kind!r} file (parameters only, written by save_model); training cannot be "
            "resumed from it: use the checkpoint file (checkpoint.npz) of the run, or load it with load_model"
        )
    return ckpt


def load_model(path: str | os.PathLike[str], device: str | Backend = "cpu") -> Checkpoint:
    """Load a model (or a full checkpoint) for inference; use ``.parameters``/``.bn_state``/``.config``.

    Every problem with the file raises one :class:`CheckpointError` (see the module).
    """
    return _decode(Path(path), resolve_backend(device))


def move_state(state: TrainingState, device: str | Backend) -> TrainingState:
    """A copy of ``state`` with every array placed on ``device`` (through host NumPy)."""
    backend = resolve_backend(device)

    out = dataclasses.replace(state, costs=list(state.costs), val_costs=list(state.val_costs))
    out.parameters = tree_to_backend(state.parameters, backend)
    out.bn_state = tree_to_backend(state.bn_state, backend)
    out.optimizer_state = tree_to_backend(state.optimizer_state, backend)
    out.best_parameters = tree_to_backend(state.best_parameters, backend)
    out.best_bn_state = tree_to_backend(state.best_bn_state, backend)
    return out


# --------------------------------------------------------------------------- compatibility


def config_differences(saved: TrainingConfig, requested: TrainingConfig, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """``"field: checkpoint X, requested Y"`` for every field that differs (``ignore`` skipped)."""
    a, b = saved.to_json(), requested.to_json()
    return [
        f"{name}: checkpoint {a[name]!r}, requested {b[name]!r}"
        for name in a
        if name not in ignore and a[name] != b[name]
    ]


def check_compatible(
    checkpoint: Checkpoint, config: TrainingConfig, dtype: str, *, ignore: tuple[str, ...] = ()
) -> None:
    """Raise :class:`CheckpointError` listing every field where ``checkpoint`` differs from the request.

    Compares architecture, every hyperparameter (batch norm included) and the
    dtype; ``ignore`` names config fields allowed to differ (e.g. ``num_iterations``).
    """
    diffs = config_differences(checkpoint.config, config, ignore=ignore)
    requested_dtype = resolve_dtype_name(dtype)
    if checkpoint.dtype != requested_dtype:
        diffs.append(f"dtype: checkpoint {checkpoint.dtype!r}, requested {requested_dtype!r}")
    if diffs:
        where = f" {checkpoint.path}" if checkpoint.path else ""
        raise CheckpointError(
            f"checkpoint{where} does not match the requested run: {'; '.join(diffs)}. "
            "Leave these options out to use the checkpoint's values"
        )


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "check_compatible",
    "config_differences",
    "config_from_json",
    "load_checkpoint",
    "load_model",
    "move_state",
    "save_checkpoint",
    "save_model",
]
