"""The reproduction report: Sections 4-6 over several seeds, written as results.json, figures and REPORT.md.

Modules: :mod:`.protocol` (what is trained), :mod:`.statistics` (summaries
over seeds, acceptance checks), :mod:`.markdown` (REPORT.md),
:mod:`.figures` (every PNG backend_mlp draws) and :mod:`.reproduction`
(running it all and writing the files).
"""

from __future__ import annotations

from .reproduction import Reproduction, default_out

__all__ = ["Reproduction", "default_out"]
