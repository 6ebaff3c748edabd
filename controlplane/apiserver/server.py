"""The gRPC face of the API server: servicer adapters, health, reflection, and the limits on
what one client can make the server hold.

Thin: every handler calls APIService and maps StatusError to a gRPC status with Kubernetes'
reason in the trailing metadata key `ketch-reason`.

Limits here, as kube-apiserver has them: a request message is at most 3 MiB (our decoder
refuses it with Kubernetes' 413 wording; gRPC itself drops anything past 4 MiB unread), and a
message that does not decode is INVALID_ARGUMENT, not gRPC's UNKNOWN; requests in flight are
bounded (inflight.py); a Batch's writes are bounded in bytes; a watch's queue is bounded
(watch.py). Connections: at most MAX_CONCURRENT_STREAMS streams each, closed when idle
(HTTP/2 GOAWAY; clients reconnect on their next call) or when they send nothing within the
handshake timeout, optionally when they reach a maximum age, and never so many that the
process runs out of file descriptors, which would lock every new client out until some closed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ketch.api import errors, limits
from ketch.v1 import api_pb2

from .authn import Credentials
from .chain import RequestChain
from .inflight import MaxInFlight
from .nodeproxy import NodeProxy
from .security import APISecurity, insecure
from .service import APIService, WatchLimits

log = logging.getLogger(__name__)

# gRPC's own cap, above our 3 MiB request limit so that requests between the two get
# Kubernetes' error with our reason; past it gRPC refuses before reading the message.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# kube-apiserver allows 100 streams per HTTP/2 connection, but Go clients open another
# connection at the limit while gRPC clients queue on one (every channel of a process to one
# server shares a connection): 1,000 leaves room for a process with many watchers.
MAX_CONCURRENT_STREAMS = 1000
# Time for a new connection to send its HTTP/2 preface and SETTINGS (gRPC's default: 120 s,
# which is how long idle sockets held file descriptors before).
HANDSHAKE_TIMEOUT_MS = 10_000
DEFAULT_MAX_CONNECTION_IDLE = 90.0  # kube-apiserver's HTTP/2 IdleTimeout
MAX_CONNECTION_AGE_GRACE = 30.0
REMOTE_WATCH_LIMITS = WatchLimits()
# File descriptors kept for everything but client connections (the store, connections to the
# node agents, the event loop): at least this many, or a quarter of the limit.
FD_RESERVE = 128


@dataclass(frozen=True)
class ServerLimits:
    """What the gRPC server bounds; 0 disables a limit."""

    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    max_connection_idle: float = DEFAULT_MAX_CONNECTION_IDLE
    # Off by default: it also ends every healthy watch and log stream at that age (clients watch
    # again; `ketch logs -f` stops). On, it is what reclaims a stream whose client never reads.
    max_connection_age: float = 0.0
    max_batch_bytes: int = limits.MAX_BATCH_BYTES
    watch: WatchLimits = REMOTE_WATCH_LIMITS


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (a unit's default soft limit, often 1024,
    is what an idle crowd exhausts first); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as err:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, err)
        return soft
    return target


def max_connections(open_files: int) -> int:
    """Client connections the server accepts at once, leaving file descriptors for the rest."""
    return max(open_files - max(FD_RESERVE, open_files // 4), 16)


def grpc_options(server_limits: ServerLimits, open_files: int) -> list[tuple[str, Any]]:
    opts: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        # Count the streams HTTP/2 counts (gRPC's default also counts finished ones it has not yet
        # freed, and refuses new streams with REFUSED_STREAM that clients report as UNAVAILABLE):
        # a client over the limit then waits for a free stream instead of failing.
        ("grpc.http.overload_protection", 0),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_allowed_incoming_connections", max_connections(open_files)),
    ]
    if server_limits.max_connection_idle > 0:
        opts.append(("grpc.max_connection_idle_ms", int(server_limits.max_connection_idle * 1000)))
    if server_limits.max_connection_age > 0:
        age = server_limits.max_connection_age
        opts.append(("grpc.max_connection_age_ms", int(age * 1000)))
        # After GOAWAY, calls have this long to finish before the connection is closed under them.
        opts.append(("grpc.max_connection_age_grace_ms", int(min(age, MAX_CONNECTION_AGE_GRACE) * 1000)))
    return opts


# The status message travels in the trailers (grpc-message, percent-encoded), and a client drops
# trailers past 8 KiB (gRPC's default metadata limit; past 16 KiB always): it then sees only
# "Stream removed", with no code, reason or message. A message that names a huge invalid value or
# name is clipped to leave room for the rest of the trailers.
MAX_STATUS_MESSAGE = 6 * 1024  # bytes once percent-encoded


def _encoded_size(data: bytes) -> int:
    """Bytes of data as grpc-message (printable ASCII but '%' as is, any other byte as %XX)."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in data)


