"""The garbage collector: dependents go when their owners go, as Kubernetes' GC does it.

Every kind (but Event) is watched through the shared informers; dependents are found through
each cache's `owner` index (owner uid → dependents) and owners through a `uid` index, so the
owner/dependent graph is the caches themselves. Three cases, as in Kubernetes:

* attemptToDelete — an object with ownerReferences: each owner is solid (exists), dangling
  (gone) or waiting (being deleted in the foreground). With a solid owner, references to
  dangling or waiting owners are removed; without one, the object is deleted (Foreground when a
  waiting owner is to outlive it and it has dependents of its own; otherwise by its own
  finalizers, Background by default). An owner missing from the cache may simply not have
  reached it yet, so its absence is confirmed with a live GET (name, then uid) before anything
  is deleted; confirmed absences (and observed deletions) are remembered, since uids never
  come back.
* foregroundDeletion — an owner with that finalizer has its dependents deleted; the finalizer
  is removed once no dependent with blockOwnerDeletion remains, so the owner goes last.
* orphan — the reference to the owner is removed from every dependent, then the finalizer.

Work is done in rounds, as the scheduler does: every ready key is decided against the caches
(owners absent from the cache are looked up concurrently), and the round's writes go in one
Batch. Writes compare-and-swap on resourceVersion (deletes carry uid and resourceVersion
preconditions); a Conflict re-queues the key and the next round decides again on fresher data.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ketch.api import errors
from ketch.api.kinds import KINDS, UnknownKindError, kind_info
from ketch.api.meta import key_of, split_key
from ketch.client.cache import DeletedFinalStateUnknown, copy_of
from ketch.client.clientset import Batch
from ketch.client.informer import Informer
from ketch.v1 import api_pb2

from .base import ControllerContext
from .batching import BatchingController

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
CACHE_WAIT = 0.1
UID_INDEX = "uid"
ROUND_SIZE = 500
LIVE_LOOKUPS = 32
ABSENT_CACHE_SIZE = 10_000
# Events are never owners in practice and are by far the most numerous: not watched.
WATCHED_KINDS = tuple(k.kind for k in KINDS if k.kind != "Event")


# -- pure decisions ------------------------------------------------------------------------------


class OwnerState(enum.Enum):
    SOLID = "solid"
    DANGLING = "dangling"
    WAITING = "waiting"  # being deleted in the foreground: waits for its dependents


def owner_state(owner: Any | None) -> OwnerState:
    """An owner object (None when it does not exist) as the GC classifies it."""
    if owner is None:
        return OwnerState.DANGLING
    md = owner.metadata
    if md.deletion_timestamp and FOREGROUND in md.finalizers:
        return OwnerState.WAITING
    return OwnerState.SOLID


@dataclass
class Decision:
    """What to do about one object; at most one write to the object itself."""

    delete_policy: str = ""  # delete the object with this propagation policy
    remove_owner_uids: list[str] = field(default_factory=list)  # strip these ownerReferences
    remove_finalizer: str = ""  # remove this finalizer from the object
    orphan: list[Any] = field(default_factory=list)  # dependents to strip our reference from
    enqueue: list[Any] = field(default_factory=list)  # dependents to look at (to be deleted)

    @property
    def empty(self) -> bool:
        return not (self.delete_policy or self.remove_owner_uids or self.remove_finalizer
                    or self.orphan or self.enqueue)


def blocks(dependent: Any, owner_uid: str) -> bool:
    """Does dependent hold up its owner's foreground deletion?"""
    return any(r.uid == owner_uid and r.HasField("block_owner_deletion") and r.block_owner_deletion
               for r in dependent.metadata.owner_references)


def decide_deleting(obj: Any, dependents: list[Any]) -> Decision:
    """An object being deleted with the orphan or foregroundDeletion finalizer."""
    md = obj.metadata
    if ORPHAN in md.finalizers:
        if dependents:
            return Decision(orphan=list(dependents))
        return Decision(remove_finalizer=ORPHAN)
    if FOREGROUND in md.finalizers:
        blocking = [d for d in dependents if blocks(d, md.uid)]
        pending = [d for d in dependents if not d.metadata.deletion_timestamp]
        if not blocking:
            return Decision(remove_finalizer=FOREGROUND, enqueue=pending)
        return Decision(enqueue=pending)
    return Decision()


