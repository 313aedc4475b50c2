"""What the reproduction trains: the report's sections and the batch-norm ablation, one run per seed.

Every seed ``s`` trains each :class:`RunSpec` with ``seed=s`` on the split
drawn with ``split_seed=s``.  The ablation trains Section 5's network with
parts of the batch norm removed: (b) no learnable scale/shift, (c) also no
backward pass through the batch statistics; (d) evaluates (c) with the
statistics of the evaluated set instead of running averages (no training).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..batchnorm import BatchNormConfig
from ..data import MnistSplits
from ..errors import TrainingDivergedError
from ..experiment import SECTIONS, run_experiment, summarize
from ..network import L_model_forward, _accuracy
from ..training import TrainingConfig, TrainingResult

SECTION_TITLES: dict[str, str] = {
    "4": "Section 4: plain network",
    "5": "Section 5: batch normalisation",
    "6": "Section 6: L2 regularisation (λ = 1)",
}

#: Batch-norm ablation variants trained in addition to Section 5 (key -> (label, config)).
ABLATION_VARIANTS: dict[str, tuple[str, BatchNormConfig]] = {
    "a": ("(a) ours: learnable γ/β, exact backward through the batch statistics, running statistics",
          BatchNormConfig()),
    "b": ("(b) no learnable scale/shift (affine=False)", BatchNormConfig(affine=False)),
    "c": ("(c) no scale/shift and no backward through the normalisation "
          "(affine=False, backprop_statistics=False)", BatchNormConfig(affine=False, backprop_statistics=False)),
}
ABLATION_D_LABEL = "(d) = (c) evaluated with the batch statistics of the evaluated set (no running statistics)"


@dataclass(frozen=True)
class RunSpec:
    """One training run per seed: ``key`` names it in results.json."""

    key: str
    label: str
    config: TrainingConfig


def run_specs(sections: Sequence[str], ablation: bool, max_steps: int | None) -> list[RunSpec]:
    """The runs done for every seed, in order: the sections, then the ablation variants not already run."""
    specs = [RunSpec(s, SECTION_TITLES[s], SECTIONS[s]) for s in sections]
    if ablation:
        for v, (label, bn) in ABLATION_VARIANTS.items():
            if v == "a" and "5" in sections:
                continue  # (a) is Section 5 itself
            specs.append(RunSpec(f"bn-{v}", label, replace(SECTIONS["5"], batchnorm=bn)))
    if max_steps is not None:
        specs = [replace(s, config=replace(s.config, num_iterations=max_steps)) for s in specs]
    return specs


def ablation_key(variant: str, sections: Sequence[str]) -> str:
    """results key of ablation variant ``a``/``b``/``c`` (``a`` is Section 5 when it was run)."""
    return "5" if variant == "a" and "5" in sections else f"bn-{variant}"


def train_one(spec: RunSpec, splits: MnistSplits, seed: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Train ``spec`` with ``seed`` on ``splits``; returns ``(record, weights per layer on the host)``.

    A diverged run is recorded with the best parameters it reached, not raised.
    """
    config = replace(spec.config, seed=seed)
    start = time.perf_counter()
    try:
        result, metrics = run_experiment(splits, config)
    except TrainingDivergedError as err:
        result = err.result  # type: ignore[attr-defined]
        metrics = summarize(result, splits, time.perf_counter() - start)
    L = len(config.layer_dims) - 1
    to_numpy = splits.backend.to_numpy
    weights = [np.asarray(to_numpy(result.parameters[f"W{l}"]), dtype=np.float64) for l in range(1, L + 1)]
    record: dict[str, Any] = {"key": spec.key, "label": spec.label, **metrics}
    record["weight_std"] = [float(np.std(w)) for w in weights]
    if config.batchnorm is not None:
        record.update(batch_statistics_accuracy(result, splits))
    return record, weights


def batch_statistics_accuracy(result: TrainingResult, splits: MnistSplits) -> dict[str, float]:
    """Validation and test accuracy with batch norm normalised by the statistics of the whole evaluated set."""
    bn = result.config.batchnorm
    xp = splits.backend.xp
    out = {}
    for name, data in (("val", splits.val), ("test", splits.test)):
        AL, _ = L_model_forward(data.X, result.parameters, bn, training=True, bn_state=None)
        out[f"{name}_accuracy_batch_statistics"] = _accuracy(xp, xp.argmax(AL, axis=0), xp.argmax(data.Y, axis=0))
    return out
