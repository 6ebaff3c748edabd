"""The Store: all objects in memory, compare-and-swap writes, group commit, ordered events.

The API server is the only writer, and it runs on one event loop, so the Store can decide every
compare-and-swap synchronously against the latest state (committed plus staged writes) and
assign revisions in order. Writes are then made durable in batches by one writer thread (many
writes, one fsync); only after that are they applied to the committed view that reads see, and
published to the watch hub, in revision order. A client's write is acknowledged after it is
durable, so it survives kill -9, and no reader ever sees a write that could be lost.

When the backend fails a commit (a full disk), that batch and every batch staged after it
(they may build on it) fail with the backend's error, and all staged state is dropped, so
nothing unacknowledged can show later; revisions are never reused. The Store then refuses
writes, tells its health listeners, and probes the backend every PROBE_INTERVAL until it can
write again. Reads go on meanwhile. Past the quota (etcd's --quota-backend-bytes), writes are
refused as etcd refuses them, except those that delete or finish deleting an object, so an
operator can free space.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import heapq
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError, Message

from controlplane import metrics
from ketch import memtrim
from ketch.api import errors
from ketch.api.kinds import kind_info
from ketch.api.selectors import FIELDS_ON_READ

from .backend import Backend, Behind, Compacted, ForeignCommit, MemoryBackend, Record, SharedBackend
from .dbfile import DB_NAME, StorageError
from .packed import PackedObjects
from .sharedmaps import EMPTY as NO_LABELS
from .sharedmaps import MapPool

if TYPE_CHECKING:
    from .etcd import EtcdTLS

log = logging.getLogger(__name__)

# What field selectors match on, or FIELDS_ON_READ: the reader takes them off the object.
FieldIndexer = Callable[[str, Message], Mapping[str, str]]
# When an object expires (wall-clock seconds), or None: etcd's leases, as kube-apiserver puts one
# on every Event (--event-ttl).
ExpiryOf = Callable[[str, Message], float | None]
HealthListener = Callable[[bool], None]

_LARGEST_WRITE = 1_572_864  # the API's object size limit: below quota by this much, no need to measure
PROBE_INTERVAL = 1.0  # seconds between write probes while the backend is failing
DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024  # etcd's default --quota-backend-bytes
QUOTA_EXCEEDED = "etcdserver: mvcc: database space exceeded"  # etcd's words, which tools look for
EXPIRY_BATCH = 500  # expired objects deleted per commit
EXPIRY_TICK = 0.1  # seconds: deadlines are kept to this precision, each rounded up
CATCH_UP_TIMEOUT = 30.0  # seconds a replica may take to apply what another wrote before it
WAIT_FRESH_TIMEOUT = 3.0  # kube-apiserver's cacher waits this long for a resourceVersion it lacks
FOLLOW_RETRY = 1.0  # seconds between attempts to watch etcd again
QUORUM_READS = 4  # quorum reads of etcd out at once (each serves every read that came before it)


def _same_version(a: Version | None, b: Version | None) -> bool:
    """Whether two entries are the same version of an object (a packed kind's entries are made
    anew on each read, so identity cannot tell)."""
    return a is b or (a is not None and b is not None and a.rv == b.rv)


class RaceConflict(errors.Conflict):
    """A write lost a race with another control plane's write of the same object. The request
    had not read that write (it was on another replica), so the API server decides it again."""


@dataclass(slots=True, eq=False)
class Version:
    """What a watch needs of one object version: its bytes, and what selectors look at."""

    kind: str
    key: str
    namespace: str
    name: str
    rv: int
    data: bytes
    labels: Mapping[str, str]
    fields: Mapping[str, str]


class Entry(Version):
    """One object version and its parsed message. obj is shared and must never be mutated:
    copy it first.

    The message is parsed from data when first asked for if the store did not keep it (kinds the
    store was told to keep as bytes only).
    """

    __slots__ = ("_obj", "_version")

    def __init__(self, kind: str, key: str, namespace: str, name: str, rv: int, data: bytes,
                 labels: Mapping[str, str], fields: Mapping[str, str], obj: Message | None = None) -> None:
        Version.__init__(self, kind, key, namespace, name, rv, data, labels, fields)
        self._obj = obj
        self._version: Version | None = None

    @property
    def obj(self) -> Message:
        if self._obj is None:
            self._obj = kind_info(self.kind).message.FromString(self.data)
        return self._obj

    @property
    def holds_parsed(self) -> bool:
        """Whether the parsed message is kept (for tests of what memory holds)."""
        return self._obj is not None

    def peek(self) -> Message:
        """The parsed message, without keeping it if the store did not (a read that is done
        with it at once)."""
        return self._obj if self._obj is not None else kind_info(self.kind).message.FromString(self.data)

    def drop_parsed(self) -> None:
        """Let the parsed message go (it is made again from data if asked for)."""
        self._obj = None

    def version(self) -> Version:
        """This version without the parsed message (made once, shared by every event naming it)."""
        if self._version is None:
            self._version = Version(self.kind, self.key, self.namespace, self.name, self.rv, self.data,
                                    self.labels, self.fields)
        return self._version


@dataclass(slots=True, eq=False)
class WatchEvent:
    """A committed change. For DELETED, entry is the object's last state at the deletion rv.

    entry and prev are Versions, not Entries: the watch window keeps tens of thousands of
    events, and a superseded or deleted object's parsed message (several KB, ten times its
    bytes) is then freed as soon as the store lets go of it instead of when the event leaves
    the window.
    """

    rev: int
    type: str
    entry: Version
    prev: Version | None


@dataclass(slots=True, eq=False)
class _Staged:
    kind: str
    key: str
    rev: int
    entry: Entry | None  # None: deletion
    prev: Entry | None
    tombstone: Entry | None = None
    error: errors.StatusError | None = None  # why the write was not made (decided at commit)

    def renumber(self, rev: int) -> None:
        """Another replica used the revision first: this write takes the next free one."""
        self.rev = rev
        for entry in (self.entry, self.tombstone):
            if entry is not None:
                obj = entry.obj
                obj.metadata.resource_version = str(rev)  # type: ignore[attr-defined]
                entry.rv = rev
                entry.data = obj.SerializeToString()
                entry._version = None


@dataclass(slots=True)
class _Batch:
    ops: list[_Staged] = field(default_factory=list)
    future: asyncio.Future[None] | None = None
    sealed: bool = True  # False while an OpenCommit is still being filled: it and what follows wait


class OpenCommit:
    """One commit filled over several turns of the loop (Store.open_commit)."""

    __slots__ = ("_batch", "_store")

    def __init__(self, store: Store, batch: _Batch) -> None:
        self._store = store
        self._batch = batch

    def add(self, op: _Staged) -> None:
        self._batch.ops.append(op)

    def seal(self) -> None:
        """Nothing more will be added: the commit may go (idempotent; call it on every path,
        as nothing queued after an open commit is committed before it is sealed)."""
        self._store._seal(self._batch)

    async def wait(self) -> None:
        """Once sealed, wait until the writes are durable and applied; each write's own failure
        (a race with another control plane) is left in its .error."""
        assert self._batch.sealed and self._batch.future is not None
        await asyncio.shield(self._batch.future)


def open_backend(spec: str, data_dir: Path, *, etcd_tls: EtcdTLS | None = None,
                 etcd_compaction_interval: float | None = None) -> Backend:
    """`sqlite` (default), `memory`, or `etcd://H:P[,H:P]` (TLS required off loopback)."""
    if spec in ("", "sqlite"):
        from .sqlite import SQLiteBackend

        return SQLiteBackend(data_dir / DB_NAME)
    if spec == "memory":
        return MemoryBackend()
    if spec.startswith("etcd://"):
        from .etcd import DEFAULT_COMPACTION_INTERVAL, EtcdBackend

        interval = DEFAULT_COMPACTION_INTERVAL if etcd_compaction_interval is None else etcd_compaction_interval
        return EtcdBackend(spec, etcd_tls, compaction_interval=interval)
    raise ValueError(f"unknown --store {spec!r}: use sqlite, memory or etcd://HOST:PORT")


def _no_fields(kind: str, obj: Message) -> Mapping[str, str]:
    return {}


def _never(kind: str, obj: Message) -> float | None:
    return None


class Store:
    def __init__(self, backend: Backend, field_indexer: FieldIndexer = _no_fields, *,
                 parsed_on_read: frozenset[str] = frozenset(), packed: frozenset[str] = frozenset(),
                 expiry_of: ExpiryOf = _never, clock: Callable[[], float] = time.time,
                 quota_bytes: int = DEFAULT_QUOTA_BYTES, probe_interval: float = PROBE_INTERVAL) -> None:
        self.backend = backend
        self._fields_of = field_indexer
        self._maps = MapPool()  # every version's labels and fields, once per content
        # Kinds whose messages are not kept parsed between writes (only their bytes): a parsed
        # message costs several KB, ten times its bytes.
        self._parsed_on_read = parsed_on_read
        self._expiry_of = expiry_of
        self._clock = clock
        # The objects that expire, by tick (the deadline rounded up to EXPIRY_TICK) and kind: a
        # heap of the (tick, kind)s, and each one's keys. An hour of Events is the most numerous
        # thing the store holds, so an object costs one list slot here, not a record; one written
        # since with another deadline, or deleted, is skipped when its old tick comes up.
        self._expiry_ticks: list[tuple[int, str]] = []
        self._expiring: dict[tuple[int, str], builtins.list[str]] = {}
        self._expiry_wakeup = asyncio.Event()
        self._expirer: asyncio.Task[None] | None = None
        self._objects: dict[str, dict[str, Entry]] = {}  # by kind, but for the packed kinds:
        # Kinds kept packed in one buffer each (Events: see packed.py), their fields read off
        # their bytes (FIELDS_ON_READ) and their expiry kept by the buffer, not the tick heap.
        self._packed = {kind: PackedObjects(self._packed_entry(kind)) for kind in packed}
        self._expiry_wait_until = -math.inf  # the deadline the expirer sleeps until (inf: none)
        # Latest staged (not yet durable) state per (kind, key); None marks a staged deletion.
        self._staged: dict[tuple[str, str], _Staged] = {}
        self.revision = 0  # highest committed revision
        self._next_rev = 1
        self._pending: list[_Batch] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._listeners: list[Callable[[list[WatchEvent]], None]] = []
        self._health_listeners: list[HealthListener] = []
        self.quota_bytes = quota_bytes  # 0: no quota
        self._failed: BaseException | None = None
        self._prober: asyncio.Task[None] | None = None
        self.probe_interval = probe_interval
        self._closing = False
        self._reset_listeners: list[Callable[[], None]] = []
        # With a backend other replicas write too: the follower applies their writes, and a
        # commit and an applied foreign write never interleave.
        self._shared = backend if isinstance(backend, SharedBackend) else None
        self._apply_lock = asyncio.Lock()
        self._applied = asyncio.Condition()
        self._follower: asyncio.Task[None] | None = None
        self._open_sync: asyncio.Future[None] | None = None  # the quorum read not yet sent
        self._sync_tasks: set[asyncio.Task[None]] = set()
        self._sync_slots = asyncio.Semaphore(QUORUM_READS)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every object. Raises StorageError (one line for the operator) when the stored
        data cannot be read back."""
        metrics.track_store(self)  # apiserver_storage_objects, counted when scraped, until stop
        loop = asyncio.get_running_loop()
        if self.backend.blocking:
            revision, records = await loop.run_in_executor(self._executor, self.backend.load)
        else:
            revision, records = self.backend.load()
        packed: builtins.list[tuple[float, float | None, Entry]] = []
        for rec in records:
            if rec.data is None:
                continue
            try:
                info = kind_info(rec.kind)
                obj = info.message.FromString(rec.data)
            except (KeyError, DecodeError) as err:
                raise StorageError(f"stored object {rec.kind} {rec.key!r} cannot be read back ({err}): "
                                   "the database is damaged; restore a backup") from None
            entry = self._entry(rec.kind, rec.key, rec.rv, obj, rec.data)
            if rec.kind in self._packed:
                # Packed in deadline order, as they were written: expiry walks them in order.
                deadline = self._expiry_of(rec.kind, obj)
                entry.drop_parsed()
                packed.append((math.inf if deadline is None else deadline, deadline, entry))
                continue
            self._schedule_expiry(entry, obj)
            if rec.kind in self._parsed_on_read:
                entry.drop_parsed()
            self._objects.setdefault(rec.kind, {})[rec.key] = entry
        packed.sort(key=lambda p: p[0])
        for _, deadline, entry in packed:
            self._packed[entry.kind].put(entry.key, entry, deadline)
        del packed
        self.revision = revision
        self._next_rev = revision + 1
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")
        self._expirer = asyncio.create_task(self._expire_loop(), name="store-expiry")
        if self._shared is not None:
            self._follower = asyncio.create_task(self._follow_loop(), name="store-follower")

    async def stop(self) -> None:
        metrics.untrack_store(self)
        self._closing = True
        self._wakeup.set()
        for task in (self._expirer, self._follower, *self._sync_tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._open_sync is not None and not self._open_sync.done():
            self._open_sync.set_exception(errors.Unavailable("the control plane is stopping"))
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._writer is not None:
            await self._writer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.backend.close)
        if self._shared is not None:
            await self._shared.aclose()
        self._executor.shutdown(wait=True)

    # -- health --------------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether other control planes write the same store (etcd): this one's view can lag."""
        return self._shared is not None

    @property
    def healthy(self) -> bool:
        """False while the backend is failing writes (a full disk), until a probe succeeds."""
        return self._failed is None

    @property
    def failure(self) -> str:
        return str(self._failed) if self._failed is not None else ""

    async def ping(self) -> None:
        """A cheap round trip through the writer's thread (with a shared backend, etcd's quorum
        read there): it waits behind a commit in progress, so a health check with a deadline
        sees a wedged store. Raises while the backend is failing writes."""
        if self._failed is not None:
            raise StorageError(f"the store is failing writes: {self._failed}")
        work: Callable[[], None] = (lambda: self.backend.probe(self.revision)) if self._shared else (lambda: None)
        await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def add_health_listener(self, fn: HealthListener) -> None:
        """fn(healthy) is called on the event loop whenever the Store fails or recovers."""
        self._health_listeners.append(fn)

    def _tell_health(self) -> None:
        for fn in self._health_listeners:
            try:
                fn(self.healthy)
            except Exception:
                log.exception("storage health listener failed")

    def over_quota(self, extra: int = 0) -> bool:
        return bool(self.quota_bytes) and self.backend.used_bytes + extra > self.quota_bytes

    def add_listener(self, fn: Callable[[list[WatchEvent]], None]) -> None:
        """fn gets every committed batch of events, in order, on the event loop."""
        self._listeners.append(fn)

    def add_reset_listener(self, fn: Callable[[], None]) -> None:
        """fn() is called after the Store reloaded everything (the history it followed was
        compacted): the events it published then were a difference, not the history."""
        self._reset_listeners.append(fn)

    # -- freshness across replicas ----------------------------------------------------------------

    async def sync(self) -> None:
        """Return once this replica has applied every write acknowledged before the call, on any
        replica (a quorum read of etcd; at once on a store no other replica writes). Calls that
        arrive before a quorum read is sent share it; up to QUORUM_READS are out at once."""
        if self._shared is None:
            return
        batch = self._open_sync
        if batch is None:
            batch = self._open_sync = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._quorum_read(batch), name="store-quorum-read")
            self._sync_tasks.add(task)
            task.add_done_callback(self._sync_tasks.discard)
        await asyncio.shield(batch)

    async def _quorum_read(self, batch: asyncio.Future[None]) -> None:
        assert self._shared is not None
        async with self._sync_slots:
            if self._open_sync is batch:
                self._open_sync = None  # sent now: later calls need a later read
            try:
                target = await self._shared.quorum_revision()
                await self._until_applied(target)
            except asyncio.CancelledError:
                if not batch.done():
                    batch.set_exception(errors.Unavailable("the control plane is stopping"))
                raise
            except Exception as err:
                if not batch.done():
                    batch.set_exception(err if isinstance(err, errors.StatusError) else errors.Unavailable(
                        f"cannot read the store through its quorum: {err}"))
                return
            if not batch.done():
                batch.set_result(None)

    async def wait_for_revision(self, rev: int, timeout: float = WAIT_FRESH_TIMEOUT) -> bool:
        """Wait until revision rev (made on another replica) is applied here; False on timeout."""
        if self.revision >= rev or self._shared is None:
            return self.revision >= rev
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._applied:
                await self._applied.wait_for(lambda: self.revision >= rev)
        return self.revision >= rev

    async def _until_applied(self, etcd_revision: int, timeout: float = CATCH_UP_TIMEOUT) -> None:
        assert self._shared is not None
        shared = self._shared
        try:
            async with asyncio.timeout(timeout), self._applied:
                await self._applied.wait_for(lambda: shared.etcd_revision >= etcd_revision)
        except TimeoutError:
            raise errors.Timeout(
                f"this control plane has not caught up with etcd revision {etcd_revision} in {timeout:g}s "
                f"(it is at {shared.etcd_revision}): its watch of etcd is failing") from None

    async def _tell_applied(self) -> None:
        async with self._applied:
            self._applied.notify_all()

    async def _follow_loop(self) -> None:
        """Apply what other replicas commit, in etcd's order, each transaction exactly once."""
        assert self._shared is not None
        shared = self._shared
        while True:
            try:
                async for commits in shared.follow(shared.etcd_revision + 1):
                    async with self._apply_lock:
                        for commit in commits:
                            if commit.etcd_revision > shared.etcd_revision:  # not one of ours
                                self._apply_foreign(commit)
                                shared.note_applied(commit)
                    await self._tell_applied()
            except Compacted as err:
                log.warning("store: %s: reloading every object", err)
                await self._reload()
                continue
            except StorageError as err:
                log.warning("store: following other replicas: %s; again in %gs", err, FOLLOW_RETRY)
            except Exception:
                # Whatever it was, a follower that stopped would leave this replica behind for
                # good (every quorum read then times out): it says so and follows again.
                log.exception("store: following other replicas failed; again in %gs", FOLLOW_RETRY)
            await asyncio.sleep(FOLLOW_RETRY)

    def _apply_foreign(self, commit: ForeignCommit) -> None:
        ops: builtins.list[_Staged] = []
        for rec in commit.records:
            prev = self._of(rec.kind).get(rec.key)
            # Another replica's write supersedes whatever this one staged on the object: those
            # writes fail when committed (their base is gone), later ones start from this.
            self._staged.pop((rec.kind, rec.key), None)
            if rec.data is None:
                if prev is None:
                    continue
                ops.append(_Staged(rec.kind, rec.key, rec.rv, None, prev, self._tombstone(prev, rec.rv)))
                continue
            try:
                obj = kind_info(rec.kind).message.FromString(rec.data)
            except (KeyError, DecodeError) as err:
                log.error("store: another replica wrote %s %r, which this one cannot read (%s): skipped",
                          rec.kind, rec.key, err)
                continue
            ops.append(_Staged(rec.kind, rec.key, rec.rv,
                               self._entry(rec.kind, rec.key, rec.rv, obj, rec.data, like=prev), prev))
        if commit.top is not None:
            self._publish(ops, commit.top)
            self._next_rev = max(self._next_rev, self.revision + 1)

    async def _reload(self) -> None:
        """Everything read again at one revision; the difference is published, then the reset
        listeners told (the watch cache ends its watches: they resume by listing again)."""
        loop = asyncio.get_running_loop()
        async with self._apply_lock:
            revision, records = await loop.run_in_executor(self._executor, self.backend.load)
            seen: set[tuple[str, str]] = set()
            ops: builtins.list[_Staged] = []
            for rec in records:
                seen.add((rec.kind, rec.key))
                prev = self._of(rec.kind).get(rec.key)
                if rec.data is None or (prev is not None and prev.rv == rec.rv):
                    continue
                obj = kind_info(rec.kind).message.FromString(rec.data)
                ops.append(_Staged(rec.kind, rec.key, rec.rv, self._entry(rec.kind, rec.key, rec.rv, obj, rec.data),
                                   prev))
            for kind in [*self._objects, *self._packed]:
                objs = self._of(kind)
                for key, prev in objs.items():
                    if (kind, key) not in seen:
                        ops.append(_Staged(kind, key, revision, None, prev, self._tombstone(prev, revision)))
            ops.sort(key=lambda op: op.rev)
            self._staged.clear()
            self._publish(ops, revision)
            self._next_rev = max(self._next_rev, self.revision + 1)
        await self._tell_applied()
        for fn in self._reset_listeners:
            try:
                fn()
            except Exception:
                log.exception("store reset listener failed")

    # -- reads ---------------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Entry | None:
        """The committed (durable) object."""
        return self._of(kind).get(key)

    def latest(self, kind: str, key: str) -> Entry | None:
        """The object as the next write will see it: committed plus staged writes."""
        staged = self._staged.get((kind, key))
        if staged is not None:
            return staged.entry
        return self._of(kind).get(key)

    def list(self, kind: str, namespace: str = "") -> builtins.list[Entry]:
        objs = self._of(kind)
        if not namespace:
            return list(objs.values())
        if kind in self._packed:
            return list(self._packed[kind].values(f"{namespace}/"))
        return [e for e in objs.values() if e.namespace == namespace]

    def _of(self, kind: str) -> dict[str, Entry] | PackedObjects:
        """The committed objects of kind (a packed kind's buffer, or a dict)."""
        packed = self._packed.get(kind)
        return packed if packed is not None else self._objects.get(kind, {})

    def count(self, kind: str) -> int:
        return len(self._of(kind))

    # -- writes --------------------------------------------------------------------------------

    def _entry(self, kind: str, key: str, rv: int, obj: Message, data: bytes,
               like: Version | None = None) -> Entry:
        """like: the object's previous version, whose key and name strings the new one holds."""
        md = obj.metadata  # type: ignore[attr-defined]
        # Selectors read a missing field as "", so empty values are left out. Labels and fields
        # are kept once per content (sharedmaps): a Job's pods carry the same labels, the pods
        # on a node in one phase the same fields. Kinds whose values are read off the object
        # when asked (Events) keep the shared marker instead.
        fields = self._fields_of(kind, obj)
        if fields is not FIELDS_ON_READ:
            fields = self._maps.get((name, value) for name, value in fields.items() if value)
        labels = self._maps.get(md.labels.items()) if md.labels else NO_LABELS
        name: str = md.name
        if like is None:
            key = sys.intern(key)  # the informers' caches intern theirs: one string for all
        else:
            # The same object: its key and name strings are the predecessor's, not new copies
            # (the watch window holds every version; each was two strings of ~70 bytes).
            key = like.key
            if like.name == name:
                name = like.name
        return Entry(kind, key, sys.intern(md.namespace), name, rv, data, labels, fields, obj=obj)

    def _packed_entry(self, kind: str) -> Callable[[str, int, bytes, bool], Entry]:
        """How a packed kind's record becomes an Entry again: without parsing it, unless the
        object has labels (selectors need them at hand)."""
        message = kind_info(kind).message

        def make(key: str, rv: int, data: bytes, labelled: bool) -> Entry:
            if labelled:
                entry = self._entry(kind, key, rv, message.FromString(data), data)
                entry.drop_parsed()
                return entry
            namespace, _, name = key.rpartition("/")
            return Entry(kind, key, sys.intern(namespace), name, rv, data, NO_LABELS, FIELDS_ON_READ)

        return make

    def _tombstone(self, last: Entry, rev: int) -> Entry:
        """What a DELETED event at rev carries: the object's last state, at the deletion's revision."""
        obj = type(last.obj)()
        obj.CopyFrom(last.obj)
        obj.metadata.resource_version = str(rev)  # type: ignore[attr-defined]
        return self._entry(last.kind, last.key, rev, obj, obj.SerializeToString(), like=last)

    def stage(self, kind: str, key: str, obj: Message | None, *, expect_rv: int | None = None,
              create: bool = False, dry_run: bool = False) -> _Staged:
        """Check and stage one write; obj None deletes. Raises before anything is staged.

        create: the key must not exist. expect_rv: the current rv must equal it (CAS).
        The object's metadata.resourceVersion is set to the assigned revision.

        dry_run: every check is made (failing storage, AlreadyExists, NotFound, Conflict, quota,
        size) but nothing is staged and no revision is used, so the write can never be committed
        or published; the result is what would be stored, keeping the current resourceVersion
        ("" for a create), as etcd3's store answers kube-apiserver's dry runs.
        """
        if self._failed is not None:
            raise errors.InternalError(f"storage is failing, writes are refused until it can write again: "
                                       f"{self._failed}")
        info = kind_info(kind)
        current = self.latest(kind, key)
        what = f'{info.qualified_plural} "{key.rpartition("/")[2]}"'
        if create:
            if current is not None:
                raise errors.AlreadyExists(f"{what} already exists")
        elif current is None:
            raise errors.NotFound(f"{what} not found")
        elif expect_rv is not None and current.rv != expect_rv:
            raise errors.Conflict(
                f"Operation cannot be fulfilled on {what}: the object has been modified; "
                "please apply your changes to the latest version and try again")
        if obj is not None and self.quota_bytes:
            self._check_quota(obj, current)
        if dry_run:
            return self._dry_run(kind, key, obj, current, what)
        rev = self._next_rev
        self._next_rev += 1
        if obj is None:
            assert current is not None
            tomb = self._tombstone(current, rev)
            staged = _Staged(kind, key, rev, None, current, tomb)
        else:
            obj.metadata.resource_version = str(rev)  # type: ignore[attr-defined]
            data = obj.SerializeToString()
            too_large = self._too_large(what, data)
            if too_large is not None:
                self._next_rev -= 1  # nothing was staged: the revision is not used
                raise too_large
            entry = self._entry(kind, key, rev, obj, data, like=current)
            staged = _Staged(kind, key, rev, entry, current)
        self._staged[(kind, key)] = staged
        return staged

    def _dry_run(self, kind: str, key: str, obj: Message | None, current: Entry | None, what: str) -> _Staged:
        """stage()'s answer for a dry run: not recorded in _staged, no revision taken."""
        rev = current.rv if current is not None else 0
        if obj is None:
            assert current is not None
            return _Staged(kind, key, rev, None, current, current)
        obj.metadata.resource_version = str(rev) if rev else ""  # type: ignore[attr-defined]
        data = obj.SerializeToString()
        too_large = self._too_large(what, data)
        if too_large is not None:
            raise too_large
        return _Staged(kind, key, rev, self._entry(kind, key, rev, obj, data), current)

    def _too_large(self, what: str, data: bytes) -> errors.TooLarge | None:
        """The error for an object over the backend's record limit, or None."""
        limit = self.backend.max_record_bytes
        if limit and len(data) > limit:
            return errors.TooLarge(
                f"etcdserver: request is too large: {what} would be {len(data)} bytes stored, and the "
                f"store takes at most {limit} bytes in one object")
        return None

    def _check_quota(self, obj: Message, current: Entry | None) -> None:
        """Past the quota only writes that finish a deletion go through (deletion marks,
        finalizer removals, a terminating pod's last status): they are how space is freed."""
        if not self.over_quota(_LARGEST_WRITE) or not self.over_quota(obj.ByteSize()):
            return
        deleting = obj.metadata.deletion_timestamp or (  # type: ignore[attr-defined]
            current is not None and current.obj.metadata.deletion_timestamp)  # type: ignore[attr-defined]
        if deleting:
            return
        raise errors.InternalError(
            f"{QUOTA_EXCEEDED} (the store uses {self.backend.used_bytes} bytes; --quota-backend-bytes "
            f"is {self.quota_bytes}): delete objects to free space")

    async def commit(self, staged: Iterable[_Staged], *, each: bool = False) -> None:
        """Wait until the staged writes are durable and applied (group commit).

        A write can still fail here, alone, when another control plane wrote its object first
        (RaceConflict, or AlreadyExists for a create): the first such error is raised, or with
        each=True left in the write's .error for the caller to report per write."""
        ops = list(staged)
        if not ops:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Batch(ops, fut))
        self._wakeup.set()
        await asyncio.shield(fut)
        if not each:
            for op in ops:
                if op.error is not None:
                    raise op.error

    def open_commit(self) -> OpenCommit:
        """A commit its caller fills with writes staged over several turns of the loop, yielding
        between them (a Batch request of hundreds of writes would otherwise hold the loop for
        its whole staging). It keeps its place: writes staged meanwhile by others, on top of
        its own, commit with it or after it, never before; it is still one transaction."""
        batch = _Batch([], asyncio.get_running_loop().create_future(), sealed=False)
        self._pending.append(batch)
        return OpenCommit(self, batch)

    def _seal(self, batch: _Batch) -> None:
        if batch.sealed:
            return
        batch.sealed = True
        if not batch.ops:  # nothing to write: out of the queue, done
            if batch in self._pending:
                self._pending.remove(batch)
            if batch.future is not None and not batch.future.done():
                batch.future.set_result(None)
        self._wakeup.set()

    async def write(self, kind: str, key: str, obj: Message | None, *, expect_rv: int | None = None,
                    create: bool = False) -> Entry | None:
        """stage + commit for one object; returns the new entry (None for a deletion)."""
        staged = self.stage(kind, key, obj, expect_rv=expect_rv, create=create)
        await self.commit([staged])
        return staged.entry

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            ready = next((i for i, b in enumerate(self._pending) if not b.sealed), len(self._pending))
            if not ready:
                continue  # an open commit is still being filled; its seal wakes this loop
            batches, self._pending = self._pending[:ready], self._pending[ready:]
            ops = [op for b in batches for op in b.ops]
            ops.sort(key=lambda op: op.rev)
            durable = 0
            try:
                for chunk in self._transactions(ops):
                    await self._commit_chunk(chunk)
                    durable += len(chunk)
            except BaseException as err:
                # What was made durable before the failure is applied (reads must show what the
                # backend holds); a batch with any write after that fails whole.
                done = {id(op) for op in ops[:durable]}
                whole = [b for b in batches if all(id(op) in done for op in b.ops)]
                for b in whole:
                    if b.future and not b.future.done():
                        b.future.set_result(None)
                self._fail(err, [b for b in batches if b not in whole])
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            for b in batches:
                if b.future and not b.future.done():
                    b.future.set_result(None)
            if self.backend.wants_compaction():
                freed = await loop.run_in_executor(self._executor, self.backend.compact)
                log.debug("store: gave %d free pages back to the file system", freed)
            if self._pending:
                self._wakeup.set()

    async def _commit_chunk(self, chunk: builtins.list[_Staged]) -> None:
        """One backend transaction. Each write is decided again against what is committed now
        (another replica may have written its object since it was staged), then numbered after
        every revision this replica knows; a backend that finds another replica wrote first
        (Behind) is caught up with, and the transaction decided and tried again."""
        loop = asyncio.get_running_loop()
        while True:
            async with self._apply_lock:
                live = self._still_valid(chunk)
                if not live:
                    return
                if live[0].rev <= self.revision:
                    rev = self.revision
                    for op in live:
                        rev += 1
                        op.renumber(rev)
                    self._next_rev = max(self._next_rev, rev + 1)
                records = [Record(op.kind, op.key, op.rev, op.entry.data if op.entry else None) for op in live]
                top = live[-1].rev
                started = time.perf_counter()
                try:
                    try:
                        if self.backend.blocking:
                            await loop.run_in_executor(self._executor, self.backend.commit, records, top)
                        else:
                            self.backend.commit(records, top)
                    finally:
                        # etcd_request_duration_seconds: each write took the transaction's time,
                        # failed or not (as kube-apiserver records its etcd calls).
                        metrics.observe_commit([("delete" if op.entry is None else "create" if op.prev is None
                                                 else "update", op.kind) for op in live],
                                               time.perf_counter() - started)
                except Behind as behind:
                    waiting_for = behind.etcd_revision
                else:
                    self._publish(live, top)
                    if self._shared is None:
                        return
                    waiting_for = 0
            await self._tell_applied()
            if not waiting_for:
                return
            await self._until_applied(waiting_for)

    def _still_valid(self, chunk: builtins.list[_Staged]) -> builtins.list[_Staged]:
        """The writes of chunk whose base is still the committed object; the others get their
        error. On one control plane every write passes (it staged on what it commits over)."""
        live: builtins.list[_Staged] = []
        view: dict[tuple[str, str], Entry | None] = {}
        for op in chunk:
            if op.error is not None:
                continue
            k = (op.kind, op.key)
            current = view[k] if k in view else self._of(op.kind).get(op.key)
            if not _same_version(current, op.prev):
                what = f'{kind_info(op.kind).qualified_plural} "{op.key.rpartition("/")[2]}"'
                if op.prev is None:
                    op.error = errors.AlreadyExists(f"{what} already exists")
                else:
                    op.error = RaceConflict(
                        f"Operation cannot be fulfilled on {what}: the object has been modified; "
                        "please apply your changes to the latest version and try again")
                if self._staged.get(k) is op:
                    del self._staged[k]
                continue
            view[k] = op.entry
            live.append(op)
        return live

    def _transactions(self, ops: builtins.list[_Staged]) -> Iterator[builtins.list[_Staged]]:
        """ops (in revision order) cut into the backend's transactions: all in one unless the
        backend bounds a transaction (etcd: --max-txn-ops and --max-request-bytes)."""
        limit = self.backend.max_records
        max_bytes = self.backend.max_bytes
        if not limit and not max_bytes:
            yield ops
            return
        chunk: builtins.list[_Staged] = []
        size = 0
        for op in ops:
            n = len(op.key) + (len(op.entry.data) if op.entry is not None else 0)
            if chunk and ((limit and len(chunk) >= limit) or (max_bytes and size + n > max_bytes)):
                yield chunk
                chunk, size = [], 0
            chunk.append(op)
            size += n
        if chunk:
            yield chunk

    def _publish(self, ops: builtins.list[_Staged], top: int) -> None:
        """Durable ops become visible: applied to the committed view, then told to watchers."""
        events = self._apply(ops)
        self.revision = max(self.revision, top)
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("watch listener failed")

    def _fail(self, err: BaseException, batches: builtins.list[_Batch]) -> None:
        """A commit failed: it and everything staged after it fail; staged state is dropped."""
        failed = batches + self._pending
        self._pending = []
        self._staged.clear()
        first = self._failed is None
        self._failed = err
        message = errors.InternalError(f"storage write failed: {err}")
        for b in failed:
            if b.future and not b.future.done():
                b.future.set_exception(message)
        if first:
            log.error("storage commit failed (%s); refusing writes until the store can write again", err)
            self._tell_health()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_writable(), name="store-probe")

    async def _probe_until_writable(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.probe_interval)
            try:
                if self.backend.blocking:
                    await loop.run_in_executor(self._executor, self.backend.probe, self.revision)
                else:
                    self.backend.probe(self.revision)
            except Exception as err:
                if str(err) != str(self._failed):
                    log.error("storage still failing: %s", err)
                self._failed = err
                continue
            log.warning("storage writes again (it failed with: %s)", self._failed)
            self._failed = None
            self._tell_health()
            return

    def _apply(self, ops: builtins.list[_Staged]) -> builtins.list[WatchEvent]:
        events: builtins.list[WatchEvent] = []
        for op in ops:
            objs = self._of(op.kind)
            prev = objs.get(op.key)
            # A kind kept as bytes: its entries, their parsed messages dropped, serve as the
            # events' versions themselves (no second object per write in the watch window).
            bytes_only = op.kind in self._parsed_on_read
            if bytes_only and prev is not None:
                prev.drop_parsed()  # superseded: the write that parsed it is done
            if op.entry is None:
                if prev is not None:
                    del objs[op.key]
                    if isinstance(objs, dict):  # a packed kind's buffer compacts itself
                        memtrim.release_if_emptied(objs)
                tomb = op.tombstone
                assert tomb is not None
                if bytes_only:
                    tomb.drop_parsed()
                events.append(WatchEvent(op.rev, "DELETED", tomb if bytes_only else tomb.version(),
                                         prev if bytes_only or prev is None else prev.version()))
            else:
                entry = op.entry
                packed = self._packed.get(op.kind)
                if packed is not None:
                    deadline = self._expiry_of(op.kind, entry.obj)
                    packed.put(op.key, entry, deadline)  # its buffer keeps the deadline
                    if deadline is not None and deadline < self._expiry_wait_until:
                        self._expiry_wakeup.set()
                else:
                    self._objects.setdefault(op.kind, {})[op.key] = entry
                    self._schedule_expiry(entry, entry.obj)
                if bytes_only:
                    entry.drop_parsed()
                events.append(WatchEvent(op.rev, "ADDED" if prev is None else "MODIFIED",
                                         entry if bytes_only else entry.version(),
                                         prev if bytes_only or prev is None else prev.version()))
            if self._staged.get((op.kind, op.key)) is op:
                del self._staged[(op.kind, op.key)]
        return events

    # -- expiry ----------------------------------------------------------------------------------

    def _schedule_expiry(self, entry: Entry, obj: Message) -> None:
        deadline = self._expiry_of(entry.kind, obj)
        if deadline is None:
            return
        tick = (math.ceil(deadline / EXPIRY_TICK), entry.kind)
        keys = self._expiring.get(tick)
        if keys is None:
            keys = self._expiring[tick] = []
            soonest = self._expiry_ticks[0] if self._expiry_ticks else None
            heapq.heappush(self._expiry_ticks, tick)
            if soonest is None or tick < soonest:
                self._expiry_wakeup.set()
        keys.append(entry.key)

    def _next_expiry(self) -> float | None:
        soonest = self._expiry_ticks[0][0] * EXPIRY_TICK if self._expiry_ticks else None
        for objs in self._packed.values():
            deadline = objs.next_deadline()
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
        return soonest

    def _due(self, now: float, limit: int) -> builtins.list[tuple[int, str, str]]:
        """Up to limit expired objects still at a version whose deadline is in the tick that
        came up: (rv, kind, key)."""
        due: builtins.list[tuple[int, str, str]] = []
        seen: set[tuple[str, str]] = set()
        while self._expiry_ticks and self._expiry_ticks[0][0] * EXPIRY_TICK <= now and len(due) < limit:
            tick = self._expiry_ticks[0]
            number, kind = tick
            keys = self._expiring[tick]
            objs = self._objects.get(kind, {})
            while keys and len(due) < limit:
                key = keys.pop()
                current = objs.get(key)
                if current is None or (kind, key) in seen:
                    continue
                deadline = self._expiry_of(kind, current.peek())
                if deadline is not None and math.ceil(deadline / EXPIRY_TICK) == number:
                    due.append((current.rv, kind, key))
                    seen.add((kind, key))
            if not keys:
                heapq.heappop(self._expiry_ticks)
                del self._expiring[tick]
        for kind, buffer in self._packed.items():
            for rv, key in buffer.due(now, limit - len(due)):
                if (kind, key) not in seen:
                    due.append((rv, kind, key))
                    seen.add((kind, key))
        return due

    async def _expire_loop(self) -> None:
        """Delete what has expired, in batches, as etcd revokes a lease: watchers see DELETED."""
        while True:
            self._expiry_wakeup.clear()
            soonest = self._next_expiry()
            wait = (soonest - self._clock()) if soonest is not None else None
            if wait is None or wait > 0:
                # A packed write wakes it only with a sooner deadline (the tick heap's writes
                # wake it when they make a new soonest tick).
                self._expiry_wait_until = math.inf if soonest is None else soonest
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._expiry_wakeup.wait()
                self._expiry_wait_until = -math.inf  # it looks again before it sleeps again
                continue
            if self._failed is not None:
                await asyncio.sleep(self.probe_interval)  # deletions wait until the store writes again
                continue
            staged = []
            for rv, kind, key in self._due(self._clock(), EXPIRY_BATCH):
                try:
                    staged.append(self.stage(kind, key, None, expect_rv=rv))
                except errors.StatusError:
                    continue  # changed meanwhile (a staged write of the same object)
            try:
                await self.commit(staged, each=True)
            except errors.StatusError as err:
                log.warning("store: deleting %d expired objects failed: %s", len(staged), err)
