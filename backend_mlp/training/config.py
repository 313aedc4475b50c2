"""The hyperparameters of one training run, validated once, and their JSON form."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from .. import validation as V
from ..batchnorm import BatchNormConfig, as_batchnorm_config
from ..errors import InputValidationError
from ..optimizers import OPTIMIZER_KEYWORDS, SGD, Optimizer, get_optimizer, make_optimizer

#: the report's hidden layers, the default network between the data's inputs and classes
REPORT_HIDDEN: tuple[int, ...] = (20, 7, 5)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one training run (the report's defaults).

    ``optimizer``: an :class:`~backend_mlp.optimizers.Optimizer`, its name, or
    ``None`` for plain SGD; ``learning_rate`` is handed to it at every step,
    multiplied by ``lr_decay`` after every epoch (``learning_rate *
    lr_decay ** epochs_completed``; 1 keeps it constant, as in the report).
    Early stopping: every ``record_every`` steps the validation cost is
    checked; a check that is not at least ``min_improvement`` below the best
    earlier one counts as stale, and ``patience`` stale checks in a row stop
    the run (``patience=1`` is the report's rule).
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
    patience: int = 1
    lr_decay: float = 1.0

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
            "patience": V.check_positive_int("patience", self.patience),
            "lr_decay": _check_decay(self.lr_decay),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def learning_rate_at(self, epochs_completed: int) -> float:
        """The learning rate of the steps of epoch ``epochs_completed`` (0 for the first)."""
        return self.learning_rate * self.lr_decay**epochs_completed if self.lr_decay != 1.0 else self.learning_rate

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden layers' sizes: ``layer_dims`` without the input and output sizes."""
        return self.layer_dims[1:-1]

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


def configure(
    config: TrainingConfig | None = None,
    *,
    n_features: int,
    n_classes: int,
    hidden: Any = None,
    optimizer: Any = None,
    **settings: Any,
) -> TrainingConfig:
    """``config`` (default: the report's settings) with keyword ``settings`` applied, sized for the data.

    ``hidden``: the hidden layers' sizes (a sequence of positive ints, ``()``
    for softmax regression); the input and output sizes come from
    ``n_features`` and ``n_classes``.  Without ``config`` or ``hidden`` the
    report's ``(20, 7, 5)`` is used.  ``optimizer`` (a name or an
    :class:`~backend_mlp.optimizers.Optimizer`) and the optimizer keywords
    ``momentum``, ``beta1``, ``beta2``, ``epsilon`` build the update rule
    (keywords alone adjust ``config``'s); any other keyword is a
    :class:`TrainingConfig` field.  Unknown keywords raise :class:`InputValidationError`.
    """
    if config is not None and not isinstance(config, TrainingConfig):
        raise InputValidationError(f"config: received {type(config).__name__}; expected a TrainingConfig or None")
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(settings) - fields - set(OPTIMIZER_KEYWORDS))
    if unknown:
        raise InputValidationError(
            f"received unknown training settings {unknown!r}; expected hidden, optimizer, "
            f"{', '.join(OPTIMIZER_KEYWORDS)} or TrainingConfig fields ({', '.join(sorted(fields))})"
        )
    if "layer_dims" in settings and hidden is not None:
        raise InputValidationError("hidden: received together with layer_dims; expected one of them")
    base = config if config is not None else TrainingConfig()
    if hidden is not None or config is None and "layer_dims" not in settings:
        sizes = REPORT_HIDDEN if hidden is None else _hidden_sizes(hidden)
        settings["layer_dims"] = (n_features, *sizes, n_classes)
    keywords = {k: settings.pop(k) for k in OPTIMIZER_KEYWORDS if k in settings}
    if optimizer is not None or any(v is not None for v in keywords.values()):
        if optimizer is None:  # adjust the configured rule's hyperparameters
            current = base.optimizer.to_json()
            name = current.pop("name")
            keywords = {**{k: v for k, v in current.items() if k in OPTIMIZER_KEYWORDS}, **{
                k: v for k, v in keywords.items() if v is not None}}
            settings["optimizer"] = make_optimizer(name, **keywords)
        else:
            settings["optimizer"] = make_optimizer(optimizer, **keywords)
    return dataclasses.replace(base, **settings) if settings else base


def _hidden_sizes(hidden: Any) -> tuple[int, ...]:
    """``hidden`` as a tuple of positive ints (one int is one layer)."""
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        sizes = tuple(hidden)
    except TypeError:
        sizes = None
    if sizes is None or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in sizes):
        raise InputValidationError(
            f"hidden: received {V.short_repr(hidden)}; expected a sequence of positive integers such as (256, 128), "
            "or () for softmax regression"
        )
    return tuple(int(n) for n in sizes)


def _check_decay(value: Any) -> float:
    """A per-epoch learning-rate factor in ``(0, 1]``."""
    if not V.is_real_number(value) or not (0.0 < value <= 1.0):
        raise InputValidationError(
            f"lr_decay: received {V.short_repr(value)}; expected a number in (0, 1] such as 0.8 (1 keeps the "
            "learning rate constant)"
        )
    return float(value)
