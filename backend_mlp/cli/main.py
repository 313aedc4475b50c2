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
import sys
from collections.abc import Sequence

from .common import EXIT_OK, EXIT_USAGE, handle_sigterm, interrupted_status, restore_sigterm

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


def _run_subcommand(name: str, argv: Sequence[str], prog: str) -> int:
    try:
        command_main = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}").main
    except KeyboardInterrupt as exc:
        status, word = interrupted_status(exc)
        print(f"{prog}: {word} while starting", file=sys.stderr, flush=True)
        return status
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
