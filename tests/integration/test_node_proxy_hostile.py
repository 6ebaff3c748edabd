"""The control plane's node proxy against hostile requests and hostile Nodes, with the real API
server (gRPC, its real NodeDialer) and a real agent gRPC server over a pods dir on disk.

- A log request whose pod uid or names would reach outside the agent's pods dir is refused with
  INVALID_ARGUMENT by the control plane before it is forwarded, and by the agent when sent to it
  directly; nothing is read.
- The control plane dials only sane agent endpoints: link-local (cloud metadata), unspecified,
  multicast and broadcast addresses are refused with a clear error; loopback works.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, manifest
from ketch.v1 import api_pb2, api_pb2_grpc
from nodeagent.runtime import checkpoint, logs
from nodeagent.runtime.checkpoint import PodRecord
from nodeagent.server import LogSource, NodeAgentServicer, start_server
from nodeagent.status import ContainerRun, PodRun

from .test_cli_nodes_rollout import make_pod
from .test_cli_support import CLI

DEADLINE = 20.0  # every call below answers at once when it works; this only bounds a broken build


class RecordingServicer(NodeAgentServicer):
    """The agent's real servicer, remembering which log requests reached it."""

    def __init__(self, source: LogSource) -> None:
        super().__init__("node-a", source, lambda: [])
        self.seen: list[api_pb2.PodLogsRequest] = []

    async def PodLogs(self, request, context):  # type: ignore[no-untyped-def]
        self.seen.append(request)
        async for chunk in super().PodLogs(request, context):
            yield chunk


class Agent:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pods = root / "pods"
        self.pods.mkdir(parents=True)
        self.servicer = RecordingServicer(LogSource(self.pods, lambda uid: None, lambda u, c, r: False,
                                                    logs.LogManager()))
        self.port = 0
        self.server: Any = None

    def keep(self, uid: str, namespace: str, name: str, text: str, root: Path | None = None) -> None:
        """A finished pod's checkpoint and log, as the agent leaves them (under root: planted)."""
        rec = PodRecord(uid, namespace, name, PodRun(start_time=1.0), container_names=["c"])
        rec.run.containers["c"] = ContainerRun("c", state="terminated")
        where = root or self.pods
        tag = uid if root is None else "secret"
        checkpoint.write(str(where / f"{tag}.state.json"), checkpoint.to_dict(rec))
        (where / f"{tag}.c.0.log").write_text(text)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    a = Agent(tmp_path / "agent")
    a.server, a.port = await start_server(a.servicer, "127.0.0.1:0")
    try:
        yield a
    finally:
        await a.server.stop(0)


async def node(api: TestAPIServer, name: str, addresses: list[tuple[str, str]], port: int) -> None:
    created = await api.client.create(manifest.from_dict({"apiVersion": "v1", "kind": "Node",
                                                          "metadata": {"name": name}}))
    created.status.CopyFrom(manifest.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                   "conditions": [{"type": "Ready", "status": "True"}]}}).status)
    await api.client.update_status(created)


async def read_logs(client: Any, req: api_pb2.PodLogsRequest) -> bytes:
    async def go() -> bytes:
        return b"".join([chunk.data async for chunk in client.transport.stream("PodLogs", req)])
    return await asyncio.wait_for(go(), DEADLINE)


async def test_logs_through_the_proxy_of_a_loopback_agent(api: TestAPIServer, agent: Agent) -> None:
    await node(api, "node-a", [("InternalIP", "127.0.0.1"), ("Hostname", "node-a")], agent.port)
    pod = await make_pod(api.client, "p", "node-a")
    agent.keep(pod.metadata.uid, "default", "p", "hello\n")
    r = await asyncio.wait_for(CLI(api.client)("logs", "p"), DEADLINE)
    assert (r.code, r.out, r.err) == (0, "hello\n", "")


