"""The failover policy: which failures send a call to the next address, in which order."""

from __future__ import annotations

import grpc
import pytest

from ketch.client import failover
from ketch.client.kubeconfig import strip_scheme

U = grpc.StatusCode.UNAVAILABLE
REFUSED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
           "Failed to connect to remote host: Connection refused")
RESET = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2: "
         "Failed to connect to remote host: getsockopt(SO_ERROR): Connection reset by peer")
DROPPED = "Socket closed"  # the connection broke with the call on it: it may have been applied
SERVER_SAID = "storage is unavailable"  # a server's own UNAVAILABLE answer


@pytest.mark.parametrize(("method", "code", "details", "moves"), [
    # Reads go on after any UNAVAILABLE.
    ("Get", U, DROPPED, True),
    ("List", U, SERVER_SAID, True),
    ("WatchBatched", U, REFUSED, True),
    ("PodLogs", U, DROPPED, True),
    ("Version", U, RESET, True),
    # Writes go on only when the channel never connected.
    ("Create", U, REFUSED, True),
    ("Create", U, RESET, True),
    ("Create", U, DROPPED, False),
    ("Create", U, SERVER_SAID, False),
    ("Update", U, DROPPED, False),
    ("Patch", U, DROPPED, False),
    ("Delete", U, DROPPED, False),
    ("Batch", U, DROPPED, False),
    ("Batch", U, REFUSED, True),
    ("SignNodeCertificate", U, DROPPED, False),
    # An answer from a server, or a spent deadline, never moves on.
    ("Get", grpc.StatusCode.NOT_FOUND, "not found", False),
    ("Get", grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", False),
    ("Create", grpc.StatusCode.ALREADY_EXISTS, "exists", False),
    ("Create", grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests", False),
    ("Get", grpc.StatusCode.UNAUTHENTICATED, "Unauthorized", False),
])
def test_moves_on(method: str, code: grpc.StatusCode, details: str, moves: bool) -> None:
    assert failover.moves_on(method, code, details) is moves


@pytest.mark.parametrize("method", ["PodLogs", "NodeStats", "Get", "Create"])
def test_an_api_servers_own_unavailable_is_final(method: str) -> None:
    """`node X is not reachable` (ketch-reason ServiceUnavailable) is an answer, not a dead address."""
    assert failover.moves_on(method, U, "node n1 is not reachable: Connection refused", answered=True) is False


@pytest.mark.parametrize(("count", "current", "tried", "expected"), [
    (3, 0, set(), 0),        # the sticky address first
    (3, 2, set(), 2),
    (3, 2, {2}, 0),          # then the others in order
    (3, 2, {2, 0}, 1),
    (3, 2, {0, 1, 2}, None),  # each once per call
    (3, 1, {0}, 1),          # another call moved the sticky address to one not yet tried: go there
    (1, 0, {0}, None),
])
def test_next_index(count: int, current: int, tried: set[int], expected: int | None) -> None:
    assert failover.next_index(count, current, tried) == expected


def test_each_address_once_sticky_first() -> None:
    tried: set[int] = set()
    seen = []
    while (i := failover.next_index(4, 2, tried)) is not None:
        tried.add(i)
        seen.append(i)
    assert seen == [2, 0, 1, 3]


@pytest.mark.parametrize(("server", "expected"), [
    ("a:1", ("a:1", False)),
    ("https://a:1/", ("a:1", False)),
    ("https://a:1,https://b:2", ("a:1,b:2", False)),
    (" a:1 , b:2 ,", ("a:1,b:2", False)),
    ("http://a:1,http://b:2", ("a:1,b:2", True)),
])
def test_kubeconfig_server_lists(server: str, expected: tuple[str, bool]) -> None:
    assert strip_scheme(server) == expected


def test_exhausted_names_every_address_and_why() -> None:
    msg = failover.exhausted([("127.0.0.1:1", REFUSED), ("127.0.0.1:2", RESET), ("b:3", "no connection within 5.0s")])
    assert msg == ("127.0.0.1:1: Connection refused; 127.0.0.1:2: Connection reset by peer; "
                   "b:3: no connection within 5.0s")
    assert failover.exhausted([("127.0.0.1:1", REFUSED)]) == "Connection refused"  # the CLI names the address
    assert failover.exhausted([("a:1", DROPPED)]) == DROPPED
