"""Reaching node agents: the API server proxies `ketch logs`, `ketch exec`, attach and `ketch top` to them.

An agent publishes its endpoint in its Node (status.addresses and
status.daemonEndpoints.kubeletEndpoint.Port); channels are cached per address.

Whoever may write a Node's status chooses where the control plane connects, so the target is
checked before every dial, as kube-apiserver's node proxy checks it (proxyutil.IsProxyableIP and
IsProxyableHostname): an IP address or a DNS name, a port in 1-65535, and neither an
unspecified, link-local (169.254.169.254 is the cloud metadata service), multicast nor broadcast
address, for a DNS name among any of the addresses it resolves to. Unlike Kubernetes, loopback
is allowed: `ketch local up` and the tests run every agent on 127.0.0.1. Which client may write
which Node (and so publish an address at all) comes with authentication and the Node authorizer,
not here. With TLS (the default) the control plane dials agents with its kubelet-client
certificate and verifies each agent's serving certificate against the cluster CA, so a Node that
points elsewhere reaches nothing that will answer. A log request is validated before it leaves,
since the agent turns its names into paths (ketch.api.validation.podlogs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from controlplane.storage import Store
from ketch.api import errors
from ketch.api.attach import stdin_refusal
from ketch.api.validation import field
from ketch.api.validation.podlogs import check_pod_log_request
from ketch.v1 import api_pb2, api_pb2_grpc

# Which of a Node's addresses the agent is dialled at, in order (the agent publishes InternalIP).
ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS", "Hostname")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _map_rpc_error(err: grpc.aio.AioRpcError, node: str) -> errors.StatusError:
    reason = dict(err.trailing_metadata() or ()).get("ketch-reason", "")
    code = err.code().value[0]
    if code == errors.UNAVAILABLE:
        return errors.Unavailable(f"node {node} is not reachable: {err.details()}")
    return errors.from_code(code, err.details() or "", str(reason))


def ip_refusal(ip: IPAddress) -> str:
    """Why the control plane does not dial this IP ("" when it does)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip == _BROADCAST:
        return "the broadcast address"
    return ""


def is_dns_name(host: str) -> bool:
    return len(host) <= 253 and not field.dns1123_subdomain(host.lower())


def agent_endpoint(node: Any) -> tuple[str, int]:
    """(host, port) of the node's agent from its status, checked for form; raises StatusError."""
    name = node.metadata.name
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    if not port:
        raise errors.Unavailable(f"node {name} publishes no agent endpoint")
    if not 1 <= port <= 65535:
        raise errors.BadRequest(f"node {name} publishes the agent port {port}: must be between 1 and 65535")
    by_type: dict[str, str] = {}
    for a in node.status.addresses:
        by_type.setdefault(a.type, a.address)
    host = next((by_type[t] for t in ADDRESS_PREFERENCE if by_type.get(t)), "")
    if not host:  # (kube-apiserver: "no preferred addresses found", an internal error)
        raise errors.InternalError(f"node {name} publishes no address")
    try:
        ip: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None and not is_dns_name(host):
        raise errors.BadRequest(f"node {name} publishes the address {host[:100]!r}, which is neither an IP "
                                "address nor a DNS name")
    if ip is not None and (why := ip_refusal(ip)):
        raise errors.BadRequest(f"node {name} publishes the address {host}, which the control plane does not "
                                f"dial: {why}")
    return host, port


