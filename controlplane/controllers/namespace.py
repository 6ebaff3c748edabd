"""The namespace controller: empties a deleted Namespace, then lets it go.

Deleting a Namespace only marks it (deletionTimestamp, status.phase Terminating) while its
spec.finalizers holds "kubernetes" (the API server does that). This controller then deletes
everything in it — every namespaced kind, listed live from the API so that nothing created just
before the deletion is missed; pods are deleted gracefully, the rest with propagation
Background — and once a live listing finds the namespace empty, removes the "kubernetes"
finalizer through the finalize subresource, which removes the Namespace.

Objects that take time to go (pods stopping within their grace period, objects held by
finalizers) bring the namespace back to the queue when they are deleted (the handlers watch
deletions of every namespaced kind but Event); a namespace with content left is also retried
with back-off, as Kubernetes does. Its status carries Kubernetes' NamespaceContentRemaining and
NamespaceFinalizersRemaining conditions, so `get ns -o yaml` tells what it waits for.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ketch.api import errors, meta
from ketch.api.kinds import KINDS, KindInfo
from ketch.client.cache import DeletedFinalStateUnknown, copy_of
from ketch.client.clientset import Batch, pack
from ketch.client.workqueue import ItemExponentialFailureRateLimiter
from ketch.v1 import api_pb2, core_pb2

from .base import Controller, ControllerContext

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
NAMESPACED_KINDS: tuple[KindInfo, ...] = tuple(k for k in KINDS if k.namespaced)
# Pods first: their graceful stop takes longest, so it starts first.
DELETE_ORDER = sorted(NAMESPACED_KINDS, key=lambda k: k.kind != "Pod")


class ContentRemainingError(errors.StatusError):
    """The namespace is not empty yet: retried with back-off (and sooner on deletions)."""

    code = errors.FAILED_PRECONDITION
    reason = "ContentRemaining"


# -- pure ----------------------------------------------------------------------------------------


def needs_finalizing(ns: Any) -> bool:
    return bool(ns.metadata.deletion_timestamp) and FINALIZER in ns.spec.finalizers


def remaining_conditions(remaining: dict[str, int], finalizers: Counter[str]) -> list[tuple[str, str, str, str]]:
    """Kubernetes' (type, status, reason, message) for what a terminating namespace still holds.

    remaining: count of objects left by resource name ("pods", "jobs.batch");
    finalizers: count of objects left per finalizer.
    """
    if remaining:
        parts = [f"{res} has {n} resource instances" for res, n in sorted(remaining.items())]
        content = ("NamespaceContentRemaining", "True", "SomeResourcesRemain",
                   "Some resources are remaining: " + ", ".join(parts))
    else:
        content = ("NamespaceContentRemaining", "False", "ContentDeleted",
                   "All content successfully deleted, may be waiting on finalization")
    if finalizers:
        parts = [f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())]
        fins = ("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: " + ", ".join(parts))
    else:
        fins = ("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
                "All content-preserving finalizers finished")
    return [content, fins]


# -- the controller ------------------------------------------------------------------------------


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, ctx: ControllerContext) -> None:
        # Kubernetes' namespace queue: 5 ms doubling to 60 s per namespace.
        super().__init__(ctx, ItemExponentialFailureRateLimiter(0.005, 60.0))
        self.namespaces = ctx.informers.informer(core_pb2.Namespace)
        self.namespaces.add_handler(self.add_namespace, self.update_namespace, None)
        for info in NAMESPACED_KINDS:
            if info.kind != "Event":
                ctx.informers.informer(info.kind).add_handler(on_delete=self.delete_namespaced_object)

    def add_namespace(self, ns: Any) -> None:
        if needs_finalizing(ns):
            self.queue.add(ns.metadata.name)

    def update_namespace(self, old: Any, new: Any) -> None:
        self.add_namespace(new)

    def delete_namespaced_object(self, obj: Any) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.obj
            if obj is None:
                return
        ns = self.namespaces.get("", obj.metadata.namespace)
        if ns is not None and needs_finalizing(ns):
            self.queue.add(ns.metadata.name)

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get("", key)
        if ns is None or not needs_finalizing(ns):
            return
        remaining, finalizers = await self._delete_content(key)
        if remaining:
            await self._report(ns, remaining, finalizers)
            total = sum(remaining.values())
            raise ContentRemainingError(f"namespace {key}: {total} objects remaining")
        # Empty: let the namespace go (compare-and-swap on the version we acted on).
        done = copy_of(ns)
        del done.spec.finalizers[:]
        done.spec.finalizers.extend(f for f in ns.spec.finalizers if f != FINALIZER)
        await self.client.transport.unary("Update", api_pb2.UpdateRequest(object=pack(done), subresource="finalize"))
        log.info("namespace: %s is empty; finalized", key)

    async def _delete_content(self, namespace: str) -> tuple[dict[str, int], Counter[str]]:
        """Delete what is in the namespace; return what is left (by resource) and its finalizers."""
        remaining: dict[str, int] = {}
        finalizers: Counter[str] = Counter()
        batch = Batch()
        for info in DELETE_ORDER:
            items, _ = await self.client.list(info.kind, namespace)
            if not items:
                continue
            remaining[info.qualified_plural] = len(items)
            for obj in items:
                md = obj.metadata
                finalizers.update(md.finalizers)
                if not md.deletion_timestamp:
                    batch.delete(info.kind, md.name, namespace, propagation_policy="Background", uid=md.uid)
        if batch.ops:
            outcomes = await self.client.batch(batch)
            gone: Counter[str] = Counter()
            for op, out in zip(batch.ops, outcomes, strict=True):
                if out.error is None and out.deleted:
                    gone[op.delete.kind] += 1
                elif out.error is not None and not isinstance(out.error, errors.NotFound | errors.Conflict):
                    log.info("namespace: deleting %s %s/%s: %s", op.delete.kind, namespace, op.delete.name,
                             out.error)
            for info in NAMESPACED_KINDS:
                left = remaining.get(info.qualified_plural, 0) - gone[info.kind]
                if info.qualified_plural in remaining:
                    if left > 0:
                        remaining[info.qualified_plural] = left
                    else:
                        del remaining[info.qualified_plural]
            log.info("namespace: %s: deleted %d objects, %d left", namespace, sum(gone.values()),
                     sum(remaining.values()))
        return remaining, finalizers

    async def _report(self, ns: Any, remaining: dict[str, int], finalizers: Counter[str]) -> None:
        new = copy_of(ns)
        changed = False
        now = self.clock.now()
        for ctype, status, reason, message in remaining_conditions(remaining, finalizers):
            changed |= meta.set_condition(new.status.conditions, ctype, status, reason, message, now=now)
        if changed:
            try:
                await self.client.update_status(new)
            except errors.Conflict:
                pass  # the next pass writes it
