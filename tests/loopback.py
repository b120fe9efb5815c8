"""A release folder served over HTTP on 127.0.0.1, with faults a test can switch on.

``serve_folder(folder)`` is a context manager yielding a ``Loopback`` whose ``url`` serves the
folder's files; set ``faults[name]`` to ``"truncate"`` (send half, with the full length
announced), ``"drop"`` (close mid-file) or ``"500"`` to break one file. Nothing leaves the
loopback interface.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import urllib.parse
from typing import Dict, List


class Loopback:
    def __init__(self, server, folder: str):
        self.server = server
        self.folder = folder
        self.faults: Dict[str, str] = {}
        self.requests: List[str] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


def _handler(state: Loopback):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):  # noqa: N802  (http.server's name)
            name = urllib.parse.unquote(self.path.lstrip("/"))
            state.requests.append(name)
            fault = state.faults.get(name)
            path = os.path.join(state.folder, name)
            if fault == "500":
                self.send_error(500, "injected failure")
                return
            if "/" in name or not os.path.isfile(path):
                self.send_error(404, "not found")
                return
            with open(path, "rb") as handle:
                data = handle.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault in ("truncate", "drop"):
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

    return Handler


@contextlib.contextmanager
def serve_folder(folder: str):
    """Serve ``folder`` on an ephemeral 127.0.0.1 port for the duration of the block."""
    state = Loopback(None, folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
