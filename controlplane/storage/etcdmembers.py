"""One gRPC channel per etcd member, and stubs that move on to the next member when one is down.

Why not one channel for all members (`ipv4:A,B,C`, pick_first): over TLS such a channel checks
every member's certificate against one name, the whole target, which no member's certificate
holds, so a control plane could not reach a TLS etcd of several members at all. etcd's own
client (clientv3) keeps one connection per endpoint, each checked against its own address;
this does the same: each member's channel has its own target, so its certificate is checked
against its own address.

A call goes to the member that last answered; when that member is unreachable (UNAVAILABLE) it
tries the others in turn within the same deadline, and with wait_for_ready it keeps trying them
until the deadline. A Txn retried after UNAVAILABLE cannot apply twice unnoticed: the backend's
transactions compare the meta key's mod_revision, so a retry of one that did apply fails the
compare loudly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from aetcd.rpc import rpc_pb2_grpc

RETRY_PAUSE = 0.2  # seconds between rounds over every member while waiting for one to answer


def member_target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Members:
    """The channels, one per member, and which member answered last."""

    def __init__(self, endpoints: list[tuple[str, int]], credentials: grpc.ChannelCredentials | None,
                 options: list[tuple[str, Any]]) -> None:
        self.targets = [member_target(h, p) for h, p in endpoints]
        self.channels = [grpc.secure_channel(t, credentials, options=options) if credentials is not None
                         else grpc.insecure_channel(t, options=options) for t in self.targets]
        self.current = 0

    def call(self, stubs: list[Any], method: str, request: Any, timeout: float | None,
             wait_for_ready: bool | None) -> Any:
        """stubs[i].method(request) on the members in turn, from the last one that answered.

        UNAVAILABLE (nothing listening, connection lost, etcd without a leader) moves on to the
        next member at once. A call that timed out is not tried again (a Txn may have applied):
        the error goes up and the next call starts at the next member. With wait_for_ready (the
        read at start-up, which may repeat) each member gets its share of the deadline, and the
        rounds go on until the deadline.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else 3600.0)
        count = len(stubs)
        last: grpc.RpcError | None = None
        while True:
            for step in range(count):
                index = (self.current + step) % count
                remaining = deadline - time.monotonic()
                if remaining <= 0 and last is not None:
                    break
                budget = max(remaining, 0.001)
                if wait_for_ready and step < count - 1:
                    budget /= count - step  # a member that never answers must not take it all
                try:
                    result = getattr(stubs[index], method)(request, timeout=budget)
                except grpc.RpcError as err:
                    last = err
                    if err.code() == grpc.StatusCode.UNAVAILABLE:
                        continue
                    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        if wait_for_ready:
                            continue
                        self.current = (index + 1) % count
                    raise
                self.current = index
                return result
            if not wait_for_ready or time.monotonic() + RETRY_PAUSE >= deadline:
                assert last is not None
                raise last
            time.sleep(RETRY_PAUSE)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


class FailoverStub:
    """Stands in for an etcd stub (KVStub, MaintenanceStub): `stub.Range(request, timeout=...)`."""

    def __init__(self, members: Members, make_stub: Callable[[grpc.Channel], Any]) -> None:
        self._members = members
        self._stubs = [make_stub(channel) for channel in members.channels]

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(request: Any, timeout: float | None = None, wait_for_ready: bool | None = None) -> Any:
            return self._members.call(self._stubs, method, request, timeout, wait_for_ready)
        return call


def kv_stub(members: Members) -> Any:
    return FailoverStub(members, rpc_pb2_grpc.KVStub)


def maintenance_stub(members: Members) -> Any:
    return FailoverStub(members, rpc_pb2_grpc.MaintenanceStub)
