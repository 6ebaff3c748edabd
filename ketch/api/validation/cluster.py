"""Node, Namespace, Event and Lease validation (core/v1 and coordination.k8s.io/v1).

Node: taints (key, value, effect, unique by key and effect), capacity/allocatable quantities,
providerID and podCIDRs fixed once set, addresses unique. Beyond Kubernetes, which checks only
that addresses are unique, the agent's endpoint is checked too, since the control plane dials
it: every address has one of the five address types, an IP for InternalIP/ExternalIP and a
DNS-1123 subdomain for Hostname/InternalDNS/ExternalDNS, and daemonEndpoints.kubeletEndpoint.Port
is 0 (none) or 1-65535. (Which addresses the control plane then agrees to dial is its node
proxy's rule: no link-local, unspecified or multicast IPs.) Namespace: DNS-1123 label names and spec finalizers.
Event: the core/v1 rules (namespace agreement with the involved object). Lease: durations.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from ketch.api import timeutil
from ketch.api.errors import FieldError, forbidden, invalid, not_supported, required
from ketch.v1 import coordination_pb2, core_pb2

from . import field, meta, resources, scheduling
from .field import Errors, Shown, idx


def validate_node(node: core_pb2.Node) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, node.metadata, False, field.name_is_dns_subdomain)
    if node.spec.taints:
        taints(errs, node.spec.taints, "spec.taints")
    _node_resources(errs, node.status)
    node_endpoints(errs, node.status)
    return errs


NODE_ADDRESS_TYPES = ["Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS"]
_IP_TYPES = ("InternalIP", "ExternalIP")
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _is_ip(text: str) -> bool:
    if "%" in text:  # Go's ParseIP takes no IPv6 zone
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def node_endpoints(errs: Errors, status: core_pb2.NodeStatus) -> None:
    """status.addresses (unique, typed, well-formed) and the agent's port."""
    seen: set[tuple[str, str]] = set()
    for i, addr in enumerate(status.addresses):
        p = idx("status.addresses", i)
        if not addr.type:
            errs.append(required(p + ".type"))
        elif addr.type not in NODE_ADDRESS_TYPES:
            errs.append(not_supported(p + ".type", addr.type, NODE_ADDRESS_TYPES))
        if not addr.address:
            errs.append(required(p + ".address"))
        elif addr.type in _IP_TYPES:
            if not _is_ip(addr.address):
                errs.append(invalid(p + ".address", addr.address, IP_MSG))
        elif addr.type in NODE_ADDRESS_TYPES:
            if len(addr.address) > 253:  # kept out of the (cached) pattern check
                errs.append(invalid(p + ".address", addr.address[:253] + "...", field.max_len_error(253)))
            else:
                field.dns_subdomain_field(errs, addr.address, p + ".address")
        k = (addr.type, addr.address)
        if k in seen:
            errs.append(FieldError("Duplicate", p, "", Shown(f'{{Type:"{addr.type}", Address:"{addr.address}"}}'),
                                   True))
        seen.add(k)
    port = status.daemon_endpoints.kubelet_endpoint.port
    if port and not 1 <= port <= 65535:
        errs.append(invalid("status.daemonEndpoints.kubeletEndpoint.Port", port,
                            field.inclusive_range_error(1, 65535)))


def taints(errs: Errors, values: Sequence[core_pb2.Taint], path: str) -> None:
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(values):
        p = idx(path, i)
        field.qualified_name_field(errs, taint.key, p + ".key")
        msgs = field.label_value(taint.value)
        if msgs:
            errs.append(invalid(p + ".value", taint.value, ";".join(msgs)))
        if not taint.effect:
            errs.append(required(p + ".effect"))
        elif taint.effect not in scheduling.TAINT_EFFECTS:
            errs.append(not_supported(p + ".effect", taint.effect, scheduling.TAINT_EFFECTS))
        if (taint.key, taint.effect) in seen:
            shown = Shown(f'core.Taint{{Key:"{taint.key}", Value:"{taint.value}", Effect:"{taint.effect}", '
                          f'TimeAdded:{_go_time(taint.time_added)}}}')
            errs.append(FieldError("Duplicate", p, "taints must be unique by key and effect pair", shown, True))
            continue
        seen.add((taint.key, taint.effect))


