"""How the Job controller writes pods: the PodControl seam, its real implementation over the
client (every call is ONE Batch RPC, however many pods it carries) and a recording fake.

RealPodControl records the SuccessfulCreate / FailedCreate / SuccessfulDelete / FailedDelete
events Kubernetes' pod control records, through the recorder's spam filter (client-go's: a burst
of 25, then one per 5 minutes) on a budget of their own, so a Job of thousands of pods does not
write thousands of Events and its own events (Completed, failures, Suspended...), on the Job's
budget, are not crowded out.

Each method returns one error (or None) per pod, in order (NotFound included: the controller
decides what a vanished pod means), and never raises for a per-pod failure; a transport
failure raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ketch.api import errors
from ketch.client.cache import copy_of
from ketch.client.clientset import Batch, Client
from ketch.client.events import EventRecorder
from ketch.v1 import batch_pb2, core_pb2

from .pods import TRACKING_FINALIZER, has_tracking_finalizer

REMOVE_FINALIZER_PATCH = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}

PodErrors = list[errors.StatusError | None]


class PodControl(Protocol):
    async def create_pods(self, job: batch_pb2.Job, pods: Sequence[core_pb2.Pod]) -> PodErrors:
        """Create the pods (each already named by generateName, owned and labelled)."""
        ...

    async def delete_pods(self, job: batch_pb2.Job, pods: Sequence[Any], remove_finalizer: bool) -> PodErrors:
        """Delete the pods; with remove_finalizer the tracking finalizer is stripped first, so
        the pod is not counted (suspend, scale-down)."""
        ...

    async def remove_finalizers(self, pods: Sequence[Any]) -> PodErrors:
        """Strip the tracking finalizer from the pods."""
        ...

    async def patch_pods(self, patches: Sequence[tuple[Any, dict[str, Any]]]) -> PodErrors:
        """Strategic merge patches (adoption and release)."""
        ...


def _first_error(*errs: errors.StatusError | None) -> errors.StatusError | None:
    """The first real error; NotFound only if nothing worse happened."""
    found = [e for e in errs if e is not None]
    for e in found:
        if not isinstance(e, errors.NotFound):
            return e
    return found[0] if found else None


class RealPodControl:
    def __init__(self, client: Client, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    def _event(self, job: batch_pb2.Job, etype: str, reason: str, message: str) -> None:
        # Pod events have a budget of their own: the Job's own events (Completed, failures) are
        # never crowded out by thousands of SuccessfulCreate.
        self.recorder.event(job, etype, reason, message, spam_key=job.metadata.uid + "/pods")

    async def create_pods(self, job: batch_pb2.Job, pods: Sequence[core_pb2.Pod]) -> PodErrors:
        batch = Batch()
        for pod in pods:
            batch.create(pod)
        out: PodErrors = []
        for res in await self.client.batch(batch):
            if res.error is not None:
                out.append(res.error)
                self._event(job, "Warning", "FailedCreate", f"Error creating: {res.error.message}")
            else:
                out.append(None)
                self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {res.object.metadata.name}")
        return out

    async def delete_pods(self, job: batch_pb2.Job, pods: Sequence[Any], remove_finalizer: bool) -> PodErrors:
        # A patch (not an update) strips the finalizer: it cannot conflict, and the delete in the
        # same batch must never run on a pod that kept it (it would then count as failed).
        batch = Batch()
        slots: list[tuple[int, int]] = []  # (index of the finalizer op or -1, index of the delete op)
        for pod in pods:
            md = pod.metadata
            fin = -1
            if remove_finalizer and has_tracking_finalizer(pod):
                fin = len(batch)
                batch.patch("Pod", md.name, REMOVE_FINALIZER_PATCH, namespace=md.namespace, patch_type="strategic")
            slots.append((fin, len(batch)))
            batch.delete("Pod", md.name, namespace=md.namespace)
        results = await self.client.batch(batch)
        out: PodErrors = []
        for pod, (fin, dele) in zip(pods, slots, strict=True):
            err = _first_error(results[fin].error if fin >= 0 else None, results[dele].error)
            out.append(err)
            if err is None or isinstance(err, errors.NotFound):
                self._event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")
            else:
                self._event(job, "Warning", "FailedDelete", f"Error deleting: {err.message}")
        return out

    async def remove_finalizers(self, pods: Sequence[Any]) -> PodErrors:
        # The cached pod minus the finalizer, written with its resourceVersion as precondition:
        # the same effect as Kubernetes' strategic merge patch at a fraction of the server's
        # cost (no JSON round trip). A pod changed since the cache saw it gives a Conflict; those
        # few are retried with the patch.
        batch = Batch()
        for pod in pods:
            new = copy_of(pod)
            kept = [f for f in new.metadata.finalizers if f != TRACKING_FINALIZER]
            del new.metadata.finalizers[:]
            new.metadata.finalizers.extend(kept)
            batch.update(new)
        out: PodErrors = []
        retry: list[int] = []
        for i, res in enumerate(await self.client.batch(batch)):
            if isinstance(res.error, errors.Conflict):
                retry.append(i)
            out.append(res.error)
        if retry:
            patch = Batch()
            for i in retry:
                md = pods[i].metadata
                patch.patch("Pod", md.name, REMOVE_FINALIZER_PATCH, namespace=md.namespace, patch_type="strategic")
            for i, res in zip(retry, await self.client.batch(patch), strict=True):
                out[i] = res.error
        return out

    async def patch_pods(self, patches: Sequence[tuple[Any, dict[str, Any]]]) -> PodErrors:
        batch = Batch()
        for pod, patch in patches:
            batch.patch("Pod", pod.metadata.name, patch, namespace=pod.metadata.namespace, patch_type="strategic")
        return [res.error for res in await self.client.batch(batch)]


class FakePodControl:
    """Records what the controller asked for; `create_limit` makes creates beyond it fail and
    `err` makes every call fail, like Kubernetes' FakePodControl{Err, CreateLimit}."""

    def __init__(self, err: errors.StatusError | None = None, create_limit: int | None = None,
                 delete_err: errors.StatusError | None = None,
                 finalizer_err: errors.StatusError | None = None) -> None:
        self.err = err
        self.create_limit = create_limit
        self.delete_err = delete_err
        self.finalizer_err = finalizer_err
        self.created: list[core_pb2.Pod] = []
        self.deleted: list[str] = []
        self.deleted_with_finalizer_removed: list[str] = []
        self.finalizers_removed: list[str] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.create_calls = 0

    async def create_pods(self, job: batch_pb2.Job, pods: Sequence[core_pb2.Pod]) -> PodErrors:
        self.create_calls += 1
        out: PodErrors = []
        for pod in pods:
            if self.err is not None:
                out.append(self.err)
            elif self.create_limit is not None and len(self.created) >= self.create_limit:
                out.append(errors.Forbidden("the create limit was reached"))
            else:
                self.created.append(copy_of(pod))
                out.append(None)
        return out

    async def delete_pods(self, job: batch_pb2.Job, pods: Sequence[Any], remove_finalizer: bool) -> PodErrors:
        err = self.delete_err or self.err
        out: PodErrors = []
        for pod in pods:
            if err is not None:
                out.append(err)
                continue
            self.deleted.append(pod.metadata.name)
            if remove_finalizer:
                self.deleted_with_finalizer_removed.append(pod.metadata.name)
            out.append(None)
        return out

    async def remove_finalizers(self, pods: Sequence[Any]) -> PodErrors:
        err = self.finalizer_err or self.err
        out: PodErrors = []
        for pod in pods:
            if err is not None:
                out.append(err)
            else:
                self.finalizers_removed.append(pod.metadata.name)
                out.append(None)
        return out

    async def patch_pods(self, patches: Sequence[tuple[Any, dict[str, Any]]]) -> PodErrors:
        out: PodErrors = []
        for pod, patch in patches:
            if self.err is not None:
                out.append(self.err)
            else:
                self.patched.append((pod.metadata.name, patch))
                out.append(None)
        return out
