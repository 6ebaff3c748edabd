"""The in-process transport: the control plane's own controllers call APIService directly.

Same requests, same responses, same errors as over gRPC, without the network and HTTP/2
framing; this is what lets controllers run in the API server's process cheaply while staying
ordinary API clients (they could run elsewhere with GrpcTransport unchanged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from .service import APIService


class LocalTransport:
    def __init__(self, service: APIService) -> None:
        self.service = service
        self._unary = {
            "Create": service.create, "Get": service.get, "List": service.list,
            "Update": service.update, "Patch": service.patch, "Delete": service.delete,
            "Batch": service.batch, "NodeStats": service.node_stats, "Version": service.version,
        }
        self._streams = {"Watch": service.watch, "WatchBatched": service.watch_batched, "PodLogs": service.pod_logs}

    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        return await self._unary[method](request)  # type: ignore[operator]

    async def stream(self, method: str, request: Message) -> AsyncIterator[Any]:
        async for item in self._streams[method](request):  # type: ignore[operator]
            yield item

    async def close(self) -> None:
        return None
