"""What a sweep varies: grid axes (``lr=0.003,0.009``), seeds (``0-9``) and grid files, expanded into settings.

A grid is an ordered mapping ``option -> values`` whose values are the strings a
user would type after ``--option`` of ``backend-mlp train``; this module only
reads and combines them (the command line checks every combination against the
train command's own parser).  Values are separated by commas, or by colons when a
value itself holds commas: ``hidden=20,7,5:256,128`` is two values.  A flag option
takes ``on``/``off``: ``batchnorm=off,on``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError

Grid = dict[str, tuple[str, ...]]

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
#: the most runs one sweep expands to (a typo such as ``--seeds 0-100000`` is an error, not a week of work)
MAX_RUNS = 100_000


def option_name(text: str, where: str) -> str:
    """``batch_size``, ``--batch-size`` or ``batch-size`` -> ``batch-size`` (the train option without dashes)."""
    name = text.strip().removeprefix("--").replace("_", "-").lower()
    if not _NAME.match(name):
        raise UsageError(f"{where}: received the option name {text!r}; expected a train option such as lr or "
                         "batch-size")
    return name


def split_values(text: str) -> tuple[str, ...]:
    """``"0.003,0.009"`` -> two values; ``"20,7,5:256,128"`` -> two values (colons separate when present)."""
    parts = text.split(":") if ":" in text else text.split(",")
    return tuple(p.strip() for p in parts)


def parse_axis(text: str) -> tuple[str, tuple[str, ...]]:
    """One ``--grid KEY=V1,V2,...`` -> ``(key, values)``; values must be non-empty and distinct."""
    where = f"--grid {text}"
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--grid: received {text!r}; expected KEY=V1,V2,... such as lr=0.003,0.009 or "
                         "hidden=20,7,5:256,128")
    return check_axis(option_name(key, where), split_values(values), where)


def check_axis(key: str, values: Sequence[str], where: str) -> tuple[str, tuple[str, ...]]:
    values = tuple(values)
    if not values or any(v == "" for v in values):
        raise UsageError(f"{where}: received an empty value; expected values separated by commas (or by colons "
                         "when a value has commas, as in hidden=20,7,5:256,128)")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{where}: received {', '.join(repeated)} more than once; expected distinct values")
    return key, values


def parse_seeds(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"5"`` -> seeds 0..4 (as ``reproduce --seeds 5``); ``"0-9"`` -> 0..9; ``"0,3,5"`` -> those seeds.

    A grid file may give a list of integers.  Seeds are distinct, non-negative integers.
    """
    where = f"--seeds {text}"
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in text):
            raise UsageError(f"seeds: received {list(text)!r}; expected integers >= 0")
        seeds = tuple(text)
    else:
        try:
            if re.fullmatch(r"\s*\d+\s*", text):
                seeds = tuple(range(int(text)))
            elif re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", text):
                low, high = (int(p) for p in text.split("-"))
                if high < low:
                    raise ValueError
                seeds = tuple(range(low, high + 1))
            else:
                seeds = tuple(int(p) for p in text.split(","))
        except ValueError:
            raise UsageError(f"{where}: expected N (seeds 0..N-1), a range such as 0-9, or a list such as 0,3,5 "
                             "(integers >= 0)") from None
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"{where}: received no seeds; expected N >= 1 (seeds 0..N-1), a range such as 0-9 (3-3 "
                         "for seed 3 alone) or a list such as 0,3,5")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"{where}: received a seed more than once; expected distinct seeds")
    return seeds


def load_grid_file(path: str | os.PathLike[str]) -> tuple[Grid, dict[str, str], tuple[int, ...] | None]:
    """Read a TOML or JSON grid file: ``(grid, fixed settings, seeds or None)``.

    ::

        seeds = "0-4"                 # or [0, 1, 2]; --seeds on the command line wins
        [grid]                        # each key: a list of values, or one string as after --grid KEY=
        lr = [0.003, 0.009, 0.03]
        hidden = ["20,7,5", "256,128"]
        optimizer = "sgd,adam"
        [fixed]                       # settings of every run (as the train options)
        max-steps = 2000
    """
    p = Path(path)
    where = f"--grid-file {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{where}: received a file that is not UTF-8 text; expected TOML or JSON") from None
    data = _parse_document(text, p.suffix.lower(), where)
    unknown = sorted(set(data) - {"grid", "fixed", "seeds"})
    if unknown:
        raise UsageError(f"{where}: received the unknown entries {', '.join(unknown)}; expected grid, fixed and seeds")
    grid_data, fixed_data = data.get("grid", {}), data.get("fixed", {})
    if not isinstance(grid_data, Mapping) or not isinstance(fixed_data, Mapping):
        raise UsageError(f"{where}: grid and fixed must be tables (KEY = values)")
    grid: Grid = {}
    for key, values in grid_data.items():
        name = option_name(str(key), where)
        if isinstance(values, str):
            strings = split_values(values)
        elif isinstance(values, list):
            strings = tuple(_scalar(v, f"{where}: grid.{key}") for v in values)
        else:
            strings = (_scalar(values, f"{where}: grid.{key}"),)
        grid[name] = check_axis(name, strings, f"{where}: grid.{key}")[1]
    fixed = {option_name(str(k), where): _scalar(v, f"{where}: fixed.{k}") for k, v in fixed_data.items()}
    seeds = parse_seeds(data["seeds"]) if "seeds" in data else None
    return grid, fixed, seeds


def _parse_document(text: str, suffix: str, where: str) -> dict[str, Any]:
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON ({exc})") from None
    else:
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            raise UsageError(f"{where}: TOML needs Python 3.11 or later; write the grid as a .json file") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{where}: not valid TOML ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: received a {type(data).__name__}; expected a table with grid, fixed and seeds")
    return data


def _scalar(value: Any, where: str) -> str:
    """A file's value as the string typed after the option (booleans: on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise UsageError(f"{where}: received {value!r}; expected a number, a string or true/false")


def expand(grid: Mapping[str, Sequence[str]], seeds: Sequence[int]) -> list[tuple[dict[str, str], int]]:
    """Every combination of the grid's values, each with every seed: ``[(settings, seed), ...]``.

    Order: the grid's combinations in the order given (the last axis varying fastest), seeds inside.
    """
    n = len(seeds)
    for values in grid.values():
        n *= len(values)
    if n > MAX_RUNS:
        raise UsageError(f"--grid/--seeds: received a sweep of {n:,} runs; expected at most {MAX_RUNS:,}")
    keys = list(grid)
    return [(dict(zip(keys, combo, strict=True)), seed)
            for combo in itertools.product(*(grid[k] for k in keys)) for seed in seeds]
