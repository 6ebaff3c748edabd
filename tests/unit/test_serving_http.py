"""The side port's HTTP server (ketch/serving/http.py) against a raw socket: what it answers to
requests it does not serve, that every request is bounded (head size, head time, connections),
and that rendering /metrics runs off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ketch.serving import http
from ketch.serving.metrics import render


async def _hello(request: http.Request) -> http.Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    return http.text(200, f"hello {request.path} {sorted(request.query)}")


@pytest.fixture
async def server() -> AsyncIterator[tuple[http.HTTPServer, int]]:
    s = http.HTTPServer(_hello, None, head_timeout=0.5, max_connections=2)
    port = await s.start("127.0.0.1:0")
    try:
        yield s, port
    finally:
        await s.stop()


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_get_and_head(server: tuple[http.HTTPServer, int]) -> None:
    _, port = server
    answer = await _exchange(port, b"GET /x%20y?verbose&exclude=a HTTP/1.1\r\nHost: h\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in head and b"X-Content-Type-Options: nosniff" in head
    assert body == b"hello /x y ['exclude', 'verbose']"
    assert f"Content-Length: {len(body)}".encode() in head
    answer = await _exchange(port, b"HEAD /x HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405 Method Not Allowed"),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"413 Payload Too Large"),
    (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"413 Payload Too Large"),
    (b"GET /metrics\r\n\r\n", b"400 Bad Request"),
    (b"GET /metrics HTTP/2.0\r\n\r\n", b"400 Bad Request"),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400 Bad Request"),
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n", b"431 Request Header Fields Too Large"),
    (b"GET /boom HTTP/1.1\r\n\r\n", b"500 Internal Server Error"),
])
async def test_refusals(server: tuple[http.HTTPServer, int], request_bytes: bytes, status: bytes) -> None:
    answer = await _exchange(server[1], request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b"\r\n"), answer[:200]


async def test_a_head_that_never_ends_is_cut_and_connections_are_bounded(
        server: tuple[http.HTTPServer, int]) -> None:
    s, port = server
    slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _, writer in slow:
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Slow: ")  # and nothing more
    deadline = asyncio.get_running_loop().time() + 10
    while s._open < 2:
        assert asyncio.get_running_loop().time() < deadline, "the two connections were not accepted"
        await asyncio.sleep(0.01)
    # A third connection while two are open is closed without an answer (a reset, as its
    # request is left unread).
    try:
        assert await _exchange(port, b"GET /x HTTP/1.1\r\n\r\n") == b""
    except ConnectionResetError:
        pass
    for reader, writer in slow:
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        writer.close()
    assert (await _exchange(port, b"GET /x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")


class _Blocking(Collector):
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.entered.set()
        assert self.release.wait(10)
        yield GaugeMetricFamily("slow_gauge", "a collector that takes its time", value=1.0)


async def test_metrics_render_off_the_event_loop() -> None:
    registry = CollectorRegistry()
    collector = _Blocking()
    registry.register(collector)
    rendering = asyncio.create_task(render(http.Request("GET", "/metrics", {}, {}), registry))
    assert await asyncio.to_thread(collector.entered.wait, 10)
    # The collector is still blocked, and the loop still runs other work.
    assert await asyncio.wait_for(asyncio.sleep(0, "loop alive"), 1) == "loop alive"
    assert not rendering.done()
    collector.release.set()
    response = await asyncio.wait_for(rendering, 10)
    assert response.status == 200 and b"slow_gauge 1.0" in response.body


def test_listen_address() -> None:
    assert http.listen_address("127.0.0.1:0") == "127.0.0.1:0"
    assert http.listen_address("[::1]:9100") == "[::1]:9100"
    assert http.listen_address("") == ""
    for bad in ("9100", ":9100", "host:", "host:port", "host:65536"):
        with pytest.raises(Exception, match="use HOST:PORT"):
            http.listen_address(bad)