def _node_resources(errs: Errors, status: core_pb2.NodeStatus) -> None:
    for name, values in (("capacity", status.capacity), ("allocatable", status.allocatable)):
        for res, text in values.items():
            value = resources.parse_quantity(text)
            path = f"status.{name}.{res}"
            if isinstance(value, str):
                errs.append(invalid(path, text, value))
            elif value < 0:
                errs.append(invalid(path, text, field.IS_NEGATIVE))


def validate_node_update(new: core_pb2.Node, old: core_pb2.Node) -> Errors:
    errs: Errors = []
    meta.object_meta_update(errs, new.metadata, old.metadata)
    errs.extend(validate_node_status_update(new, old))
    if old.spec.pod_cidrs and list(old.spec.pod_cidrs) != list(new.spec.pod_cidrs):
        errs.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
    if old.spec.provider_id and old.spec.provider_id != new.spec.provider_id:
        errs.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
    if new.spec.external_id != old.spec.external_id:
        errs.append(forbidden("spec.externalID", "may not be updated"))
    return errs


def validate_node_status_update(new: core_pb2.Node, old: core_pb2.Node) -> Errors:
    errs: Errors = []
    _node_resources(errs, new.status)
    node_endpoints(errs, new.status)
    return errs


def validate_namespace(ns: core_pb2.Namespace) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, ns.metadata, False, field.name_is_dns_label)
    for name in ns.spec.finalizers:
        field.qualified_name_field(errs, name, "spec.finalizers")
        if "/" not in name and name not in meta.STANDARD_FINALIZERS:
            errs.append(invalid("spec.finalizers", name,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def path_segment_name(name: str, prefix: bool) -> tuple[str, ...]:
    """ValidatePathSegmentName: the only name rule Kubernetes applies to core/v1 Events."""
    msgs = []
    if not prefix and name in (".", ".."):
        msgs.append(f"may not be '{name}'")
    for bad in ("/", "%"):
        if bad in name:
            msgs.append(f"may not contain '{bad}'")
    return tuple(msgs)


def validate_event(ev: core_pb2.Event) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, ev.metadata, True, path_segment_name)
    ns, involved_ns = ev.metadata.namespace, ev.involved_object.namespace
    mismatch = "does not match event.namespace"
    if not ev.event_time:
        if (not involved_ns and ns not in ("", "default")) or (involved_ns and ns != involved_ns):
            errs.append(invalid("involvedObject.namespace", involved_ns, mismatch))
    else:
        if (not involved_ns and ns not in ("default", "kube-system")) or (involved_ns and ns != involved_ns):
            errs.append(invalid("involvedObject.namespace", involved_ns, mismatch))
        if not ev.reporting_component:
            errs.append(required("reportingComponent"))
        else:
            field.qualified_name_field(errs, ev.reporting_component, "reportingComponent")
        for name, value in (("reportingInstance", ev.reporting_instance), ("action", ev.action),
                            ("reason", ev.reason)):
            if len(value) > 128:
                errs.append(invalid(name, "", "can have at most 128 characters"))
    if ev.type and ev.type not in ("Normal", "Warning"):
        errs.append(not_supported("type", ev.type, ["Normal", "Warning"]))
    return errs


def validate_lease(lease: coordination_pb2.Lease) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, lease.metadata, True, field.name_is_dns_subdomain)
    spec = lease.spec
    if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", spec.lease_duration_seconds, "must be greater than 0"))
    if spec.HasField("lease_transitions") and spec.lease_transitions < 0:
        errs.append(invalid("spec.leaseTransitions", spec.lease_transitions, field.IS_NEGATIVE))
    if spec.HasField("strategy") and spec.strategy not in ("OldestEmulationVersion",):
        errs.append(not_supported("spec.strategy", spec.strategy, ["OldestEmulationVersion"]))
    if spec.HasField("preferred_holder") and spec.preferred_holder and not spec.strategy:
        errs.append(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


def _go_time(stamp: str) -> str:
    """A *metav1.Time as Go's %#v prints it: <nil> when unset (the promoted GoString panics on a
    nil pointer), else time.Time's GoString in the server's zone, where metav1.Time decodes."""
    if not stamp:
        return "<nil>"
    try:
        t = time.localtime(timeutil.parse(stamp))
    except (ValueError, OverflowError):
        return f'"{stamp}"'
    return (f"time.Date({t.tm_year}, time.{_MONTHS[t.tm_mon - 1]}, {t.tm_mday}, {t.tm_hour}, {t.tm_min}, "
            f"{t.tm_sec}, 0, time.Local)")
