"""The local server behind ``otel-scope view``: one trace, on 127.0.0.1 only, read-only.

The page loads ``/api/summary`` first (lanes, bars, arrows) and each call from
``/api/call/<span_id>`` when it is opened, so a large trace shows at once and only what the
reader looks at is built. ``/api/search?q=`` runs a ``--where`` condition over every call.
Requests whose ``Host`` is not this loopback address are refused, so a web page elsewhere cannot
read the trace through DNS rebinding.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from otel_scope.timeline.query import QueryError
from otel_scope.view.model import ViewData
from otel_scope.view.page import ASSETS, asset, served_page
from otel_scope.view.search import search

HOST = "127.0.0.1"


class ViewServer(ThreadingHTTPServer):
    """An HTTP server holding one prepared trace; ``port=0`` picks a free port."""

    daemon_threads = True

    def __init__(self, data: ViewData, port: int = 0) -> None:
        self.data = data
        self.lock = threading.Lock()  # ViewData builds calls lazily; one builder at a time
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL and nothing per request."""

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in (HOST, "localhost"):
            self._send(HTTPStatus.FORBIDDEN, "text/plain", "otel-scope view answers on 127.0.0.1 only\n")
            return
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html", served_page())
        elif path.startswith("/static/") and path[len("/static/") :] in ASSETS:
            name = path[len("/static/") :]
            self._send(HTTPStatus.OK, ASSETS[name], asset(name))
        elif path == "/api/summary":
            with self.server.lock:
                self._json(HTTPStatus.OK, self.server.data.summary())
        elif path.startswith("/api/call/"):
            with self.server.lock:
                call = self.server.data.call(path[len("/api/call/") :])
            if call is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "no such span in this trace"})
            else:
                self._json(HTTPStatus.OK, call)
        elif path == "/api/search":
            text = urllib.parse.parse_qs(url.query).get("q", [""])[0]
            try:
                with self.server.lock:
                    found = search(self.server.data, text)
            except QueryError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            else:
                self._json(HTTPStatus.OK, found)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", "not found\n")

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, "application/json", json.dumps(value, ensure_ascii=False))

    def _send(self, status: HTTPStatus, kind: str, body: str) -> None:
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(payload)
