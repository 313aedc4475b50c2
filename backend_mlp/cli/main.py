"""``backend-mlp``: one command for everything, ``backend-mlp <command> [options]`` (also ``python -m backend_mlp``).

Each command is a module of this package with its own parser and a
``main(argv, *, prog=...)`` returning the exit status; this dispatcher only picks
the module and passes the rest of the command line and the name to use in
messages (``backend-mlp train: error: ...``).  To add a command, add one entry
to :data:`COMMANDS`.  Exit status: the command's, or 2 for an unknown command
(one line on stderr), 0 for ``--help`` and ``--version``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, handle_sigterm, restore_sigterm

PROG = "backend-mlp"

#: command -> (module of backend_mlp.cli, one line for ``--help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train one network, write metrics.json, figures, model.npz and a resumable checkpoint"),
    "reproduce": ("reproduce", "reproduce the report's Sections 4-6 over several seeds and write REPORT.md"),
    "sweep": ("sweep", "run a grid of train settings x seeds on all cores or a Dask cluster; one table"),
    "bench": ("bench", "time backend_mlp against PyTorch on the identical MLP workload"),
    "predict": ("predict", "label IDX images or a folder of PNGs with a saved model; write CSV"),
}


def _version() -> str:
    from .. import __version__

    return __version__


def help_text() -> str:
    """What ``backend-mlp --help`` prints."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"usage: {PROG} <command> [options]",
        f"       {PROG} <command> --help    (the options of one command, with their defaults)",
        "",
        "A small, exact multilayer perceptron written once against the Python array API "
        "(NumPy, CuPy, PyTorch, ...).",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this help and exit",
        "  --version   show the version and exit",
    ]
    return "\n".join(lines) + "\n"


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _unknown(word: str) -> int:
    close = difflib.get_close_matches(word, list(COMMANDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    what = "option" if word.startswith("-") else "command"
    return _usage_error(
        f"unknown {what} {word!r}{hint}; expected a command: {', '.join(COMMANDS)} ({PROG} --help lists them)"
    )


def run_subcommand(name: str, argv: Sequence[str], prog: str | None = None) -> int:
    """Run ``backend-mlp <name> argv``: the command module's ``main``, named ``prog`` (default
    ``backend-mlp <name>``) in messages.  Ctrl-C or SIGTERM while the command's modules load
    (NumPy, matplotlib, ...) is one line too."""
    prog = prog or f"{PROG} {name}"
    previous = handle_sigterm()
    try:
        return _run_subcommand(name, argv, prog)
    finally:
        restore_sigterm(previous)


def _import_command(name: str, prog: str) -> Any:
    """The command module's ``main``; Ctrl-C or SIGTERM while it loads ends the process at once, in one line.

    The signal is handled by exiting rather than by an exception: a ``KeyboardInterrupt`` raised inside
    the import machinery can be swallowed (in a weakref callback, so the command then runs to the end)
    or leave the interpreter to die by the signal (exit -2) after the line was printed.  Nothing is
    saved yet while modules load, so there is nothing to unwind.
    """
    module = f"{__package__}.{COMMANDS[name][0]}"
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        return importlib.import_module(module).main

    def stop(signum: int, frame: Any) -> None:
        terminated = signum == signal.SIGTERM
        word, status = ("terminated", EXIT_TERMINATED) if terminated else ("interrupted", EXIT_INTERRUPTED)
        os.write(2, f"{prog}: {word} while starting\n".encode())
        os._exit(status)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return importlib.import_module(module).main
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_subcommand(name: str, argv: Sequence[str], prog: str) -> int:
    command_main = _import_command(name, prog)
    try:
        if "prog" in inspect.signature(command_main).parameters:
            return int(command_main(list(argv), prog=prog))
        return int(command_main(list(argv)))
    except SystemExit as exc:  # --help: argparse exits after printing
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)


def train_main() -> int:
    """Entry point of the ``backend-mlp-train`` alias: ``backend-mlp train``."""
    return run_subcommand("train", sys.argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``backend-mlp``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write(help_text())
        return _usage_error(f"no command given; expected one of {', '.join(COMMANDS)}")
    first, rest = args[0], args[1:]
    if first in ("-h", "--help"):
        sys.stdout.write(help_text())
        return EXIT_OK
    if first in ("-V", "--version"):
        print(f"{PROG} {_version()}")
        return EXIT_OK
    if first == "help":  # backend-mlp help [command]
        if not rest:
            sys.stdout.write(help_text())
            return EXIT_OK
        if rest[0] not in COMMANDS:
            return _unknown(rest[0])
        return run_subcommand(rest[0], ["--help"])
    if first not in COMMANDS:
        return _unknown(first)
    return run_subcommand(first, rest)


if __name__ == "__main__":
    sys.exit(main())
