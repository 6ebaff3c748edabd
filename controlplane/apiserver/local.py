"""The in-process transport: the control plane's own controllers call the API through the
request chain directly.

Same requests, same chain, same responses, same errors as over gRPC, without the network and
HTTP/2 framing: the callers are the loopback user and are not counted in flight. This is what lets
controllers run in the API server's process cheaply while staying ordinary API clients (they
could run elsewhere with GrpcTransport unchanged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from .authn import LOOPBACK
from .chain import RequestChain
from .nodeproxy import NodeProxy
from .service import APIService


class LocalTransport:
    def __init__(self, service: APIService, proxy: NodeProxy | None = None) -> None:
        self.service = service
        self.chain = RequestChain(service, proxy or NodeProxy(service.store))

    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        return await self.chain.unary(method, request, LOOPBACK)

    async def stream(self, method: str, request: Message,
                     inputs: AsyncIterator[Message] | None = None) -> AsyncIterator[Any]:
        async for item in self.chain.stream(method, request, LOOPBACK, inputs):
            yield item
            del item  # a stream waiting for its next item holds none it sent

    async def close(self) -> None:
        return None
