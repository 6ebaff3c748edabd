"""The API's operations, transport-free: the inner steps of the request chain (chain.py), after
authentication, the in-flight limit and authorization: decode the object or apply the patch,
defaults, mutating admission, the kind's strategy (prepare, validate), validating admission, store.

Each operation takes its request message and the request's Attributes, returns the response
message of ketch/v1/api.proto and raises ketch.api.errors.StatusError on failure. Everything a
kind means is its Strategy's (controlplane.registry): this module names no kind.

Every write is checked and staged synchronously (no await between reading the current object
and staging its successor), so compare-and-swap decisions can never interleave; the await comes
only for durability.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import platform
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from controlplane.registry import Registry, Strategy
from controlplane.storage import Entry, Store, Version
from controlplane.storage.store import RaceConflict, _Staged
from ketch import __version__
from ketch.api import errors, limits, manifest, timeutil, wellformed
from ketch.api.kinds import KindInfo, kind_info
from ketch.api.patch import apply_patch
from ketch.api.selectors import parse_field_selector, parse_label_selector
from ketch.v1 import api_pb2

from .admission import CREATE, DELETE, UPDATE, Admission, AdmissionRequest, default_admission
from .request import Attributes, kind_of_object, kind_or_404
from .watch import LOCAL_WATCH_LIMITS, Filter, WatchHub, WatchLimits

__all__ = ["MAX_OBJECT_BYTES", "APIService", "WatchLimits"]

log = logging.getLogger(__name__)

VERSION = __version__
KUBERNETES_SEMANTICS = "v1.31"
MAX_OBJECT_BYTES = limits.MAX_OBJECT_BYTES  # etcd's default request limit, as Kubernetes has it
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
BOOKMARK_INTERVAL = 2.0
BOOKMARK_CATCH_UP = 0.2
# A watch list closes at about this many bytes of objects: dozens of events per write, and what a
# client that stops reading leaves the server holding (the one message its stream cannot send).
WATCH_LIST_BYTES = 64 * 1024
PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")
BATCH_OPS_PER_TURN = 64  # a large Batch's writes staged per turn of the event loop
RACE_RETRIES = 5  # times a write is decided again after losing a race with another control plane

Clock = Callable[[], float]


def pack(entry: Entry) -> any_pb2.Any:
    info = kind_info(entry.kind)
    return any_pb2.Any(type_url=info.type_url, value=entry.data)


def unpack(obj: any_pb2.Any) -> tuple[KindInfo, Message]:
    info = kind_of_object(obj)
    msg = info.new()
    try:
        msg.ParseFromString(obj.value)
    except DecodeError as err:
        raise errors.BadRequest(f"cannot decode the {info.kind}: {err}") from None
    # Fields this server's schema lacks would be stored and served, though no manifest can say
    # them: refused, as strict decoding refuses an unknown JSON field.
    size = msg.ByteSize()
    msg.DiscardUnknownFields()
    if msg.ByteSize() != size:
        raise errors.BadRequest(f"cannot decode the {info.kind}: it has fields unknown to this server")
    # Numbers JSON cannot carry (NaN, infinities) in free-form fields and times that are not
    # RFC 3339, refused as Kubernetes.
    # decoding refuses them, before validation reads them as integers.
    bad = wellformed.problems(msg)
    if bad:
        raise errors.BadRequest(f"cannot decode the {info.kind}: {wellformed.describe(bad)}")
    if msg.api_version and msg.api_version != info.api_version:  # type: ignore[attr-defined]
        raise errors.BadRequest(f"the API version in the data ({msg.api_version}) does not match "  # type: ignore[attr-defined]
                                f"the expected API version ({info.api_version})")
    if msg.kind and msg.kind != info.kind:  # type: ignore[attr-defined]
        raise errors.BadRequest(f'the kind in the data ("{msg.kind}") does not match the expected kind '  # type: ignore[attr-defined]
                                f'("{info.kind}")')
    return info, msg


def _key(info: KindInfo, namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if info.namespaced else name


def _rv(text: str) -> int | None:
    """A resourceVersion as Kubernetes' storage reads it (strconv.ParseUint): ASCII digits only.
    Python's int() also takes a sign, spaces, underscores and other scripts' digits ("-1" read as
    a revision before the window, "1_0" as 10), and raises past 4300 digits."""
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise errors.BadRequest(f'invalid resourceVersion "{limits.clip(text)}"')
    return int(text)


def _same_body(a: Message, b: Message) -> bool:
    """Whether everything but metadata is equal (a false "different" only costs a full check)."""
    return ([(f.number, v) for f, v in a.ListFields() if f.name != "metadata"]
            == [(f.number, v) for f, v in b.ListFields() if f.name != "metadata"])


def _event_lists(batch: builtins.list[tuple[str, Version, int]],
                 type_url: str) -> Iterator[api_pb2.WatchEventList]:
    """A watcher's batch as lists of at most about WATCH_LIST_BYTES of objects each: a busy
    stream costs one write per list, and no list is built before the previous one is sent."""
    out, size = api_pb2.WatchEventList(), 0
    for etype, entry, rev in batch:
        if size >= WATCH_LIST_BYTES:
            yield out
            out, size = api_pb2.WatchEventList(), 0
        ev = out.events.add(type=etype, resource_version=str(rev))
        ev.object.type_url = type_url
        ev.object.value = entry.data
        size += len(entry.data)
    if out.events:
        yield out


def _copy(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def copy_server_metadata(new: Any, old: Any) -> None:
    """Fields of metadata only the server writes, kept from the stored object on update."""
    nm, om = new.metadata, old.metadata
    nm.uid = om.uid
    nm.creation_timestamp = om.creation_timestamp
    nm.deletion_timestamp = om.deletion_timestamp
    if om.HasField("deletion_grace_period_seconds"):
        nm.deletion_grace_period_seconds = om.deletion_grace_period_seconds
    else:
        nm.ClearField("deletion_grace_period_seconds")
    nm.generation = om.generation
    nm.generate_name = om.generate_name or nm.generate_name
    nm.self_link = ""


class _StagedWrite:
    """A staged write (None when the request changed nothing) and what to answer once it is
    durable; kind and key name the object, whose committed state answers a no-op. A dry run's
    write was only checked (the Store did not stage it) and is never committed."""

    __slots__ = ("deleted", "dry_run", "key", "kind", "staged", "warnings")

    def __init__(self, kind: str, key: str, staged: _Staged | None, warnings: list[str],
                 deleted: bool = False, dry_run: bool = False) -> None:
        self.kind = kind
        self.key = key
        self.staged = staged
        self.warnings = warnings
        self.deleted = deleted
        self.dry_run = dry_run

    @property
    def to_commit(self) -> _Staged | None:
        """What must be made durable: nothing for a no-op or a dry run."""
        return None if self.dry_run else self.staged


class APIService:
    def __init__(self, store: Store, hub: WatchHub, clock: Clock = time.time, registry: Registry | None = None,
                 admission: Admission | None = None) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self.registry = registry or Registry()
        self.admission = admission if admission is not None else default_admission(store, self.registry)

    # -- helpers -------------------------------------------------------------------------------

    def _namespace_of(self, info: KindInfo, namespace: str) -> str:
        if not info.namespaced:
            return ""
        return namespace or "default"

    def _respond(self, write: _StagedWrite) -> api_pb2.ObjectResponse:
        staged = write.staged
        entry = (staged.entry or staged.tombstone) if staged is not None else self.store.get(write.kind, write.key)
        resp = api_pb2.ObjectResponse(warnings=write.warnings, deleted=write.deleted)
        if entry is not None:
            resp.object.CopyFrom(pack(entry))
        return resp

    def _get_entry(self, kind: str, namespace: str, name: str) -> tuple[Strategy, Entry]:
        strategy = self.registry[kind_or_404(kind).kind]
        info = strategy.info
        entry = self.store.latest(info.kind, _key(info, self._namespace_of(info, namespace), name))
        if entry is None:
            raise errors.NotFound(f'{info.qualified_plural} "{name}" not found')
        return strategy, entry

    @staticmethod
    def _refuse_invalid(kind: str, obj: Any, errs: list[errors.FieldError]) -> None:
        if errs:
            raise errors.invalid_error(kind, obj.metadata.name or obj.metadata.generate_name, errs)

    @staticmethod
    def _check_size(info: KindInfo, obj: Message) -> None:
        """Every object stored, however it was made (create, update, status, patch, batch), is at
        most MAX_OBJECT_BYTES: a patch or a status write could otherwise grow it without bound."""
        size = obj.ByteSize()
        if size > MAX_OBJECT_BYTES:
            raise limits.object_too_large(info.kind, obj.metadata.name, size)  # type: ignore[attr-defined]

    def _filter(self, info: KindInfo, namespace: str, label_selector: str, field_selector: str) -> Filter:
        strategy = self.registry[info.kind]
        return Filter(namespace if info.namespaced else "", parse_label_selector(label_selector),
                      parse_field_selector(field_selector, strategy.selectable_fields()),
                      self.registry.selected_fields)

    # -- create --------------------------------------------------------------------------------

    def stage_create(self, req: api_pb2.CreateRequest, attrs: Attributes) -> _StagedWrite:
        info, obj = unpack(req.object)
        strategy = self.registry[info.kind]
        md = obj.metadata  # type: ignore[attr-defined]
        md.namespace = self._namespace_of(info, md.namespace)
        # No name at all is reported with everything else wrong (validation names it), as Kubernetes.
        nameless = not md.name and not md.generate_name
        now = self.clock()
        md.uid = str(uuid.uuid4())
        md.creation_timestamp = timeutil.format(now)
        md.ClearField("deletion_timestamp")
        md.ClearField("deletion_grace_period_seconds")
        md.resource_version = ""
        md.self_link = ""
        del md.managed_fields[:]
        md.generation = strategy.initial_generation()
        if not md.name and not nameless:
            md.name = self._generate_name(info, md.namespace, md.generate_name)
        strategy.default(obj)
        self.admission.mutate(AdmissionRequest(CREATE, attrs, obj, None))
        strategy.prepare_for_create(obj, now)
        errs = strategy.validate(obj)
        if nameless and not any(e.field == "metadata.name" for e in errs):
            errs.insert(0, errors.required("metadata.name", "name or generateName is required"))
        self._refuse_invalid(info.kind, obj, errs)
        self.admission.validate(AdmissionRequest(CREATE, attrs, obj, None))
        self._check_size(info, obj)
        staged = self.store.stage(info.kind, _key(info, md.namespace, md.name), obj, create=True,
                                  dry_run=req.dry_run)
        return _StagedWrite(info.kind, staged.key, staged, strategy.warnings_on_create(obj), dry_run=req.dry_run)

    def _generate_name(self, info: KindInfo, namespace: str, prefix: str) -> str:
        prefix = prefix[:58]
        for _ in range(16):
            name = prefix + "".join(random.choices(_NAME_CHARS, k=5))
            if self.store.latest(info.kind, _key(info, namespace, name)) is None:
                return name
        raise errors.AlreadyExists(f"could not generate a unique name from {prefix!r}")

    async def create(self, req: api_pb2.CreateRequest, attrs: Attributes) -> api_pb2.ObjectResponse:
        write = await self._decided(lambda: self.stage_create(req, attrs))  # each try parses req anew
        return self._respond(write)

    async def _decided(self, stage: Callable[[], _StagedWrite]) -> _StagedWrite:
        """stage() then commit, decided again on fresher state when that could change the answer.

        Another control plane may have written the object since this one last heard: a write
        that lost the race is staged again (kube-apiserver's GuaranteedUpdate: the request's own
        preconditions are checked again against the newer object), and a refusal that rests on
        this replica's view (NotFound, AlreadyExists, a Conflict with a resourceVersion it has
        not seen) is given only after a quorum read brought it up to date."""
        synced = False
        for _ in range(RACE_RETRIES):
            try:
                write = stage()
                to_commit = write.to_commit
                await self.store.commit([to_commit] if to_commit else [])
            except RaceConflict:
                await self.store.sync()
                synced = True
                continue
            except (errors.NotFound, errors.AlreadyExists, errors.Conflict):
                if synced or not self.store.shared:
                    raise
                await self.store.sync()
                synced = True
                continue
            return write
        raise errors.Conflict("the object kept changing on other control planes; try again")

    # -- read ----------------------------------------------------------------------------------

    async def get(self, req: api_pb2.GetRequest, attrs: Attributes) -> api_pb2.ObjectResponse:
        info = kind_or_404(req.kind)
        await self.store.sync()
        entry = self.store.get(info.kind, _key(info, self._namespace_of(info, req.namespace), req.name))
        if entry is None:
            raise errors.NotFound(f'{info.qualified_plural} "{req.name}" not found')
        return api_pb2.ObjectResponse(object=pack(entry))

    async def list(self, req: api_pb2.ListRequest, attrs: Attributes) -> api_pb2.ListResponse:
        info = kind_or_404(req.kind)
        match = self._filter(info, req.namespace, req.label_selector, req.field_selector)
        await self.store.sync()
        resp = api_pb2.ListResponse(resource_version=str(self.store.revision))
        type_url = info.type_url
        items = [any_pb2.Any(type_url=type_url, value=e.data)
                 for e in self.store.list(info.kind, match.namespace) if match(e)]
        resp.items.extend(items)
        return resp

    # -- update / patch ------------------------------------------------------------------------

    def _stage_replace(self, strategy: Strategy, new: Any, old: Entry, subresource: str,
                       expect_rv: int | None, attrs: Attributes, dry_run: bool) -> _StagedWrite:
        """Stage new as the successor of old (a spec, status or other subresource write)."""
        info = strategy.info
        body_changed = False  # a spec write that changes more than metadata (for warnings)
        if subresource == "status":
            if not info.has_status:
                raise errors.NotFound(f"{info.plural} have no status subresource")
            result = _copy(old.obj)
            result.status.CopyFrom(new.status)  # type: ignore[attr-defined]
            self.admission.mutate(AdmissionRequest(UPDATE, attrs, result, old.obj))
            self._refuse_invalid(info.kind, result, strategy.validate_status_update(result, old.obj))
        elif subresource:
            result = strategy.subresource(subresource, new, old.obj, self.clock())
            self.admission.mutate(AdmissionRequest(UPDATE, attrs, result, old.obj))
        else:
            result = new
            copy_server_metadata(result, old.obj)
            if info.has_status:
                if old.obj.HasField("status"):
                    result.status.CopyFrom(old.obj.status)  # type: ignore[attr-defined]
                else:
                    result.ClearField("status")
            # Controllers mostly change metadata alone (finalizers, owner references, labels): then
            # the rest is the stored, already defaulted and validated body, and only the metadata
            # needs checking. This is the hot path of pod finalizer removal.
            body_changed = not _same_body(result, old.obj)
            if body_changed:
                strategy.default(result)
            self.admission.mutate(AdmissionRequest(UPDATE, attrs, result, old.obj))
            if body_changed and strategy.bumps_generation and strategy.spec_changed(result, old.obj):
                result.metadata.generation = old.obj.metadata.generation + 1  # type: ignore[attr-defined]
            strategy.prepare_for_update(result, old.obj)
            if body_changed:
                errs = strategy.validate(result) + strategy.validate_update(result, old.obj)
            else:
                errs = strategy.validate_metadata_update(result, old.obj)
            old_md = old.obj.metadata  # type: ignore[attr-defined]
            if old_md.deletion_timestamp:
                added = set(result.metadata.finalizers) - set(old_md.finalizers)
                if added:
                    errs.append(errors.forbidden(
                        "metadata.finalizers",
                        f"no new finalizers can be added if the object is being deleted, found new "
                        f"finalizers {sorted(added)}"))
            self._refuse_invalid(info.kind, result, errs)
        self.admission.validate(AdmissionRequest(UPDATE, attrs, result, old.obj))
        md = result.metadata  # type: ignore[attr-defined]
        md.resource_version = old.obj.metadata.resource_version  # type: ignore[attr-defined]
        if result.SerializeToString(deterministic=True) == old.obj.SerializeToString(deterministic=True):
            if expect_rv is not None and expect_rv != old.rv:
                self.store.stage(info.kind, old.key, None, expect_rv=expect_rv, dry_run=True)  # raises Conflict
            return _StagedWrite(info.kind, old.key, None, [])
        if (md.deletion_timestamp and not md.finalizers and not md.deletion_grace_period_seconds
                and not strategy.spec_finalizers(result)):
            # The last finalizer is gone: the object goes now.
            staged = self.store.stage(info.kind, old.key, None, expect_rv=expect_rv, dry_run=dry_run)
            return _StagedWrite(info.kind, old.key, staged, [], deleted=True, dry_run=dry_run)
        self._check_size(info, result)
        staged = self.store.stage(info.kind, old.key, result, expect_rv=expect_rv, dry_run=dry_run)
        return _StagedWrite(info.kind, old.key, staged, strategy.warnings(result) if body_changed else [],
                            dry_run=dry_run)

    def stage_update(self, req: api_pb2.UpdateRequest, attrs: Attributes) -> _StagedWrite:
        info, new = unpack(req.object)
        strategy = self.registry[info.kind]
        md = new.metadata  # type: ignore[attr-defined]
        md.namespace = self._namespace_of(info, md.namespace)
        expect_rv = _rv(md.resource_version)
        old = self.store.latest(info.kind, _key(info, md.namespace, md.name))
        if old is None:
            raise errors.NotFound(f'{info.qualified_plural} "{md.name}" not found')
        if md.uid and md.uid != old.obj.metadata.uid:  # type: ignore[attr-defined]
            raise errors.Conflict(
                f'Precondition failed: UID in precondition: {md.uid}, UID in object meta: '
                f'{old.obj.metadata.uid}')  # type: ignore[attr-defined]
        return self._stage_replace(strategy, new, old, req.subresource, expect_rv, attrs, req.dry_run)

    async def update(self, req: api_pb2.UpdateRequest, attrs: Attributes) -> api_pb2.ObjectResponse:
        write = await self._decided(lambda: self.stage_update(req, attrs))
        return self._respond(write)

    def stage_patch(self, req: api_pb2.PatchRequest, attrs: Attributes) -> _StagedWrite:
        strategy, old = self._get_entry(req.kind, req.namespace, req.name)
        info = strategy.info
        current = manifest.to_dict(old.obj, sort_keys=False)
        patched = apply_patch(current, req.patch_type, req.patch)
        if not isinstance(patched, dict):
            raise errors.BadRequest("the patched object is not a JSON object")
        patched["apiVersion"], patched["kind"] = info.api_version, info.kind
        new = info.new()
        manifest.decode_into(new, patched, f"the patched {info.kind}")
        md = new.metadata  # type: ignore[attr-defined]
        if md.name != old.name or (info.namespaced and md.namespace != old.namespace):
            raise errors.BadRequest("a patch may not change metadata.name or metadata.namespace")
        # A resourceVersion in the patch is a precondition; otherwise the patch applies to the
        # latest version.
        expect_rv = _rv(md.resource_version)
        if expect_rv == old.rv:
            expect_rv = None
        return self._stage_replace(strategy, new, old, req.subresource, expect_rv, attrs, req.dry_run)

    async def patch(self, req: api_pb2.PatchRequest, attrs: Attributes) -> api_pb2.ObjectResponse:
        write = await self._decided(lambda: self.stage_patch(req, attrs))
        return self._respond(write)

    # -- delete --------------------------------------------------------------------------------

    def stage_delete(self, req: api_pb2.DeleteRequest, attrs: Attributes) -> _StagedWrite:
        strategy, old = self._get_entry(req.kind, req.namespace, req.name)
        obj: Any = old.obj
        md = obj.metadata
        pre = req.preconditions
        if pre.uid and pre.uid != md.uid:
            raise errors.Conflict(f"Precondition failed: UID in precondition: {pre.uid}, UID in object meta: {md.uid}")
        if pre.resource_version and pre.resource_version != md.resource_version:
            raise errors.Conflict(
                f"Precondition failed: ResourceVersion in precondition: {pre.resource_version}, "
                f"ResourceVersion in object meta: {md.resource_version}")
        strategy.check_delete(obj)
        dry_run = req.dry_run
        warnings: list[str] = []
        policy = req.propagation_policy
        if not policy:
            policy = strategy.default_propagation
            if strategy.default_propagation_warning:
                warnings.append(strategy.default_propagation_warning)
        if policy not in PROPAGATION_POLICIES:
            raise errors.BadRequest(f'unknown propagationPolicy "{limits.clip(policy)}": use Background, '
                                    "Foreground or Orphan")
        # Both phases see a delete, as kube-apiserver's (NodeRestriction is a mutating plugin).
        self.admission.mutate(AdmissionRequest(DELETE, attrs, None, obj))
        self.admission.validate(AdmissionRequest(DELETE, attrs, None, obj))

        now = self.clock()
        new: Any = _copy(obj)
        nmd = new.metadata
        grace = strategy.grace_period(obj, req.grace_period_seconds if req.HasField("grace_period_seconds") else None)
        changed = False
        if policy == "Foreground" and "foregroundDeletion" not in nmd.finalizers and not md.deletion_timestamp:
            nmd.finalizers.append("foregroundDeletion")
            changed = True
        elif policy == "Orphan" and "orphan" not in nmd.finalizers and not md.deletion_timestamp:
            nmd.finalizers.append("orphan")
            changed = True
        key = old.key
        if grace > 0:
            # Graceful (a pod running on a node): the agent stops it and deletes it with grace 0.
            deadline = now + grace
            if not md.deletion_timestamp or (md.HasField("deletion_grace_period_seconds")
                                             and grace < md.deletion_grace_period_seconds):
                nmd.deletion_timestamp = timeutil.format(deadline)
                nmd.deletion_grace_period_seconds = grace
                changed = True
            staged = self.store.stage(strategy.kind, key, new, dry_run=dry_run) if changed else None
            return _StagedWrite(strategy.kind, key, staged, warnings, dry_run=dry_run)
        if nmd.finalizers or strategy.spec_finalizers(new):
            if not md.deletion_timestamp:
                nmd.deletion_timestamp = timeutil.format(now)
                changed = True
            changed = strategy.prepare_for_delete(new) or changed
            if not md.HasField("deletion_grace_period_seconds") or md.deletion_grace_period_seconds != 0:
                nmd.deletion_grace_period_seconds = 0
                changed = True
            staged = self.store.stage(strategy.kind, key, new, dry_run=dry_run) if changed else None
            return _StagedWrite(strategy.kind, key, staged, warnings, dry_run=dry_run)
        staged = self.store.stage(strategy.kind, key, None, dry_run=dry_run)
        return _StagedWrite(strategy.kind, key, staged, warnings, deleted=True, dry_run=dry_run)

    async def delete(self, req: api_pb2.DeleteRequest, attrs: Attributes) -> api_pb2.ObjectResponse:
        write = await self._decided(lambda: self.stage_delete(req, attrs))
        return self._respond(write)

    # -- batch ---------------------------------------------------------------------------------

    async def batch(self, req: api_pb2.BatchRequest, op_attrs: builtins.list[Attributes | errors.StatusError],
                    max_bytes: int | None = None) -> api_pb2.BatchResponse:
        """Stage every op, then commit them together; each op succeeds or fails alone (op_attrs:
        its attributes, or why the chain refused it). max_bytes (for clients over the network)
        bounds the bytes of objects the ops read as a patch's base and stage: the op that would
        start past it, and every later one, fail alone with RequestEntityTooLarge.

        More than BATCH_OPS_PER_TURN ops are staged that many per turn of the loop: other requests
        are served between the slices, and writes they stage meanwhile commit in the same
        transaction, after the ops staged before them. A request cancelled midway (its client
        gone) commits the ops it had staged, as a cancelled single write commits once staged."""
        writes: builtins.list[tuple[int, _StagedWrite]] = []
        results: builtins.list[api_pb2.BatchResult] = []
        stagers: dict[int, Callable[[], _StagedWrite]] = {}
        # Staged a slice per turn of the loop, into one commit that keeps its place, so the
        # requests beside a large Batch are not held up for the whole of its staging.
        commit = self.store.open_commit()
        used = 0
        try:
            for i, (op, attrs) in enumerate(zip(req.ops, op_attrs, strict=True)):
                if i and i % BATCH_OPS_PER_TURN == 0:
                    await asyncio.sleep(0)
                result = api_pb2.BatchResult()
                results.append(result)
                which = op.WhichOneof("op")
                try:
                    if isinstance(attrs, errors.StatusError):
                        raise attrs
                    if max_bytes is not None and used > max_bytes:
                        raise errors.TooLarge(
                            f"Request entity too large: limit is {max_bytes} bytes of objects read and written by "
                            "one Batch; send the remaining operations in another Batch")
                    if which == "patch":
                        used += self._stored_size(op.patch.kind, op.patch.namespace, op.patch.name)
                    stagers[i] = self._batch_stager(op, attrs)
                    write = stagers[i]()
                except errors.StatusError as err:
                    result.code, result.message, result.reason = err.code, err.message, err.reason
                    continue
                writes.append((i, write))
                if write.staged is not None:
                    staged = write.staged.entry or write.staged.tombstone
                    used += len(staged.data) if staged is not None else 0
                if write.to_commit is not None:
                    commit.add(write.to_commit)
        finally:
            commit.seal()  # what was staged commits even if this request is cancelled midway
        await commit.wait()
        for i, write in writes:
            if write.staged is not None and write.staged.error is not None:
                # Another control plane wrote the object first: this op alone is decided again.
                try:
                    write = await self._decided(stagers[i])
                except errors.StatusError as err:
                    results[i].code, results[i].message, results[i].reason = err.code, err.message, err.reason
                    continue
            results[i].response.CopyFrom(self._respond(write))
        return api_pb2.BatchResponse(results=results)

    def _batch_stager(self, op: api_pb2.BatchOp, attrs: Attributes) -> Callable[[], _StagedWrite]:
        which = op.WhichOneof("op")
        if which == "create":
            return lambda: self.stage_create(op.create, attrs)
        if which == "update":
            return lambda: self.stage_update(op.update, attrs)
        if which == "patch":
            return lambda: self.stage_patch(op.patch, attrs)
        if which == "delete":
            return lambda: self.stage_delete(op.delete, attrs)
        raise errors.BadRequest("empty batch operation")

    def _stored_size(self, kind: str, namespace: str, name: str) -> int:
        """Bytes of the object a request names (0 when there is none): what patching it costs."""
        try:
            info = kind_info(kind)
        except KeyError:
            return 0
        entry = self.store.latest(info.kind, _key(info, self._namespace_of(info, namespace), name))
        return len(entry.data) if entry is not None else 0

    # -- watch ---------------------------------------------------------------------------------

    async def watch(self, req: api_pb2.WatchRequest, attrs: Attributes,
                    limits: WatchLimits | None = None) -> AsyncIterator[api_pb2.WatchEvent]:
        async for batch in self.watch_batched(req, attrs, limits):
            for event in batch.events:
                yield event
                del event
            del batch  # not held while the watcher waits for its next batch

    async def watch_batched(self, req: api_pb2.WatchRequest, attrs: Attributes,
                            limits: WatchLimits | None = None) -> AsyncIterator[api_pb2.WatchEventList]:
        """The watch stream, as lists of the events that were ready together (each list at most
        about WATCH_LIST_BYTES of objects), so a busy stream costs one write per list. limits:
        how far the client may fall behind (watch.py); the gRPC server passes its own, in-process
        callers get LOCAL_WATCH_LIMITS."""
        info = kind_or_404(req.kind)
        match = self._filter(info, req.namespace, req.label_selector, req.field_selector)
        rv = req.resource_version
        from_rev = None if rv in ("", "0") else _rv(rv)
        if rv == "":
            await self.store.sync()  # the current state: every write acknowledged before the watch
        elif from_rev is not None and from_rev > self.store.revision:
            # Made on another control plane and not yet applied here (a client that moved).
            await self.store.wait_for_revision(from_rev)
        watcher = self.hub.watch(info.kind, match, from_rev, limits or LOCAL_WATCH_LIMITS)
        type_url = info.type_url
        # An idle watcher hears of newer revisions soon (a client waiting for its caches to reach
        # a revision, such as the garbage collector, need not wait long), and of the current one
        # at least every BOOKMARK_INTERVAL.
        timeout = min(BOOKMARK_CATCH_UP, BOOKMARK_INTERVAL) if req.allow_bookmarks else None
        sent = from_rev if from_rev is not None else self.store.revision
        idle = 0.0
        try:
            while True:
                batch = await watcher.next_batch(timeout)
                if batch is None:
                    assert timeout is not None
                    idle += timeout
                    if self.store.revision > sent or idle >= BOOKMARK_INTERVAL:
                        sent, idle = self.store.revision, 0.0
                        out = api_pb2.WatchEventList()
                        out.events.add(type="BOOKMARK", resource_version=str(sent))
                        yield out
                    continue
                idle = 0.0
                if batch:
                    sent = max(sent, batch[-1][2])
                # Neither the batch nor its last list stays in this frame while the watcher waits
                # for the next one (after a burst of deletes, that could be hours of a dead pod).
                lists = _event_lists(batch, type_url)
                del batch
                for out in lists:
                    yield out
                    del out
                del lists
                if watcher.closed:  # dropped for falling behind, or the server stops: the client resumes
                    return
        finally:
            watcher.close()

    async def version(self, req: api_pb2.VersionRequest, attrs: Attributes) -> api_pb2.VersionInfo:
        major, minor, _ = VERSION.split(".")
        return api_pb2.VersionInfo(
            major=major, minor=minor, git_version=f"v{VERSION}",
            platform=f"{sys.platform}/{platform.machine()}",
            python_version=platform.python_version(), kubernetes_semantics=KUBERNETES_SEMANTICS)
