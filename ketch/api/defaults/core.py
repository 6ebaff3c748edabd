"""Core/v1 defaults (pkg/apis/core/v1/defaults.go): PodSpec, containers, probes, Pod, Node, Namespace.

`pod_spec` applies to every pod template as well as to Pods; `pod` adds the Pod-only defaults
(requests default to limits, enableServiceLinks), which Kubernetes deliberately does not apply
to templates. Every function only fills fields that are unset, so applying twice changes nothing.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from ketch.v1 import core_pb2

DEFAULT_GRACE_SECONDS = 30
DEFAULT_SCHEDULER = "default-scheduler"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def image_pull_policy_for(image: str) -> str:
    """Always for `:latest` or no tag, else IfNotPresent (also for digests and unparseable names)."""
    if not image or image != image.strip():
        return "IfNotPresent"
    name, _, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        repo, tag = name[:colon], name[colon + 1:]
    else:
        repo, tag = name, ("" if digest else "latest")
    first, sep, rest = repo.partition("/")
    path = rest if sep and ("." in first or ":" in first or first == "localhost") else repo
    if not path or path != path.lower():
        return "IfNotPresent"  # not a valid reference; Kubernetes ignores the parse error
    return "Always" if tag == "latest" else "IfNotPresent"


def pod_spec(spec: core_pb2.PodSpec) -> None:
    if not spec.dns_policy:
        spec.dns_policy = "ClusterFirst"
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if not spec.HasField("security_context"):
        spec.security_context.SetInParent()
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_GRACE_SECONDS
    if not spec.scheduler_name:
        spec.scheduler_name = DEFAULT_SCHEDULER
    for c in spec.init_containers:
        container(c)
    for c in spec.containers:
        container(c)


def container(c: core_pb2.Container) -> None:
    if not c.image_pull_policy:
        c.image_pull_policy = image_pull_policy_for(c.image)
    if not c.termination_message_path:
        c.termination_message_path = TERMINATION_MESSAGE_PATH
    if not c.termination_message_policy:
        c.termination_message_policy = "File"
    for port in c.ports:
        _port(port)
    for ev in c.env:
        ref = ev.value_from.field_ref
        if ev.HasField("value_from") and ev.value_from.HasField("field_ref") and not ref.api_version:
            ref.api_version = "v1"
    for name in ("liveness_probe", "readiness_probe", "startup_probe"):
        if c.HasField(name):
            probe(getattr(c, name))


def _port(port: struct_pb2.Struct) -> None:
    if "protocol" not in port.fields:
        port.fields["protocol"].string_value = "TCP"


def probe(p: core_pb2.Probe) -> None:
    if p.timeout_seconds == 0:
        p.timeout_seconds = 1
    if p.period_seconds == 0:
        p.period_seconds = 10
    if p.success_threshold == 0:
        p.success_threshold = 1
    if p.failure_threshold == 0:
        p.failure_threshold = 3
    if p.HasField("http_get"):
        if not p.http_get.path:
            p.http_get.path = "/"
        if not p.http_get.scheme:
            p.http_get.scheme = "HTTP"


def pod(obj: core_pb2.Pod) -> None:
    spec = obj.spec
    pod_spec(spec)
    for c in (*spec.containers, *spec.init_containers):
        if c.HasField("resources"):
            requests = c.resources.requests
            for res, value in c.resources.limits.items():
                if res not in requests:
                    requests[res] = value
    if not spec.HasField("enable_service_links"):
        spec.enable_service_links = True


def node(obj: core_pb2.Node) -> None:
    status = obj.status
    if not status.allocatable and status.capacity:
        status.allocatable.update(status.capacity)


def namespace(obj: core_pb2.Namespace) -> None:
    if obj.metadata.name:
        obj.metadata.labels[NAMESPACE_NAME_LABEL] = obj.metadata.name
    if not obj.status.phase:
        obj.status.phase = "Active"
