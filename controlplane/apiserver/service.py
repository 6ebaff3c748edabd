"""The API's operations, transport-free: decode, default, validate, admit, store, encode.

Each method takes and returns the request/response messages of ketch/v1/api.proto and raises
ketch.api.errors.StatusError on failure. The gRPC servicer (server.py) maps those errors to
status codes; in-process clients (the control plane's own controllers) call these methods
directly through the client library's local transport.

Every write is checked and staged synchronously (no await between reading the current object
and staging its successor), so compare-and-swap decisions can never interleave; the await comes
only for durability.
"""

from __future__ import annotations

import logging
import platform
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from controlplane.storage import Entry, Store
from controlplane.storage.store import _Staged
from ketch.api import errors, limits, manifest, meta, timeutil
from ketch.api.defaults import apply_defaults
from ketch.api.kinds import KindInfo, info_for_type_url, kind_info
from ketch.api.patch import apply_patch
from ketch.api.selectors import parse_field_selector, parse_label_selector
from ketch.api.validation import (
    validate_binding,
    validate_create,
    validate_metadata_update,
    validate_status_update,
    validate_update,
)
from ketch.api.warnings import ignored_fields
from ketch.v1 import api_pb2

from . import registry
from .watch import LOCAL_WATCH_LIMITS, Filter, WatchHub, WatchLimits

__all__ = ["MAX_OBJECT_BYTES", "APIService", "WatchLimits"]

log = logging.getLogger(__name__)

VERSION = "0.1.0"
KUBERNETES_SEMANTICS = "v1.31"
MAX_OBJECT_BYTES = limits.MAX_OBJECT_BYTES  # etcd's default request limit, as Kubernetes has it
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
BOOKMARK_INTERVAL = 2.0
BOOKMARK_CATCH_UP = 0.2
# A watch list closes at about this many bytes of objects: dozens of events per write, and what a
# client that stops reading leaves the server holding (the one message its stream cannot send).
WATCH_LIST_BYTES = 64 * 1024

Clock = Callable[[], float]


def pack(entry: Entry) -> any_pb2.Any:
    info = kind_info(entry.kind)
    return any_pb2.Any(type_url=info.type_url, value=entry.data)


def unpack(obj: any_pb2.Any) -> tuple[KindInfo, Message]:
    if not obj.type_url:
        raise errors.BadRequest("the request carries no object")
    try:
        info = info_for_type_url(obj.type_url)
    except KeyError as err:
        raise errors.BadRequest(limits.clip(str(err), 200)) from None
    if len(obj.value) > MAX_OBJECT_BYTES:
        raise limits.object_too_large(info.kind, "", len(obj.value))
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
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.BadRequest(f'invalid resourceVersion "{text}"') from None


def _same_body(a: Message, b: Message) -> bool:
    """Whether everything but metadata is equal (a false "different" only costs a full check)."""
    return ([(f.number, v) for f, v in a.ListFields() if f.name != "metadata"]
            == [(f.number, v) for f, v in b.ListFields() if f.name != "metadata"])


