#!/usr/bin/env python
"""Label images with a saved model: a thin alias of ``backend-mlp predict`` (:mod:`backend_mlp.cli.predict`).

Works from a checkout without installing (``python scripts/predict.py MODEL INPUT ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "backend_mlp" / "__init__.py").is_file() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))  # use the checkout this script lives in

from backend_mlp.cli.main import run_subcommand  # noqa: E402  (light: the command loads on demand)

if __name__ == "__main__":
    sys.exit(run_subcommand("predict", sys.argv[1:], prog="backend-mlp predict"))
