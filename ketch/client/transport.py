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
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple, Protocol

import grpc
from google.protobuf.message import Message

from ketch.api import errors
from ketch.cancelsafe import wait_for
from ketch.security import anonymous
from ketch.v1 import api_pb2, api_pb2_grpc

from . import failover

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
RETRY_BASE = 0.05
RETRY_CAP = 2.0
MAX_RETRIES = 10
# How long one address may take to connect (TCP and TLS) before a call moves to the next.
CONNECT_TIMEOUT = 5.0
# How long a channel no longer used keeps serving the calls already on it.
RETIRE_GRACE = 30.0
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
    span: float = min(RETRY_CAP, RETRY_BASE * 2.0 ** attempt)
    import random  # here: the CLI's start-up need not pay for it (issue 14)

    return span / 2 + random.uniform(0, span / 2)


class TLSConfig(NamedTuple):
    """TLS to the API server: the CA that signed its certificate and this client's certificate
    (None: the public no-identity one, for a client authenticated by a token or not at all).
    A NamedTuple: a frozen dataclass would cost every CLI command ~1 ms (issue 14)."""

    ca: bytes
    client_cert: bytes | None = None
    client_key: bytes | None = None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if self.client_cert is not None and self.client_key is not None:
            return grpc.ssl_channel_credentials(self.ca, self.client_key, self.client_cert)
        return grpc.ssl_channel_credentials(self.ca, anonymous.KEY, anonymous.CERT)


def _client_streaming(method: str) -> bool:
    return bool(api_pb2.DESCRIPTOR.services_by_name["API"].methods_by_name[method].client_streaming)


async def _requests(method: str, request: Message, inputs: AsyncIterator[Message] | None) -> AsyncIterator[Message]:
    """A client-streaming method's messages: its request in the first, then inputs."""
    first = api_pb2.DESCRIPTOR.services_by_name["API"].methods_by_name[method].input_type
    yield getattr(api_pb2, first.name)(request=request)
    if inputs is not None:
        async for message in inputs:
            yield message


class Transport(Protocol):
    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any: ...

    def stream(self, method: str, request: Message,
               inputs: AsyncIterator[Message] | None = None) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