def _copy(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


class _StagedWrite:
    """A staged write (None when the request changed nothing) and what to answer once it is
    durable; kind and key name the object, whose committed state answers a no-op."""

    __slots__ = ("deleted", "key", "kind", "staged", "warnings")

    def __init__(self, kind: str, key: str, staged: _Staged | None, warnings: list[str],
                 deleted: bool = False) -> None:
        self.kind = kind
        self.key = key
        self.staged = staged
        self.warnings = warnings
        self.deleted = deleted


class APIService:
    def __init__(self, store: Store, hub: WatchHub, clock: Clock = time.time,
                 node_dialer: Any = None,
                 default_toleration_seconds: int = registry.DEFAULT_TOLERATION_SECONDS) -> None:
        self.store = store
        self.default_toleration_seconds = default_toleration_seconds
        self.hub = hub
        self.clock = clock
        # Opens a NodeAgent stub for a Node (proxying logs and stats); set by the server.
        self.node_dialer = node_dialer

    # -- helpers -------------------------------------------------------------------------------

    def _namespace_of(self, info: KindInfo, namespace: str) -> str:
        if not info.namespaced:
            return ""
        return namespace or "default"

    def _check_namespace(self, info: KindInfo, namespace: str, creating: bool) -> None:
        if not info.namespaced:
            return
        ns = self.store.latest("Namespace", namespace)
        if ns is None:
            raise errors.NotFound(f'namespaces "{namespace}" not found')
        if creating and ns.obj.metadata.deletion_timestamp and info.kind != "Event":  # type: ignore[attr-defined]
            raise errors.Forbidden(
                f'{info.plural} is forbidden: unable to create new content in namespace {namespace} '
                "because it is being terminated")

    def _respond(self, write: _StagedWrite) -> api_pb2.ObjectResponse:
        staged = write.staged
        entry = (staged.entry or staged.tombstone) if staged is not None else self.store.get(write.kind, write.key)
        resp = api_pb2.ObjectResponse(warnings=write.warnings, deleted=write.deleted)
        if entry is not None:
            resp.object.CopyFrom(pack(entry))
        return resp

    def _get_entry(self, kind: str, namespace: str, name: str) -> tuple[KindInfo, Entry]:
        info = kind_info_or_400(kind)
        ns = self._namespace_of(info, namespace)
        entry = self.store.latest(info.kind, _key(info, ns, name))
        if entry is None:
            raise errors.NotFound(f'{info.qualified_plural} "{name}" not found')
        return info, entry

    def _validate(self, info: KindInfo, obj: Message, errs: list[errors.FieldError]) -> None:
        self._validate_as(info.kind, obj.metadata.name or obj.metadata.generate_name, errs)  # type: ignore[attr-defined]

    @staticmethod
    def _validate_as(kind: str, name: str, errs: list[errors.FieldError]) -> None:
        if errs:
            raise errors.invalid_error(kind, name, errs)

    @staticmethod
    def _check_size(info: KindInfo, obj: Message) -> None:
        """Every object stored, however it was made (create, update, status, patch, batch), is at
        most MAX_OBJECT_BYTES: a patch or a status write could otherwise grow it without bound."""
        size = obj.ByteSize()
        if size > MAX_OBJECT_BYTES:
            raise limits.object_too_large(info.kind, obj.metadata.name, size)  # type: ignore[attr-defined]

    # -- create --------------------------------------------------------------------------------

    def stage_create(self, req: api_pb2.CreateRequest) -> _StagedWrite:
        info, obj = unpack(req.object)
        md = obj.metadata  # type: ignore[attr-defined]
        md.namespace = self._namespace_of(info, md.namespace)
        if not md.name and not md.generate_name:
            raise errors.invalid_error(info.kind, "", [errors.required(
                "metadata.name", "name or generateName is required")])
        self._check_namespace(info, md.namespace, creating=True)
        now = self.clock()
        md.uid = str(uuid.uuid4())
        md.creation_timestamp = timeutil.format(now)
        md.ClearField("deletion_timestamp")
        md.ClearField("deletion_grace_period_seconds")
        md.resource_version = ""
        md.self_link = ""
        del md.managed_fields[:]
        md.generation = 1 if info.kind in registry.GENERATION_KINDS else 0
        if not md.name:
            md.name = self._generate_name(info, md.namespace, md.generate_name)
        apply_defaults(obj)
        registry.prepare_for_create(info, obj, now, self.default_toleration_seconds)
        self._validate(info, obj, validate_create(obj))
        self._check_size(info, obj)
        warnings = ignored_fields(obj)
        staged = self.store.stage(info.kind, _key(info, md.namespace, md.name), obj, create=True)
        return _StagedWrite(info.kind, staged.key, staged, warnings)

    def _generate_name(self, info: KindInfo, namespace: str, prefix: str) -> str:
        prefix = prefix[:58]
        for _ in range(16):
            name = prefix + "".join(random.choices(_NAME_CHARS, k=5))
            if self.store.latest(info.kind, _key(info, namespace, name)) is None:
                return name
        raise errors.AlreadyExists(f"could not generate a unique name from {prefix!r}")

    async def create(self, req: api_pb2.CreateRequest) -> api_pb2.ObjectResponse:
        write = self.stage_create(req)
        await self.store.commit([write.staged] if write.staged else [])
        return self._respond(write)

    # -- read ----------------------------------------------------------------------------------

    async def get(self, req: api_pb2.GetRequest) -> api_pb2.ObjectResponse:
        info = kind_info_or_400(req.kind)
        ns = self._namespace_of(info, req.namespace)
        entry = self.store.get(info.kind, _key(info, ns, req.name))
        if entry is None:
            raise errors.NotFound(f'{info.qualified_plural} "{req.name}" not found')
        return api_pb2.ObjectResponse(object=pack(entry))

    async def list(self, req: api_pb2.ListRequest) -> api_pb2.ListResponse:
        info = kind_info_or_400(req.kind)
        match = Filter(req.namespace if info.namespaced else "",
                       parse_label_selector(req.label_selector),
                       parse_field_selector(req.field_selector, info.kind))
        resp = api_pb2.ListResponse(resource_version=str(self.store.revision))
        type_url = info.type_url
        items = [any_pb2.Any(type_url=type_url, value=e.data)
                 for e in self.store.list(info.kind, match.namespace) if match(e)]
        resp.items.extend(items)
        return resp

    # -- update / patch ------------------------------------------------------------------------

    def _stage_replace(self, info: KindInfo, new: Message, old: Entry, subresource: str,
                       expect_rv: int | None) -> _StagedWrite:
        """Stage new as the successor of old (spec or status write)."""
        body_changed = False  # a spec write that changes more than metadata (for warnings)
        if subresource == "status":
            if not info.has_status:
                raise errors.NotFound(f"{info.plural} have no status subresource")
            result = _copy(old.obj)
            result.status.CopyFrom(new.status)  # type: ignore[attr-defined]
            self._validate(info, result, validate_status_update(result, old.obj))
        elif subresource == "finalize" and info.kind == "Namespace":
            # Namespaces' spec.finalizers change only here (the namespace controller's write).
            result = _copy(old.obj)
            del result.spec.finalizers[:]  # type: ignore[attr-defined]
            result.spec.finalizers.extend(new.spec.finalizers)  # type: ignore[attr-defined]
        elif subresource == "binding" and info.kind == "Pod":
            result = self._bind(new, old.obj)
        elif subresource:
            raise errors.BadRequest(f'unknown subresource "{subresource}"')
        else:
            result = new
            registry.copy_server_metadata(result, old.obj)
            if info.has_status:
                if old.obj.HasField("status"):  # type: ignore[arg-type]
                    result.status.CopyFrom(old.obj.status)  # type: ignore[attr-defined]
                else:
                    result.ClearField("status")  # type: ignore[arg-type]
            # Controllers mostly change metadata alone (finalizers, owner references, labels): then
            # the rest is the stored, already defaulted and validated body, and only the metadata
            # needs checking. This is the hot path of pod finalizer removal.
            body_changed = not _same_body(result, old.obj)
            if body_changed:
                apply_defaults(result)
                if info.kind in registry.GENERATION_KINDS and registry.spec_changed(result, old.obj):
                    result.metadata.generation = old.obj.metadata.generation + 1  # type: ignore[attr-defined]
            registry.prepare_for_update(info, result, old.obj)
            if body_changed:
                errs = validate_create(result) + validate_update(result, old.obj)
            else:
                errs = validate_metadata_update(result, old.obj)
            old_md = old.obj.metadata  # type: ignore[attr-defined]
            if old_md.deletion_timestamp:
                added = set(result.metadata.finalizers) - set(old_md.finalizers)  # type: ignore[attr-defined]
                if added:
                    errs.append(errors.forbidden(
                        "metadata.finalizers",
                        f"no new finalizers can be added if the object is being deleted, found new "
                        f"finalizers {sorted(added)}"))
            self._validate(info, result, errs)
        md = result.metadata  # type: ignore[attr-defined]
        md.resource_version = old.obj.metadata.resource_version  # type: ignore[attr-defined]
        if result.SerializeToString(deterministic=True) == old.obj.SerializeToString(deterministic=True):
            if expect_rv is not None and expect_rv != old.rv:
                self.store.stage(info.kind, old.key, None, expect_rv=expect_rv)  # raises Conflict
            return _StagedWrite(info.kind, old.key, None, [])
        if (md.deletion_timestamp and not md.finalizers and not md.deletion_grace_period_seconds
                and not _spec_finalizers(info, result)):
            # The last finalizer is gone: the object goes now.
            staged = self.store.stage(info.kind, old.key, None, expect_rv=expect_rv)
            return _StagedWrite(info.kind, old.key, staged, [], deleted=True)
        self._check_size(info, result)
        staged = self.store.stage(info.kind, old.key, result, expect_rv=expect_rv)
        return _StagedWrite(info.kind, old.key, staged, ignored_fields(result) if body_changed else [])

    def _bind(self, binding: Message, pod: Message) -> Message:
        """Kubernetes' pods/binding: set spec.nodeName (and PodScheduled=True) on an unbound pod,
        with the binding's annotations; nothing else of the stored pod is looked at again."""
        md = pod.metadata  # type: ignore[attr-defined]
        node = binding.spec.node_name  # type: ignore[attr-defined]
        self._validate_as("Binding", md.name, validate_binding(node))
        if md.deletion_timestamp:
            raise errors.Conflict(f"pod {md.name} is being deleted, cannot be assigned to a host")
        if pod.spec.node_name:  # type: ignore[attr-defined]
            raise errors.Conflict(f'pod {md.name} is already assigned to node "{pod.spec.node_name}"')  # type: ignore[attr-defined]
        result = _copy(pod)
        result.spec.node_name = node  # type: ignore[attr-defined]
        annotations = binding.metadata.annotations  # type: ignore[attr-defined]
        if annotations:
            result.metadata.annotations.update(annotations)  # type: ignore[attr-defined]
            self._validate_as("Binding", md.name, validate_metadata_update(result, pod))
        meta.set_condition(result.status.conditions, "PodScheduled", "True", now=self.clock())  # type: ignore[attr-defined]
        return result

    def stage_update(self, req: api_pb2.UpdateRequest) -> _StagedWrite:
        info, new = unpack(req.object)
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
        return self._stage_replace(info, new, old, req.subresource, expect_rv)

    async def update(self, req: api_pb2.UpdateRequest) -> api_pb2.ObjectResponse:
        write = self.stage_update(req)
        await self.store.commit([write.staged] if write.staged else [])
        return self._respond(write)

    def stage_patch(self, req: api_pb2.PatchRequest) -> _StagedWrite:
        info, old = self._get_entry(req.kind, req.namespace, req.name)
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
        return self._stage_replace(info, new, old, req.subresource, expect_rv)

    async def patch(self, req: api_pb2.PatchRequest) -> api_pb2.ObjectResponse:
        write = self.stage_patch(req)
        await self.store.commit([write.staged] if write.staged else [])
        return self._respond(write)

    # -- delete --------------------------------------------------------------------------------

    def stage_delete(self, req: api_pb2.DeleteRequest) -> _StagedWrite:
        info, old = self._get_entry(req.kind, req.namespace, req.name)
        obj = old.obj
        md = obj.metadata  # type: ignore[attr-defined]
        pre = req.preconditions
        if pre.uid and pre.uid != md.uid:
            raise errors.Conflict(f"Precondition failed: UID in precondition: {pre.uid}, UID in object meta: {md.uid}")
        if pre.resource_version and pre.resource_version != md.resource_version:
            raise errors.Conflict(
                f"Precondition failed: ResourceVersion in precondition: {pre.resource_version}, "
                f"ResourceVersion in object meta: {md.resource_version}")
        if info.kind == "Namespace" and md.name in registry.DEFAULT_NAMESPACES:
            raise errors.Forbidden(f'namespaces "{md.name}" is forbidden: this namespace may not be deleted')
        warnings: list[str] = []
        policy = req.propagation_policy
        if not policy:
            if info.kind == "Job":
                policy = "Orphan"
                warnings.append("child pods are preserved by default when jobs are deleted; set "
                                "propagationPolicy=Background to remove them or set "
                                "propagationPolicy=Orphan to suppress this warning")
            else:
                policy = "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise errors.BadRequest(f'unknown propagationPolicy "{policy}": use Background, Foreground or Orphan')

        now = self.clock()
        new = _copy(obj)
        nmd = new.metadata  # type: ignore[attr-defined]
        grace = self._grace_period(info, obj, req)
        changed = False
        if policy == "Foreground" and "foregroundDeletion" not in nmd.finalizers and not md.deletion_timestamp:
            nmd.finalizers.append("foregroundDeletion")
            changed = True
        elif policy == "Orphan" and "orphan" not in nmd.finalizers and not md.deletion_timestamp:
            nmd.finalizers.append("orphan")
            changed = True
        if grace > 0:
            # Graceful (a pod running on a node): the agent stops it and deletes it with grace 0.
            deadline = now + grace
            if not md.deletion_timestamp or (md.HasField("deletion_grace_period_seconds")
                                             and grace < md.deletion_grace_period_seconds):
                nmd.deletion_timestamp = timeutil.format(deadline)
                nmd.deletion_grace_period_seconds = grace
                changed = True
            staged = self.store.stage(info.kind, old.key, new) if changed else None
            return _StagedWrite(info.kind, old.key, staged, warnings)
        if nmd.finalizers or _spec_finalizers(info, new):
            if not md.deletion_timestamp:
                nmd.deletion_timestamp = timeutil.format(now)
                changed = True
            if info.kind == "Namespace" and new.status.phase != "Terminating":  # type: ignore[attr-defined]
                # The namespace controller empties it, then removes the "kubernetes" finalizer.
                new.status.phase = "Terminating"  # type: ignore[attr-defined]
                changed = True
            if not md.HasField("deletion_grace_period_seconds") or md.deletion_grace_period_seconds != 0:
                nmd.deletion_grace_period_seconds = 0
                changed = True
            staged = self.store.stage(info.kind, old.key, new) if changed else None
            return _StagedWrite(info.kind, old.key, staged, warnings)
        staged = self.store.stage(info.kind, old.key, None)
        return _StagedWrite(info.kind, old.key, staged, warnings, deleted=True)

    def _grace_period(self, info: KindInfo, obj: Message, req: api_pb2.DeleteRequest) -> int:
        """Seconds of graceful termination: only for pods bound to a node and still running."""
        if info.kind != "Pod":
            return 0
        pod = obj
        if req.HasField("grace_period_seconds"):
            grace = max(req.grace_period_seconds, 0)
        elif pod.spec.HasField("termination_grace_period_seconds"):  # type: ignore[attr-defined]
            grace = pod.spec.termination_grace_period_seconds  # type: ignore[attr-defined]
        else:
            grace = 30
        if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):  # type: ignore[attr-defined]
            return 0
        return grace

    async def delete(self, req: api_pb2.DeleteRequest) -> api_pb2.ObjectResponse:
        write = self.stage_delete(req)
        await self.store.commit([write.staged] if write.staged else [])
        return self._respond(write)

    # -- batch ---------------------------------------------------------------------------------

    async def batch(self, req: api_pb2.BatchRequest, max_bytes: int | None = None) -> api_pb2.BatchResponse:
        """Stage every op, then commit them together. max_bytes (for clients over the network)
        bounds the bytes of objects the ops read as a patch's base and stage: the op that would
        start past it, and every later one, fail alone with RequestEntityTooLarge."""
        writes: list[tuple[int, _StagedWrite]] = []
        results: list[api_pb2.BatchResult] = []
        used = 0
        for i, op in enumerate(req.ops):
            result = api_pb2.BatchResult()
            results.append(result)
            which = op.WhichOneof("op")
            try:
                if max_bytes is not None and used > max_bytes:
                    raise errors.TooLarge(
                        f"Request entity too large: limit is {max_bytes} bytes of objects read and written by "
                        "one Batch; send the remaining operations in another Batch")
                if which == "create":
                    write = self.stage_create(op.create)
                elif which == "update":
                    write = self.stage_update(op.update)
                elif which == "patch":
                    used += self._stored_size(op.patch.kind, op.patch.namespace, op.patch.name)
                    write = self.stage_patch(op.patch)
                elif which == "delete":
                    write = self.stage_delete(op.delete)
                else:
                    raise errors.BadRequest("empty batch operation")
            except errors.StatusError as err:
                result.code, result.message, result.reason = err.code, err.message, err.reason
                continue
            writes.append((i, write))
            if write.staged is not None:
                staged = write.staged.entry or write.staged.tombstone
                used += len(staged.data) if staged is not None else 0
        await self.store.commit([w.staged for _, w in writes if w.staged is not None])
        for i, write in writes:
            results[i].response.CopyFrom(self._respond(write))
        return api_pb2.BatchResponse(results=results)

    def _stored_size(self, kind: str, namespace: str, name: str) -> int:
        """Bytes of the object a request names (0 when there is none): what patching it costs."""
        try:
            info = kind_info(kind)
        except KeyError:
            return 0
        entry = self.store.latest(info.kind, _key(info, self._namespace_of(info, namespace), name))
        return len(entry.data) if entry is not None else 0

    # -- watch ---------------------------------------------------------------------------------

    async def watch(self, req: api_pb2.WatchRequest,
                    limits: WatchLimits | None = None) -> AsyncIterator[api_pb2.WatchEvent]:
        async for batch in self.watch_batched(req, limits):
            for event in batch.events:
                yield event

    async def watch_batched(self, req: api_pb2.WatchRequest,
                            limits: WatchLimits | None = None) -> AsyncIterator[api_pb2.WatchEventList]:
        """The watch stream, as lists of the events that were ready together (each list at most
        about WATCH_LIST_BYTES of objects), so a busy stream costs one write per list. limits:
        how far the client may fall behind (watch.py); the gRPC server passes its own, in-process
        callers get LOCAL_WATCH_LIMITS."""
        info = kind_info_or_400(req.kind)
        match = Filter(req.namespace if info.namespaced else "",
                       parse_label_selector(req.label_selector),
                       parse_field_selector(req.field_selector, info.kind))
        rv = req.resource_version
        from_rev = None if rv in ("", "0") else _rv(rv)
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
                if watcher.closed:  # dropped for falling behind, or the server stops: the client resumes
                    return
        finally:
            watcher.close()

    # -- nodes: logs and stats proxied to the agent ----------------------------------------

    async def pod_logs(self, req: api_pb2.PodLogsRequest) -> AsyncIterator[api_pb2.LogChunk]:
        ns = req.namespace or "default"
        entry = self.store.get("Pod", f"{ns}/{req.name}")
        forward = api_pb2.PodLogsRequest()
        forward.CopyFrom(req)
        forward.namespace = ns
        if entry is not None:
            pod = entry.obj
            node = pod.spec.node_name  # type: ignore[attr-defined]
            if not node:
                raise errors.BadRequest(f'pod "{req.name}" is not scheduled to a node yet')
            forward.pod_uid = pod.metadata.uid  # type: ignore[attr-defined]
            if not req.container:
                containers = pod.spec.containers  # type: ignore[attr-defined]
                if len(containers) > 1:
                    names = " ".join(c.name for c in containers)
                    raise errors.BadRequest(
                        f"a container name must be specified for pod {req.name}, choose one of: [{names}]")
                forward.container = containers[0].name if containers else ""
            candidates = [node]
        else:
            # The pod is gone; its node keeps its logs for a while. Ask the nodes.
            candidates = [e.name for e in self.store.list("Node")]
        if self.node_dialer is None:
            raise errors.Unavailable("log proxying is not available")
        last: errors.StatusError = errors.NotFound(f'pods "{req.name}" not found')
        for node in candidates:
            try:
                async for chunk in self.node_dialer.pod_logs(node, forward):
                    yield chunk
                return
            except errors.NotFound as err:
                last = err
                continue
        raise last

    async def node_stats(self, req: api_pb2.NodeStatsRequest) -> api_pb2.NodeStatsResponse:
        if self.store.get("Node", req.node) is None:
            raise errors.NotFound(f'nodes "{req.node}" not found')
        if self.node_dialer is None:
            raise errors.Unavailable("node stats are not available")
        return await self.node_dialer.node_stats(req.node, req)

    async def version(self, req: api_pb2.VersionRequest) -> api_pb2.VersionInfo:
        major, minor, _ = VERSION.split(".")
        return api_pb2.VersionInfo(
            major=major, minor=minor, git_version=f"v{VERSION}",
            platform=f"{sys.platform}/{platform.machine()}",
            python_version=platform.python_version(), kubernetes_semantics=KUBERNETES_SEMANTICS)

    # -- bootstrap -----------------------------------------------------------------------------

    async def ensure_default_namespaces(self) -> None:
        from ketch.v1 import core_pb2

        for name in registry.DEFAULT_NAMESPACES:
            if self.store.get("Namespace", name) is None:
                ns = core_pb2.Namespace()
                ns.metadata.name = name
                obj = any_pb2.Any()
                obj.Pack(ns)
                try:
                    await self.create(api_pb2.CreateRequest(object=obj))
                except errors.AlreadyExists:
                    pass


def _spec_finalizers(info: KindInfo, obj: Message) -> bool:
    """Does a Namespace still wait for spec.finalizers (the namespace controller's "kubernetes")?"""
    return info.kind == "Namespace" and bool(obj.spec.finalizers)  # type: ignore[attr-defined]


def kind_info_or_400(kind: str) -> KindInfo:
    try:
        return kind_info(kind)
    except KeyError:
        raise errors.NotFound(f'the server doesn\'t have a resource type "{limits.clip(kind)}"') from None


