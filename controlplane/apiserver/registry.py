"""Per-kind server rules, as Kubernetes' registry strategies: what the server fills in on create,
what it keeps on update, which fields writes may not touch, and what selectors can match.

Pure functions over messages (the clock is passed in); the service calls them on the write path.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from ketch.api import meta
from ketch.api.kinds import KindInfo
from ketch.v1 import apps_pb2, batch_pb2, core_pb2

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

# Kinds whose spec changes bump metadata.generation (status writes never do).
GENERATION_KINDS = frozenset({"Job", "CronJob", "DaemonSet"})
# Kinds whose status the client may not set on create.
RESET_STATUS_ON_CREATE = frozenset({"Pod", "Job", "CronJob", "DaemonSet", "Namespace"})

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
DS_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def fields_of(kind: str, obj: Message) -> Mapping[str, str]:
    """The field-selector values of an object (metadata.name/namespace are handled apart)."""
    if kind == "Pod":
        pod: core_pb2.Pod = obj  # type: ignore[assignment]
        return {
            "spec.nodeName": pod.spec.node_name,
            "status.phase": pod.status.phase,
            "spec.restartPolicy": pod.spec.restart_policy,
            "spec.schedulerName": pod.spec.scheduler_name,
            "spec.serviceAccountName": pod.spec.service_account_name,
            "status.podIP": pod.status.pod_ip,
            "status.nominatedNodeName": pod.status.nominated_node_name,
        }
    if kind == "Event":
        ev: core_pb2.Event = obj  # type: ignore[assignment]
        ref = ev.involved_object
        return {
            "involvedObject.kind": ref.kind, "involvedObject.name": ref.name,
            "involvedObject.namespace": ref.namespace, "involvedObject.uid": ref.uid,
            "reason": ev.reason, "type": ev.type, "source": ev.source.component,
        }
    if kind == "Node":
        node: core_pb2.Node = obj  # type: ignore[assignment]
        return {"spec.unschedulable": "true" if node.spec.unschedulable else "false"}
    return {}


def reset_status(obj: Message) -> None:
    if obj.DESCRIPTOR.fields_by_name.get("status") is not None:
        obj.ClearField("status")  # type: ignore[arg-type]


def prepare_for_create(info: KindInfo, obj: Message, now: float,
                       toleration_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """Server-set fields of a new object, after uid and name are assigned."""
    if info.kind in RESET_STATUS_ON_CREATE:
        reset_status(obj)
    if info.kind == "Pod":
        _prepare_pod(obj, toleration_seconds)  # type: ignore[arg-type]
    elif info.kind == "Job":
        _prepare_job(obj)  # type: ignore[arg-type]
    elif info.kind == "DaemonSet":
        ds: apps_pb2.DaemonSet = obj  # type: ignore[assignment]
        ds.metadata.annotations[DS_TEMPLATE_GENERATION] = str(ds.metadata.generation or 1)
    elif info.kind == "Namespace":
        obj.status.phase = "Active"  # type: ignore[attr-defined]
        ns_spec = obj.spec  # type: ignore[attr-defined]
        if "kubernetes" not in ns_spec.finalizers:
            ns_spec.finalizers.append("kubernetes")


def _prepare_pod(pod: core_pb2.Pod, toleration_seconds: int) -> None:
    pod.status.phase = "Pending"
    pod.status.qos_class = qos_class(pod.spec)
    if pod.spec.node_name:
        cond = pod.status.conditions.add()
        cond.type, cond.status = "PodScheduled", "True"
        cond.last_transition_time = pod.metadata.creation_timestamp
    add_default_tolerations(pod.spec, toleration_seconds)


def add_default_tolerations(spec: core_pb2.PodSpec, seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """The DefaultTolerationSeconds admission plugin: 300 s for not-ready and unreachable."""
    for taint_key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        if any((t.key == taint_key or (not t.key and t.operator == "Exists"))
               and t.effect in ("", "NoExecute") for t in spec.tolerations):
            continue
        tol = spec.tolerations.add()
        tol.key, tol.operator, tol.effect = taint_key, "Exists", "NoExecute"
        tol.toleration_seconds = seconds


def qos_class(spec: core_pb2.PodSpec) -> str:
    containers = list(spec.containers) + list(spec.init_containers)
    requests_any = any(c.resources.requests or c.resources.limits for c in containers)
    if not requests_any:
        return "BestEffort"
    guaranteed = True
    for c in containers:
        limits, requests = c.resources.limits, c.resources.requests
        for res in ("cpu", "memory"):
            if res not in limits or requests.get(res, limits[res]) != limits[res]:
                guaranteed = False
    return "Guaranteed" if guaranteed else "Burstable"


def _prepare_job(job: batch_pb2.Job) -> None:
    """Generated selector and labels (manualSelector unset), as Kubernetes' job strategy."""
    uid, name = job.metadata.uid, job.metadata.name
    labels = job.spec.template.metadata.labels
    if not (job.spec.HasField("manual_selector") and job.spec.manual_selector):
        for k, v in (("batch.kubernetes.io/controller-uid", uid), ("controller-uid", uid),
                     ("batch.kubernetes.io/job-name", name), ("job-name", name)):
            labels.setdefault(k, v)
        job.spec.selector.Clear()
        job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] = uid
    if not job.metadata.labels:
        for k, v in labels.items():
            job.metadata.labels[k] = v


def spec_changed(new: Message, old: Message) -> bool:
    desc = new.DESCRIPTOR
    if "spec" in desc.fields_by_name:
        return new.spec.SerializeToString(deterministic=True) != old.spec.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
    return False


def prepare_for_update(info: KindInfo, new: Message, old: Message) -> None:
    """Server-side consequences of a spec write (generation already bumped)."""
    if info.kind == "DaemonSet":
        new_ds: apps_pb2.DaemonSet = new  # type: ignore[assignment]
        old_ds: apps_pb2.DaemonSet = old  # type: ignore[assignment]
        old_gen = old_ds.metadata.annotations.get(DS_TEMPLATE_GENERATION, str(old_ds.metadata.generation))
        if new_ds.spec.template.SerializeToString(deterministic=True) != \
                old_ds.spec.template.SerializeToString(deterministic=True):
            new_ds.metadata.annotations[DS_TEMPLATE_GENERATION] = str(new_ds.metadata.generation)
        else:
            new_ds.metadata.annotations[DS_TEMPLATE_GENERATION] = old_gen
    elif info.kind == "Namespace":
        # spec.finalizers change only through the finalize subresource, as in Kubernetes.
        del new.spec.finalizers[:]  # type: ignore[attr-defined]
        new.spec.finalizers.extend(old.spec.finalizers)  # type: ignore[attr-defined]
    elif info.kind == "Pod":
        new_pod: core_pb2.Pod = new  # type: ignore[assignment]
        old_pod: core_pb2.Pod = old  # type: ignore[assignment]
        if new_pod.spec.node_name and not old_pod.spec.node_name:
            # A binding: the pod is now scheduled.
            meta.set_condition(new_pod.status.conditions, "PodScheduled", "True")


def copy_server_metadata(new: Message, old: Message) -> None:
    """Fields of metadata only the server writes, kept from the stored object on update."""
    nm, om = new.metadata, old.metadata  # type: ignore[attr-defined]
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


