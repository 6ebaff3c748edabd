"""The gRPC face of the API server: servicer adapters, health, reflection, size limits.

Thin: every handler calls APIService and maps StatusError to a gRPC status with Kubernetes'
reason in the trailing metadata key `ketch-reason`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ketch.api import errors
from ketch.v1 import api_pb2, api_pb2_grpc

from .nodeproxy import NodeDialer
from .service import APIService

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", -1),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_pings_without_data", 0),
]


async def _abort(context: grpc.aio.ServicerContext, err: errors.StatusError) -> None:
    await context.abort(_STATUS.get(err.code, grpc.StatusCode.UNKNOWN), err.message,
                        trailing_metadata=(("ketch-reason", err.reason),))


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


class APIServicer(api_pb2_grpc.APIServicer):
    def __init__(self, service: APIService) -> None:
        self.service = service

    async def _unary(self, fn, request, context):  # type: ignore[no-untyped-def]
        try:
            return await fn(request)
        except errors.StatusError as err:
            await _abort(context, err)
        except Exception as err:
            log.exception("internal error in %s", getattr(fn, "__name__", fn))
            await _abort(context, errors.InternalError(f"internal error: {err}"))

    async def Create(self, request, context):
        return await self._unary(self.service.create, request, context)

    async def Get(self, request, context):
        return await self._unary(self.service.get, request, context)

    async def List(self, request, context):
        return await self._unary(self.service.list, request, context)

    async def Update(self, request, context):
        return await self._unary(self.service.update, request, context)

    async def Patch(self, request, context):
        return await self._unary(self.service.patch, request, context)

    async def Delete(self, request, context):
        return await self._unary(self.service.delete, request, context)

    async def Batch(self, request, context):
        return await self._unary(self.service.batch, request, context)

    async def NodeStats(self, request, context):
        return await self._unary(self.service.node_stats, request, context)

    async def Version(self, request, context):
        return await self._unary(self.service.version, request, context)

    async def _stream(self, gen: AsyncIterator, context) -> AsyncIterator:  # type: ignore[no-untyped-def]
        try:
            async for item in gen:
                yield item
        except errors.StatusError as err:
            await _abort(context, err)
        except Exception as err:
            log.exception("internal error in a stream")
            await _abort(context, errors.InternalError(f"internal error: {err}"))

    async def Watch(self, request, context):
        async for item in self._stream(self.service.watch(request), context):
            yield item

    async def WatchBatched(self, request, context):
        async for item in self._stream(self.service.watch_batched(request), context):
            yield item

    async def PodLogs(self, request, context):
        async for item in self._stream(self.service.pod_logs(request), context):
            yield item


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


async def start_grpc_server(service: APIService, listen: str) -> tuple[grpc.aio.Server, int]:
    """Serve the API on listen (HOST:PORT, port 0 for any free port); returns the bound port."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    api_pb2_grpc.add_APIServicer_to_server(APIServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        api_pb2.DESCRIPTOR.services_by_name["API"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    await _track_store_health(service, health_servicer, ("", names[0]))
    if service.node_dialer is None:
        service.node_dialer = NodeDialer(service.store)
    return server, port
