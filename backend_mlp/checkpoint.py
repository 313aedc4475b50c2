"""Save and load models and training checkpoints as one ``.npz`` file, without pickle.

File layout (``format_version`` 2): an uncompressed NumPy ``.npz`` archive
holding every array as host NumPy data, under ``"<group>/<name>"`` keys
(groups ``parameters``, ``optimizer_state``, ``bn_state``, ``best_parameters``,
``best_bn_state``; version 1 files, which predate optimizer state, load as SGD),
``order`` (the current epoch's permutation, int64), ``costs``/``val_costs``
(``(k, 2)`` float64: step, cost), and ``__metadata__``: UTF-8 JSON (as uint8)
with the format name and version, library version, architecture, dtype, the
:class:`~backend_mlp.training.TrainingConfig`, the step counters, the shuffling
RNG's ``bit_generator.state`` and a free-form ``extra`` dict.

Files are written atomically (temporary file, fsync, ``os.replace``), read with
``allow_pickle=False``, and every problem raises :class:`CheckpointError`.
Arrays travel through host NumPy, so a file saved from any backend loads on any
other.  ``kind`` is ``"checkpoint"`` (resumable) or ``"model"`` (parameters only).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, resolve_backend, resolve_dtype_name, tree_to_backend, tree_to_numpy
from .errors import BackendMLPError, CheckpointError, DataError
from .files import atomic_write_bytes, read_bytes
from .training import TrainingConfig, TrainingState
from .training.state import state_shapes

FORMAT_NAME = "backend_mlp.checkpoint"
#: the newest format this library reads and the one it writes
FORMAT_VERSION = 2

_META_KEY = "__metadata__"
_GROUPS = ("parameters", "optimizer_state", "bn_state", "best_parameters", "best_bn_state")
_ZIP_MAGIC = b"PK\x03\x04"

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
    except BackendMLPError as exc:
        raise CheckpointError(f"metadata 'config' is invalid: {exc}") from None


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
    arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
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


# --------------------------------------------------------------------------- loading


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    raw = read_bytes(path, "checkpoint file", "a .npz file written by backend_mlp", CheckpointError)
    if not raw.startswith(_ZIP_MAGIC):
        raise CheckpointError(
            f"checkpoint {path} is not an .npz file ({len(raw)} bytes, no zip signature); "
            "expected a file written by backend_mlp.checkpoint"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted ({type(exc).__name__}: {exc}); "
            "expected a complete .npz file written by backend_mlp.checkpoint"
        ) from None


def _read_metadata(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    raw = arrays.get(_META_KEY)
    if raw is None:
        raise CheckpointError(
            f"checkpoint {path} has no '{_META_KEY}' entry; it is an .npz file but not one "
            "written by backend_mlp.checkpoint"
        )
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: metadata is corrupted ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"checkpoint {path}: metadata does not name the format {FORMAT_NAME!r}; "
            "not a file written by backend_mlp.checkpoint"
        )
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"checkpoint {path}: format_version {version!r} is invalid; expected an integer >= 1")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version}, written by a newer backend_mlp "
            f"({meta.get('library_version', 'unknown version')}); this backend_mlp "
            f"({_library_version()}) reads format_version <= {FORMAT_VERSION}: upgrade backend_mlp"
        )
    missing = [k for k in ("kind", "dtype", "config", "arrays", "state") if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path}: metadata is missing {', '.join(missing)}")
    if not isinstance(meta["arrays"], dict) or not isinstance(meta["state"], dict):
        raise CheckpointError(f"checkpoint {path}: metadata 'arrays'/'state' are not objects (corrupted)")
    return meta


def _check_tree(path: Path, group: str, tree: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    missing = [k for k in expected if k not in tree]
    if missing:
        raise CheckpointError(f"checkpoint {path}: {group} is missing arrays {', '.join(missing)}")
    extra = [k for k in tree if k not in expected]
    if extra:
        raise CheckpointError(
            f"checkpoint {path}: {group} has arrays {', '.join(extra)} that the architecture does not use"
        )
    for k, shape in expected.items():
        if tree[k].shape != shape:
            raise CheckpointError(
                f"checkpoint {path}: {group}/{k} has shape {tree[k].shape}; the architecture needs {shape}"
            )


def _pairs(arr: np.ndarray | None) -> list[tuple[int, float]]:
    if arr is None:
        return []
    return [(int(s), float(c)) for s, c in np.asarray(arr, dtype=np.float64).reshape(-1, 2)]


def _decode(path: Path, backend: Backend) -> Checkpoint:
    arrays = _read_archive(path)
    meta = _read_metadata(path, arrays)
    config = config_from_json(meta["config"])
    try:
        dtype = resolve_dtype_name(meta["dtype"])
    except BackendMLPError:
        raise CheckpointError(f"checkpoint {path}: dtype {meta['dtype']!r} is not float32 or float64") from None
    param_shapes, stat_shapes = state_shapes(config)
    optimizer_shapes = {
        k: tuple(v.shape) for k, v in config.optimizer.init_state(_shape_probe(param_shapes)).items()
    }
    shapes = {"parameters": param_shapes, "optimizer_state": optimizer_shapes, "bn_state": stat_shapes}
    trees: dict[str, dict[str, np.ndarray] | None] = {}
    for group in _GROUPS:
        names = meta["arrays"].get(group)
        if names is None:
            trees[group] = None
            continue
        absent = [n for n in names if f"{group}/{n}" not in arrays]
        if absent:
            raise CheckpointError(f"checkpoint {path}: {group} is missing arrays {', '.join(absent)}")
        tree = {n: arrays[f"{group}/{n}"] for n in names}
        _check_tree(path, group, tree, shapes[group.removeprefix("best_")])
        for n, a in tree.items():
            if a.dtype.name != dtype:
                raise CheckpointError(f"checkpoint {path}: {group}/{n} is {a.dtype.name}; metadata says {dtype}")
        trees[group] = tree
    if trees["parameters"] is None:
        raise CheckpointError(f"checkpoint {path}: metadata lists no parameters")
    st = meta["state"]
    order = None
    if st.get("has_order"):
        if "order" not in arrays:
            raise CheckpointError(f"checkpoint {path} is missing the array 'order' (the current epoch's order)")
        order = arrays["order"].astype(np.int64, copy=False)
    try:
        best = st.get("best_val_cost")
        state = TrainingState(
            parameters=tree_to_backend(trees["parameters"], backend),
            bn_state=tree_to_backend(trees["bn_state"] or {}, backend),
            optimizer_state=tree_to_backend(trees["optimizer_state"] or {}, backend),
            step=int(st["step"]),
            epochs_completed=int(st["epochs_completed"]),
            order=order,
            position=int(st["position"]),
            rng_state=st.get("rng_state"),
            costs=_pairs(arrays.get("costs")),
            val_costs=_pairs(arrays.get("val_costs")),
            best_val_cost=math.inf if best is None else float(best),
            best_step=int(st["best_step"]),
            best_parameters=tree_to_backend(trees["best_parameters"], backend),
            best_bn_state=tree_to_backend(trees["best_bn_state"], backend),
            stopped_reason=st.get("stopped_reason"),
            elapsed_seconds=float(st.get("elapsed_seconds", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: metadata 'state' is incomplete or invalid ({exc!r})") from None
    extra = meta.get("extra") or {}
    return Checkpoint(
        config=config,
        state=state,
        dtype=dtype,
        format_version=int(meta["format_version"]),
        extra=extra if isinstance(extra, dict) else {},
        kind=str(meta["kind"]),
        library_version=meta.get("library_version"),
        path=path,
    )


def _shape_probe(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Zero-stride host arrays of the given shapes (no memory), to ask an optimizer what its state holds."""
    return {k: np.broadcast_to(np.zeros((), dtype=np.float64), shape) for k, shape in shapes.items()}


def load_checkpoint(path: str | os.PathLike[str], device: str | Backend = "cpu") -> Checkpoint:
    """Load a resumable checkpoint written by :func:`save_checkpoint`, arrays on ``device``."""
    p = Path(path)
    ckpt = _decode(p, resolve_backend(device))
    if ckpt.kind != "checkpoint":
        raise CheckpointError(
            f"{p} is a {ckpt.kind!r} file (parameters only, written by save_model); training cannot be "
            "resumed from it: use the checkpoint file (checkpoint.npz) of the run, or load it with load_model"
        )
    return ckpt


def load_model(path: str | os.PathLike[str], device: str | Backend = "cpu") -> Checkpoint:
    """Load a model (or a full checkpoint) for inference; use ``.parameters``/``.bn_state``/``.config``."""
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