def status_message(message: str) -> str:
    """message, clipped if its trailer would not reach the client."""
    data = message.encode()
    if len(data) <= MAX_STATUS_MESSAGE // 3 or _encoded_size(data) <= MAX_STATUS_MESSAGE:
        return message
    note = f"... (clipped: the message had {len(message)} characters)"
    budget, size = MAX_STATUS_MESSAGE - len(note), 0
    for end, b in enumerate(data):
        size += 1 if 0x20 <= b <= 0x7E and b != 0x25 else 3
        if size > budget:
            return data[:end].decode(errors="ignore") + note
    return message


async def _abort(context: grpc.aio.ServicerContext, err: errors.StatusError) -> None:
    await context.abort(_STATUS.get(err.code, grpc.StatusCode.UNKNOWN), status_message(err.message),
                        trailing_metadata=(("ketch-reason", err.reason),))


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


class _Refused:
    """What the decoder hands the handler instead of a request it could not accept: grpc.aio
    answers a decoder that raises with UNKNOWN, so the handler reports the error instead."""

    __slots__ = ("error",)

    def __init__(self, error: errors.StatusError) -> None:
        self.error = error


def _decoder(cls: type[Message]) -> Callable[[bytes], Message | _Refused]:
    name = cls.DESCRIPTOR.name

    def decode(data: bytes) -> Message | _Refused:
        if len(data) > limits.MAX_REQUEST_BYTES:
            return _Refused(limits.request_too_large())
        try:
            return cls.FromString(data)
        except Exception as err:  # DecodeError, or anything else the parser raises on bad bytes
            return _Refused(errors.BadRequest(f"cannot decode the {name} request: {err}"))

    return decode


def credentials_of(context: grpc.aio.ServicerContext) -> Credentials:
    """What a gRPC request carries that may say who sent it (authn.py decides; the metadata is
    read only if an authenticator looks at it)."""

    def metadata() -> dict[str, str]:
        # A key sent more than once (impersonate-group) reads as its values joined by commas, as
        # HTTP reads a repeated header.
        out: dict[str, str] = {}
        for k, v in context.invocation_metadata() or ():
            if isinstance(v, str):
                out[str(k)] = f"{out[str(k)]},{v}" if str(k) in out else v
        return out

    def peer() -> bytes:
        found = (context.auth_context() or {}).get("x509_pem_cert") or [b""]
        return bytes(found[0])

    return Credentials(read_metadata=metadata, read_peer=peer)


async def _answer_failure(context: grpc.aio.ServicerContext, method: str, err: Exception) -> None:
    """A StatusError as its gRPC status; anything else is a bug: logged, answered as internal."""
    if not isinstance(err, errors.StatusError):
        log.error("internal error in %s", method, exc_info=err)
        err = errors.InternalError(f"internal error: {err}")
    await _abort(context, err)


def _accepted(request: Message | _Refused) -> Message:
    if isinstance(request, _Refused):
        raise request.error
    return request


