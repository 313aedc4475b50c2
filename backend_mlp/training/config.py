"""The hyperparameters of one training run, validated once, and their JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import validation as V
from ..batchnorm import BatchNormConfig, as_batchnorm_config
from ..errors import InputValidationError
from ..optimizers import SGD, Optimizer, get_optimizer


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one training run (the report's defaults).

    ``optimizer``: an :class:`~backend_mlp.optimizers.Optimizer`, its name, or
    ``None`` for plain SGD; ``learning_rate`` is handed to it at every step.
    """

    layer_dims: tuple[int, ...] = (784, 20, 7, 5, 10)
    learning_rate: float = 0.009
    num_iterations: int = 100_000
    batch_size: int = 256
    l2_lambda: float = 0.0
    batchnorm: BatchNormConfig | None = None
    seed: int = 0
    record_every: int = 100
    early_stopping: bool = True
    min_improvement: float = 1e-4
    optimizer: Optimizer = field(default_factory=SGD)

    def __post_init__(self) -> None:
        # validated and normalised to plain Python values (NumPy scalars accepted), so configs
        # compare, print and serialise alike
        checked = {
            "layer_dims": tuple(V.check_layer_dims(self.layer_dims)),
            "batchnorm": as_batchnorm_config(self.batchnorm),
            "learning_rate": V.check_positive_number("learning_rate", self.learning_rate, "0.009"),
            "num_iterations": V.check_positive_int("num_iterations", self.num_iterations),
            "batch_size": V.check_positive_int("batch_size", self.batch_size),
            "record_every": V.check_positive_int("record_every", self.record_every),
            "l2_lambda": V.check_nonnegative_number("l2_lambda", self.l2_lambda, " (0 disables L2)"),
            "min_improvement": V.check_nonnegative_number("min_improvement", self.min_improvement),
            "seed": V.check_seed("seed", self.seed),
            "early_stopping": V.check_bool("early_stopping", self.early_stopping),
            "optimizer": get_optimizer(self.optimizer),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        """Every field as plain JSON values (batch norm as a dict or ``None``, the optimizer as its ``to_json()``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["layer_dims"] = list(self.layer_dims)
        out["batchnorm"] = None if self.batchnorm is None else dataclasses.asdict(self.batchnorm)
        out["optimizer"] = self.optimizer.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any) -> TrainingConfig:
        """Inverse of :meth:`to_json` (a missing ``optimizer`` means SGD, as in files written before it existed).

        Raises :class:`InputValidationError` for unknown fields or invalid values.
        """
        if not isinstance(data, dict):
            raise InputValidationError(f"config: received {type(data).__name__}; expected an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputValidationError(
                f"config: has fields this backend_mlp does not know: {', '.join(unknown)} "
                "(written by a newer backend_mlp; upgrade)"
            )
        kwargs = dict(data)
        try:
            if kwargs.get("batchnorm") is not None:
                kwargs["batchnorm"] = BatchNormConfig(**kwargs["batchnorm"])
            if "layer_dims" in kwargs:
                kwargs["layer_dims"] = tuple(kwargs["layer_dims"])
            return cls(**kwargs)
        except TypeError as exc:
            raise InputValidationError(f"config: is invalid ({exc})") from None
