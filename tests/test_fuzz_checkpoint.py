"""Fuzzing the checkpoint and model loader (issue 12) with Hypothesis.

Each example is fed to all three loaders, :func:`~backend_mlp.checkpoint.load_checkpoint`,
:func:`~backend_mlp.checkpoint.load_model` and :meth:`~backend_mlp.MLPClassifier.load`:

* random bytes, with and without a zip signature in front;
* mutations of valid files (a checkpoint with Adam and batch norm, a model, an
  ``MLPClassifier.save`` file and the format-1 fixture ``tests/data/checkpoint_v1.npz``):
  entries removed, duplicated, renamed, swapped, truncated, replaced by random bytes or
  given crafted ``.npy`` headers; bytes flipped inside entries; the zip directory lying
  about sizes, CRCs and compression; the metadata JSON with any field (at any depth)
  replaced by another JSON value or type, deleted or joined by a new one; the whole file
  truncated or with bytes flipped.

The documented errors are the only ones allowed: :class:`~backend_mlp.errors.CheckpointError`
(one line) from every loader, and :class:`~backend_mlp.errors.BackendUnavailableError` from
``MLPClassifier.load`` without ``device=`` when the file names a device this machine lacks.
Anything else (``MemoryError`` included: the loads run under an address-space limit 1 GiB
above the process's size, on Linux) fails the test.  A file that loads must be usable: finite
parameters, and a loaded classifier predicts.

Runs 200 examples per test by default (derandomised, so CI is repeatable).  For a longer,
random run set ``BACKEND_MLP_FUZZ_EXAMPLES``, e.g.::

    BACKEND_MLP_FUZZ_EXAMPLES=20000 python -m pytest -q -s tests/test_fuzz_checkpoint.py

``-s`` shows the count of examples per outcome at the end.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import interrupted_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checkpoint_hostile import Entry, load_npy, npy, npy_header, read_entries, zip_bytes

from backend_mlp import BackendUnavailableError, BatchNormConfig, CheckpointError, MLPClassifier
from backend_mlp.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from backend_mlp.data import Dataset
from backend_mlp.training import TrainingConfig

EXAMPLES = int(os.environ.get("BACKEND_MLP_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize="BACKEND_MLP_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
OUTCOMES: Counter[str] = Counter()
WORK = Path(tempfile.mkdtemp(prefix="backend-mlp-fuzz-"))


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nfuzz outcomes ({EXAMPLES} examples per test): {dict(sorted(OUTCOMES.items()))}")
    shutil.rmtree(WORK, ignore_errors=True)


# --------------------------------------------------------------------------- the valid files mutated


@functools.cache
def base_files() -> dict[str, list[Entry]]:
    """Entries of valid files: a checkpoint (Adam, batch norm, mid-epoch), a model, a classifier, format 1."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 5))
    y = np.argmax(X[:, :3], axis=1)
    train_data = Dataset.from_host(X[:60], y[:60], n_classes=3)
    val_data = Dataset.from_host(X[60:], y[60:], n_classes=3)
    config = TrainingConfig(layer_dims=(5, 4, 3), batch_size=16, num_iterations=100, record_every=5,
                            early_stopping=False, batchnorm=BatchNormConfig(), optimizer="adam")
    state = interrupted_state(train_data, config, 10, val_data)
    folder = WORK / "base"
    folder.mkdir(exist_ok=True)
    paths = {
        "checkpoint": save_checkpoint(folder / "c.npz", config, state, extra={"n_train": 60}),
        "model": save_model(folder / "m.npz", config, state.best_parameters, state.best_bn_state, state=state,
                            extra={"class_names": ["a", "b", "c"]}),
        "classifier": MLPClassifier((3,), batch_size=16, max_steps=20, record_every=5).fit(
            X, np.array(["x", "y", "z"])[y]).save(folder / "e.npz"),
        "format1": Path(__file__).parent / "data" / "checkpoint_v1.npz",
    }
    return {name: read_entries(path) for name, path in paths.items()}


# --------------------------------------------------------------------------- strategies

INTERESTING_INTS = [0, 1, -1, 2, 3, 5, 10, 255, 2**31 - 1, 2**31, 2**32, 2**53, 2**53 + 1, 2**63, 2**64, 10**30,
                    -(2**63), 10**400]
