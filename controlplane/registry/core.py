"""Strategies of the core group (v1): Pod, Node, Namespace, Event (pkg/registry/core/*)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ketch.api import errors, meta, timeutil
from ketch.api.defaults import core as core_defaults
from ketch.api.errors import FieldError
from ketch.api.qos import qos_class
from ketch.api.validation import cluster, core, field
from ketch.api.warnings import pod_spec_warnings
from ketch.v1 import core_pb2

from .strategy import Strategy

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300
DEFAULT_GRACE_SECONDS = 30
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_EVENT_TTL = 3600.0  # kube-apiserver's --event-ttl
NAMESPACE_FINALIZER = "kubernetes"


def add_default_tolerations(spec: core_pb2.PodSpec, seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """The DefaultTolerationSeconds admission plugin: not-ready and unreachable are tolerated for
    `seconds` unless the pod says otherwise."""
    for taint_key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        if any((t.key == taint_key or (not t.key and t.operator == "Exists"))
               and t.effect in ("", "NoExecute") for t in spec.tolerations):
            continue
        tol = spec.tolerations.add()
        tol.key, tol.operator, tol.effect = taint_key, "Exists", "NoExecute"
        tol.toleration_seconds = seconds


def validate_binding(target_node: str) -> list[FieldError]:
    """ValidatePodBinding: the target (a Node) is named by a DNS subdomain."""
    errs: list[FieldError] = []
    if not target_node:
        errs.append(errors.required("target.name"))
    else:
        field.dns_subdomain_field(errs, target_node, "target.name")
    return errs


class PodStrategy(Strategy):
    kind = "Pod"
    resets_status_on_create = True
    field_labels = frozenset({"spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
                              "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"})
    # Parsed, a pod costs ~5 KB, ten times its bytes, and the in-process informers hold their
    # own parsed copy anyway: the store keeps bytes and parses a pod when a write reads it.
    keeps_parsed = False

    def __init__(self, default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
        super().__init__()
        self.default_toleration_seconds = default_toleration_seconds

    def default(self, obj: core_pb2.Pod) -> None:
        core_defaults.pod(obj)

    def prepare_for_create(self, obj: core_pb2.Pod, now: float) -> None:
        super().prepare_for_create(obj, now)
        obj.status.phase = "Pending"
        obj.status.qos_class = qos_class(obj.spec)
        if obj.spec.node_name:
            cond = obj.status.conditions.add()
            cond.type, cond.status = "PodScheduled", "True"
            cond.last_transition_time = obj.metadata.creation_timestamp
        add_default_tolerations(obj.spec, self.default_toleration_seconds)

    def validate(self, obj: core_pb2.Pod) -> list[FieldError]:
        return core.validate_pod(obj)

    def warnings(self, obj: core_pb2.Pod) -> list[str]:
        return pod_spec_warnings(obj.spec, "spec")

    def validate_update(self, new: core_pb2.Pod, old: core_pb2.Pod) -> list[FieldError]:
        return core.validate_pod_update(new, old)

    def validate_status_update(self, new: core_pb2.Pod, old: core_pb2.Pod) -> list[FieldError]:
        return core.validate_pod_status_update(new, old)

    def prepare_for_update(self, new: core_pb2.Pod, old: core_pb2.Pod) -> None:
        if new.spec.node_name and not old.spec.node_name:
            meta.set_condition(new.status.conditions, "PodScheduled", "True")  # bound by an update

    def subresource(self, name: str, new: Any, old: core_pb2.Pod, now: float) -> core_pb2.Pod:
        if name != "binding":
            raise errors.BadRequest(f'unknown subresource "{name}"')
        return self._bind(new, old, now)

    def _bind(self, binding: core_pb2.Pod, pod: core_pb2.Pod, now: float) -> core_pb2.Pod:
        """Kubernetes' pods/binding: set spec.nodeName (and PodScheduled=True) on an unbound pod,
        with the binding's annotations; nothing else of the stored pod is looked at again."""
        md = pod.metadata
        node = binding.spec.node_name
        errs = validate_binding(node)
        if errs:
            raise errors.invalid_error("Binding", md.name, errs)
        if md.deletion_timestamp:
            raise errors.Conflict(f"pod {md.name} is being deleted, cannot be assigned to a host")
        if pod.spec.node_name:
            raise errors.Conflict(f'pod {md.name} is already assigned to node "{pod.spec.node_name}"')
        result = core_pb2.Pod()
        result.CopyFrom(pod)
        result.spec.node_name = node
        if binding.metadata.annotations:
            result.metadata.annotations.update(binding.metadata.annotations)
            errs = self.validate_metadata_update(result, pod)
            if errs:
                raise errors.invalid_error("Binding", md.name, errs)
        meta.set_condition(result.status.conditions, "PodScheduled", "True", now=now)
        return result

    def grace_period(self, obj: core_pb2.Pod, requested: int | None) -> int:
        """Only a pod bound to a node and still running stops gracefully (its agent confirms)."""
        if not obj.spec.node_name or obj.status.phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        if obj.spec.HasField("termination_grace_period_seconds"):
            return obj.spec.termination_grace_period_seconds
        return DEFAULT_GRACE_SECONDS

    def field_values(self, obj: core_pb2.Pod) -> Mapping[str, str]:
        return {
            "spec.nodeName": obj.spec.node_name,
            "status.phase": obj.status.phase,
            "spec.restartPolicy": obj.spec.restart_policy,
            "spec.schedulerName": obj.spec.scheduler_name,
            "spec.serviceAccountName": obj.spec.service_account_name,
            "status.podIP": obj.status.pod_ip,
            "status.nominatedNodeName": obj.status.nominated_node_name,
        }