def decide_dependent(obj: Any, states: dict[str, OwnerState], has_dependents: bool) -> Decision:
    """attemptToDeleteItem for an object with ownerReferences, given each owner's state by uid."""
    refs = list(obj.metadata.owner_references)
    if not refs:
        return Decision()
    solid = [r.uid for r in refs if states.get(r.uid, OwnerState.SOLID) is OwnerState.SOLID]
    dangling = [r.uid for r in refs if states.get(r.uid) is OwnerState.DANGLING]
    waiting = [r.uid for r in refs if states.get(r.uid) is OwnerState.WAITING]
    if solid:
        if dangling or waiting:
            return Decision(remove_owner_uids=dangling + waiting)
        return Decision()
    if waiting and has_dependents:
        return Decision(delete_policy="Foreground")
    fins = obj.metadata.finalizers
    if ORPHAN in fins:
        return Decision(delete_policy="Orphan")
    if FOREGROUND in fins:
        return Decision(delete_policy="Foreground")
    return Decision(delete_policy="Background")


# -- the controller -------------------------------------------------------------------------------


def _by_uid(obj: Any) -> list[str]:
    return [obj.metadata.uid]


def gc_key(kind: str, obj: Any) -> str:
    return f"{kind}:{key_of(obj)}"


def _has_gc_finalizer(obj: Any) -> bool:
    fins = obj.metadata.finalizers
    return bool(obj.metadata.deletion_timestamp) and (FOREGROUND in fins or ORPHAN in fins)


