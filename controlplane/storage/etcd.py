"""etcd backend (`--store etcd://H:P[,H:P]`): every object under /registry/<kind>/<key>, on etcd's v3 API.

The Store above stays the single writer and keeps deciding compare-and-swap and assigning
revisions; this backend makes its batches durable, each as one etcd transaction (group commit:
the Store cuts a batch bigger than etcd's limits into several, in revision order),
and gives everything back at start-up (a paginated range read at one etcd revision).

Revisions: the Store numbers every write (several writes share one etcd transaction, and so one
etcd revision, but each needs its own resourceVersion). The Store's revision is kept in the meta
key <prefix>/.ketch/revision, written by every transaction (with the resourceVersion of each
deletion in it), and each value carries its object's resourceVersion ahead of the message bytes.

Several replicas (kube-apiserver's cacher): every transaction compares the meta key's
mod_revision with the one this replica last applied, so a replica commits only when it knows
every earlier write; otherwise the commit raises Behind and the Store catches up through
follow() (one etcd watch from the revision it loaded), decides its writes again and retries.
quorum_revision() is the linearizable read that makes reads on any replica see every write
acknowledged before they began.

Compaction is kube-apiserver's: every --etcd-compaction-interval (5 min) compact to the revision
seen one interval earlier, so history younger than one interval stays for watchers; a
compare-and-swap on <prefix>/.ketch/compact_rev_key lets only one of several writers do it.

The writes are synchronous gRPC on aetcd's stubs of etcd's rpc.proto, called from the Store's
writer thread (Backend.blocking); the watch and the quorum reads use an asyncio channel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from .backend import Behind, Compacted, ForeignCommit, Record
from .dbfile import StorageError
from .etcdmembers import Members, kv_stub, maintenance_stub

log = logging.getLogger(__name__)

PREFIX = "/registry"
PAGE = 500  # objects per range read at start-up, as kube-apiserver pages lists
# etcd's --max-txn-ops default is 128: one op goes to the meta key.
MAX_TXN_OPS = 127
# etcd's --max-request-bytes default is 1.5 MiB: the Store cuts a transaction before it gets
# there (one object of up to the API's 1.5 MiB limit still goes alone).
MAX_TXN_BYTES = 1024 * 1024
# etcd refuses a request past --max-request-bytes (1.5 MiB) with "request is too large": an object
# must leave room in its transaction for its key, the meta key's put and the framing.
MAX_RECORD_BYTES = 1_572_864 - 2048
DEFAULT_COMPACTION_INTERVAL = 300.0  # kube-apiserver's --etcd-compaction-interval
MEASURE_INTERVAL = 1.0  # seconds between Status calls for the database size (the quota)
CALL_TIMEOUT = 10.0
LOAD_TIMEOUT = 30.0  # the first call waits this long for etcd to be reachable
_RV = struct.Struct(">Q")


@dataclass(frozen=True)
class EtcdTLS:
    cafile: Path
    certfile: Path
    keyfile: Path


def parse_endpoints(spec: str) -> list[tuple[str, int]]:
    """`etcd://H:P[,H:P]` -> [(host, port)]; raises ValueError naming what is wrong."""
    if not spec.startswith("etcd://"):
        raise ValueError(f"--store {spec!r}: an etcd store is etcd://HOST:PORT[,HOST:PORT]")
    out: list[tuple[str, int]] = []
    for part in spec[len("etcd://"):].rstrip("/").split(","):
        host, sep, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--store {spec!r}: {part!r} is not HOST:PORT")
        out.append((host, int(port)))
    return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_meta(value: bytes) -> tuple[int, dict[str, int]]:
    """The meta key's value: the Store's revision, then `RV KIND/KEY` per deletion in the transaction."""
    first, *rest = (value or b"0").decode().split("\n")
    deleted: dict[str, int] = {}
    for line in rest:
        rv, _, name = line.partition(" ")
        deleted[name] = int(rv)
    return int(first or "0"), deleted


def _prefix_end(key: bytes) -> bytes:
    """The range end covering every key that starts with key (etcd's clientv3.GetPrefixRangeEnd)."""
    return key[:-1] + bytes([key[-1] + 1])


class EtcdBackend:
    blocking = True
    max_records = MAX_TXN_OPS
    max_bytes = MAX_TXN_BYTES
    max_record_bytes = MAX_RECORD_BYTES

    def __init__(self, spec: str, tls: EtcdTLS | None = None, *, prefix: str = PREFIX,
                 compaction_interval: float = DEFAULT_COMPACTION_INTERVAL) -> None:
        self.endpoints = parse_endpoints(spec)
        self.spec = spec
        remote = [h for h, _ in self.endpoints if not is_loopback(h)]
        if remote and tls is None:
            raise ValueError(f"--store {spec}: etcd at {remote[0]} is not on loopback: --etcd-cafile, "
                             "--etcd-certfile and --etcd-keyfile are required (TLS to etcd)")
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        self._creds: grpc.ChannelCredentials | None = None
        if tls is not None:
            try:
                self._creds = grpc.ssl_channel_credentials(tls.cafile.read_bytes(), tls.keyfile.read_bytes(),
                                                           tls.certfile.read_bytes())
            except OSError as err:
                raise ValueError(f"etcd TLS: cannot read {err.filename}: {err.strerror}") from None
        # A channel per member, each checking its member's certificate against its own address.
        self._members = Members(self.endpoints, self._creds, options)
        self._options = options
        self._kv = kv_stub(self._members)
        self._maintenance = maintenance_stub(self._members)
        self._aio: grpc.aio.Channel | None = None  # made in the event loop, on first use ...
        self._aio_member = 0  # ... to this member, the next one after it failed
        # Channels to members given up on, each closed once the calls still out on it end.
        self._retired: dict[grpc.aio.Channel, asyncio.Task[None]] = {}
        self._prefix = prefix.rstrip("/").encode()
        self._meta_key = self._prefix + b"/.ketch/revision"
        self._compact_key = self._prefix + b"/.ketch/compact_rev_key"
        self._meta_mod = 0  # the meta key's mod_revision as this backend last saw or wrote it
        self.used_bytes = 0
        self._measured_at = 0.0
        self.compaction_interval = compaction_interval
        self._next_compaction = time.monotonic() + compaction_interval
        self._compact_time = 0  # kube-apiserver's compactor state: the compact key's version ...
        self._compact_rev = 0  # ... and the etcd revision to compact to at the next tick
        self.etcd_revision = 0  # the last etcd revision applied: own transactions and followed ones

    # -- keys ----------------------------------------------------------------------------------

    def key_of(self, kind: str, key: str) -> bytes:
        return b"%s/%s/%s" % (self._prefix, kind.encode(), key.encode())

    def _call(self, what: str, fn: Any, request: Any, timeout: float = CALL_TIMEOUT,
              wait: bool = False) -> Any:
        try:
            return fn(request, timeout=timeout, wait_for_ready=wait)
        except grpc.RpcError as err:
            code = err.code().name if err.code() else "UNKNOWN"
            hint = " (is etcd running and reachable there?)" if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") else ""
            raise StorageError(f"etcd {self.spec}: {what} failed: {code}: {err.details()}{hint}") from None

    # -- Backend -------------------------------------------------------------------------------

    def load(self) -> tuple[int, list[Record]]:
        """Every object, read in pages at one etcd revision (a consistent snapshot)."""
        start = self._prefix + b"/"
        end = _prefix_end(start)
        records: list[Record] = []
        at = 0
        revision = 0
        while True:
            req = rpc_pb2.RangeRequest(key=start, range_end=end, limit=PAGE, revision=at)
            resp = self._call("reading the store", self._kv.Range, req, timeout=LOAD_TIMEOUT, wait=True)
            if not at:
                at = resp.header.revision
            for kv in resp.kvs:
                if kv.key == self._meta_key:
                    self._meta_mod = kv.mod_revision
                    revision, _ = _parse_meta(kv.value)
                    continue
                if kv.key.startswith(self._prefix + b"/.ketch/"):
                    continue
                kind, _, key = kv.key[len(self._prefix) + 1:].decode().partition("/")
                if len(kv.value) < _RV.size:
                    raise StorageError(f"etcd key {kv.key.decode()!r} holds no Ketch object: is another program "
                                       f"using the prefix {self._prefix.decode()}?")
                (rv,) = _RV.unpack_from(kv.value)
                records.append(Record(kind, key, rv, kv.value[_RV.size:]))
            if not resp.more or not resp.kvs:
                break
            start = resp.kvs[-1].key + b"\0"
        self.etcd_revision = at
        self._compact_rev = 0
        records.sort(key=lambda r: r.rv)
        if records:
            revision = max(revision, records[-1].rv)
        self._measure(force=True)
        return revision, records

    def commit(self, records: list[Record], revision: int) -> None:
        """One etcd transaction (the Store hands over at most max_records, max_bytes)."""
        # etcd refuses a transaction that names one key twice: only the last write of a key counts.
        last: dict[tuple[str, str], Record] = {}
        for r in records:
            last.pop((r.kind, r.key), None)
            last[(r.kind, r.key)] = r
        ops: list[rpc_pb2.RequestOp] = []
        # Followers learn each deletion's resourceVersion here, even one a later put of the same
        # key in this transaction hides from etcd's watch (deleted, then made again).
        meta = [str(revision)] + [f"{r.rv} {r.kind}/{r.key}" for r in records if r.data is None]
        for r in last.values():
            k = self.key_of(r.kind, r.key)
            if r.data is None:
                ops.append(rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k)))
            else:
                ops.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=_RV.pack(r.rv) + r.data)))
        self._txn(ops, "\n".join(meta).encode())
        self._measure()

    def _txn(self, ops: list[rpc_pb2.RequestOp], meta_value: bytes) -> None:
        """ops and the meta key in one transaction, if this replica has applied every earlier one."""
        meta = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=self._meta_key, value=meta_value))
        req = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=self._meta_key, target=rpc_pb2.Compare.MOD,
                                     result=rpc_pb2.Compare.EQUAL, mod_revision=self._meta_mod)],
            success=[*ops, meta],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=self._meta_key))])
        resp = self._call("commit", self._kv.Txn, req)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            raise Behind(kvs[0].mod_revision if kvs else resp.header.revision)
        self._meta_mod = resp.header.revision
        self.etcd_revision = resp.header.revision

    def probe(self, revision: int) -> None:
        """A quorum read of the meta key: fails while etcd has no quorum or cannot be reached."""
        self._call("probe", self._kv.Range, rpc_pb2.RangeRequest(key=self._meta_key))
        self._measure(force=True)

    # -- following other replicas ----------------------------------------------------------------

    def _aio_channel(self) -> grpc.aio.Channel:
        if self._aio is None:
            target = self._members.targets[self._aio_member]
            if self._creds is None:
                self._aio = grpc.aio.insecure_channel(target, options=self._options)
            else:
                self._aio = grpc.aio.secure_channel(target, self._creds, options=self._options)
        return self._aio

    def _next_aio_member(self, failed: int) -> None:
        """Member `failed` was unavailable to the event loop's channel: the next call goes to the
        next member (unless the watch or a quorum read already moved on meanwhile)."""
        if self._aio_member != failed:
            return
        self._aio_member = (failed + 1) % len(self._members.targets)
        aio, self._aio = self._aio, None
        if aio is not None:
            # Calls still out on it (the watch, other quorum reads) end on their own, with the
            # member's error or their timeout, and move on too: closing it at once would cancel
            # them, and a quorum read cancelled so reads as the control plane stopping.
            task = asyncio.get_running_loop().create_task(aio.close(grace=CALL_TIMEOUT))
            self._retired[aio] = task
            task.add_done_callback(lambda _t: self._retired.pop(aio, None))

    async def quorum_revision(self) -> int:
        """The etcd revision of the last Store transaction (the meta key's), a linearizable read."""
        members = len(self._members.targets)
        for tried in range(1, members + 1):
            member, stub = self._aio_member, rpc_pb2_grpc.KVStub(self._aio_channel())
            try:
                resp = await stub.Range(rpc_pb2.RangeRequest(key=self._meta_key), timeout=CALL_TIMEOUT)
            except grpc.RpcError as err:
                # Unavailable, or out on a member given up on meanwhile: the next member answers.
                if err.code() == grpc.StatusCode.UNAVAILABLE or self._aio_member != member:
                    self._next_aio_member(member)
                    if tried < members:
                        continue
                code = err.code().name if err.code() else "UNKNOWN"
                raise StorageError(f"etcd {self.spec}: quorum read failed: {code}: {err.details()}") from None
            return int(resp.kvs[0].mod_revision) if resp.kvs else 0
        raise AssertionError("unreachable")

    async def follow(self, start: int) -> AsyncIterator[list[ForeignCommit]]:
        """Every transaction under the prefix from etcd revision start, grouped per transaction
        (etcd sends one revision's events in one response)."""
        member, stub = self._aio_member, rpc_pb2_grpc.WatchStub(self._aio_channel())
        begin = self._prefix + b"/"
        # etcd's WithRequireLeader: a member cut off from the quorum ends the stream ("no leader",
        # UNAVAILABLE) instead of keeping it open with nothing on it, so the follower moves on.
        call = stub.Watch(metadata=(("hasleader", "true"),))
        try:
            try:
                await call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                    key=begin, range_end=_prefix_end(begin), start_revision=start)))
            except asyncio.InvalidStateError:
                # The call failed before the request went out (a dead member refuses at once):
                # grpc.aio says so with this, not with the call's status, which is read here.
                raise self._watch_failed(member, await call.code(), await call.details()) from None
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(f"etcd compacted to {resp.compact_revision}, past revision {start}")
                if resp.canceled:
                    raise StorageError(f"etcd {self.spec}: watch canceled: {resp.cancel_reason}")
                # This replica's own transactions come back too: skipped before they are decoded.
                events = [ev for ev in resp.events if ev.kv.mod_revision > self.etcd_revision]
                if events:
                    yield self._commits(events)
        except grpc.RpcError as err:
            raise self._watch_failed(member, err.code(), err.details()) from None
        finally:
            call.cancel()

    def _watch_failed(self, member: int, code: grpc.StatusCode | None, details: str | None) -> StorageError:
        if code == grpc.StatusCode.UNAVAILABLE:
            self._next_aio_member(member)  # the follower's next watch goes to another member
        return StorageError(f"etcd {self.spec}: watch failed: {code.name if code else 'UNKNOWN'}: {details}")

    def _commits(self, events: Any) -> list[ForeignCommit]:
        out: list[ForeignCommit] = []
        rev = 0
        records: list[Record] = []
        top: int | None = None
        deleted: dict[str, int] = {}
        pending: list[tuple[str, str, bytes | None]] = []

        def close() -> None:
            if rev:
                for kind, key, value in pending:
                    if value is None:
                        records.append(Record(kind, key, deleted.pop(f"{kind}/{key}", top or 0), None))
                    else:
                        (rv,) = _RV.unpack_from(value)
                        records.append(Record(kind, key, rv, value[_RV.size:]))
                for name, rv in deleted.items():  # deleted, then put again in the same transaction
                    kind, _, key = name.partition("/")
                    records.append(Record(kind, key, rv, None))
                records.sort(key=lambda r: r.rv)
                out.append(ForeignCommit(rev, top, list(records)))

        for ev in events:
            kv = ev.kv
            if kv.mod_revision != rev:
                close()
                rev, top, records, deleted, pending = kv.mod_revision, None, [], {}, []
            if kv.key == self._meta_key:
                top, deleted = _parse_meta(kv.value)
                continue
            if kv.key.startswith(self._prefix + b"/.ketch/"):
                continue
            kind, _, key = kv.key[len(self._prefix) + 1:].decode().partition("/")
            if ev.type == ev.DELETE:
                pending.append((kind, key, None))
            elif len(kv.value) >= _RV.size:
                pending.append((kind, key, kv.value))
        close()
        return out

    def note_applied(self, commit: ForeignCommit) -> None:
        """The Store applied another replica's transaction: commits now compare against it."""
        self.etcd_revision = max(self.etcd_revision, commit.etcd_revision)
        if commit.top is not None:
            self._meta_mod = max(self._meta_mod, commit.etcd_revision)

    async def aclose(self) -> None:
        for channel, closing in list(self._retired.items()):
            closing.cancel()
            await channel.close()
        if self._aio is not None:
            await self._aio.close()
            self._aio = None

    def _measure(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._measured_at < MEASURE_INTERVAL:
            return
        self._measured_at = now
        try:
            status = self._maintenance.Status(rpc_pb2.StatusRequest(), timeout=CALL_TIMEOUT)
        except grpc.RpcError as err:
            log.warning("etcd %s: status: %s", self.spec, err.details())
            return
        # What etcd's quota (--quota-backend-bytes) compares: the file's size, free pages included.
        self.used_bytes = status.dbSize

    def wants_compaction(self) -> bool:
        return self.compaction_interval > 0 and time.monotonic() >= self._next_compaction

    def compact(self) -> int:
        """One tick of kube-apiserver's compactor; returns the etcd revision compacted to (0: none)."""
        self._next_compaction = time.monotonic() + self.compaction_interval
        req = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=self._compact_key, target=rpc_pb2.Compare.VERSION,
                                     result=rpc_pb2.Compare.EQUAL, version=self._compact_time)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=self._compact_key, value=b""))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=self._compact_key))])
        try:
            resp = self._call("compaction", self._kv.Txn, req)
        except StorageError as err:
            log.warning("%s", err)
            return 0
        current = resp.header.revision
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            # Another writer compacted this tick; follow its clock.
            self._compact_time = kvs[0].version if kvs else 0
            self._compact_rev = current
            return 0
        self._compact_time += 1
        target, self._compact_rev = self._compact_rev, current
        if not target:
            return 0
        try:
            self._call("compaction", self._kv.Compact, rpc_pb2.CompactionRequest(revision=target))
        except StorageError as err:
            if "required revision has been compacted" not in str(err):
                log.warning("%s", err)
            return 0
        log.info("etcd: compacted to revision %d", target)
        return target

    def release_memory(self) -> None:
        return None  # etcd caches in its own process

    def close(self) -> None:
        self._members.close()
