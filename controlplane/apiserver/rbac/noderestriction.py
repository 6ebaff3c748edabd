"""NodeRestriction admission (plugin/pkg/admission/noderestriction), a mutating plugin as in
Kubernetes, which only refuses: what a node (system:node:NAME in system:nodes) may write, checked
on the objects themselves whatever the authorizers allowed.

- Pods: a node never creates one (Ketch has no mirror pods); it deletes only pods bound to
  itself, writes status only of pods bound to itself and never their labels through status; no
  other pod subresource.
- Nodes: only its own Node; on create no labels it may not set, on update neither those labels
  nor its taints may change (they steer workloads to it): labels under node-restriction.kubernetes.io/,
  and any under kubernetes.io/ or k8s.io/ but the kubelet's own (kubernetes.io/hostname,
  kubernetes.io/os, kubernetes.io/arch, topology, instance type, and *.kubelet.kubernetes.io/,
  *.node.kubernetes.io/).
- Leases: only its own, in kube-node-lease.
Every refusal is Forbidden in Kubernetes' words: `nodes "b" is forbidden: node "a" is not allowed
to modify node "b"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ketch.api import errors

from ..admission import CREATE, DELETE, UPDATE, AdmissionRequest
from ..request import Attributes
from .node import NODE_LEASE_NAMESPACE, node_identity

NODE_RESTRICTION_LABEL_NAMESPACE = "node-restriction.kubernetes.io"
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os",
    "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _label_namespace(key: str) -> str:
    prefix, sep, _ = key.partition("/")
    return prefix if sep else ""


def _within(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def is_kubelet_label(key: str) -> bool:
    if key in KUBELET_LABELS:
        return True
    namespace = _label_namespace(key)
    return any(_within(namespace, allowed) for allowed in KUBELET_LABEL_NAMESPACES)


def forbidden_labels(new: Mapping[str, str], old: Mapping[str, str]) -> list[str]:
    """The labels a node may not set or change among those that differ (getForbiddenLabels)."""
    modified = {k for k in new if old.get(k) != new[k]} | {k for k in old if new.get(k) != old[k]}
    out = []
    for key in modified:
        namespace = _label_namespace(key)
        restricted = _within(namespace, NODE_RESTRICTION_LABEL_NAMESPACE)
        kubernetes = _within(namespace, "kubernetes.io") or _within(namespace, "k8s.io")
        if restricted or (kubernetes and not is_kubelet_label(key)):
            out.append(key)
    return sorted(out)


def same_labels(new: Mapping[str, str], old: Mapping[str, str]) -> bool:
    """Whether two label maps are equal, without copying them: every status write of an agent
    asks, and dict() of a protobuf map walks it through the Mapping ABC (4x slower). `in`
    before each read: reading a missing key of a protobuf map would insert it."""
    if len(new) != len(old):
        return False
    for key in new:
        if key not in old or old[key] != new[key]:
            return False
    return True


def _forbidden(attrs: Attributes, why: str) -> errors.Forbidden:
    """admission.NewForbidden: `pods "p" is forbidden: <why>`."""
    what = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    return errors.Forbidden(f'{what} "{attrs.name}" is forbidden: {why}' if attrs.name else
                            f"{what} is forbidden: {why}")


class NodeRestriction:
    def admit(self, request: AdmissionRequest) -> None:
        attrs = request.attrs
        node, is_node = node_identity(attrs.user)
        if not is_node:
            return
        if not node:
            raise _forbidden(attrs, f'could not determine node from user "{attrs.user.name}"')
        group, resource = attrs.api_group, attrs.resource
        if group == "" and resource == "pods":
            self._pod(node, request)
        elif group == "" and resource == "nodes":
            self._node(node, request)
        elif group == "coordination.k8s.io" and resource == "leases":
            self._lease(node, request)

    def _pod(self, node: str, request: AdmissionRequest) -> None:
        attrs, op = request.attrs, request.operation
        if attrs.subresource == "status":
            if op != UPDATE:
                raise _forbidden(attrs, f'unexpected operation "{op}"')
            old: Any = request.old
            if old.spec.node_name != node:
                raise _forbidden(attrs, f'node "{node}" can only update pod status for pods with spec.nodeName '
                                        "set to itself")
            if not same_labels(request.obj.metadata.labels, old.metadata.labels):
                raise _forbidden(attrs, f'node "{node}" cannot update labels through pod status')
            return
        if attrs.subresource:
            raise _forbidden(attrs, f'unexpected pod subresource "{attrs.subresource}", only \'status\' is allowed')
        if op == CREATE:
            raise _forbidden(attrs, f'node "{node}" may not create pods: Ketch has no mirror pods')
        if op == DELETE:
            if request.old.spec.node_name != node:
                raise _forbidden(attrs, f'node "{node}" can only delete pods with spec.nodeName set to itself')
            return
        raise _forbidden(attrs, f'unexpected operation "{op}", node "{node}" can only delete pods and update '
                                "their status")

    def _node(self, node: str, request: AdmissionRequest) -> None:
        attrs, op = request.attrs, request.operation
        if attrs.name != node:
            raise _forbidden(attrs, f'node "{node}" is not allowed to modify node "{attrs.name}"')
        if op == CREATE:
            bad = forbidden_labels(request.obj.metadata.labels, {})
            if bad:
                raise _forbidden(attrs, f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}')
        elif op == UPDATE:
            new, old = request.obj, request.old
            if list(new.spec.taints) != list(old.spec.taints):
                raise _forbidden(attrs, f'node "{node}" is not allowed to modify taints')
            bad = forbidden_labels(new.metadata.labels, old.metadata.labels)
            if bad:
                raise _forbidden(attrs, f"is not allowed to modify labels: {', '.join(bad)}")

    def _lease(self, node: str, request: AdmissionRequest) -> None:
        attrs = request.attrs
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            raise _forbidden(attrs, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if attrs.name != node:
            raise _forbidden(attrs, "can only access node lease with the same name as the requesting node")