json_scalars = (
    st.none() | st.booleans() | st.sampled_from(INTERESTING_INTS) | st.integers(-1000, 1000)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["", "float64", "float32", "adam", "sgd", "PCG64", "checkpoint", "model", "diverged",
                       "after", "W1", "<i8", "|O", "V99999999", "gpu", "cpu", "MLPClassifier"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
DESCRS = ["<f8", "<f4", ">f8", "<i8", "<i4", "|u1", "|b1", "|O", "<U3", "|V8", "<c16", "<f2", "|S4", "<m8[s]"]
SIZES = [0, 1, 2, 3, 4, 5, 6, 12, 60, 2**31, 2**40, 2**62]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) into a JSON value, the value itself included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate_json(data: st.DataObject, meta: Any) -> Any:
    path = data.draw(st.sampled_from(_paths(meta)), label="json path")
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="json action")
    if not path:
        return data.draw(json_values) if action == "replace" else meta
    *parents, last = path
    node = meta
    for key in parents:
        node = node[key]
    if action == "replace":
        node[last] = data.draw(json_values, label="json value")
    elif action == "delete":
        del node[last]
    elif isinstance(node[last], dict):
        node[last][data.draw(st.text(max_size=8), label="new key")] = data.draw(json_values, label="json value")
    elif isinstance(node[last], list):
        node[last].append(data.draw(json_values, label="json value"))
    return meta


def _with_header(data: st.DataObject, body: bytes) -> bytes:
    """``body`` (a .npy entry) with a crafted header: other shape, dtype or order, the data kept."""
    try:
        arr = load_npy(body)
        payload = arr.tobytes()
        descr, shape, fortran = np.lib.format.dtype_to_descr(arr.dtype), arr.shape, False
    except Exception:  # noqa: BLE001 - an entry mutated earlier: any payload will do
        payload, descr, shape, fortran = body, "<f8", (len(body) // 8,), False
    what = data.draw(st.sampled_from(["shape", "descr", "fortran", "all"]), label="header change")
    if what in ("shape", "all"):
        shape = tuple(data.draw(st.lists(st.sampled_from(SIZES), max_size=3), label="shape"))
    if what in ("descr", "all"):
        descr = data.draw(st.sampled_from(DESCRS), label="descr")
    if what in ("fortran", "all"):
        fortran = data.draw(st.booleans(), label="fortran")
    return npy_header(descr, shape, fortran) + payload


def _mutate_entries(data: st.DataObject, entries: list[Entry]) -> list[Entry]:
    names = [e.name for e in entries] or ["x.npy"]
    action = data.draw(st.sampled_from(["remove", "duplicate", "rename", "swap", "truncate", "random", "flip",
                                        "header", "directory", "add"]), label="entry action")
    if not entries:
        action = "add"
    if action == "add":
        name = data.draw(st.sampled_from([*names, "padding.npy", "order.npy", "costs.npy", "parameters/W9.npy",
                                          "optimizer_state/step.npy", "x", "__metadata__.npy"]), label="added")
        return [*entries, Entry(name, data.draw(st.binary(max_size=200), label="added bytes"))]
    i = data.draw(st.integers(0, len(entries) - 1), label="entry")
    e = entries[i]
    if action == "remove":
        return entries[:i] + entries[i + 1:]
    if action == "duplicate":
        return [*entries, Entry(e.name, e.data)]
    if action == "rename":
        e.name = data.draw(st.sampled_from(names) | st.text(max_size=20), label="new name")
    elif action == "swap":
        j = data.draw(st.integers(0, len(entries) - 1), label="other entry")
        e.data, entries[j].data = entries[j].data, e.data
    elif action == "truncate":
        e.data = e.data[: data.draw(st.integers(0, len(e.data)), label="keep")]
    elif action == "random":
        e.data = data.draw(st.binary(max_size=300), label="entry bytes")
    elif action == "flip" and e.data:
        raw = bytearray(e.data)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1), label="at")] ^= data.draw(st.integers(1, 255), label="xor")
        e.data = bytes(raw)
    elif action == "header":
        e.data = _with_header(data, e.data)
    elif action == "directory":
        field = data.draw(st.sampled_from(["size", "crc", "method"]), label="directory field")
        if field == "size":
            e.size = data.draw(st.sampled_from([0, 1, len(e.data) - 1, len(e.data) + 1, 2**31, 3 * 2**30,
                                                2**32 - 1]), label="size")
            e.size = max(e.size, 0)
        elif field == "crc":
            e.crc = data.draw(st.integers(0, 2**32 - 1), label="crc")
        else:
            e.method = data.draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99]),
                                 label="method")
    return entries


