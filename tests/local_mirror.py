"""A local HTTP mirror on 127.0.0.1 for download tests, and the environment those tests run in.

The ``server`` fixture (``tests/conftest.py``) gives each test a fresh :class:`Server`.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from pathlib import Path

import pytest


class Server:
    """A tiny HTTP server: ``routes`` maps URL paths to bodies, everything else is 404.

    A route may also be a function of the request handler that writes the whole answer itself."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes | Callable[[http.server.BaseHTTPRequestHandler], None]] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                outer.hits.append(self.path)
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if callable(body):
                    body(self)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def mirror(self, prefix: str, files: dict | None = None) -> str:
        for name, body in (files or {}).items():
            self.routes[f"/{prefix}/{name}.gz"] = body
        return f"http://127.0.0.1:{self.port}/{prefix}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def isolate_downloads(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """No BACKEND_MLP_DATA, ``cache`` as ``$BACKEND_MLP_CACHE``, and no proxy between us and 127.0.0.1."""
    monkeypatch.delenv("BACKEND_MLP_DATA", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("BACKEND_MLP_CACHE", str(cache))
