#!/usr/bin/env python
"""Train the report's MNIST MLP: a thin wrapper around :func:`backend_mlp.cli.train.main`.

Works from a checkout without installing (``python scripts/train_mnist.py ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import backend_mlp  # noqa: F401
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend_mlp.cli.main import run_subcommand  # noqa: E402  (light: the command loads on demand)

if __name__ == "__main__":
    sys.exit(run_subcommand("train", sys.argv[1:], prog="train_mnist"))
