"""Progress output of the commands, readable in an 80-column terminal.

Conventions: every line fits :data:`WIDTH` columns.  A training bar counts
steps against the step cap ``num_iterations``; early stopping usually ends a
run sooner, so the bar reads ``<steps>/<cap> max steps`` and its time left is
the time to reach that cap (an upper bound).  On a terminal :class:`Progress`
draws one tqdm bar; elsewhere (a file, a pipe) it prints one plain line per
record step; ``quiet`` prints nothing.  Closing it, also after Ctrl-C, ends the
bar's line so the next message starts at column 0.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import Any, TextIO

from ..training import ProgressEvent

__all__ = ["BAR_FORMAT", "WIDTH", "Progress", "count", "fit", "format_duration"]

#: Columns every progress line fits in.
WIDTH = 80
#: The training bar (``{desc}``: the step counts): ``9,800/30k max steps |###   | 00:41<01:10, ep 52.3 train ...``.
BAR_FORMAT = "{desc} max steps |{bar}| {elapsed}<{remaining}{postfix}"


def fit(text: str, width: int = WIDTH) -> str:
    """``text`` wrapped at spaces into lines of at most ``width`` columns (continuations indented by two).

    Words are never broken, so a path longer than a line stays whole on its own line.
    """
    return textwrap.fill(text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``41 s``, ``3.2 min`` or ``1.5 h``."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def count(n: int) -> str:
    """A step count in at most six columns: ``9,800``, ``12.3k``, ``100k``, ``2.5M``."""
    if n < 10_000:
        return f"{n:,}"
    return f"{n / 1000:.3g}k" if n < 999_500 else f"{n / 1e6:.3g}M"


def _isatty(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class Progress:
    """Training progress: a tqdm bar on a terminal, one plain line per record step otherwise, nothing when quiet.

    ``total``: the run's step cap (``num_iterations``); ``initial``: the step it
    starts from (a resumed run).  Call it with each
    :class:`~backend_mlp.training.ProgressEvent`, then :meth:`close` (or use it
    as a context manager).  ``file`` defaults to ``sys.stdout``; ``ncols``
    (default: the terminal's width, at most :data:`WIDTH`) is the bar's width.
    """

    def __init__(
        self, quiet: bool, total: int, initial: int = 0, *, file: TextIO | None = None, ncols: int | None = None
    ) -> None:
        self.file = sys.stdout if file is None else file
        self.total = total
        self.bar: Any = None
        self.lines = not quiet
        if not quiet and _isatty(self.file):
            from tqdm import tqdm

            width = ncols or min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
            self.bar = tqdm(
                total=total, initial=initial, file=self.file, ncols=width, dynamic_ncols=False,
                bar_format=BAR_FORMAT, desc=self._counts(initial), unit="step", mininterval=0, miniters=1,
            )
            self.lines = False

    def __call__(self, e: ProgressEvent) -> None:
        if self.bar is not None:
            val = "-" if e.val_cost is None else f"{e.val_cost:.3g}"
            self.bar.set_description_str(self._counts(e.step), refresh=False)
            self.bar.set_postfix_str(f"ep {e.epoch:.1f} train {e.train_cost:.3g} val {val}", refresh=False)
            if e.step != self.bar.n:
                self.bar.update(e.step - self.bar.n)
            else:
                self.bar.refresh()
        elif self.lines:
            val = "-" if e.val_cost is None else f"{e.val_cost:.4f}"
            print(f"step {e.step}  epoch {e.epoch:.2f}  train {e.train_cost:.4f}  val {val}  "
                  f"{e.elapsed_seconds:.1f}s", file=self.file, flush=True)

    def _counts(self, step: int) -> str:
        return f"{count(step)}/{count(self.total)}"

    def close(self) -> None:
        """Draw the bar's last state and end its line (a newline); safe to call twice."""
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
