"""Clients with several API server addresses: a call moves past an address where no connection
can be made, within the same call; a write that may have reached a server is not sent again;
the address that worked stays the first one tried; a watch resumes on another address."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from controlplane.apiserver import security as api_security
from controlplane.apiserver.server import start_grpc_server
from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors
from ketch.client import kubeconfig
from ketch.client.clientset import Client
from ketch.client.config import tls_of
from ketch.client.informer import Informer
from ketch.client.transport import GrpcTransport
from ketch.security import certs
from ketch.testing.deadends import closed_port, listener
from ketch.v1 import core_pb2
from nodeagent import credentials

from ..conftest import eventually


@contextlib.contextmanager
def dead(kind: str) -> Iterator[str]:
    if kind == "closed":
        yield closed_port()
    else:
        with listener(reset=kind == "reset") as address:
            yield address


def namespace(prefix: str) -> core_pb2.Namespace:
    ns = core_pb2.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.generate_name = prefix
    return ns


async def made(api: TestAPIServer, prefix: str) -> list[str]:
    assert api.local is not None
    items, _ = await api.local.list("Namespace")
    return [n.metadata.name for n in items if n.metadata.name.startswith(prefix)]


@pytest.mark.parametrize("kind", ["closed", "reset", "silent"])
async def test_calls_move_past_a_dead_address_within_the_call(kind: str) -> None:
    async with TestAPIServer() as api:
        with dead(kind) as bad:
            transport = GrpcTransport(f"{bad},{api.address}", tls=api.admin_tls, connect_timeout=1.0)
            client = Client(transport)
            try:
                items, _ = await client.list("Namespace")  # the first call of this client
                assert "default" in {n.metadata.name for n in items}
                assert transport.current == api.address  # sticky: later calls go there first
                await client.create(namespace(f"fo-{kind}-"))
                assert len(await made(api, f"fo-{kind}-")) == 1
            finally:
                await client.close()


async def test_a_write_to_a_dead_address_first_is_sent_once() -> None:
    """A create whose first address refuses connections was never sent there: it goes to the
    next address, within the call, and makes exactly one object."""
    async with TestAPIServer() as api:
        client = Client(GrpcTransport(f"{closed_port()},{api.address}", tls=api.admin_tls))
        try:
            await client.create(namespace("fo-write-"))
        finally:
            await client.close()
        assert len(await made(api, "fo-write-")) == 1


async def test_a_watch_starts_on_the_live_address_within_the_call() -> None:
    async with TestAPIServer() as api:
        assert api.local is not None
        client = Client(GrpcTransport(f"{closed_port()},{api.address}", tls=api.admin_tls))
        try:
            _, rv = await api.local.list("Namespace")
            await api.local.create(core_pb2.Namespace(api_version="v1", kind="Namespace", metadata={"name": "seen"}))
            watch = client.watch("Namespace", resource_version=rv, allow_bookmarks=False)
            async with contextlib.aclosing(watch):
                event = await anext(watch)
            assert (event.type, event.object.metadata.name if event.object else "") == ("ADDED", "seen")
        finally:
            await client.close()


async def test_concurrent_calls_fail_over_together_and_write_once() -> None:
    """Many calls at once on a new client whose first address refuses: each moves on (none
    closes the channel another call is using) and each create makes one object."""
    async with TestAPIServer() as api:
        client = Client(GrpcTransport(f"{closed_port()},{api.address}", tls=api.admin_tls))
        try:
            await asyncio.gather(*(client.create(namespace("fo-many-")) for _ in range(40)),
                                 *(client.list("Namespace") for _ in range(20)))
        finally:
            await client.close()
        assert len(await made(api, "fo-many-")) == 40


async def test_waiting_for_ready_on_dead_addresses_ends_at_the_deadline() -> None:
    client = Client(GrpcTransport(f"{closed_port()},{closed_port()}", wait_for_ready=True, timeout=1.0))
    try:
        with pytest.raises(errors.Timeout) as info:  # it ends: the call's timeout bounds the rounds
            await client.list("Namespace")
    finally:
        await client.close()
    assert "Connection refused" in info.value.message


async def test_every_address_dead_names_each() -> None:
    a, b = closed_port(), closed_port()
    client = Client(GrpcTransport(f"{a},{b}"))
    try:
        with pytest.raises(errors.Unavailable) as info:
            await client.list("Namespace")
    finally:
        await client.close()
    assert a in info.value.message and b in info.value.message


class Unavailable(grpc.GenericRpcHandler):
    """A server that takes every call and answers UNAVAILABLE: a call that reached it may have
    been acted on, as far as a client can tell."""

    def __init__(self, reason: str = "") -> None:
        self.calls: list[str] = []
        self.reason = reason  # an API server's own answer names one in `ketch-reason`

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(details.method)

        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls.append(method.rsplit("/", 1)[-1])
            trailer = (("ketch-reason", self.reason),) if self.reason else ()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going away", trailing_metadata=trailer)
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)


async def test_a_write_that_reached_a_server_is_not_sent_again() -> None:
    async with TestAPIServer(insecure=True) as api:
        handler = Unavailable()
        fake = grpc.aio.server()
        fake.add_generic_rpc_handlers((handler,))
        port = fake.add_insecure_port("127.0.0.1:0")
        await fake.start()
        try:
            client = Client(GrpcTransport(f"127.0.0.1:{port},{api.address}"))
            try:
                with pytest.raises(errors.Unavailable):
                    await client.create(namespace("fo-once-"))
                assert handler.calls == ["Create"]
                assert await made(api, "fo-once-") == []  # not sent on to the live address
                # A read that reached the same server goes on to the next address.
                client2 = Client(GrpcTransport(f"127.0.0.1:{port},{api.address}"))
                try:
                    items, _ = await client2.list("Namespace")
                    assert "default" in {n.metadata.name for n in items}
                    assert handler.calls == ["Create", "List"]
                finally:
                    await client2.close()
            finally:
                await client.close()
        finally:
            await fake.stop(0)


async def test_an_api_servers_own_unavailable_answer_is_final() -> None:
    """A server that answers UNAVAILABLE itself (as for logs from a node it cannot reach) gave
    the answer: a read is not sent on to the next address, which would say the same."""
    async with TestAPIServer(insecure=True) as api:
        handler = Unavailable(reason="ServiceUnavailable")
        fake = grpc.aio.server()
        fake.add_generic_rpc_handlers((handler,))
        port = fake.add_insecure_port("127.0.0.1:0")
        await fake.start()
        transport = GrpcTransport(f"127.0.0.1:{port},{api.address}")
        client = Client(transport)
        try:
            with pytest.raises(errors.Unavailable, match="going away"):
                await client.list("Namespace")
            assert handler.calls == ["List"]
            assert transport.current == f"127.0.0.1:{port}"
        finally:
            await client.close()
            await fake.stop(0)


async def test_an_informer_resumes_on_another_address_without_missing_an_event() -> None:
    """Two gRPC servers over one store; the informer's server stops; it resumes its watch on
    the other from its last resourceVersion (no relist) and sees every change exactly once."""
    async with TestAPIServer(insecure=True) as api:
        assert api.local is not None
        second, port = await start_grpc_server(api.service, "127.0.0.1:0", None, api.proxy, api_security.insecure())
        first = f"127.0.0.1:{port}"
        client = Client(GrpcTransport(f"{first},{api.address}"))
        informer: Informer[Any] = Informer(client, "Namespace")
        added: list[str] = []
        informer.add_handler(on_add=lambda ns: added.append(ns.metadata.name))
        informer.start()
        try:
            assert await informer.wait_for_sync(10)
            await api.local.create(core_pb2.Namespace(api_version="v1", kind="Namespace",
                                                      metadata={"name": "before"}))
            await eventually(lambda: "before" in added, what="the informer to see `before`")
            assert isinstance(client.transport, GrpcTransport) and client.transport.current == first
            await second.stop(0)
            for name in ("after-1", "after-2", "after-3"):
                await api.local.create(core_pb2.Namespace(api_version="v1", kind="Namespace",
                                                          metadata={"name": name}))
            await eventually(lambda: "after-3" in added, what="the informer to resume on the other address")
            assert client.transport.current == api.address
            assert informer.relists == 1  # resumed from its resourceVersion, not relisted
            names = [n for n in added if n.startswith(("before", "after"))]
            assert names == ["before", "after-1", "after-2", "after-3"]
        finally:
            await informer.stop()
            await client.close()
            await second.stop(0)


async def test_the_servers_certificate_comes_from_the_first_address_that_answers() -> None:
    """The agent's join pins the CA of the first address that answers over TLS; a kubeconfig
    with insecure-skip-tls-verify takes the CA the first answering address presents."""
    async with TestAPIServer() as api:
        assert api.pki is not None
        servers = f"{closed_port()},{api.address}"
        ca = certs.load_cert(api.pki.ca_pem)
        pinned = await asyncio.to_thread(credentials.pinned_ca, servers, certs.der_sha256(ca), 5.0)
        assert certs.load_cert(pinned) == ca
        tls = await asyncio.to_thread(tls_of, kubeconfig.Credentials(servers, insecure_skip_verify=True))
        assert tls is not None and ca in certs.load_certs(tls.ca)
        with pytest.raises(credentials.JoinError, match="cannot reach the control plane"):
            await asyncio.to_thread(credentials.pinned_ca, f"{closed_port()},{closed_port()}", "x", 5.0)
