"""``python -m backend_mlp <command> ...``: the same as the ``backend-mlp`` command (:mod:`backend_mlp.cli.main`)."""

from __future__ import annotations

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
