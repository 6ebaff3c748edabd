"""How a Client reaches the API: over gRPC, or in-process inside the control plane.

A transport has two operations: a unary call and a server stream, both by method name
("Create", "Watch", ...) with the request and response messages of api.proto. Both raise
ketch.api.errors.StatusError subclasses, whichever side of a network the server is on.

A unary call the server refused with TooManyRequests (its requests in flight were at their
limit; nothing was done) is sent again after a jittered, doubling back-off, as client-go does
with a 429, until the call's timeout would pass.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from ketch.api import errors
from ketch.security import anonymous
from ketch.v1 import api_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
RETRY_BASE = 0.05
RETRY_CAP = 2.0
MAX_RETRIES = 10
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def retry_delay(attempt: int) -> float:
    """Seconds before retry number attempt (0-based): doubling from RETRY_BASE up to RETRY_CAP,
    each drawn from the upper half of that span, so clients refused together spread out."""
    span = min(RETRY_CAP, RETRY_BASE * (2 ** attempt))
    return span / 2 + random.uniform(0, span / 2)


@dataclass(frozen=True)
class TLSConfig:
    """TLS to the API server: the CA that signed its certificate and this client's certificate
    (None: the public no-identity one, for a client authenticated by a token or not at all)."""

    ca: bytes
    client_cert: bytes | None = None
    client_key: bytes | None = None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if self.client_cert is not None and self.client_key is not None:
            return grpc.ssl_channel_credentials(self.ca, self.client_key, self.client_cert)
        return grpc.ssl_channel_credentials(self.ca, anonymous.KEY, anonymous.CERT)


class Transport(Protocol):
    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any: ...

    def stream(self, method: str, request: Message) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


def status_error(err: grpc.aio.AioRpcError) -> errors.StatusError:
    reason = ""
    for key, value in err.trailing_metadata() or ():
        if key == "ketch-reason":
            reason = str(value)
    code = err.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.Unavailable(f"the server is not reachable: {err.details()}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Timeout(f"the server did not answer in time: {err.details()}")
    if code == grpc.StatusCode.CANCELLED:
        return errors.from_code(errors.CANCELLED, err.details() or "cancelled", reason)
    return errors.from_code(code.value[0], err.details() or "", reason)


class GrpcTransport:
    """gRPC to one or more API servers (`HOST:PORT[,HOST:PORT]`), failing over on UNAVAILABLE."""

    def __init__(self, servers: str, wait_for_ready: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 tls: TLSConfig | None = None, token: str = "", metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.targets = [s.strip() for s in servers.split(",") if s.strip()]
        if not self.targets:
            raise ValueError("no server address given")
        self.wait_for_ready = wait_for_ready
        self.timeout = timeout
        self.tls = tls  # None: plaintext (a control plane started with --insecure)
        self._credentials = tls.channel_credentials() if tls is not None else None
        # A bearer token goes only over TLS: never in the clear.
        # Sent with every call: the bearer token (over TLS only), impersonation (impersonate-user,
        # impersonate-group).
        bearer = (("authorization", f"Bearer {token}"),) if token and tls is not None else ()
        self._metadata = (*bearer, *metadata) or None
        self._current = 0
        self._channel: grpc.aio.Channel | None = None
        self._stub: api_pb2_grpc.APIStub | None = None

    def _api(self) -> api_pb2_grpc.APIStub:
        if self._stub is None:
            target = self.targets[self._current]
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._stub = api_pb2_grpc.APIStub(self._channel)
        return self._stub

    def set_tls(self, tls: TLSConfig) -> None:
        """Use new client credentials (a renewed certificate) for calls from now on; calls and
        streams on the old connection go on until it is closed, a little later."""
        old = self._channel
        self.tls, self._credentials = tls, tls.channel_credentials()
        self._channel, self._stub = None, None
        if old is not None:
            asyncio.get_running_loop().call_later(60.0, lambda: asyncio.ensure_future(old.close()))

    async def _fail_over(self) -> None:
        if len(self.targets) > 1:
            old = self._channel
            self._current = (self._current + 1) % len(self.targets)
            self._channel, self._stub = None, None
            if old is not None:
                await old.close()

    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        attempt = 0
        while True:
            fn = getattr(self._api(), method)
            try:
                return await fn(request, timeout=max(deadline - time.monotonic(), 0.001),
                                wait_for_ready=self.wait_for_ready, metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    await self._fail_over()
                failure = status_error(err)
            if isinstance(failure, errors.TooManyRequests) and attempt < MAX_RETRIES:
                delay = retry_delay(attempt)
                if time.monotonic() + delay < deadline:
                    log.debug("%s: %s; retrying in %.2fs", method, failure, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
            raise failure

    async def stream(self, method: str, request: Message) -> AsyncIterator[Any]:
        fn = getattr(self._api(), method)
        call = fn(request, wait_for_ready=self.wait_for_ready, metadata=self._metadata)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                await self._fail_over()
            raise status_error(err) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None


