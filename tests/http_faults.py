"""A loopback HTTP server (127.0.0.1, a thread) that serves a folder and misbehaves on
request: for any downloader's tests (checkpoint downloads, the zoo's ``from_preset``).

    with FaultServer(folder) as server:          # or the ``fault_server`` fixture (conftest)
        server.plan("drop:1000", "ok")           # first request cut after 1000 bytes
        url = server.url("model.pth")
        ...
        server.requests                          # [(path, Range header or None), ...]
        server.on_request = look                 # look(path) runs as each request comes

Each request takes the next mode of the plan (``plan`` with no more modes left: "ok").
Modes:
  ok                 the file, honouring ``Range: bytes=N-`` (206, or 416 past the end)
  status:CODE        that status (404, 500, ...) with a short text body
  drop:N             announce the whole length, send N bytes, close the connection
  length:N           announce Content-Length N (whatever the file's size), send up to N bytes
  corrupt            the file with one byte changed (same length)
  redirect-loop      302 to the same address, forever
  redirect:PATH      302 to PATH (then the next mode serves that)
  stall:S            send the headers, then nothing for S seconds (or until the server stops)
  slow:S             the file (Range honoured), in 20 pieces spread over S seconds
  stall-headers:S    accept the connection, send nothing for S seconds
  ignore-range       the whole file with 200, whatever Range asked for
  html               a web page instead of the file
  html:TEXT          the web page TEXT instead of the file
  bad-length         a Content-Length header that is not a number
  chunked            the file (Range honoured) as a chunked body, no Content-Length
  endless            a chunked body of zeros without end, no Content-Length: until the client
                     hangs up, the server stops, or ENDLESS_BYTES (a guard, so a downloader
                     with no limit ends its test instead of filling the disk)
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional, Tuple
from urllib.parse import unquote, urlparse

ENDLESS_BYTES = 64 << 20  # where an "endless" body ends after all


class FaultServer:
    """Serves ``root`` on 127.0.0.1 (a free port) with the fault modes above."""

    def __init__(self, root):
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.requests: List[Tuple[str, Optional[str]]] = []
        self._plan: List[str] = []
        # called with each request's path before it is answered (in the server's thread): a
        # test looks at the client's files at that moment
        self.on_request: Optional[Callable[[str], None]] = None
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    # --- set-up ---------------------------------------------------------------------------

    def add(self, name: str, data: bytes) -> str:
        """Put ``data`` at ``name`` in the served folder; returns its URL."""
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        return self.url(name)

    def plan(self, *modes: str) -> "FaultServer":
        """The modes of the next requests, in order; "ok" after they run out."""
        with self._lock:
            self._plan = list(modes)
        return self

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name.lstrip('/')}"

    def __enter__(self) -> "FaultServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()  # ends any stall
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def _next_mode(self) -> str:
        with self._lock:
            return self._plan.pop(0) if self._plan else "ok"

    # --- the handler ----------------------------------------------------------------------

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                if owner.on_request is not None:
                    owner.on_request(self.path)
                mode, _, argument = owner._next_mode().partition(":")
                if mode == "stall-headers":
                    owner.stopping.wait(float(argument))
                    self.close_connection = True
                    return
                if mode == "status":
                    return self._send(int(argument), f"status {argument}".encode())
                if mode == "redirect-loop":
                    return self._redirect(self.path)
                if mode == "redirect":
                    return self._redirect(argument)
                if mode == "html":
                    return self._send(200, (argument or "<html><body>not a file</body></html>"
                                            ).encode(), "text/html; charset=utf-8")
                name = unquote(urlparse(self.path).path).lstrip("/")
                path = os.path.realpath(os.path.join(owner.root, name))
                if not path.startswith(os.path.realpath(owner.root) + os.sep) \
                        or not os.path.isfile(path):
                    return self._send(404, b"not found")
                with open(path, "rb") as handle:
                    data = handle.read()
                if mode == "corrupt" and data:
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
                self._serve(data, mode, argument)

            def _serve(self, data, mode, argument):
                wanted = self.headers.get("Range")
                start, status = 0, 200
                if wanted and mode != "ignore-range":
                    start = int(wanted.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                if mode in ("chunked", "endless"):
                    return self._chunked(body, status, start, len(data), mode == "endless")
                announced = str(len(body))
                if mode == "length":
                    announced = argument
                    body = body[:int(argument)]
                elif mode == "bad-length":
                    announced = "lots"
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", announced)
                self.end_headers()
                if mode == "stall":
                    self.wfile.flush()
                    owner.stopping.wait(float(argument))
                    self.close_connection = True
                    return
                if mode == "slow":
                    piece = max(1, -(-len(body) // 20))
                    for start in range(0, len(body), piece):
                        self.wfile.write(body[start:start + piece])
                        self.wfile.flush()
                        owner.stopping.wait(float(argument) / 20)
                    return
                if mode == "drop":
                    self.wfile.write(body[:int(argument)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
                if mode == "length":
                    self.close_connection = True

            def _chunked(self, body, status, start, size, endless):
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                piece = b"\0" * 65536
                try:
                    if body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                    sent = len(body)
                    while endless and sent < ENDLESS_BYTES and not owner.stopping.is_set():
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        sent += len(piece)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client hung up (an endless body's only end)
                    pass

            def _redirect(self, location):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, status, body, ctype="text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
