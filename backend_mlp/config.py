"""Small configuration records shared by the model, training loop and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputValidationError

BATCHNORM_POSITIONS = ("after", "before")


@dataclass(frozen=True)
class BatchNormConfig:
    """How batch normalisation is applied to every hidden layer.

    ``position``: ``"after"`` the ReLU (the report's placement) or ``"before"`` it.
    ``affine``: learnable scale ``gamma`` and shift ``beta`` (``False`` gives the
    report's plain normalisation).  ``backprop_statistics``: differentiate
    through the batch mean/variance (``False`` reproduces a common mistake and
    exists for ablations only).  ``momentum``/``eps`` as in PyTorch.
    """

    position: str = "after"
    affine: bool = True
    momentum: float = 0.1
    eps: float = 1e-5
    backprop_statistics: bool = True

    def __post_init__(self) -> None:
        if self.position not in BATCHNORM_POSITIONS:
            raise InputValidationError(
                f"batchnorm position: received {self.position!r}; expected 'after' or 'before'"
            )
        if not 0.0 <= self.momentum <= 1.0:
            raise InputValidationError(
                f"batchnorm momentum: received {self.momentum!r}; expected a number in [0, 1]"
            )
        if not self.eps > 0:
            raise InputValidationError(f"batchnorm eps: received {self.eps!r}; expected a positive number")


def as_batchnorm_config(use_batchnorm: bool | BatchNormConfig | None) -> BatchNormConfig | None:
    """``False``/``None`` -> ``None``; ``True`` -> defaults; a config is returned as is."""
    if isinstance(use_batchnorm, BatchNormConfig):
        return use_batchnorm
    if use_batchnorm is None or use_batchnorm is False:
        return None
    if use_batchnorm is True:
        return BatchNormConfig()
    raise InputValidationError(
        f"use_batchnorm: received {use_batchnorm!r}; expected True, False or a BatchNormConfig"
    )
