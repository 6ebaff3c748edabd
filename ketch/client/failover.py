"""Which API server address a call goes to, and when a failed call may go to the next one.

A client given `HOST:PORT,HOST:PORT,...` (the CLI's and the agent's `--server`, a kubeconfig
cluster's `server`) tries the address that last worked first (sticky), then the others in order,
each once per call. It moves on when no connection could be made (refused, reset, a handshake
that failed or never finished within the connect deadline): nothing was sent then, so any call
may go on. Once a connection exists and the call failed with UNAVAILABLE (not an API server's
own answer), only a read (get, list, the start of a watch or of a log stream) goes on: a write
may have reached the server, and sending it again could do it twice (a create with generateName
would make two objects). A write goes on only when gRPC says the channel never connected.
"""

from __future__ import annotations

import re

import grpc

# Calls that change nothing: sent again on the next address whenever the first one failed.
READS = frozenset({"Get", "List", "Watch", "WatchBatched", "PodLogs", "NodeStats", "Version"})

# What gRPC core says when an RPC failed because no connection could be made: the RPC never
# left the client (the pick_first policy failed it before any transport took it).
NEVER_SENT = ("failed to connect to all addresses", "failed to connect to remote host",
              "connections to all backends failing")


def split_servers(servers: str) -> list[str]:
    """The addresses of `A,B,C` (blanks dropped)."""
    return [s.strip() for s in servers.split(",") if s.strip()]


def is_read(method: str) -> bool:
    return method in READS


def never_sent(code: grpc.StatusCode, details: str) -> bool:
    """Whether a failed call certainly never reached a server."""
    text = details.lower()
    return code == grpc.StatusCode.UNAVAILABLE and any(m in text for m in NEVER_SENT)


def moves_on(method: str, code: grpc.StatusCode, details: str, answered: bool = False) -> bool:
    """After a call failed on a connected channel: whether to send it to the next address.
    answered: an API server itself gave the error (it sets the `ketch-reason` trailer), as with
    a node it cannot reach for logs or stats: final, whatever its code, as any other answer."""
    if code != grpc.StatusCode.UNAVAILABLE or answered:
        return False  # the server answered (NotFound, Conflict, ...) or the time is spent
    return is_read(method) or never_sent(code, details)


def next_index(count: int, current: int, tried: set[int]) -> int | None:
    """The address to try next in a call (None: each was tried): the sticky one (which another
    call may have just moved to one that works), else the first not yet tried, in given order."""
    if current not in tried:
        return current
    return next((i for i in range(count) if i not in tried), None)


# gRPC's words for a failed connection end with the socket's: keep those.
_CONNECT_FAILURE = re.compile(r"Failed to connect to remote host: (?:[^:]*\): )?(.+)$", re.IGNORECASE)


def reason(details: str) -> str:
    """Why a call failed, shortly: "Connection refused" rather than gRPC's whole sentence."""
    found = _CONNECT_FAILURE.search(details)
    return found.group(1).strip() if found else details


def exhausted(tried: list[tuple[str, str]]) -> str:
    """The message when every address failed: why, naming each address when there were several."""
    if len(tried) == 1:
        return reason(tried[0][1])
    return "; ".join(f"{addr}: {reason(why)}" for addr, why in tried)
