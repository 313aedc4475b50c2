"""Moved to :mod:`backend_mlp.files` (temporary re-export)."""

from .files import json_ready, write_json

__all__ = ["json_ready", "write_json"]
