"""A tiny HTTP endpoint in the test process that a Node/browser test calls to act on the service
(restart it, change its database): `POST /<action>` with a JSON body, answered with JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = Callable[[dict[str, Any]], dict[str, Any]]
"""Runs on the server's thread with the request's JSON body (`{}` when empty); its answer is
sent as JSON with `"ok": true` added."""


@contextmanager
def control_server(actions: dict[str, Action], name: str = "e2e-control") -> Iterator[str]:
    """Serve `actions` by path (`/stop` -> actions["stop"]), one at a time; unknown paths are a
    404. Yields the base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            action = actions.get(self.path.strip("/"))
            if action is None:
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            with lock:
                answer = json.dumps({"ok": True, **action(body)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
