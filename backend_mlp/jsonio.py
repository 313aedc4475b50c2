"""Strict JSON files, written atomically: the one writer for metrics, results and benchmark reports.

Non-finite floats become ``null`` (``NaN``/``Infinity`` are not JSON), NumPy
scalars become Python numbers, tuples become lists and paths become strings.
Anything else that ``json`` cannot write raises ``TypeError`` naming its type,
before the file is touched, so an existing file is never left half-written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import PurePath
from typing import Any

import numpy as np  # host-side I/O only: NumPy scalars in reports

from .idx import atomic_write_bytes


def json_ready(value: Any) -> Any:
    """``value`` with every nested value turned into one that strict JSON can hold (see the module)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as indented strict JSON to ``path`` atomically (with a final newline)."""
    text = json.dumps(json_ready(data), indent=indent, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