def _unary_handler(chain: RequestChain, method: str) -> Callable[..., Any]:
    async def handle(request: Message | _Refused, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await chain.unary(method, _accepted(request), credentials_of(context))
        except Exception as err:
            await _answer_failure(context, method, err)

    return handle


def _stream_handler(chain: RequestChain, method: str) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Message | _Refused, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in chain.stream(method, _accepted(request), credentials_of(context)):
                yield item
                del item  # a stream waiting for its next item holds none it sent
        except Exception as err:
            await _answer_failure(context, method, err)

    return handle


def _duplex_handler(chain: RequestChain, method: str) -> Callable[..., AsyncIterator[Any]]:
    """Exec, Attach: the first message's request is authenticated and authorized as a server stream's
    would be; the later messages go on to the stream (the command's stdin)."""
    async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            first = await anext(aiter(requests), None)
            if first is None:
                raise errors.BadRequest(f"the {method} stream ended before its request")
            request = _accepted(first).request  # type: ignore[attr-defined]

            async def later() -> AsyncIterator[Any]:
                async for message in requests:
                    yield _accepted(message)

            async for item in chain.stream(method, request, credentials_of(context), inputs=later()):
                yield item
                del item
        except Exception as err:
            await _answer_failure(context, method, err)

    return handle


def _handlers(chain: RequestChain) -> dict[str, grpc.RpcMethodHandler]:
    """The API's method handlers, as the generated add_APIServicer_to_server makes them but
    with our decoders, each handing its request to the chain."""
    out = {}
    for m in api_pb2.DESCRIPTOR.services_by_name["API"].methods:
        request, response = getattr(api_pb2, m.input_type.name), getattr(api_pb2, m.output_type.name)
        if m.client_streaming:
            out[m.name] = grpc.stream_stream_rpc_method_handler(
                _duplex_handler(chain, m.name), request_deserializer=_decoder(request),
                response_serializer=response.SerializeToString)
        elif m.server_streaming:
            out[m.name] = grpc.unary_stream_rpc_method_handler(
                _stream_handler(chain, m.name), request_deserializer=_decoder(request),
                response_serializer=response.SerializeToString)
        else:
            out[m.name] = grpc.unary_unary_rpc_method_handler(
                _unary_handler(chain, m.name), request_deserializer=_decoder(request),
                response_serializer=response.SerializeToString)
    return out


async def _track_store_health(service: APIService, servicer: health.aio.HealthServicer,
                              names: tuple[str, ...]) -> None:
    """SERVING while the store can write; NOT_SERVING while it fails (a full disk), for the
    server as a whole ("") and the API service: the process stays up and keeps answering reads."""
    pending: set[asyncio.Task[None]] = set()

    async def publish(healthy: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in names:
            await servicer.set(name, status)

    def changed(_healthy: bool) -> None:
        # The store's state when the task runs, not when it was queued: quick flaps end right.
        task = asyncio.get_running_loop().create_task(publish(service.store.healthy))
        pending.add(task)
        task.add_done_callback(pending.discard)

    service.store.add_health_listener(changed)
    await publish(service.store.healthy)


def remote_chain(service: APIService, proxy: NodeProxy, server_limits: ServerLimits,
                 security: APISecurity | None = None) -> RequestChain:
    """The chain for clients over the network: authentication and authorization as security says,
    in-flight limits, Batch and watch bounds."""
    security = security or insecure()
    inflight = MaxInFlight(server_limits.max_requests_inflight, server_limits.max_mutating_requests_inflight)
    return RequestChain(service, proxy, authenticators=security.authenticators, authorizers=security.authorizers,
                        inflight=inflight, max_batch_bytes=server_limits.max_batch_bytes or None,
                        watch_limits=server_limits.watch, signer=security.signer,
                        server_pki=security.server_pki)


async def start_grpc_server(service: APIService, listen: str, server_limits: ServerLimits | None = None,
                            proxy: NodeProxy | None = None,
                            security: APISecurity | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve the API on listen (HOST:PORT, port 0 for any free port); returns the bound port.
    proxy: how logs and stats reach the agents (made here if not given); security: TLS and who
    may do what (default: plaintext, everything allowed, as --insecure)."""
    server_limits = server_limits or ServerLimits()
    security = security or insecure()
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files == resource.RLIM_INFINITY:
        open_files = 1 << 20
    server = grpc.aio.server(options=grpc_options(server_limits, open_files))
    chain = remote_chain(service, proxy or NodeProxy(service.store), server_limits, security)
    name = api_pb2.DESCRIPTOR.services_by_name["API"].full_name
    handlers = _handlers(chain)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    credentials = security.server_credentials()
    port = server.add_secure_port(listen, credentials) if credentials is not None else server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    await _track_store_health(service, health_servicer, ("", names[0]))
    return server, port
