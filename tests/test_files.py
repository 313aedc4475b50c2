"""backend_mlp.files: the atomic writer (mode, cleanup on failure) and the strict JSON writer."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from backend_mlp.errors import DataError
from backend_mlp.files import atomic_write_bytes, json_ready, write_json


def test_non_finite_floats_become_null_at_any_depth():
    data = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": np.float32("nan")}}
    assert json_ready(data) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": None}}


def test_numpy_scalars_paths_and_tuples_become_json_values():
    out = json_ready({"i": np.int64(3), "f": np.float64(0.5), "b": np.bool_(True), "p": Path("runs/x"), "t": (1, 2)})
    assert out == {"i": 3, "f": 0.5, "b": True, "p": "runs/x", "t": [1, 2]}
    assert type(out["i"]) is int and type(out["f"]) is float and type(out["b"]) is bool


def test_write_json_writes_strict_json_that_round_trips(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"cost": math.nan, "steps": np.int32(7), "curve": [(100, 0.5)]})
    text = path.read_text()
    assert "NaN" not in text and text.endswith("\n")
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}")) == {
        "cost": None,
        "steps": 7,
        "curve": [[100, 0.5]],
    }


def test_an_unserialisable_value_leaves_the_existing_file_untouched(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError, match="object"):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind


def test_atomic_write_gives_a_plain_files_mode(tmp_path) -> None:
    """Files the library writes (data, metrics, models, figures) are as readable as open() would make them."""
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.bin"
        atomic_write_bytes(target, b"data")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_failure_leaves_target_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.npz"
    atomic_write_bytes(target, b"old")

    def boom(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_atomic_write_into_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "x.json"
    with pytest.raises(DataError, match="no-such-folder") as info:
        atomic_write_bytes(target, b"{}")
    assert isinstance(info.value, OSError)
