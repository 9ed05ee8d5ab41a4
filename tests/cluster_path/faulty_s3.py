"""A loopback HTTP proxy in front of an S3 server that fails a seeded share of requests.

Faults, as an object store under load gives them: ``slowdown`` (503 SlowDown, S3's throttling),
``internal`` (500 InternalError), ``drop`` (the connection closed before any answer; for a PUT, in
the middle of its upload). Everything else is forwarded unchanged. ``injected`` counts each kind.
"""

from __future__ import annotations

import http.client
import http.server
import random
import socket
import threading
import urllib.parse
from collections import Counter
from typing import Any

KINDS = ("slowdown", "internal", "drop")
_ERROR = ("<?xml version='1.0' encoding='UTF-8'?>"
          "<Error><Code>{code}</Code><Message>{message}</Message></Error>")


def _read_chunked(stream: Any) -> bytes:
    """A chunked request body as it came (framing and trailers kept, forwarded as is)."""
    raw = bytearray()
    while True:
        line = stream.readline()
        raw += line
        if int(line.split(b";")[0].strip() or b"0", 16) == 0:
            while True:  # trailers (e.g. x-amz-checksum-crc32), then a blank line
                trailer = stream.readline()
                raw += trailer
                if trailer in (b"\r\n", b"\n", b""):
                    return bytes(raw)
        size = int(line.split(b";")[0].strip(), 16)
        raw += stream.read(size + 2)


class FaultyProxy:
    """Forward to ``upstream`` (``http://host:port``), failing ``rate`` of requests (seeded)."""

    def __init__(self, upstream: str, *, rate: float, seed: int) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.rate = rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fault = proxy.draw()
                if fault == "drop":  # read part of the body, then hang up without an answer
                    self.rfile.read(min(length, 16))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
                body = _read_chunked(self.rfile) if chunked else (self.rfile.read(length) if length else b"")
                if fault is not None:
                    code, message, status = (("SlowDown", "Please reduce your request rate.", 503)
                                             if fault == "slowdown" else
                                             ("InternalError", "We encountered an internal error.", 500))
                    payload = _ERROR.format(code=code, message=message).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                head = self.command == "HEAD"  # its Content-Length is the object's size: kept
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection") and (
                            head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()
                with proxy.lock:
                    proxy.forwarded += 1

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815 (http.server's names)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def draw(self) -> str | None:
        """The fault for the next request, or None to forward it."""
        with self.lock:
            if self.rng.random() >= self.rate:
                return None
            kind = self.rng.choice(KINDS)
            self.injected[kind] += 1
            return kind

    @property
    def endpoint(self) -> str:
        """The proxy's ``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
