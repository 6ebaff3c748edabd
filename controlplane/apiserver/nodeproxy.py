"""Reaching node agents: the API server proxies `ketch logs` and `ketch top` to them.

An agent publishes its endpoint in its Node (status.addresses InternalIP and
status.daemonEndpoints.kubeletEndpoint.Port); channels are cached per address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from controlplane.storage import Store
from ketch.api import errors
from ketch.v1 import api_pb2, api_pb2_grpc


def _map_rpc_error(err: grpc.aio.AioRpcError, node: str) -> errors.StatusError:
    reason = dict(err.trailing_metadata() or ()).get("ketch-reason", "")
    code = err.code().value[0]
    if code == errors.UNAVAILABLE:
        return errors.Unavailable(f"node {node} is not reachable: {err.details()}")
    return errors.from_code(code, err.details() or "", str(reason))


class NodeDialer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, node_name: str) -> api_pb2_grpc.NodeAgentStub:
        entry = self.store.get("Node", node_name)
        if entry is None:
            raise errors.NotFound(f'nodes "{node_name}" not found')
        node = entry.obj
        port = node.status.daemon_endpoints.kubelet_endpoint.port  # type: ignore[attr-defined]
        address = next((a.address for a in node.status.addresses  # type: ignore[attr-defined]
                        if a.type == "InternalIP"), "127.0.0.1")
        if not port:
            raise errors.Unavailable(f"node {node_name} publishes no agent endpoint")
        target = f"{address}:{port}"
        channel = self._channels.get(target)
        if channel is None:
            channel = grpc.aio.insecure_channel(target)
            self._channels[target] = channel
        return api_pb2_grpc.NodeAgentStub(channel)

    async def pod_logs(self, node: str, req: api_pb2.PodLogsRequest) -> AsyncIterator[api_pb2.LogChunk]:
        stub = self._stub(node)
        try:
            async for chunk in stub.PodLogs(req):
                yield chunk
        except grpc.aio.AioRpcError as err:
            raise _map_rpc_error(err, node) from None

    async def node_stats(self, node: str, req: api_pb2.NodeStatsRequest) -> api_pb2.NodeStatsResponse:
        stub = self._stub(node)
        try:
            return await stub.NodeStats(req, timeout=10)
        except grpc.aio.AioRpcError as err:
            raise _map_rpc_error(err, node) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