class GarbageCollector(BatchingController):
    name = "garbagecollector"
    queue_name = "garbage_collector_attempt_to_delete"
    round_size = ROUND_SIZE

    def __init__(self, ctx: ControllerContext, kinds: Iterable[str] = WATCHED_KINDS) -> None:
        super().__init__(ctx)
        self.informers: dict[str, Informer] = {}
        for kind in kinds:
            inf = ctx.informers.informer(kind)
            inf.add_indexer(UID_INDEX, _by_uid)
            self.informers[kind] = inf
        # Owner uids known not to exist (confirmed by GET, or seen deleted).
        self.absent: OrderedDict[str, None] = OrderedDict()
        for kind, inf in self.informers.items():
            inf.add_handler(*self._handlers(kind))

    # -- handlers -----------------------------------------------------------------------------------

    def _handlers(self, kind: str) -> tuple[Any, Any, Any]:
        def on_add(obj: Any) -> None:
            if obj.metadata.owner_references or _has_gc_finalizer(obj):
                self.queue.add(gc_key(kind, obj))

        def on_update(old: Any, new: Any) -> None:
            om, nm = old.metadata, new.metadata
            refs_changed = om.owner_references != nm.owner_references
            changed = refs_changed or om.deletion_timestamp != nm.deletion_timestamp or om.finalizers != nm.finalizers
            if changed and (nm.owner_references or _has_gc_finalizer(new)):
                self.queue.add(gc_key(kind, new))
            if refs_changed or (nm.deletion_timestamp and not om.deletion_timestamp):
                # An owner in the foreground or orphaning waits for exactly this kind of change.
                self._enqueue_waiting_owners(old, new)

        def on_delete(obj: Any) -> None:
            if isinstance(obj, DeletedFinalStateUnknown):
                obj = obj.obj
                if obj is None:
                    return
            dependents = self.dependents_of(obj.metadata.uid)
            if dependents:
                # As Kubernetes' graph builder: an object others still name as their owner is
                # remembered gone (their lookups need no GET). Not every deleted object: after a
                # big Job, 10,000 pods' uids outlived them here, scattered through memory.
                self._remember_absent(obj.metadata.uid)
            self._enqueue_waiting_owners(obj)
            for dep_kind, dep in dependents:
                self.queue.add(gc_key(dep_kind, dep))

        return on_add, on_update, on_delete

    def _enqueue_waiting_owners(self, *objs: Any) -> None:
        for obj in objs:
            for ref in obj.metadata.owner_references:
                for kind, owner in self._cached_by_uid(ref.kind, ref.uid):
                    if _has_gc_finalizer(owner):
                        self.queue.add(gc_key(kind, owner))

    def _remember_absent(self, uid: str) -> None:
        self.absent[uid] = None
        self.absent.move_to_end(uid)
        while len(self.absent) > ABSENT_CACHE_SIZE:
            self.absent.popitem(last=False)

    # -- graph lookups over the caches ----------------------------------------------------------------

    def _cached_by_uid(self, kind: str, uid: str) -> list[tuple[str, Any]]:
        inf = self.informers.get(kind)
        if inf is None:
            return []
        return [(kind, o) for o in inf.by_index(UID_INDEX, uid)]

    def _caches_reach(self, obj: Any) -> bool:
        rv = int(obj.metadata.resource_version or 0)
        return all(int(inf.resource_version or 0) >= rv for inf in self.informers.values())

    def dependents_of(self, uid: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for kind, inf in self.informers.items():
            out.extend((kind, d) for d in inf.by_index("owner", uid))
        return out

    def _get_cached(self, k: str) -> tuple[str, Any] | None:
        kind, _, obj_key = k.partition(":")
        inf = self.informers.get(kind)
        if inf is None:
            return None
        obj = inf.get(*split_key(obj_key))
        return (kind, obj) if obj is not None else None

    async def _owner_states(self, items: list[tuple[str, str, Any]]) -> dict[str, OwnerState]:
        """The state of every owner the items reference: from the cache, else from a live GET."""
        states: dict[str, OwnerState] = {}
        lookups: dict[str, tuple[str, str, str]] = {}
        for _, _, obj in items:
            for ref in obj.metadata.owner_references:
                if ref.uid in states or ref.uid in lookups:
                    continue
                if ref.uid in self.absent:
                    states[ref.uid] = OwnerState.DANGLING
                    continue
                try:
                    owner_info = kind_info(ref.kind)
                except UnknownKindError:
                    states[ref.uid] = OwnerState.SOLID  # cannot verify: never delete for it
                    continue
                cached = self._cached_by_uid(owner_info.kind, ref.uid)
                if cached:
                    states[ref.uid] = owner_state(cached[0][1])
                    continue
                if owner_info.namespaced and not obj.metadata.namespace:
                    states[ref.uid] = OwnerState.DANGLING  # a cluster-scoped object can't have one
                    continue
                ns = obj.metadata.namespace if owner_info.namespaced else ""
                lookups[ref.uid] = (owner_info.kind, ref.name, ns)
        if lookups:
            sem = asyncio.Semaphore(LIVE_LOOKUPS)

            async def look(uid: str, kind: str, name: str, ns: str) -> None:
                async with sem:
                    try:
                        owner = await self.client.get(kind, name, ns)
                    except errors.NotFound:
                        owner = None
                if owner is not None and owner.metadata.uid != uid:
                    owner = None  # same name, another object: ours is gone
                if owner is None:
                    self._remember_absent(uid)
                states[uid] = owner_state(owner)

            await asyncio.gather(*(look(uid, *args) for uid, args in lookups.items()))
        return states

    # -- rounds ---------------------------------------------------------------------------------------

    async def process(self, keys: list[str]) -> None:
        """Decide every key against the caches, then apply the round's writes in one batch."""
        items: list[tuple[str, str, Any]] = []
        for k in keys:
            found = self._get_cached(k)
            if found is None:
                self.queue.forget(k)
                continue
            items.append((k, *found))
        dependents_needed = [it for it in items if not _has_gc_finalizer(it[2]) and it[2].metadata.owner_references
                             and not it[2].metadata.deletion_timestamp]
        states = await self._owner_states(dependents_needed)
        batch = Batch()
        origins: list[str] = []
        touched: set[str] = set()
        for k, kind, obj in items:
            decision = self.decide(kind, obj, states)
            if decision.remove_finalizer and not self._caches_reach(obj):
                # Informers of different kinds are separate streams: a dependent created just
                # before the owner's deletion may not be cached yet. Finish only once every cache
                # has seen the owner's revision (revisions are global); idle ones catch up by
                # bookmark.
                self.queue.add_after(k, CACHE_WAIT)
                continue
            if decision.empty:
                self.queue.forget(k)
                continue
            for dep_kind, dep in decision.enqueue:
                self.queue.add(gc_key(dep_kind, dep))
            for op_key, op in self._ops(k, kind, obj, decision):
                if op_key in touched:
                    self.queue.add(k)  # one write per object per round: decide again next round
                    continue
                touched.add(op_key)
                batch.ops.append(op)
                origins.append(k)
        if not batch.ops:
            return
        outcomes = await self.client.batch(batch)
        for k, out in zip(origins, outcomes, strict=True):
            if out.error is None or isinstance(out.error, errors.NotFound):
                continue
            if isinstance(out.error, errors.Conflict):
                log.debug("garbagecollector: %s: conflict, requeueing: %s", k, out.error)
            else:
                log.info("garbagecollector: %s: write failed, requeueing: %s", k, out.error)
            self.queue.add_rate_limited(k)

    def decide(self, kind: str, obj: Any, states: dict[str, OwnerState]) -> Decision:
        md = obj.metadata
        if _has_gc_finalizer(obj):
            deps = self.dependents_of(md.uid)
            decision = decide_deleting(obj, [d for _, d in deps])
            # The pure decision speaks of objects; the writes need their kinds too.
            kinds = {id(d): dk for dk, d in deps}
            decision.enqueue = [(kinds[id(d)], d) for d in decision.enqueue]
            decision.orphan = [(kinds[id(d)], d) for d in decision.orphan]
            return decision
        if md.deletion_timestamp or not md.owner_references:
            return Decision()
        has_dependents = bool(self.dependents_of(md.uid))
        return decide_dependent(obj, states, has_dependents)

    def _ops(self, k: str, kind: str, obj: Any, d: Decision) -> list[tuple[str, api_pb2.BatchOp]]:
        """The writes of a decision, each with the object it writes (kind:key)."""
        ops: list[tuple[str, api_pb2.BatchOp]] = []
        md = obj.metadata
        if d.delete_policy:
            req = api_pb2.DeleteRequest(kind=kind, namespace=md.namespace, name=md.name,
                                        propagation_policy=d.delete_policy)
            req.preconditions.uid = md.uid
            req.preconditions.resource_version = md.resource_version
            ops.append((k, api_pb2.BatchOp(delete=req)))
            log.info("garbagecollector: deleting %s %s (%s): its owners are gone", kind, key_of(obj),
                     d.delete_policy)
        elif d.remove_owner_uids:
            new = copy_of(obj)
            _strip_refs(new, set(d.remove_owner_uids))
            ops.append((k, _update_op(new)))
        elif d.remove_finalizer:
            new = copy_of(obj)
            kept = [f for f in new.metadata.finalizers if f != d.remove_finalizer]
            del new.metadata.finalizers[:]
            new.metadata.finalizers.extend(kept)
            ops.append((k, _update_op(new)))
        for dep_kind, dep in d.orphan:
            new = copy_of(dep)
            _strip_refs(new, {md.uid})
            ops.append((gc_key(dep_kind, dep), _update_op(new)))
        return ops


def _strip_refs(obj: Any, uids: set[str]) -> None:
    kept = [r for r in obj.metadata.owner_references if r.uid not in uids]
    del obj.metadata.owner_references[:]
    obj.metadata.owner_references.extend(kept)


def _update_op(obj: Any) -> api_pb2.BatchOp:
    return Batch().update(obj).ops[0]
