"""What the reproduction trains: the report's sections and the batch-norm ablation, one run per seed.

Every seed ``s`` trains each :class:`RunSpec` with ``seed=s`` on the split
drawn with ``split_seed=s``: :func:`sweep_run` makes it a sweep run (the
:class:`backend_mlp.runs.Run` that ``backend-mlp train --section ...`` makes, with
:func:`reproduction_metrics` added to its ``metrics.json``), and
:func:`record_of` turns its metrics into the reproduction's record.  The ablation trains Section 5's network with
parts of the batch norm removed: (b) no learnable scale/shift, (c) also no
backward pass through the batch statistics; (d) evaluates (c) with the
statistics of the evaluated set instead of running averages (no training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..batchnorm import BatchNormConfig
from ..data import MnistSplits
from ..experiment import SECTIONS, SUMMARY_KEYS
from ..network import L_model_forward, _accuracy
from ..training import TrainingConfig

if TYPE_CHECKING:
    from ..runs import Run, RunOutcome
    from ..sweep import SweepRun

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
    """One training run per seed: ``key`` names it in results.json; ``config`` is Section ``section``'s
    with the changes the run makes; ``expected_steps``: about how long it trains (longest runs start first)."""

    key: str
    label: str
    config: TrainingConfig
    section: str = "4"
    expected_steps: int = 10_000

    def overrides(self, seed: int) -> dict[str, Any]:
        """``configure``'s settings that turn Section ``section`` into this run with ``seed``."""
        base = SECTIONS[self.section]
        changed = {f.name: getattr(self.config, f.name) for f in fields(TrainingConfig)
                   if getattr(self.config, f.name) != getattr(base, f.name)}
        return {**changed, "seed": seed}


#: about how many steps the report's runs take before early stopping (docs/report: batch norm stops sooner)
_EXPECTED_STEPS = {"4": 10_000, "5": 5_000, "6": 11_000}


def run_specs(sections: Sequence[str], ablation: bool, max_steps: int | None) -> list[RunSpec]:
    """The runs done for every seed, in order: the sections, then the ablation variants not already run."""
    specs = [RunSpec(s, SECTION_TITLES[s], SECTIONS[s], s, _EXPECTED_STEPS[s]) for s in sections]
    if ablation:
        for v, (label, bn) in ABLATION_VARIANTS.items():
            if v == "a" and "5" in sections:
                continue  # (a) is Section 5 itself
            specs.append(RunSpec(f"bn-{v}", label, replace(SECTIONS["5"], batchnorm=bn), "5",
                                 _EXPECTED_STEPS["5"]))
    if max_steps is not None:
        specs = [replace(s, config=replace(s.config, num_iterations=max_steps)) for s in specs]
    return specs


def ablation_key(variant: str, sections: Sequence[str]) -> str:
    """results key of ablation variant ``a``/``b``/``c`` (``a`` is Section 5 when it was run)."""
    return "5" if variant == "a" and "5" in sections else f"bn-{variant}"


def batch_statistics_accuracy(parameters: dict[str, Any], bn: BatchNormConfig, splits: MnistSplits,
                              ) -> dict[str, float]:
    """Validation and test accuracy with batch norm normalised by the statistics of the whole evaluated set
    (``L_model_forward(..., training=True)`` without running statistics): the ablation's variant (d)."""
    xp = splits.backend.xp
    out = {}
    for name, data in (("val", splits.val), ("test", splits.test)):
        AL, _ = L_model_forward(data.X, parameters, bn, training=True, bn_state=None)
        out[f"{name}_accuracy_batch_statistics"] = _accuracy(xp, xp.argmax(AL, axis=0), xp.argmax(data.Y, axis=0))
    return out


# ----------------------------------------------------------------------------- the reproduction as a sweep


def sweep_run(spec: RunSpec, seed: int, *, dtype: str, device: str, data_dir: str | None,
              threads: int) -> SweepRun:
    """Run ``spec`` with ``seed`` on the split drawn with ``split_seed=seed``, as a sweep run on MNIST."""
    from ..sweep import SweepRun

    return SweepRun(settings={"key": spec.key}, seed=seed, overrides=spec.overrides(seed), section=spec.section,
                    dtype=dtype, device=device, dataset="mnist", data_dir=data_dir, split_seed=seed,
                    threads=threads, checkpoint_every=10, extras=reproduction_metrics, figures=False,
                    cost=min(spec.expected_steps, spec.config.num_iterations)
                    * (1.3 if spec.config.batchnorm is not None else 1.0))


def reproduction_metrics(run: Run, outcome: RunOutcome) -> dict[str, Any]:
    """What the reproduction adds to a run's metrics.json: each layer's weight std (of the returned,
    best-checked parameters) and, with batch norm, the accuracies with the evaluated set's own statistics."""
    from ..checkpoint import load_model

    model = load_model(run.model_path, device=run.backend)
    params, config = model.parameters, model.config
    to_numpy = run.backend.to_numpy
    L = len(config.layer_dims) - 1
    weights = [np.asarray(to_numpy(params[f"W{l}"]), dtype=np.float64) for l in range(1, L + 1)]
    out: dict[str, Any] = {"weight_std": [float(np.std(w)) for w in weights]}
    if config.batchnorm is not None:
        assert run.splits is not None
        out.update(batch_statistics_accuracy(params, config.batchnorm, run.splits))
    return out


def record_of(spec: RunSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    """results.json's record of a finished run: ``key``, ``label``, :func:`~backend_mlp.experiment.summarize`'s
    fields, the weight stds and batch-statistics accuracies, and the run's id."""
    record: dict[str, Any] = {"key": spec.key, "label": spec.label, **{k: metrics[k] for k in SUMMARY_KEYS}}
    for name in ("weight_std", "val_accuracy_batch_statistics", "test_accuracy_batch_statistics"):
        if name in metrics:
            record[name] = metrics[name]
    record["run_id"] = metrics["sweep"]["run_id"]
    return record
