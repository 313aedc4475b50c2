"""One run of a sweep (:class:`SweepRun`) and its identity: a stable id from its configuration and seed.

A :class:`SweepRun` holds :func:`backend_mlp.runs.plan_run`'s settings (section,
``configure`` overrides with the seed, dtype, device, data) and the split seed,
so a sweep run is exactly the run ``backend-mlp train`` makes with those
settings.  Its :attr:`~SweepRun.run_id` is the SHA-256 of the canonical JSON of
what determines its numbers (the full training configuration after
``configure``, dtype, device, data, split seed, extra metrics), so two spellings
of one configuration (``lr=0.003`` and ``lr=3e-3``) are one run, and the id names
the run's folder under the sweep folder.  Runs are deterministic: the same id
gives the same numbers sequentially, on local workers or on a cluster.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..runs import SPLIT_SEED, RunPlan, plan_run

#: hex digits of the SHA-256 kept in a run id (64 bits: collisions are not a practical concern)
ID_LENGTH = 16


@dataclasses.dataclass(frozen=True, eq=False)
class SweepRun:
    """One training run of a sweep.

    ``settings``: what the sweep varies for this run, as the user wrote it
    (``{"lr": "0.003", "hidden": "20,7,5"}``; the table's configuration label);
    ``overrides``: :func:`~backend_mlp.training.config.configure`'s settings,
    ``seed`` included; ``threads``: host BLAS threads of the run (1: the
    report's network is fastest single-threaded); ``extras``: a module-level
    function ``(run, outcome) -> dict`` whose fields are added to
    ``metrics.json`` (computed where the run trains, e.g. the reproduction's
    weight spreads); ``cost``: relative expected work, longest submitted first;
    ``command``: the equivalent ``backend-mlp train`` command, recorded in ``metrics.json``; ``figures``:
    whether the run draws its three PNGs, as ``train`` does (they do not change its numbers); ``compile``:
    the step compiled by the backend's library (``train --compile``).
    """

    settings: Mapping[str, str]
    seed: int
    overrides: Mapping[str, Any]
    section: str | None = None
    dtype: str = "float64"
    device: str = "cpu"
    dataset: str | None = None
    data_dir: str | None = None
    split_seed: int = SPLIT_SEED
    threads: int = 1
    checkpoint_every: int = 1
    extras: Callable[..., dict[str, Any]] | None = None
    cost: float = 1.0
    command: str = ""
    figures: bool = True
    compile: bool = False

    def plan(self, out: Path, *, resume: Path | None = None, overwrite: bool = False) -> RunPlan:
        """The :class:`~backend_mlp.runs.RunPlan` of this run in ``out`` (continuing ``resume`` when given)."""
        plan = plan_run(section=self.section, overrides=dict(self.overrides), dtype=self.dtype, device=self.device,
                        dataset=self.dataset, data_dir=self.data_dir, out=str(out),
                        resume=None if resume is None else str(resume), overwrite=overwrite,
                        split_seed=self.split_seed)
        plan.figures = self.figures
        return plan

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """What determines the run's numbers, as plain JSON (the run id is its hash)."""
        config = plan_run(section=self.section, overrides=dict(self.overrides), dtype=self.dtype,
                          device=self.device, dataset=self.dataset).config
        extras = None if self.extras is None else f"{self.extras.__module__}.{self.extras.__qualname__}"
        return {"config": config.to_json(), "dtype": self.dtype, "device": self.device, "dataset": self.dataset,
                "data_dir": self.data_dir, "split_seed": self.split_seed, "extras": extras, "compile": self.compile}

    @functools.cached_property
    def run_id(self) -> str:
        """``ID_LENGTH`` hex digits of the SHA-256 of :attr:`identity` (canonical JSON)."""
        text = json.dumps(self.identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]

    @property
    def label(self) -> str:
        """The configuration without the seed: ``lr=0.003 hidden=20,7,5`` (``fixed settings`` for none)."""
        return " ".join(f"{k}={v}" for k, v in self.settings.items()) or "fixed settings"

    def describe(self) -> str:
        """``lr=0.003 hidden=20,7,5 seed 3`` for progress lines and messages."""
        return f"{self.label} seed {self.seed}" if self.settings else f"seed {self.seed}"