@pytest.mark.parametrize(("req", "field"), [
    (api_pb2.PodLogsRequest(namespace="default", name="ghost", pod_uid="../secret"), "podUID"),
    (api_pb2.PodLogsRequest(namespace="default", name="ghost", container="../c"), "container"),
    (api_pb2.PodLogsRequest(namespace="../../etc", name="ghost"), "namespace"),
], ids=["pod uid", "container", "namespace"])
async def test_a_log_request_reaching_outside_the_pods_dir_is_refused_and_reads_nothing(
        api: TestAPIServer, agent: Agent, req: api_pb2.PodLogsRequest, field: str) -> None:
    await node(api, "node-a", [("InternalIP", "127.0.0.1")], agent.port)
    # What `pods/../secret.state.json` and `pods/../secret.c.0.log` would find:
    agent.keep("../secret", "default", "ghost", "TOP SECRET\n", root=agent.root)
    # Through the control plane: refused before it is forwarded.
    with pytest.raises(errors.Invalid, match=f"is invalid: {field}: Invalid value: ") as caught:
        await read_logs(api.client, req)
    assert caught.value.code == errors.INVALID_ARGUMENT
    assert agent.servicer.seen == []
    # Straight to the agent (as a compromised control plane could): refused there too.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.port}") as channel:
        call = api_pb2_grpc.NodeAgentStub(channel).PodLogs(req, timeout=DEADLINE)
        with pytest.raises(grpc.aio.AioRpcError) as direct:
            _ = [chunk async for chunk in call]
    assert direct.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}: Invalid value" in (direct.value.details() or "")


HOSTILE_TARGETS = [
    ("169.254.169.254", "a link-local address"),
    ("0.0.0.0", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("255.255.255.255", "the broadcast address"),
    ("::ffff:169.254.169.254", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("::", "an unspecified address"),
]


@pytest.mark.parametrize(("address", "why"), HOSTILE_TARGETS, ids=[a for a, _ in HOSTILE_TARGETS])
async def test_the_control_plane_does_not_dial_hostile_node_addresses(
        api: TestAPIServer, address: str, why: str) -> None:
    await node(api, "evil", [("InternalIP", address)], 10250)
    await make_pod(api.client, "p", "evil")
    cli = CLI(api.client)
    want = (f"Error from server (BadRequest): node evil publishes the address {address}, which the control "
            f"plane does not dial: {why}\n")
    r = await asyncio.wait_for(cli("logs", "p"), DEADLINE)
    assert (r.code, r.err) == (1, want)
    with pytest.raises(errors.BadRequest) as caught:  # (`ketch top` words it as kubectl: no metrics)
        await asyncio.wait_for(api.client.node_stats("evil"), DEADLINE)
    assert caught.value.message == want.removeprefix("Error from server (BadRequest): ").rstrip()


async def test_a_node_without_an_address_is_not_dialled_on_the_control_planes_loopback(
        api: TestAPIServer, agent: Agent) -> None:
    await node(api, "bare", [], agent.port)
    pod = await make_pod(api.client, "p", "bare")
    agent.keep(pod.metadata.uid, "default", "p", "reached the control plane's own loopback\n")
    r = await asyncio.wait_for(CLI(api.client)("logs", "p"), DEADLINE)
    assert (r.code, r.err) == (1, "Error from server (InternalError): node bare publishes no address\n")
    assert agent.servicer.seen == []


async def test_a_dns_name_is_not_dialled_if_any_address_it_resolves_to_is_refused(
        api: TestAPIServer, agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    await node(api, "named", [("InternalDNS", "agent.example.test")], agent.port)
    pod = await make_pod(api.client, "p", "named")
    agent.keep(pod.metadata.uid, "default", "p", "by name\n")
    answers = {"agent.example.test": ["127.0.0.1", "169.254.169.254"]}

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    r = await asyncio.wait_for(CLI(api.client)("logs", "p"), DEADLINE)
    assert (r.code, r.err) == (1, "Error from server (BadRequest): node named publishes the address "
                                  "agent.example.test, which resolves to 169.254.169.254, which the control plane "
                                  "does not dial: a link-local address\n")
    assert agent.servicer.seen == []
