"""The reproduction report: Sections 4-6 over several seeds, written as results.json, figures and REPORT.md.

Modules: :mod:`.protocol` (what is trained), :mod:`.statistics` (summaries
over seeds, confidence intervals, acceptance checks), :mod:`.markdown`
(REPORT.md), :mod:`.figures` (every PNG backend_mlp draws) and
:mod:`.reproduction` (the runs as a sweep, then the files).  ``Reproduction``
and ``default_out`` are imported on first use: :mod:`backend_mlp.runs` draws
with :mod:`.figures`, and the reproduction runs through :mod:`backend_mlp.runs`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Reproduction", "default_out"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import reproduction

        return getattr(reproduction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