async def _check_resolved(name: str, host: str, port: int) -> None:
    """Every address a DNS name resolves to must be one the control plane dials."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise errors.Unavailable(f"node {name} is not reachable: cannot resolve {host}: {err}") from None
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if why := ip_refusal(ip):
            raise errors.BadRequest(f"node {name} publishes the address {host}, which resolves to {ip}, which "
                                    f"the control plane does not dial: {why}")


def grpc_target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NodeDialer:
    """credentials: TLS to the agents (the CA, and the control plane's client certificate), or
    None for plaintext (--insecure)."""

    def __init__(self, store: Store, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.store = store
        self.credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def _stub(self, node_name: str) -> api_pb2_grpc.NodeAgentStub:
        entry = self.store.get("Node", node_name)
        if entry is None:
            raise errors.NotFound(f'nodes "{node_name}" not found')
        host, port = agent_endpoint(entry.obj)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            await _check_resolved(node_name, host, port)
        target = grpc_target(host, port)
        channel = self._channels.get(target)
        if channel is None:
            channel = (grpc.aio.secure_channel(target, self.credentials) if self.credentials is not None
                       else grpc.aio.insecure_channel(target))
            self._channels[target] = channel
        return api_pb2_grpc.NodeAgentStub(channel)

    async def pod_logs(self, node: str, req: api_pb2.PodLogsRequest) -> AsyncIterator[api_pb2.LogChunk]:
        check_pod_log_request(req)
        stub = await self._stub(node)
        try:
            async for chunk in stub.PodLogs(req):
                yield chunk
        except grpc.aio.AioRpcError as err:
            raise _map_rpc_error(err, node) from None

    async def exec(self, node: str, req: api_pb2.ExecRequest,
                   inputs: AsyncIterator[api_pb2.ExecInput] | None = None) -> AsyncIterator[api_pb2.ExecOutput]:
        """inputs: the caller's later messages (stdin), forwarded only when the request asks for
        stdin; the caller's end of input ends the stream to the agent, which closes stdin."""
        async for out in self._duplex(node, "Exec", api_pb2.ExecInput(request=req),
                                      inputs if req.stdin else None, api_pb2.ExecInput):
            yield out

    async def attach(self, node: str, req: api_pb2.AttachRequest,
                     inputs: AsyncIterator[api_pb2.AttachInput] | None = None) -> AsyncIterator[api_pb2.AttachOutput]:
        """inputs: the caller's later messages (the container's stdin); their end ends the stream
        to the agent (with stdinOnce the agent then closes the container's stdin)."""
        async for out in self._duplex(node, "Attach", api_pb2.AttachInput(request=req), inputs,
                                      api_pb2.AttachInput):
            yield out

    async def _duplex(self, node: str, method: str, first: Any, inputs: AsyncIterator[Any] | None,
                      stdin_message: Callable[..., Any]) -> AsyncIterator[Any]:
        """A bidirectional call to the node's agent: the request, then each stdin chunk of inputs
        as stdin_message(stdin=...); the agent's messages back."""
        stub = await self._stub(node)

        async def requests() -> AsyncIterator[Any]:
            yield first
            if inputs is not None:
                async for message in inputs:
                    if message.stdin:
                        yield stdin_message(stdin=message.stdin)

        try:
            async for out in getattr(stub, method)(requests()):
                yield out
        except grpc.aio.AioRpcError as err:
            raise _map_rpc_error(err, node) from None

    async def node_stats(self, node: str, req: api_pb2.NodeStatsRequest) -> api_pb2.NodeStatsResponse:
        stub = await self._stub(node)
        try:
            return await stub.NodeStats(req, timeout=10)
        except grpc.aio.AioRpcError as err:
            raise _map_rpc_error(err, node) from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


class NodeProxy:
    """The pods/log, pods/exec, pods/attach and nodes/stats subresources: served by the node the pod is (or was) on."""

    def __init__(self, store: Store, dialer: NodeDialer | None = None) -> None:
        self.store = store
        self.dialer = dialer if dialer is not None else NodeDialer(store)

    async def pod_logs(self, req: api_pb2.PodLogsRequest) -> AsyncIterator[api_pb2.LogChunk]:
        ns = req.namespace or "default"
        entry = self.store.get("Pod", f"{ns}/{req.name}")
        forward = api_pb2.PodLogsRequest()
        forward.CopyFrom(req)
        forward.namespace = ns
        if entry is not None:
            pod = entry.obj
            node = pod.spec.node_name  # type: ignore[attr-defined]
            if not node:
                raise errors.BadRequest(f'pod "{req.name}" is not scheduled to a node yet')
            forward.pod_uid = pod.metadata.uid  # type: ignore[attr-defined]
            if not req.container:
                containers = pod.spec.containers  # type: ignore[attr-defined]
                if len(containers) > 1:
                    names = " ".join(c.name for c in containers)
                    raise errors.BadRequest(
                        f"a container name must be specified for pod {req.name}, choose one of: [{names}]")
                forward.container = containers[0].name if containers else ""
            candidates = [node]
        else:
            # The pod is gone; its node keeps its logs for a while. Ask the nodes.
            candidates = [e.name for e in self.store.list("Node")]
        last: errors.StatusError = errors.NotFound(f'pods "{req.name}" not found')
        for node in candidates:
            try:
                async for chunk in self.dialer.pod_logs(node, forward):
                    yield chunk
                return
            except errors.NotFound as err:
                last = err
                continue
        raise last

    async def exec(self, req: api_pb2.ExecRequest,
                   inputs: AsyncIterator[api_pb2.ExecInput] | None = None) -> AsyncIterator[api_pb2.ExecOutput]:
        """A command in a running pod's container, run by its node's agent (which refuses a
        container that is not running); a completed pod is refused here, as kube-apiserver does."""
        if not req.command:
            raise errors.BadRequest("you must specify at least one command for the container")
        ns, pod, node, container = self._target(req, "exec into")
        forward = api_pb2.ExecRequest()
        forward.CopyFrom(req)
        forward.namespace = ns
        forward.pod_uid = pod.metadata.uid
        forward.container = container.name
        async for out in self.dialer.exec(node, forward, inputs):
            yield out

    async def attach(self, req: api_pb2.AttachRequest,
                     inputs: AsyncIterator[api_pb2.AttachInput] | None = None) -> AsyncIterator[api_pb2.AttachOutput]:
        """The caller's bytes into a running container's stdin, written by its node's agent. A
        completed pod and a container without stdin: true are refused here; a container that is
        not running, by the agent."""
        ns, pod, node, container = self._target(req, "attach")
        if not container.stdin:
            raise errors.BadRequest(stdin_refusal(container.name))
        forward = api_pb2.AttachRequest(namespace=ns, name=req.name, container=container.name,
                                        pod_uid=pod.metadata.uid)
        async for out in self.dialer.attach(node, forward, inputs):
            yield out

    def _target(self, req: api_pb2.ExecRequest | api_pb2.AttachRequest, verb: str) -> tuple[str, Any, str, Any]:
        """(namespace, pod, node, container) an exec or attach goes to, or kube-apiserver's
        refusal: no such pod, a completed one, one not yet bound, no such container, or none
        named where the pod has several."""
        ns = req.namespace or "default"
        entry = self.store.get("Pod", f"{ns}/{req.name}")
        if entry is None:
            raise errors.NotFound(f'pods "{req.name}" not found')
        pod: Any = entry.obj
        phase = pod.status.phase
        if phase in ("Succeeded", "Failed"):
            raise errors.BadRequest(f"cannot {verb} a container in a completed pod; current phase is {phase}")
        node = pod.spec.node_name
        if not node:
            raise errors.BadRequest(f"pod {req.name} does not have a host assigned")
        containers = {c.name: c for c in pod.spec.containers}
        name = req.container
        if not name:
            if len(containers) > 1:
                raise errors.BadRequest(
                    f"a container name must be specified for pod {req.name}, choose one of: [{' '.join(containers)}]")
            name = next(iter(containers), "")
        if name not in containers:
            raise errors.BadRequest(f"container {name} is not valid for pod {req.name}")
        return ns, pod, node, containers[name]

    async def node_stats(self, req: api_pb2.NodeStatsRequest) -> api_pb2.NodeStatsResponse:
        if self.store.get("Node", req.node) is None:
            raise errors.NotFound(f'nodes "{req.node}" not found')
        return await self.dialer.node_stats(req.node, req)

    async def close(self) -> None:
        await self.dialer.close()
