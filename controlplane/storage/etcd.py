"""etcd backend (`--store etcd://H:P[,H:P]`): every object under /registry/<kind>/<key>, on etcd's v3 API.

The Store above stays the single writer and keeps deciding compare-and-swap and assigning
revisions; this backend makes its batches durable, each as one etcd transaction (group commit:
the Store cuts a batch bigger than etcd's limits into several, in revision order),
and gives everything back at start-up (a paginated range read at one etcd revision).

Revisions: the Store numbers every write (several writes share one etcd transaction, and so one
etcd revision, but each needs its own resourceVersion). The Store's revision is kept in the meta
key <prefix>/.ketch/revision, written by every transaction, and each value carries its object's
resourceVersion ahead of the message bytes. Every transaction compares the meta key's
mod_revision with the one this backend last wrote: a second control plane writing the same prefix
unknowingly makes the other's next commit fail loudly (and the Store then refuses writes),
rather than both overwriting each other's objects.

Compaction is kube-apiserver's: every --etcd-compaction-interval (5 min) compact to the revision
seen one interval earlier, so history younger than one interval stays for watchers; a
compare-and-swap on <prefix>/.ketch/compact_rev_key lets only one of several writers do it.

The client is synchronous gRPC on aetcd's stubs of etcd's rpc.proto, called from the Store's
writer thread (Backend.blocking); the same stubs serve an asyncio channel for the watch a later
watch cache needs.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aetcd.rpc import rpc_pb2

from .backend import Record
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
        creds = None
        if tls is not None:
            try:
                creds = grpc.ssl_channel_credentials(tls.cafile.read_bytes(), tls.keyfile.read_bytes(),
                                                     tls.certfile.read_bytes())
            except OSError as err:
                raise ValueError(f"etcd TLS: cannot read {err.filename}: {err.strerror}") from None
        # A channel per member, each checking its member's certificate against its own address.
        self._members = Members(self.endpoints, creds, options)
        self._kv = kv_stub(self._members)
        self._maintenance = maintenance_stub(self._members)
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
        self.etcd_revision = 0  # the etcd revision of the last transaction or read

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
                    revision = int(kv.value or b"0")
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
        for r in last.values():
            k = self.key_of(r.kind, r.key)
            if r.data is None:
                ops.append(rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k)))
            else:
                ops.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=_RV.pack(r.rv) + r.data)))
        self._txn(ops, revision)
        self._measure()

    def _txn(self, ops: list[rpc_pb2.RequestOp], revision: int) -> None:
        meta = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=self._meta_key, value=str(revision).encode()))
        req = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=self._meta_key, target=rpc_pb2.Compare.MOD,
                                     result=rpc_pb2.Compare.EQUAL, mod_revision=self._meta_mod)],
            success=[*ops, meta],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=self._meta_key))])
        resp = self._call("commit", self._kv.Txn, req)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            theirs = int(kvs[0].value or b"0") if kvs else 0
            raise StorageError(
                f"etcd {self.spec}: another writer changed {self._prefix.decode()} since this control plane "
                f"loaded it (its revision is now {theirs}, etcd revision {kvs[0].mod_revision if kvs else 0}, "
                f"expected {self._meta_mod}): two control planes are using one etcd prefix; stop one and "
                "restart the other")
        self._meta_mod = resp.header.revision
        self.etcd_revision = resp.header.revision

    def probe(self, revision: int) -> None:
        """The meta key rewritten under the same compare: fails while etcd is down or another writer owns it."""
        self._txn([], revision)
        self._measure(force=True)

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

    def close(self) -> None:
        self._members.close()
