"""Command-line entry points: ``backend-mlp <command>`` = :func:`backend_mlp.cli.main.main`.

Commands: ``train`` (:mod:`.train`), ``reproduce`` (:mod:`.reproduce`), ``bench``
(:mod:`.bench`), ``predict`` (:mod:`.predict`); each module has its own parser and a
``main(argv)`` returning the exit status.  ``backend-mlp-train`` is kept as an alias
of ``backend-mlp train``.
"""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help: ``(default: X)``, ``(default: off)`` for flags.

    Help that already mentions a default, positional arguments and options whose
    default is ``None`` (their help says what happens without them) are left alone.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            not action.option_strings
            or action.default is argparse.SUPPRESS
            or action.default is None
            or "default" in text
        ):
            return text
        if action.nargs == 0 and isinstance(action.default, bool):  # store_true / BooleanOptionalAction
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"
