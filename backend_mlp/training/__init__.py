"""Training: the configuration, the state a run carries, the pure step, the loop and evaluation.

``config`` (:class:`TrainingConfig`) -> ``state`` (:class:`TrainingState`,
:func:`new_training_state`) -> ``step`` (:func:`train_step`, pure) ->
``loop`` (:func:`train`: epochs, early stopping, checkpoints, Ctrl-C) ->
``evaluation`` (inference-mode cost and accuracy); ``layer_model`` is the
report's ``L_layer_model`` on top of :func:`train`.
"""

from __future__ import annotations

from ..errors import TrainingInterrupted
from .config import TrainingConfig
from .evaluation import evaluate_accuracy, evaluate_cost
from .layer_model import L_layer_model
from .loop import batch_indices, shuffle_generator, train
from .state import ProgressEvent, TrainingResult, TrainingState, new_training_state
from .step import StepOutput, train_step

__all__ = [
    "L_layer_model",
    "ProgressEvent",
    "StepOutput",
    "TrainingConfig",
    "TrainingInterrupted",
    "TrainingResult",
    "TrainingState",
    "batch_indices",
    "evaluate_accuracy",
    "evaluate_cost",
    "new_training_state",
    "shuffle_generator",
    "train",
    "train_step",
]