def answered(err: grpc.aio.AioRpcError) -> bool:
    """Whether an API server gave this error itself (it names a reason in `ketch-reason`)."""
    return any(key == "ketch-reason" for key, _ in err.trailing_metadata() or ())


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
    """gRPC to one or more API servers (`HOST:PORT[,HOST:PORT]`), failing over within a call as
    ketch.client.failover says: the address that last worked first, each other one once, then
    an Unavailable naming every address tried and why."""

    def __init__(self, servers: str, wait_for_ready: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 tls: TLSConfig | None = None, token: str = "", metadata: Sequence[tuple[str, str]] = (),
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.targets = failover.split_servers(servers)
        if not self.targets:
            raise ValueError("no server address given")
        self.wait_for_ready = wait_for_ready
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls = tls  # None: plaintext (a control plane started with --insecure)
        self._credentials = tls.channel_credentials() if tls is not None else None
        # A bearer token goes only over TLS: never in the clear.
        # Sent with every call: the bearer token (over TLS only), impersonation (impersonate-user,
        # impersonate-group).
        bearer = (("authorization", f"Bearer {token}"),) if token and tls is not None else ()
        self._metadata = (*bearer, *metadata) or None
        self._current = 0  # the address that last worked (sticky)
        self._channel: grpc.aio.Channel | None = None
        self._stub: api_pb2_grpc.APIStub | None = None
        self._retired: set[grpc.aio.Channel] = set()

    @property
    def current(self) -> str:
        """The address calls go to first."""
        return self.targets[self._current]

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
            self._retire(old)

    def _use(self, index: int) -> tuple[grpc.aio.Channel, api_pb2_grpc.APIStub]:
        """The channel and stub to address number index, which becomes the sticky one; the
        channel to another address is retired (calls on it may still finish)."""
        if index != self._current:
            if self._channel is not None:
                self._retire(self._channel)
            self._current = index
        stub = self._api()
        assert self._channel is not None
        return self._channel, stub

    def _failed(self, channel: grpc.aio.Channel) -> None:
        """A call could not use this channel: with other addresses to go to, retire it (a later
        call to its address dials afresh); the only address's channel reconnects by itself."""
        if len(self.targets) > 1:
            self._retire(channel)

    def _retire(self, channel: grpc.aio.Channel) -> None:
        """Stop using a channel: the next call dials afresh. It is closed after a grace period,
        so that calls other tasks have on it end as they would have (or at close())."""
        if channel is self._channel:
            self._channel, self._stub = None, None
        if channel not in self._retired:
            self._retired.add(channel)
            asyncio.get_running_loop().call_later(RETIRE_GRACE, lambda: asyncio.ensure_future(self._close(channel)))

    async def _close(self, channel: grpc.aio.Channel) -> None:
        self._retired.discard(channel)
        await channel.close()

    async def _connected(self, channel: grpc.aio.Channel, deadline: float) -> str | None:
        """Wait for the channel's connection attempt: None when the call may go (connected, or
        the attempt failed: a call then fails at once with gRPC's reason, never sent), else why
        not (no connection within the connect timeout: a listener that never finishes the
        handshake). The only address waits up to the call's deadline, and with wait_for_ready
        through failed attempts too: there is nowhere else to go."""
        single = len(self.targets) == 1
        patient = self.wait_for_ready and single
        budget = deadline - time.monotonic()
        if not single:
            budget = min(budget, self.connect_timeout)
        until = time.monotonic() + budget
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not patient:
                return None
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                await wait_for(channel.wait_for_state_change(state), left)
            except TimeoutError:
                break
            state = channel.get_state(try_to_connect=True)
        if state == grpc.ChannelConnectivity.READY or patient:
            return None  # patient: the call itself times out, as a wait_for_ready call does
        return f"no connection within {max(budget, 0):.1f}s"

    async def _addresses(self, deadline: float) -> AsyncIterator[int]:
        """The addresses to try for one call: each once, sticky first; with wait_for_ready and
        several addresses, round after round (backing off) until the deadline."""
        attempt = 0
        while True:
            tried: set[int] = set()
            while (index := failover.next_index(len(self.targets), self._current, tried)) is not None:
                tried.add(index)
                yield index
            if not self.wait_for_ready or len(self.targets) == 1:
                return
            delay = retry_delay(attempt)
            if time.monotonic() + delay >= deadline:
                return
            attempt += 1
            await asyncio.sleep(delay)

    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        tried: list[tuple[str, str]] = []
        async for index in self._addresses(deadline):
            channel, api = self._use(index)
            why = await self._connected(channel, deadline)
            if why:
                tried.append((self.targets[index], why))
                self._failed(channel)
                continue
            # A call on a channel whose connection failed goes at once (to fail with gRPC's reason).
            wait = self.wait_for_ready and channel.get_state() == grpc.ChannelConnectivity.READY
            try:
                return await self._unary_on(api, method, request, deadline, wait)
            except grpc.aio.AioRpcError as err:
                if not failover.moves_on(method, err.code(), err.details() or "", answered(err)):
                    raise status_error(err) from None
                tried.append((self.targets[index], err.details() or "unavailable"))
                self._failed(channel)
        if self.wait_for_ready:
            raise errors.Timeout(f"the server did not answer in time: {failover.exhausted(tried)}")
        raise errors.Unavailable(f"the server is not reachable: {failover.exhausted(tried)}")

    async def _unary_on(self, api: api_pb2_grpc.APIStub, method: str, request: Message, deadline: float,
                        wait: bool) -> Any:
        """One address's call; a TooManyRequests (nothing was done) is sent again after a back-off."""
        fn = getattr(api, method)
        attempt = 0
        while True:
            try:
                return await fn(request, timeout=max(deadline - time.monotonic(), 0.001),
                                wait_for_ready=wait, metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    raise
                failure = status_error(err)
            if isinstance(failure, errors.TooManyRequests) and attempt < MAX_RETRIES:
                delay = retry_delay(attempt)
                if time.monotonic() + delay < deadline:
                    log.debug("%s: %s; retrying in %.2fs", method, failure, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
            raise failure

    async def stream(self, method: str, request: Message,
                     inputs: AsyncIterator[Message] | None = None) -> AsyncIterator[Any]:
        """A server stream; until its first message it is started again on the next address as
        a read is. A stream that fails after that raises: its owner resumes it (a watch from its
        last resourceVersion), and that call fails over.

        A method that also streams from the client (Exec) is sent its request wrapped in its first
        message (`request`), then inputs, then the end of the client's side; it is never sent
        twice (its inputs are read once), so only an address it could not connect to is passed over.
        """
        duplex = _client_streaming(method)
        deadline = time.monotonic() + self.timeout
        tried: list[tuple[str, str]] = []
        async for index in self._addresses(deadline):
            channel, api = self._use(index)
            why = await self._connected(channel, deadline)
            if why:
                tried.append((self.targets[index], why))
                self._failed(channel)
                continue
            wait = self.wait_for_ready and channel.get_state() == grpc.ChannelConnectivity.READY
            sent = _requests(method, request, inputs) if duplex else request
            call = getattr(api, method)(sent, wait_for_ready=wait, metadata=self._metadata)
            started = False
            try:
                async for item in call:
                    started = True
                    yield item
                return
            except grpc.aio.AioRpcError as err:
                if started or duplex or not failover.moves_on(method, err.code(), err.details() or "", answered(err)):
                    raise status_error(err) from None
                tried.append((self.targets[index], err.details() or "unavailable"))
            finally:
                call.cancel()
            self._failed(channel)
        raise errors.Unavailable(f"the server is not reachable: {failover.exhausted(tried)}")

    async def close(self) -> None:
        for channel in list(self._retired):
            await self._close(channel)
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None
