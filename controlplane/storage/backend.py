"""The persistence interface every storage backend implements, and the in-memory backend.

A backend only makes writes durable and gives them back at start-up: compare-and-swap,
revisions and watches live in the Store above it, which is the single writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Record:
    """One stored object (data is its serialized message) or, with data None, a deletion."""

    kind: str
    key: str
    rv: int
    data: bytes | None


class Behind(Exception):
    """A commit found that another replica wrote first (up to etcd_revision): the Store catches
    up to it, decides its writes again against what it now knows, and retries."""

    def __init__(self, etcd_revision: int) -> None:
        super().__init__(f"another replica wrote first (etcd revision {etcd_revision})")
        self.etcd_revision = etcd_revision


class Compacted(Exception):
    """The history a replica needs to follow another's writes was compacted: it must reload."""


@dataclass(frozen=True, slots=True)
class ForeignCommit:
    """One transaction another replica made: its etcd revision, the Store revision it reached
    (None: not a Store transaction, such as the compactor's key), and its writes in order."""

    etcd_revision: int
    top: int | None
    records: list[Record]


class Backend(Protocol):
    def load(self) -> tuple[int, list[Record]]:
        """The revision and every stored object. Called once, before any commit."""
        ...

    def commit(self, records: list[Record], revision: int) -> None:
        """Make records durable, in order, as one transaction; blocking (runs in a thread).
        On failure nothing of the transaction is kept, and the backend's own error is raised."""
        ...

    def probe(self, revision: int) -> None:
        """A small real write, to learn whether a failed backend can write again; raises if not."""
        ...

    @property
    def used_bytes(self) -> int:
        """The database's size in use (for the quota), as of the last commit."""
        ...

    def wants_compaction(self) -> bool:
        """Whether enough of the file is free pages to be worth a compact()."""
        ...

    def compact(self) -> int:
        """Give free space back to the file system, a bounded step at a time; blocking."""
        ...

    def release_memory(self) -> None:
        """Drop what the backend caches in memory (after a burst of deletes: what it cached for
        the load is no longer read); blocking."""
        ...

    def close(self) -> None:
        ...

    @property
    def max_records(self) -> int:
        """The most records one transaction takes (0: no limit); the Store never hands more to
        commit. With max_bytes (the most bytes of keys and data, 0: no limit), a bigger batch is
        committed as several transactions in revision order."""
        ...

    @property
    def max_bytes(self) -> int:
        ...

    @property
    def max_record_bytes(self) -> int:
        """The largest object the backend can store (0: no limit): a bigger write is refused
        when staged (413), before it could fail a whole group commit."""
        ...

    @property
    def blocking(self) -> bool:
        """Whether commit blocks on I/O and so should run off the event loop."""
        ...


@runtime_checkable
class SharedBackend(Protocol):
    """A backend several control planes write (etcd): the Store follows the others' writes."""

    etcd_revision: int  # the last transaction applied, own or followed

    def follow(self, start: int) -> AsyncIterator[list[ForeignCommit]]:
        """Every transaction from etcd revision start on, in order; raises Compacted."""
        ...

    def note_applied(self, commit: ForeignCommit) -> None:
        ...

    async def quorum_revision(self) -> int:
        """The etcd revision of the last Store transaction, read through the quorum."""
        ...

    async def aclose(self) -> None:
        ...


class MemoryBackend:
    """Keeps nothing: for tests and throwaway clusters."""

    blocking = False
    used_bytes = 0
    max_records = 0
    max_bytes = 0
    max_record_bytes = 0

    def load(self) -> tuple[int, list[Record]]:
        return 0, []

    def commit(self, records: list[Record], revision: int) -> None:
        return None

    def probe(self, revision: int) -> None:
        return None

    def wants_compaction(self) -> bool:
        return False

    def compact(self) -> int:
        return 0

    def release_memory(self) -> None:
        return None

    def close(self) -> None:
        return None
