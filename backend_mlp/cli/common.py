"""What every command shares: the argument parser, exit statuses and the one-line error report.

Exit statuses: 0 done, 1 a failure (a :class:`~backend_mlp.errors.BackendMLPError`
such as a backend this machine cannot run, or an ``OSError``), 2 a usage problem
(:class:`~backend_mlp.errors.UsageError`, an invalid value), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM, handled like Ctrl-C once :func:`handle_sigterm` is called).  Every
error is one line ``<prog>: error: <message>`` on stderr; ``--debug`` prints
the traceback first, and an unexpected exception is reported as an internal error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from ..errors import BackendMLPError, InputValidationError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt`` so the same clean-up runs (exit status 143)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def handle_sigterm() -> object:
    """From now on SIGTERM raises :class:`Terminated` (main thread only; elsewhere nothing changes).

    Returns the previous handler, for :func:`restore_sigterm`."""
    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, _raise_terminated)
    return None


def restore_sigterm(previous: object) -> None:
    """Put back the SIGTERM handler :func:`handle_sigterm` replaced."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def interrupted_status(exc: BaseException) -> tuple[int, str]:
    """``(exit status, word)`` of an interruption: 143 "terminated" for SIGTERM, else 130 "interrupted"."""
    return (EXIT_TERMINATED, "terminated") if isinstance(exc, Terminated) else (EXIT_INTERRUPTED, "interrupted")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`UsageError` instead of printing usage and exiting; has ``--debug``."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="print the traceback of an error")

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(str(text).split())


def run_command(
    prog: str, body: Callable[[], int], argv: Sequence[str], *, interrupted: str = "interrupted"
) -> int:
    """Run ``body`` and map what it raises to one line on stderr and an exit status (see the module)."""
    debug = "--debug" in argv

    def fail(exc: BaseException, status: int, prefix: str = "") -> int:
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        print(f"{prog}: error: {prefix}{one_line(exc) or type(exc).__name__}", file=sys.stderr, flush=True)
        return status

    try:
        return body()
    except (UsageError, InputValidationError) as exc:
        return fail(exc, EXIT_USAGE)
    except (BackendMLPError, OSError) as exc:
        return fail(exc, EXIT_ERROR)
    except KeyboardInterrupt as exc:
        status, word = interrupted_status(exc)
        print(f"{prog}: {interrupted.replace('interrupted', word)}", file=sys.stderr, flush=True)
        return status
    except Exception as exc:  # a bug: still one line unless --debug
        hint = "" if debug else " (run with --debug for the traceback)"
        return fail(exc, EXIT_ERROR, prefix=f"internal error{hint}: {type(exc).__name__}: ")
