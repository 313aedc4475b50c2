"""Command-line entry points (``backend-mlp-train`` = :func:`backend_mlp.cli.train.main`)."""
