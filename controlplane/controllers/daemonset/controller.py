"""The DaemonSet controller (Kubernetes' pkg/controller/daemon), for Ketch.

Handlers only enqueue DaemonSet keys and count observed creates and deletes against the
expectations. `sync` follows Kubernetes' order: claim pods, construct the revision history, and
if the cache has caught up with our own writes, manage (one pod per eligible node), then roll
the update forward, clean up old revisions and write status. Pods are bound directly by setting
spec.nodeName (plus the `matchFields metadata.name` affinity Kubernetes adds) and created in
slow-start batches, one `Batch` RPC per batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ketch import memtrim
from ketch.api import errors, manifest, meta, selectors
from ketch.client.cache import ORPHANS_BY_NAMESPACE_INDEX, DeletedFinalStateUnknown, copy_of, orphans_by_namespace
from ketch.client.clientset import Batch
from ketch.v1 import apps_pb2, core_pb2

from ..base import Controller, ControllerContext
from . import history
from .expectations import Expectations
from .manage import apply_status, compute_status, failed_pods_backoff, manage, status_differs
from .predicates import (
    REVISION_HASH_LABEL,
    is_pod_ready,
    new_pod,
    node_should_run_daemon_pod,
    pod_template,
    seconds_until_available,
    simulated_pod,
    target_node_name,
    template_generation,
)
from .update import NodeFit, is_rolling_update, rolling_update

log = logging.getLogger(__name__)

BURST_REPLICAS = 250
SLOW_START_INITIAL_BATCH = 1
DEFAULT_REVISION_HISTORY_LIMIT = 10
COMPONENT = "daemonset-controller"
# is_pod_available is strict (Ready for more than minReadySeconds): wake a little after the mark.
AVAILABILITY_SLACK = 0.1


def _unwrap(obj: Any) -> Any:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _node_view(node: core_pb2.Node) -> tuple[Any, ...]:
    """What of a Node can change where daemon pods belong: its labels and taints, as Kubernetes'
    shouldIgnoreNodeUpdate. Conditions, cordoning and heartbeats change nothing by themselves
    (NodeShouldRunDaemonPod reads none of them; the node lifecycle controller turns readiness
    into taints), and a thousand nodes' conditions flapping under load would sync every
    DaemonSet each time."""
    return (
        tuple(sorted(node.metadata.labels.items())),
        tuple((t.key, t.value, t.effect) for t in node.spec.taints),
    )


class DaemonSetController(Controller):
    name = "daemonset"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        inf = ctx.informers
        self.dss = inf.informer(apps_pb2.DaemonSet)
        self.pods = inf.informer(core_pb2.Pod)
        self.nodes = inf.informer(core_pb2.Node)
        self.revisions = inf.informer(apps_pb2.ControllerRevision)
        self.pods.add_indexer(ORPHANS_BY_NAMESPACE_INDEX, orphans_by_namespace)
        self.revisions.add_indexer(ORPHANS_BY_NAMESPACE_INDEX, orphans_by_namespace)
        self.expectations = Expectations(self.clock)
        # Pods whose graceful deletion was already counted against the expectations.
        self._counted_deletions: set[str] = set()
        self.failed_backoff = failed_pods_backoff()
        self.recorder = ctx.recorder(COMPONENT)
        self.burst_replicas = BURST_REPLICAS
        self.dss.add_handler(self.add_daemonset, self.update_daemonset, self.delete_daemonset)
        self.pods.add_handler(self.add_pod, self.update_pod, self.delete_pod)
        self.nodes.add_handler(self.add_node, self.update_node, self.delete_node)
        self.revisions.add_handler(self.add_revision, self.update_revision, self.delete_revision)

    # -- handlers: enqueue only ----------------------------------------------------------------

    def add_daemonset(self, ds: apps_pb2.DaemonSet) -> None:
        self.enqueue(meta.key_of(ds))

    def update_daemonset(self, old: Any, new: Any) -> None:
        if old.metadata.resource_version != new.metadata.resource_version:
            self.enqueue(meta.key_of(new))

    def delete_daemonset(self, obj: Any) -> None:
        ds = _unwrap(obj)
        key = meta.key_of(ds)
        self.expectations.delete(key)
        self.recorder.forget(ds.metadata.uid)
        self.enqueue(key)

    def _resolve(self, namespace: str, ref: Any) -> Any | None:
        if ref.kind != "DaemonSet":
            return None
        ds = self.dss.get(namespace, ref.name)
        if ds is None or ds.metadata.uid != ref.uid:
            return None
        return ds

    def _dss_selecting(self, pod: core_pb2.Pod) -> list[Any]:
        labels = pod.metadata.labels
        return [ds for ds in self.dss.list(pod.metadata.namespace)
                if _has_selector(ds) and selectors.selector_matches(ds.spec.selector, labels)]

    def add_pod(self, pod: core_pb2.Pod) -> None:
        if pod.metadata.deletion_timestamp:
            if pod.metadata.uid not in self._counted_deletions:
                self.delete_pod(pod)
                self._counted_deletions.add(pod.metadata.uid)
            return
        ref = meta.controller_ref(pod)
        if ref is not None:
            ds = self._resolve(pod.metadata.namespace, ref)
            if ds is not None:
                key = meta.key_of(ds)
                self.expectations.creation_observed(key)
                self.enqueue(key)
            return
        for ds in self._dss_selecting(pod):  # an orphan: whoever selects it may adopt it
            self.enqueue(meta.key_of(ds))

    def update_pod(self, old: Any, new: Any) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        if new.metadata.deletion_timestamp:
            # A graceful deletion shows up as an update: count it when it starts (once per pod).
            if new.metadata.uid not in self._counted_deletions:
                self.delete_pod(new)
                self._counted_deletions.add(new.metadata.uid)
            else:
                self._enqueue_controller(new)
            return
        old_ref, new_ref = meta.controller_ref(old), meta.controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.uid != new_ref.uid):
            self._enqueue_controller(old)
        if new_ref is not None:
            self._enqueue_controller(new)
            self._requeue_when_available(old, new)
            return
        if new_ref is None and (old_ref is not None or old.metadata.labels != new.metadata.labels):
            for ds in self._dss_selecting(new):
                self.enqueue(meta.key_of(ds))

    def _enqueue_controller(self, pod: core_pb2.Pod) -> None:
        ref = meta.controller_ref(pod)
        if ref is not None:
            ds = self._resolve(pod.metadata.namespace, ref)
            if ds is not None:
                self.enqueue(meta.key_of(ds))

    def _requeue_when_available(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        """A pod that just turned Ready becomes available minReadySeconds later, and no event
        says so: look at its DaemonSet again then (plus a second against skew, as Kubernetes)."""
        if is_pod_ready(old) or not is_pod_ready(new):
            return
        ref = meta.controller_ref(new)
        ds = self._resolve(new.metadata.namespace, ref) if ref is not None else None
        if ds is not None and ds.spec.min_ready_seconds > 0:
            self.queue.add_after(meta.key_of(ds), ds.spec.min_ready_seconds + 1)

    def delete_pod(self, obj: Any) -> None:
        pod = _unwrap(obj)
        counted = pod.metadata.uid in self._counted_deletions
        self._counted_deletions.discard(pod.metadata.uid)
        memtrim.release_if_emptied(self._counted_deletions)  # it held every pod of a big deletion
        ref = meta.controller_ref(pod)
        if ref is None:
            return
        ds = self._resolve(pod.metadata.namespace, ref)
        if ds is None:
            return
        key = meta.key_of(ds)
        if not counted:
            self.expectations.deletion_observed(key)
        self.enqueue(key)

    def _enqueue_all(self) -> None:
        for ds in self.dss.list():
            self.enqueue(meta.key_of(ds))

    def add_node(self, _node: Any) -> None:
        self._enqueue_all()

    def delete_node(self, obj: Any) -> None:
        self.add_node(obj)

    def update_node(self, old: Any, new: Any) -> None:
        if _node_view(old) != _node_view(new):
            self._enqueue_all()

    def add_revision(self, obj: Any) -> None:
        rev = _unwrap(obj)
        ref = meta.controller_ref(rev)
        if ref is not None:
            ds = self._resolve(rev.metadata.namespace, ref)
            if ds is not None:
                self.enqueue(meta.key_of(ds))

    def update_revision(self, old: Any, new: Any) -> None:
        self.add_revision(new)

    def delete_revision(self, obj: Any) -> None:
        self.add_revision(obj)

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = meta.split_key(key)
        ds = self.dss.get(namespace, name)
        if ds is None:
            self.expectations.delete(key)
            return
        if ds.metadata.deletion_timestamp:
            return  # the garbage collector removes the pods
        if not _has_selector(ds):
            self.recorder.event(ds, "Warning", "SelectingAll",
                                "This daemon set is selecting all pods. A non-empty selector is required.")
            return
        pods = await self._claim_pods(ds)
        cur, old = await self._construct_history(ds, pods)
        hash_ = cur.metadata.labels.get(REVISION_HASH_LABEL, "")
        now = self.clock.now()
        fits = self._fits(ds)
        node_pods = _pods_by_node(pods)
        generation = template_generation(ds)

        log.debug("daemonset %s: sync, expectations %s satisfied=%s", key, self.expectations.pending(key),
                  self.expectations.satisfied(key))
        if not self.expectations.satisfied(key):
            # Our own last writes are not all in the cache yet: report, act later.
            await self._update_status(ds, fits, node_pods, hash_, generation, update_generation=False)
            return

        # 1. manage: the right number of pods on every node.
        plan = manage(ds, fits, node_pods, hash_, now, self.failed_backoff)
        log.debug("daemonset %s: manage: create on %s, delete %s", key, plan.nodes_needing_pods,
                  [p.metadata.name for p in plan.pods_to_delete])
        for etype, reason, message in plan.events:
            self.recorder.event(ds, etype, reason, message)
        err = await self._sync_nodes(ds, key, plan.pods_to_delete, plan.nodes_needing_pods, hash_,
                                     orphaned=plan.orphaned_pods)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

        # 2. roll the update forward when manage had nothing to do (otherwise the next sync, on
        #    a cache that shows manage's writes, does it).
        managed = bool(plan.nodes_needing_pods or plan.pods_to_delete or plan.orphaned_pods)
        if err is None and not managed and self.expectations.satisfied(key) and is_rolling_update(ds):
            upd = rolling_update(ds, fits, node_pods, hash_, generation, now)
            by_name = {p.metadata.name: p for p in pods}
            to_delete = [by_name[n] for n in upd.pods_to_delete if n in by_name]
            err = await self._sync_nodes(ds, key, to_delete, upd.nodes_to_create, hash_)

        # 3. history beyond revisionHistoryLimit (unless creating or deleting pods failed), then
        #    status; observedGeneration is raised either way, as in Kubernetes' syncDaemonSet
        #    (this generation was acted on, even if some of its pods were refused).
        if err is None:
            await self._cleanup_history(ds, old, pods)
        await self._update_status(ds, fits, node_pods, hash_, generation, update_generation=True)
        # 4. a pod Ready but not yet available (minReadySeconds) changes what the rollout and the
        #    status may do once it is, and no event will say so: look again then.
        wait = _next_availability(pods, ds.spec.min_ready_seconds, now)
        if wait is not None:
            self.queue.add_after(key, wait + AVAILABILITY_SLACK)
        if err is not None:
            raise err

    def _fits(self, ds: apps_pb2.DaemonSet) -> dict[str, NodeFit]:
        spec = simulated_pod(ds, "")
        return {node.metadata.name: NodeFit(*node_should_run_daemon_pod(node, ds, spec))
                for node in self.nodes.list()}

    # -- pods: claiming, creating, deleting ----------------------------------------------------

    async def _claim_pods(self, ds: apps_pb2.DaemonSet) -> list[Any]:
        """The DS's pods: those it controls and still selects; adopt matching orphans and release
        pods whose labels stopped matching (ClaimPods)."""
        ns, uid = ds.metadata.namespace, ds.metadata.uid
        sel = selectors.from_label_selector(ds.spec.selector)
        owned: list[Any] = []
        batch = Batch()
        adopted: list[Any] = []
        for pod in self.pods.by_index("controller", uid):
            if pod.metadata.namespace != ns:
                continue
            if sel.matches(pod.metadata.labels):
                owned.append(pod)
            elif not pod.metadata.deletion_timestamp:
                refs = [r for r in pod.metadata.owner_references if r.uid != uid]
                batch.patch("Pod", pod.metadata.name, _owner_patch(pod, refs), namespace=ns)
        for pod in self.pods.by_index(ORPHANS_BY_NAMESPACE_INDEX, ns):
            if pod.metadata.deletion_timestamp or not sel.matches(pod.metadata.labels):
                continue
            refs = [*pod.metadata.owner_references, meta.owner_ref_for(ds)]
            batch.patch("Pod", pod.metadata.name, _owner_patch(pod, refs), namespace=ns)
            adopted.append(pod)
        if len(batch):
            results = await self.client.batch(batch)
            for res in results[len(results) - len(adopted):]:
                if res.error is None and res.object is not None:
                    owned.append(res.object)
            if any(r.error is not None and not isinstance(r.error, errors.NotFound) for r in results):
                # Raced with another writer (an agent's status update): look again shortly.
                self.queue.add_rate_limited(meta.key_of(ds))
        return owned

    async def _sync_nodes(self, ds: apps_pb2.DaemonSet, key: str, to_delete: Sequence[Any],
                          to_create: Sequence[str], hash_: str, orphaned: Sequence[Any] = ()) -> Exception | None:
        """Create pods on to_create and delete to_delete (and orphaned, with grace 0), at most
        burstReplicas of each, expectations first. Returns the first error, if any."""
        creates = list(to_create)[:self.burst_replicas]
        deletes = [(p, None) for p in to_delete] + [(p, 0) for p in orphaned]
        deletes = deletes[:self.burst_replicas]
        if not creates and not deletes:
            return None
        # A pod already terminating was counted when its deletion started; removing it for good
        # (orphans, grace 0) is not expected again.
        self.expectations.set(key, len(creates), sum(1 for p, _ in deletes if not p.metadata.deletion_timestamp))
        first_err: Exception | None = None
        if creates:
            first_err = await self._create_pods(ds, key, creates, hash_)
        if deletes:
            err = await self._delete_pods(ds, key, deletes)
            first_err = first_err or err
        return first_err

    async def _create_pods(self, ds: apps_pb2.DaemonSet, key: str, nodes: list[str], hash_: str) -> Exception | None:
        template = pod_template(ds, hash_)
        pos, size = 0, min(len(nodes), SLOW_START_INITIAL_BATCH)
        while pos < len(nodes):
            chunk = nodes[pos:pos + size]
            batch = Batch()
            for node in chunk:
                batch.create(new_pod(ds, template, node))
            try:
                results = await self.client.batch(batch)
            except errors.StatusError as err:
                self.expectations.lower(key, adds=len(nodes) - pos)
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {err.message}")
                return err
            failed: Exception | None = None
            for node, res in zip(chunk, results, strict=True):
                if res.error is None:
                    if res.object is not None:
                        self.recorder.event(ds, "Normal", "SuccessfulCreate",
                                            f"Created pod: {res.object.metadata.name}")
                    continue
                self.expectations.creation_observed(key)
                if isinstance(res.error, errors.Forbidden) and "being terminated" in res.error.message:
                    continue  # the namespace is going away; nothing to retry
                log.info("daemonset %s: creating a pod on %s failed: %s", key, node, res.error)
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {res.error.message}")
                failed = failed or res.error
            pos += len(chunk)
            if failed is not None:
                skipped = len(nodes) - pos
                if skipped > 0:
                    # Slow start: stop after a failing batch; the next sync retries.
                    self.expectations.lower(key, adds=skipped)
                return failed
            size = min(2 * size, len(nodes) - pos)
        return None

    async def _delete_pods(self, ds: apps_pb2.DaemonSet, key: str,
                           pods: Sequence[tuple[Any, int | None]]) -> Exception | None:
        batch = Batch()
        for pod, grace in pods:
            batch.delete("Pod", pod.metadata.name, namespace=pod.metadata.namespace,
                         grace_period_seconds=grace, uid=pod.metadata.uid)
        try:
            results = await self.client.batch(batch)
        except errors.StatusError as err:
            self.expectations.lower(key, dels=sum(1 for p, _ in pods if not p.metadata.deletion_timestamp))
            return err
        failed: Exception | None = None
        for (pod, _), res in zip(pods, results, strict=True):
            if res.error is None:
                self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")
                continue
            if not pod.metadata.deletion_timestamp:
                self.expectations.deletion_observed(key)
            if isinstance(res.error, errors.NotFound):
                continue
            if isinstance(res.error, errors.Conflict) and "UID" in res.error.message:
                continue  # a different pod by that name now: ours is gone
            self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {res.error.message}")
            failed = failed or res.error
        return failed

    # -- history -------------------------------------------------------------------------------

    async def _controlled_revisions(self, ds: apps_pb2.DaemonSet) -> list[Any]:
        ns, uid = ds.metadata.namespace, ds.metadata.uid
        sel = selectors.from_label_selector(ds.spec.selector)
        revs = [r for r in self.revisions.by_index("controller", uid) if r.metadata.namespace == ns]
        orphans = [r for r in self.revisions.by_index(ORPHANS_BY_NAMESPACE_INDEX, ns)
                   if sel.matches(r.metadata.labels)]
        if orphans:
            batch = Batch()
            for rev in orphans:
                refs = [*rev.metadata.owner_references, meta.owner_ref_for(ds)]
                batch.patch("ControllerRevision", rev.metadata.name, _owner_patch(rev, refs), namespace=ns)
            for res in await self.client.batch(batch):
                if res.error is None and res.object is not None:
                    revs.append(res.object)
                elif res.error is not None and not isinstance(res.error, errors.NotFound):
                    raise res.error
        return revs

    async def _construct_history(self, ds: apps_pb2.DaemonSet, pods: list[Any]) -> tuple[Any, list[Any]]:
        """The current revision (created, or renumbered to the newest) and the old ones."""
        revs = await self._controlled_revisions(ds)
        fixed = []
        for rev in revs:
            if REVISION_HASH_LABEL not in rev.metadata.labels:
                upd = copy_of(rev)
                upd.metadata.labels[REVISION_HASH_LABEL] = rev.metadata.name
                rev = await self.client.update(upd)
            fixed.append(rev)
        current, old = history.split_revisions(history.revision_key(ds), fixed)
        number = history.max_revision(old) + 1
        if not current:
            return await self._snapshot(ds, number), old
        cur, duplicates = history.pick_current(current)
        if duplicates:
            await self._dedup(ds, cur, duplicates, pods)
        if cur.revision < number:
            # A rollback: the old template is current again and becomes the newest revision.
            upd = copy_of(cur)
            upd.revision = number
            cur = await self.client.update(upd)
        return cur, old

    async def _dedup(self, ds: apps_pb2.DaemonSet, keep: Any, duplicates: list[Any], pods: list[Any]) -> None:
        hash_ = keep.metadata.labels.get(REVISION_HASH_LABEL, "")
        batch = Batch()
        for pod in pods:
            if pod.metadata.labels.get(REVISION_HASH_LABEL) != hash_:
                batch.patch("Pod", pod.metadata.name, {"metadata": {"labels": {REVISION_HASH_LABEL: hash_}}},
                            namespace=pod.metadata.namespace)
        for rev in duplicates:
            batch.delete("ControllerRevision", rev.metadata.name, namespace=rev.metadata.namespace)
        for res in await self.client.batch(batch):
            if res.error is not None and not isinstance(res.error, errors.NotFound):
                raise res.error

    async def _snapshot(self, ds: apps_pb2.DaemonSet, number: int) -> Any:
        hash_ = history.compute_hash(ds.spec.template, history.collision_count(ds))
        rev = history.new_revision(ds, hash_, number)
        try:
            return await self.client.create(rev)
        except errors.AlreadyExists:
            pass
        existing = await self.client.get("ControllerRevision", rev.metadata.name, ds.metadata.namespace)
        if history.revision_matches(history.revision_key(ds), existing):
            return existing
        # A hash collision with a different template: bump collisionCount and try again.
        current = await self.client.get("DaemonSet", ds.metadata.name, ds.metadata.namespace)
        if history.collision_count(current) != history.collision_count(ds):
            raise errors.Conflict(f"found a stale collision count of DaemonSet {ds.metadata.name!r}; will retry")
        current.status.collision_count = (history.collision_count(current) or 0) + 1
        await self.client.update_status(current)
        log.info("daemonset %s: hash collision, collisionCount now %d", meta.key_of(ds),
                 current.status.collision_count)
        raise errors.Conflict(f"hash collision for DaemonSet {ds.metadata.name!r}; retrying")

    async def _cleanup_history(self, ds: apps_pb2.DaemonSet, old: list[Any], pods: list[Any]) -> None:
        limit = (ds.spec.revision_history_limit if ds.spec.HasField("revision_history_limit")
                 else DEFAULT_REVISION_HISTORY_LIMIT)
        if len(old) <= limit:
            return
        live = {h for p in pods if (h := p.metadata.labels.get(REVISION_HASH_LABEL, ""))}
        doomed = history.revisions_to_clean(old, limit, live)
        if not doomed:
            return
        batch = Batch()
        for rev in doomed:
            batch.delete("ControllerRevision", rev.metadata.name, namespace=rev.metadata.namespace,
                         uid=rev.metadata.uid)
        for res in await self.client.batch(batch):
            if res.error is not None and not isinstance(res.error, errors.NotFound | errors.Conflict):
                raise res.error

    # -- status --------------------------------------------------------------------------------

    async def _update_status(self, ds: apps_pb2.DaemonSet, fits: dict[str, NodeFit],
                             node_pods: dict[str, list[Any]], hash_: str, generation: int | None,
                             update_generation: bool) -> None:
        now = self.clock.now()
        counts = compute_status(ds, fits, node_pods, hash_, generation, now)
        observed = ds.metadata.generation if update_generation else ds.status.observed_generation
        if status_differs(ds, counts, observed):
            upd = copy_of(ds)
            apply_status(upd.status, counts, observed)
            try:
                await self.client.update_status(upd)
            except errors.Conflict:
                # One retry on a fresh copy, as Kubernetes does.
                fresh = await self.client.get("DaemonSet", ds.metadata.name, ds.metadata.namespace)
                apply_status(fresh.status, counts, observed)
                await self.client.update_status(fresh)
        if ds.spec.min_ready_seconds > 0 and counts.number_ready != counts.number_available:
            self.queue.add_after(meta.key_of(ds), ds.spec.min_ready_seconds)


def _next_availability(pods: Sequence[Any], min_ready_seconds: int, now: float) -> float | None:
    """Seconds until the first of the pods that are Ready but not yet available becomes available."""
    waits = [w for p in pods if (w := seconds_until_available(p, min_ready_seconds, now)) is not None]
    return min(waits, default=None)


def _has_selector(ds: apps_pb2.DaemonSet) -> bool:
    sel = ds.spec.selector
    return bool(sel.match_labels) or bool(sel.match_expressions)


def _owner_patch(obj: Any, refs: list[Any]) -> dict[str, Any]:
    """A merge patch setting ownerReferences, guarded by the resourceVersion we judged."""
    return {"metadata": {"resourceVersion": obj.metadata.resource_version,
                         "ownerReferences": [manifest.message_to_dict(r) for r in refs]}}


def _pods_by_node(pods: list[Any]) -> dict[str, list[Any]]:
    """getNodesToDaemonPods: pods by target node, leaving out terminal pods being deleted and
    pods whose target node cannot be told (GetTargetNodeName fails: no nodeName and no
    `matchFields metadata.name In [one node]`), which the controller neither counts nor deletes."""
    out: dict[str, list[Any]] = defaultdict(list)
    for pod in pods:
        if pod.metadata.deletion_timestamp and pod.status.phase in ("Succeeded", "Failed"):
            continue
        node = target_node_name(pod)
        if node:
            out[node].append(pod)
    return dict(out)