class NodeStrategy(Strategy):
    kind = "Node"
    field_labels = frozenset({"spec.unschedulable"})
    # Read through informers, rarely from the store; written by each agent's status reports:
    # bytes until a write needs them, as Leases.
    keeps_parsed = False

    def default(self, obj: core_pb2.Node) -> None:
        core_defaults.node(obj)

    def validate(self, obj: core_pb2.Node) -> list[FieldError]:
        return cluster.validate_node(obj)

    def validate_update(self, new: core_pb2.Node, old: core_pb2.Node) -> list[FieldError]:
        return cluster.validate_node_update(new, old)

    def validate_status_update(self, new: core_pb2.Node, old: core_pb2.Node) -> list[FieldError]:
        return cluster.validate_node_status_update(new, old)

    def field_values(self, obj: core_pb2.Node) -> Mapping[str, str]:
        return {"spec.unschedulable": "true" if obj.spec.unschedulable else "false"}


class NamespaceStrategy(Strategy):
    kind = "Namespace"
    resets_status_on_create = True

    def name_rule(self, name: str, prefix: bool) -> tuple[str, ...]:
        return field.name_is_dns_label(name, prefix)

    def default(self, obj: core_pb2.Namespace) -> None:
        core_defaults.namespace(obj)

    def prepare_for_create(self, obj: core_pb2.Namespace, now: float) -> None:
        super().prepare_for_create(obj, now)
        obj.status.phase = "Active"
        if NAMESPACE_FINALIZER not in obj.spec.finalizers:
            obj.spec.finalizers.append(NAMESPACE_FINALIZER)

    def validate(self, obj: core_pb2.Namespace) -> list[FieldError]:
        return cluster.validate_namespace(obj)

    def prepare_for_update(self, new: core_pb2.Namespace, old: core_pb2.Namespace) -> None:
        # spec.finalizers change only through the finalize subresource, as in Kubernetes.
        del new.spec.finalizers[:]
        new.spec.finalizers.extend(old.spec.finalizers)
        # The name label is the server's on every write, a metadata-only one too (defaulting runs
        # only when the body changes): Kubernetes' Canonicalize sets it after each create and update.
        new.metadata.labels[core_defaults.NAMESPACE_NAME_LABEL] = new.metadata.name

    def subresource(self, name: str, new: Any, old: core_pb2.Namespace, now: float) -> core_pb2.Namespace:
        if name != "finalize":
            raise errors.BadRequest(f'unknown subresource "{name}"')
        result = core_pb2.Namespace()
        result.CopyFrom(old)
        del result.spec.finalizers[:]
        result.spec.finalizers.extend(new.spec.finalizers)
        # ValidateNamespaceFinalizeUpdate: the new finalizers are names, as on create.
        errs = cluster.validate_namespace(result)
        if errs:
            raise errors.invalid_error("Namespace", old.metadata.name, errs)
        return result

    def check_delete(self, obj: core_pb2.Namespace) -> None:
        if obj.metadata.name in DEFAULT_NAMESPACES:
            raise errors.Forbidden(f'namespaces "{obj.metadata.name}" is forbidden: this namespace may not be deleted')

    def prepare_for_delete(self, obj: core_pb2.Namespace) -> bool:
        # The namespace controller empties it, then removes the "kubernetes" finalizer.
        if obj.status.phase == "Terminating":
            return False
        obj.status.phase = "Terminating"
        return True

    def spec_finalizers(self, obj: core_pb2.Namespace) -> Sequence[str]:
        return obj.spec.finalizers


def last_seen(event: core_pb2.Event) -> float:
    """When the Event was last written (0 when it says nothing parseable)."""
    for stamp in (event.last_timestamp, event.event_time, event.metadata.creation_timestamp):
        if stamp:
            try:
                return timeutil.parse(stamp)
            except ValueError:
                continue
    return 0.0


class EventStrategy(Strategy):
    kind = "Event"
    creatable_in_terminating_namespace = True
    # The most numerous objects (one or more per pod, kept an hour), written once or a few times
    # and read back almost never (the API answers with their bytes): parsed, they would be most
    # of the store's memory under churn.
    keeps_parsed = False
    # Their seven field values cost the store a third of each Event kept; kube-apiserver keeps
    # no watch cache for Events and filters what it reads from etcd, as this reads them then.
    fields_on_read = True
    # An hour of them is the store's most numerous content: one buffer, not five objects each.
    packed = True

    def __init__(self, ttl: float = DEFAULT_EVENT_TTL) -> None:
        super().__init__()
        self.ttl = ttl

    def expires_at(self, obj: core_pb2.Event) -> float | None:
        """kube-apiserver stores every Event under an etcd lease of --event-ttl; here the store
        deletes it that long after its last write (lastTimestamp, else eventTime, else its
        creation), so a repeat that bumps lastTimestamp keeps it, and a restart keeps the time."""
        return last_seen(obj) + self.ttl
    field_labels = frozenset({"involvedObject.kind", "involvedObject.name", "involvedObject.namespace",
                              "involvedObject.uid", "reason", "type", "source"})

    def name_rule(self, name: str, prefix: bool) -> tuple[str, ...]:
        """ValidatePathSegmentName: the only name rule Kubernetes applies to core/v1 Events."""
        return cluster.path_segment_name(name, prefix)

    def validate(self, obj: core_pb2.Event) -> list[FieldError]:
        return cluster.validate_event(obj)

    def field_values(self, obj: core_pb2.Event) -> Mapping[str, str]:
        ref = obj.involved_object
        return {
            "involvedObject.kind": ref.kind, "involvedObject.name": ref.name,
            "involvedObject.namespace": ref.namespace, "involvedObject.uid": ref.uid,
            "reason": obj.reason, "type": obj.type, "source": obj.source.component,
        }
