"""``python -m backend_mlp <command> ...``: the same as the ``backend-mlp`` command (:mod:`backend_mlp.cli.main`)."""

from __future__ import annotations

import os
import sys

from .cli.common import EXIT_INTERRUPTED, EXIT_TERMINATED
from .cli.main import main

if __name__ == "__main__":
    status = main()
    if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # `python -m` hands the status back through the interpreter's main, which can turn it into death by
        # SIGINT (-2) after a KeyboardInterrupt that was handled (seen when Ctrl-C lands while libraries load:
        # about half the runs); everything is written by now, so leave with the status itself.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