def _mutate_metadata(data: st.DataObject, entries: list[Entry]) -> None:
    for e in entries:
        if e.name == "__metadata__.npy":
            meta = json.loads(load_npy(e.data).tobytes())
            for _ in range(data.draw(st.integers(1, 3), label="json mutations")):
                meta = _mutate_json(data, meta)
            e.data = npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
            return


def _mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    action = data.draw(st.sampled_from(["none", "none", "truncate", "flip", "append"]), label="file action")
    if action == "truncate":
        return raw[: data.draw(st.integers(0, len(raw)), label="file keep")]
    if action == "flip":
        out = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8), label="file flips")):
            out[data.draw(st.integers(0, len(out) - 1), label="file at")] ^= data.draw(st.integers(1, 255))
        return bytes(out)
    if action == "append":
        return raw + data.draw(st.binary(max_size=100), label="appended")
    return raw


# --------------------------------------------------------------------------- the property


@contextlib.contextmanager
def memory_cap(headroom: int = 2**30) -> Iterator[None]:
    """Lower the soft address-space limit to the process's size plus ``headroom`` (Linux), then restore it."""
    if not sys.platform.startswith("linux"):
        yield
        return
    size = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_loaders(raw: bytes) -> None:
    """Every loader either loads ``raw`` into something usable or raises one of the documented errors."""
    path = WORK / "fuzzed.npz"
    path.write_bytes(raw)
    for name, load in (("load_checkpoint", load_checkpoint), ("load_model", load_model),
                       ("MLPClassifier.load", MLPClassifier.load)):
        try:
            with memory_cap():
                loaded = load(path)
        except CheckpointError as exc:
            message = str(exc)
            assert message and "\n" not in message, message
            OUTCOMES[f"{name}: refused"] += 1
            continue
        except BackendUnavailableError:
            assert name == "MLPClassifier.load"
            OUTCOMES[f"{name}: device unavailable"] += 1
            continue
        OUTCOMES[f"{name}: loaded"] += 1
        if isinstance(loaded, MLPClassifier):
            X = np.zeros((2, loaded.n_features_in_))
            assert loaded.predict_proba(X).shape == (2, len(loaded.classes_))
            assert len(loaded.predict(X)) == 2
        else:
            for key, value in loaded.parameters.items():
                assert np.all(np.isfinite(np.asarray(value))), key


@FUZZ
@given(raw=st.binary(max_size=2048), zip_magic=st.booleans())
def test_random_bytes(raw: bytes, zip_magic: bool) -> None:
    check_loaders((b"PK\x03\x04" if zip_magic else b"") + raw)


@FUZZ
@given(data=st.data())
def test_mutated_files(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(sorted(base_files())), label="base file")
    entries = [Entry(e.name, e.data) for e in base_files()[base]]
    if data.draw(st.booleans(), label="mutate metadata"):
        _mutate_metadata(data, entries)
    for _ in range(data.draw(st.integers(0 if entries else 1, 3), label="entry mutations")):
        entries = _mutate_entries(data, entries)
    check_loaders(_mutate_bytes(data, zip_bytes(entries)))


@FUZZ
@given(data=st.data())
def test_mutated_metadata_only(data: st.DataObject) -> None:
    """The metadata is where most checks live: mutate only it, so the arrays stay well-formed."""
    base = data.draw(st.sampled_from(sorted(base_files())), label="base file")
    entries = [Entry(e.name, e.data) for e in base_files()[base]]
    _mutate_metadata(data, entries)
    check_loaders(zip_bytes(entries))


def test_the_base_files_load() -> None:
    """The mutations start from files that load (so refusals come from the mutations)."""
    for name, entries in base_files().items():
        path = WORK / f"{name}.npz"
        path.write_bytes(zip_bytes(entries))
        load_model(path)
        if name in ("checkpoint", "format1"):
            load_checkpoint(path)
        if name == "classifier":
            MLPClassifier.load(path)
