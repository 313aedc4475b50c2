"""Exception types raised by backend_mlp.

Every error the library raises on purpose derives from :class:`BackendMLPError`,
and also from the built-in exception a Python user would expect (``ValueError``,
``OSError``, ...), so ``except ValueError`` keeps working.  Messages name the
argument, what was received and what was expected.
"""

from __future__ import annotations


class BackendMLPError(Exception):
    """Base class of every error raised on purpose by backend_mlp."""


class BackendUnavailableError(BackendMLPError, RuntimeError):
    """A requested backend or device cannot be used on this machine (missing library, no GPU)."""


class BackendMismatchError(BackendMLPError, ValueError):
    """Arrays from different array libraries or devices were mixed in one call."""


class InputValidationError(BackendMLPError, ValueError):
    """An argument at the public boundary has the wrong shape, dtype, range or value."""


class DataError(BackendMLPError, OSError):
    """A data file is missing, unreadable, truncated, corrupted or inconsistent."""


class DownloadError(DataError):
    """A data file could not be downloaded from any mirror."""


class ChecksumError(DataError):
    """A data file's SHA-256 does not match the expected value."""


class CheckpointError(BackendMLPError, ValueError):
    """A checkpoint file is missing, corrupted, of a newer format, or does not match the model."""


class TrainingDivergedError(BackendMLPError, FloatingPointError):
    """Training produced a non-finite cost; the best parameters seen so far are kept in ``.result``."""


class UsageError(BackendMLPError, ValueError):
    """A bad command line (unknown option, malformed value): one line on stderr, exit status 2."""


class NotFittedError(BackendMLPError, ValueError, AttributeError):
    """An estimator was used (``predict``, ``score``, ``save``, ...) before ``fit``.

    Like scikit-learn's, it is both a ``ValueError`` and an ``AttributeError``.
    """


class TrainingInterrupted(BackendMLPError, KeyboardInterrupt):
    """Ctrl-C between two training steps; ``.state`` is consistent and can be checkpointed or resumed.

    A ``KeyboardInterrupt``, so code that does not handle it stops as on any Ctrl-C.
    """

    def __init__(self, state: object) -> None:
        super().__init__("training interrupted")
        self.state = state


__all__ = [
    "BackendMLPError",
    "BackendUnavailableError",
    "BackendMismatchError",
    "InputValidationError",
    "DataError",
    "DownloadError",
    "ChecksumError",
    "CheckpointError",
    "TrainingDivergedError",
    "NotFittedError",
    "TrainingInterrupted",
    "UsageError",
]
