"""A small asyncio HTTP/1.1 server for the side port: GET and HEAD, one request per connection
(`Connection: close`; keep-alive is not needed by Prometheus or probes), no request bodies.

Why not prometheus_client's own server: it is a threaded WSGI server, and authenticating and
authorizing each request means calling into the event loop's objects (the authenticators, the
RBAC caches, the agent's API client); here every request is answered on the loop, and only the
metrics rendering goes to a thread. Everything is bounded: the request head (8 KiB), the TLS
handshake and the head's arrival (10 s each), the answer's write (30 s), open connections (64;
more are closed at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ketch.cancelsafe import wait_for

log = logging.getLogger(__name__)

MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0
MAX_CONNECTIONS = 64

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
TEXT = "text/plain; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    peer_certificate: bytes = b""  # the TLS client certificate, PEM; b"" for none

    def flag(self, name: str) -> bool:
        """A query flag as Go's healthz reads `?verbose`: present at all."""
        return name in self.query


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def text(status: int, body: str) -> Response:
    return Response(status, body.encode())


def status_error(code: int, reason: str, message: str) -> Response:
    """Kubernetes' metav1.Status body, as kube-apiserver answers 401 and 403."""
    body: dict[str, object] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": message, "reason": reason, "code": code}
    if code == 403:
        body["details"] = {}
    return Response(code, json.dumps(body).encode(), "application/json")


class HTTPServer:
    """Serve handler on HOST:PORT; tls: the context of each handshake (None: plaintext)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None, *, head_timeout: float = HEAD_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.handler = handler
        self.tls = tls
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, listen: str) -> int:
        """Listen (port 0: a free one); returns the port."""
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(
            self._connected, host.strip("[]") or None, int(port), ssl=self.tls, limit=MAX_HEAD,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self.tls is not None else None)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await wait_for(self._server.wait_closed(), 5.0)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open += 1
        try:
            response, head_only = await self._answer(reader, writer)
            await wait_for(self._write(writer, response, head_only), WRITE_TIMEOUT)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # stop(): this task is the top of the connection, and asyncio's stream callback
            # would log a cancelled one as an error.
            pass
        finally:
            self._open -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[Response, bool]:
        try:
            head = await wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
        except asyncio.LimitOverrunError:
            return text(431, "request header too large\n"), False
        except TimeoutError:
            return text(408, "request timeout\n"), False
        request = parse_head(head)
        if isinstance(request, Response):
            return request, False
        request.peer_certificate = peer_certificate(writer)
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"}), False
        has_body = request.headers.get("content-length", "0").strip() not in ("", "0")
        if has_body or "transfer-encoding" in request.headers:
            return text(413, "request bodies are not accepted\n"), False
        try:
            return await self.handler(request), request.method == "HEAD"
        except Exception:
            log.exception("serving %s failed", request.path)
            return text(500, "internal server error\n"), False

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
                 f"Content-Type: {response.content_type}", f"Content-Length: {len(response.body)}",
                 "X-Content-Type-Options: nosniff", "Cache-Control: no-cache, private", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in response.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(response.body)
        await writer.drain()


def listen_address(text: str) -> str:
    """--metrics-listen's argparse type: HOST:PORT ("" for off; port 0 picks a free one)."""
    if not text:
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: use HOST:PORT (port 0 picks a free one)")
    return text


def parse_head(head: bytes) -> Request | Response:
    """The request line and headers; a 400 for anything that is not HTTP/1.x."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return text(400, "malformed request line\n")
    if not version.startswith("HTTP/1."):
        return text(400, "only HTTP/1.x is served\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            return text(400, "malformed header line\n")
        headers[name.lower()] = value.strip()
    parts = urlsplit(target)
    return Request(method, unquote(parts.path) or "/", parse_qs(parts.query, keep_blank_values=True), headers)


def peer_certificate(writer: asyncio.StreamWriter) -> bytes:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return b""
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode() if der else b""
