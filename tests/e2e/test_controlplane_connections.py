"""Idle connections must not lock new clients out: a real ketch-controlplane started with a low
open-files limit (as CI machines and systemd units have), a crowd of idle connections, and a new
client that must be served.

Before: with the soft limit at 1024, 1,100 idle connections locked every new client out for the
2 minutes gRPC waits for a handshake (for ever once they had sent their HTTP/2 SETTINGS).
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ketch.local.launcher import LocalCluster
from ketch.v1 import api_pb2

from .harness import wait_until

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
# ... and the acknowledgement of the server's, which a client that is merely idle sends (without
# it gRPC drops the connection after its SETTINGS timeout).
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
SERVED_WITHIN = 60.0


class ControlPlane:
    """A control plane process (memory store, no controllers) under the given open-files limits."""

    def __init__(self, workdir: Path, soft: int, hard: int, flags: list[str]) -> None:
        self.cluster = LocalCluster(workdir, insecure=True)  # raw gRPC clients: plaintext
        self.address = self.cluster.server
        member = self.cluster.start_controlplane("--store", "memory", "--controllers", "none", *flags,
                                                 open_files=(soft, hard))
        self.log_path = member.log_path

    def get_default(self, timeout: float) -> float:
        """Seconds a brand-new client took to be served a Get."""
        start = time.monotonic()
        # A connection of its own, not one this process already holds.
        with grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            get = ch.unary_unary("/ketch.v1.API/Get", request_serializer=api_pb2.GetRequest.SerializeToString,
                                 response_deserializer=api_pb2.ObjectResponse.FromString)
            try:
                get(api_pb2.GetRequest(kind="Namespace", name="default"), wait_for_ready=True, timeout=timeout)
            except grpc.RpcError as err:
                raise AssertionError(f"a new client was not served within {timeout:.0f} s: {err.code().name}; "
                                     f"control plane log:\n{self.log_path.read_text()[-2000:]}") from None
        return time.monotonic() - start

    def idle_crowd(self, count: int, settings: bool) -> list[socket.socket]:
        """count connections that send the HTTP/2 preface (and SETTINGS) and then nothing."""
        host, port = self.address.rsplit(":", 1)
        socks = []
        for _ in range(count):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(PREFACE + (SETTINGS + SETTINGS_ACK if settings else b""))
            socks.append(s)
        return socks


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    made: list[ControlPlane] = []
    socks: list[socket.socket] = []

    def make(soft: int, hard: int, flags: list[str] | None = None) -> tuple[ControlPlane, list[socket.socket]]:
        cp = ControlPlane(tmp_path / f"cp-{len(made)}", soft, hard, flags or [])
        made.append(cp)
        wait_until(lambda: cp.get_default(30) >= 0, 60, "the control plane to serve")
        return cp, socks

    own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # This process holds the crowd's sockets.
    resource.setrlimit(resource.RLIMIT_NOFILE, (own_hard, own_hard))
    try:
        yield make
    finally:
        for s in socks:
            s.close()
        for cp in made:
            cp.cluster.stop(20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (own_soft, own_hard))


def test_1100_idle_connections_do_not_lock_out_a_new_client_under_a_low_soft_limit(spawn) -> None:  # type: ignore[no-untyped-def]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-files limit ({hard}) leaves no room above a low soft limit")
    cp, socks = spawn(256, min(4096, hard) if hard != resource.RLIM_INFINITY else 4096)
    socks += cp.idle_crowd(1100, settings=True)
    # The control plane raised its soft limit to the hard one: the crowd fits, the client is served.
    cp.get_default(SERVED_WITHIN)


@pytest.mark.parametrize("settings", [True, False], ids=["preface+settings", "preface-only"])
def test_idle_connections_are_shed_when_the_hard_limit_is_low(spawn, settings: bool) -> None:  # type: ignore[no-untyped-def]
    # 256 descriptors in all: the crowd is more than the server can hold. Connections past its cap
    # are closed at once, the rest when idle (2 s here) or silent past the handshake timeout.
    cp, socks = spawn(256, 256, ["--max-connection-idle", "2s"])
    socks += cp.idle_crowd(300, settings=settings)
    cp.get_default(SERVED_WITHIN)
