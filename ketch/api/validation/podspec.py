"""PodSpec and PodTemplateSpec validation (pkg/apis/core/validation: ValidatePodSpec and helpers).

Shared by Pods and by the templates of Jobs, CronJobs and DaemonSets. Kubernetes' rules and
messages, with one Ketch rule: a container must have a `command`, because Ketch runs it as a
host process and there is no image entrypoint to fall back on (and `image` is not required).
Runs after defaulting, so defaulted fields (restartPolicy, dnsPolicy, probe thresholds, ...) are set.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from google.protobuf import struct_pb2

from ketch.api import configrefs, intstr, lifecycle
from ketch.api.errors import duplicate, forbidden, invalid, not_found, not_supported, required
from ketch.v1 import core_pb2

from . import field, resources, scheduling, securitycontext
from .field import Errors, idx

MAX_INT32 = 2**31 - 1
COMMAND_REQUIRED = "ketch runs the command on the host and cannot use an image entrypoint"
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"]
_CONVERTIBLE_FIELD_PATHS = frozenset(ENV_FIELD_PATHS) | {
    "metadata.annotations", "metadata.labels", "spec.restartPolicy", "spec.schedulerName", "status.phase"}
RESOURCE_FIELD_PATHS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory",
                        "requests.cpu", "requests.ephemeral-storage", "requests.memory"]
PORT_RANGE = field.inclusive_range_error(1, 65535)


def pod_template(errs: Errors, tmpl: core_pb2.PodTemplateSpec, path: str) -> None:
    """ValidatePodTemplateSpec: template labels are checked at `<path>.labels`, as Kubernetes does."""
    md = tmpl.metadata
    if md.labels:
        field.labels(errs, md.labels, path + ".labels")
    if md.annotations:
        field.annotation_map(errs, md.annotations, path + ".annotations")
    pod_spec(errs, tmpl.spec, path + ".spec")
    if tmpl.spec.ephemeral_containers:
        errs.append(forbidden(path + ".spec.ephemeralContainers", "ephemeral containers not allowed in pod template"))


def pod_spec(errs: Errors, spec: core_pb2.PodSpec, path: str) -> None:
    if not spec.HasField("termination_grace_period_seconds"):
        errs.append(required(path + ".terminationGracePeriodSeconds"))
    else:
        field.nonnegative(errs, spec.termination_grace_period_seconds, path + ".terminationGracePeriodSeconds")
    volumes = _volumes(errs, spec.volumes, path + ".volumes")
    _containers(errs, spec, volumes, path + ".containers")
    _init_containers(errs, spec, volumes, path + ".initContainers")
    if spec.restart_policy not in RESTART_POLICIES:
        _enum(errs, spec.restart_policy, RESTART_POLICIES, path + ".restartPolicy")
    if spec.dns_policy not in DNS_POLICIES:
        _enum(errs, spec.dns_policy, DNS_POLICIES, path + ".dnsPolicy")
    if spec.node_selector:
        field.labels(errs, spec.node_selector, path + ".nodeSelector")
    if spec.HasField("security_context"):
        securitycontext.pod_security_context(errs, spec.security_context, path + ".securityContext")
    if spec.HasField("affinity") and spec.affinity.HasField("node_affinity"):
        scheduling.node_affinity(errs, spec.affinity.node_affinity, path + ".affinity.nodeAffinity")
    if spec.dns_policy == "None":
        servers = spec.dns_config.fields.get("nameservers")
        if not spec.HasField("dns_config"):
            errs.append(required(path + ".dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
        elif servers is None or not servers.list_value.values:
            errs.append(required(path + ".dnsConfig.nameservers",
                                 "must provide at least one DNS nameserver when `dnsPolicy` is None"))
    for name, value in (("serviceAccountName", spec.service_account_name), ("nodeName", spec.node_name),
                        ("priorityClassName", spec.priority_class_name)):
        if value:
            field.dns_subdomain_field(errs, value, f"{path}.{name}")
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds < 1:
        errs.append(invalid(path + ".activeDeadlineSeconds", spec.active_deadline_seconds,
                            field.inclusive_range_error(1, MAX_INT32)))
    if spec.hostname:
        field.dns_label_field(errs, spec.hostname, path + ".hostname")
    if spec.subdomain:
        field.dns_label_field(errs, spec.subdomain, path + ".subdomain")
    if spec.tolerations:
        scheduling.tolerations(errs, spec.tolerations, path + ".tolerations")
    if spec.HasField("runtime_class_name"):
        field.dns_subdomain_field(errs, spec.runtime_class_name, path + ".runtimeClassName")
    if spec.HasField("preemption_policy") and spec.preemption_policy not in ("PreemptLowerPriority", "Never"):
        _enum(errs, spec.preemption_policy, ["PreemptLowerPriority", "Never"], path + ".preemptionPolicy")


def _enum(errs: Errors, value: str, allowed: list[str], path: str) -> None:
    if not value:
        errs.append(required(path))
    elif value not in allowed:
        errs.append(not_supported(path, value, allowed))


# ---------------------------------------------------------------------------------------------
# Containers


def _containers(errs: Errors, spec: core_pb2.PodSpec, volumes: set[str], path: str) -> None:
    if not spec.containers:
        errs.append(required(path))
        return
    seen: set[str] = set()
    for i, c in enumerate(spec.containers):
        p = idx(path, i)
        _container_common(errs, c, volumes, p)
        if c.name in seen:
            errs.append(duplicate(p + ".name", c.name))
        else:
            seen.add(c.name)
        _probes(errs, c, p)
        _lifecycle(errs, c, p, spec)
        if c.HasField("restart_policy"):
            errs.append(forbidden(p + ".restartPolicy", "may not be set for non-init containers"))


def _init_containers(errs: Errors, spec: core_pb2.PodSpec, volumes: set[str], path: str) -> None:
    names = {c.name for c in spec.containers}
    for i, c in enumerate(spec.init_containers):
        p = idx(path, i)
        _container_common(errs, c, volumes, p)
        sidecar = False
        if c.HasField("restart_policy"):
            if c.restart_policy != "Always":
                errs.append(not_supported(p + ".restartPolicy", c.restart_policy, ["Always"]))
            sidecar = c.restart_policy == "Always"
        if c.name in names:
            errs.append(duplicate(p + ".name", c.name))
        elif c.name:
            names.add(c.name)
        if sidecar:
            _probes(errs, c, p)
            _lifecycle(errs, c, p, spec)
            continue
        why = "may not be set for init containers without restartPolicy=Always"
        if c.HasField("lifecycle"):
            errs.append(forbidden(p + ".lifecycle", why))
        for name, json_name in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe"),
                                ("startup_probe", "startupProbe")):
            if c.HasField(name):
                errs.append(forbidden(f"{p}.{json_name}", why))


def _container_common(errs: Errors, c: core_pb2.Container, volumes: set[str], path: str) -> None:
    if not c.name:
        errs.append(required(path + ".name"))
    else:
        field.dns_label_field(errs, c.name, path + ".name")
    if not c.command:
        errs.append(required(path + ".command", COMMAND_REQUIRED))
    if c.termination_message_policy not in ("File", "FallbackToLogsOnError"):
        _enum(errs, c.termination_message_policy, ["File", "FallbackToLogsOnError"],
              path + ".terminationMessagePolicy")
    if c.ports:
        _ports(errs, c.ports, path + ".ports")
    if c.env_from:
        env_from(errs, c.env_from, path + ".envFrom")
    if c.env:
        env(errs, c.env, path + ".env")
    for i, mount in enumerate(c.volume_mounts):
        _mount(errs, mount, volumes, idx(path + ".volumeMounts", i))
    if c.image_pull_policy not in PULL_POLICIES:
        _enum(errs, c.image_pull_policy, PULL_POLICIES, path + ".imagePullPolicy")
    if c.HasField("resources"):
        resources.resources(errs, c.resources, path + ".resources")
    if c.HasField("security_context"):
        securitycontext.security_context(errs, c.security_context, path + ".securityContext")


def _ports(errs: Errors, ports: Sequence[struct_pb2.Struct], path: str) -> None:
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = idx(path, i)
        f = port.fields
        name = f["name"].string_value if "name" in f else ""
        if name:
            msgs = _port_name(name)
            errs.extend(invalid(p + ".name", name, m) for m in msgs)
            if not msgs and name in names:
                errs.append(duplicate(p + ".name", name))
            names.add(name)
        number = int(f["containerPort"].number_value) if "containerPort" in f else 0
        if not number:
            errs.append(required(p + ".containerPort"))
        elif not 1 <= number <= 65535:
            errs.append(invalid(p + ".containerPort", number, PORT_RANGE))
        protocol = f["protocol"].string_value if "protocol" in f else ""
        if protocol not in ("TCP", "UDP", "SCTP"):
            _enum(errs, protocol, ["SCTP", "TCP", "UDP"], p + ".protocol")


@lru_cache(maxsize=256)
def _port_name(name: str) -> tuple[str, ...]:
    msgs = []
    if len(name) > 15:
        msgs.append(field.max_len_error(15))
    if not all(ch.islower() or ch.isdigit() or ch == "-" for ch in name) or not name.isascii():
        msgs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not any("a" <= ch <= "z" for ch in name):
        msgs.append("must contain at least one letter (a-z)")
    if "--" in name:
        msgs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        msgs.append("must not begin or end with a hyphen")
    return tuple(msgs)


def _volumes(errs: Errors, volumes: Sequence[struct_pb2.Struct], path: str) -> set[str]:
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        p = idx(path, i) + ".name"
        name = vol.fields["name"].string_value if "name" in vol.fields else ""
        if not name:
            errs.append(required(p))
            continue
        msgs = field.dns1123_label(name)
        errs.extend(invalid(p, name, m) for m in msgs)
        if name in names:
            errs.append(duplicate(p, name))
        elif not msgs:
            names.add(name)
    return names


def _mount(errs: Errors, mount: struct_pb2.Struct, volumes: set[str], path: str) -> None:
    f = mount.fields
    name = f["name"].string_value if "name" in f else ""
    if not name:
        errs.append(required(path + ".name"))
    if name not in volumes:
        errs.append(not_found(path + ".name", name))
    if "mountPath" not in f or not f["mountPath"].string_value:
        errs.append(required(path + ".mountPath"))


# ---------------------------------------------------------------------------------------------
# Environment


def env(errs: Errors, variables: Sequence[core_pb2.EnvVar], path: str) -> None:
    for i, ev in enumerate(variables):
        p = idx(path, i)
        if not ev.name:
            errs.append(required(p + ".name"))
        else:
            errs.extend(invalid(p + ".name", ev.name, m) for m in field.env_var_name(ev.name))
        if ev.HasField("value_from"):
            _env_value_from(errs, ev, p + ".valueFrom")


def env_from(errs: Errors, entries: Sequence[struct_pb2.Struct], path: str) -> None:
    """ValidateEnvFrom: one of configMapRef and secretRef, a valid object name, a valid prefix."""
    for i, entry in enumerate(entries):
        p = idx(path, i)
        ef = configrefs.env_from(entry)
        if ef.prefix:
            errs.extend(invalid(p + ".prefix", ef.prefix, m) for m in field.env_var_name(ef.prefix))
        if ef.sources:
            ref_path = f"{p}.{'configMapRef' if ef.kind == configrefs.CONFIGMAP else 'secretRef'}"
            if not ef.name:
                errs.append(required(ref_path + ".name"))
            else:
                errs.extend(invalid(ref_path + ".name", ef.name, m)
                            for m in field.name_is_dns_subdomain(ef.name, True))
        if ef.sources == 0:
            errs.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif ef.sources > 1:
            errs.append(invalid(path, "", "may not have more than one field specified at a time"))


def _env_value_from(errs: Errors, ev: core_pb2.EnvVar, path: str) -> None:
    src = ev.value_from
    sources = 0
    if src.HasField("field_ref"):
        sources += 1
        object_field_selector(errs, src.field_ref, path + ".fieldRef")
    if src.HasField("resource_field_ref"):
        sources += 1
        ref = src.resource_field_ref
        if not ref.resource:
            errs.append(required(path + ".resourceFieldRef.resource"))
        elif ref.resource not in RESOURCE_FIELD_PATHS and not ref.resource.startswith(
                ("requests.hugepages-", "limits.hugepages-")):
            errs.append(not_supported(path + ".resourceFieldRef.resource", ref.resource, RESOURCE_FIELD_PATHS))
    sources += src.HasField("config_map_key_ref") + src.HasField("secret_key_ref")
    kref = configrefs.key_ref(src)
    if kref is not None:
        # validateConfigMapKeySelector / validateSecretKeySelector
        ref_path = f"{path}.{'configMapKeyRef' if kref.kind == configrefs.CONFIGMAP else 'secretKeyRef'}"
        errs.extend(invalid(ref_path + ".name", kref.name, m) for m in field.name_is_dns_subdomain(kref.name, False))
        if not kref.key:
            errs.append(required(ref_path + ".key"))
        else:
            errs.extend(invalid(ref_path + ".key", kref.key, m) for m in field.config_key(kref.key))
    if sources == 0:
        errs.append(invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` "
                                      "or `secretKeyRef`"))
    elif ev.value:
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    elif sources > 1:
        errs.append(invalid(path, "", "may not have more than one field specified at a time"))


def object_field_selector(errs: Errors, ref: core_pb2.ObjectFieldSelector, path: str) -> None:
    """The downward API paths an env var may read (the agent resolves exactly these)."""
    if not ref.api_version:
        errs.append(required(path + ".apiVersion"))
        return
    if not ref.field_path:
        errs.append(required(path + ".fieldPath"))
        return
    fp = ref.field_path
    if ref.api_version != "v1":
        errs.append(invalid(path + ".fieldPath", fp, f"error converting fieldPath: unsupported pod version: "
                                                     f"{ref.api_version}"))
        return
    base, subscript = _split_subscript(fp)
    if subscript is not None:
        if base == "metadata.annotations":
            field.qualified_name_field(errs, subscript.lower(), path)
        elif base == "metadata.labels":
            field.qualified_name_field(errs, subscript, path)
        else:
            errs.append(invalid(path + ".fieldPath", fp,
                                f"error converting fieldPath: field label does not support subscript: {fp}"))
        return
    if fp == "spec.host":
        fp = "spec.nodeName"
    if fp not in _CONVERTIBLE_FIELD_PATHS:
        errs.append(invalid(path + ".fieldPath", fp, f"error converting fieldPath: field label not supported: {fp}"))
    elif fp not in ENV_FIELD_PATHS:
        errs.append(not_supported(path + ".fieldPath", fp, ENV_FIELD_PATHS))


def _split_subscript(fp: str) -> tuple[str, str | None]:
    """`metadata.labels['k']` -> (`metadata.labels`, `k`); no subscript -> (fp, None)."""
    if not fp.endswith("']"):
        return fp, None
    base, sep, sub = fp[:-2].partition("['")
    if not sep or not base:
        return fp, None
    return base, sub


# ---------------------------------------------------------------------------------------------
# Probes


def _probes(errs: Errors, c: core_pb2.Container, path: str) -> None:
    if c.HasField("liveness_probe"):
        _probe(errs, c.liveness_probe, path + ".livenessProbe", success_one=True)
    if c.HasField("readiness_probe"):
        _probe(errs, c.readiness_probe, path + ".readinessProbe", success_one=False)
        if c.readiness_probe.HasField("termination_grace_period_seconds"):
            errs.append(invalid(path + ".readinessProbe.terminationGracePeriodSeconds",
                                c.readiness_probe.termination_grace_period_seconds,
                                "must not be set for readinessProbes"))
    if c.HasField("startup_probe"):
        _probe(errs, c.startup_probe, path + ".startupProbe", success_one=True)


def _lifecycle(errs: Errors, c: core_pb2.Container, path: str, spec: core_pb2.PodSpec) -> None:
    grace = spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds") else None
    hooks, problems = lifecycle.parse(c, path, grace)
    errs.extend(problems)
    for name, handler in hooks.items():
        action = handler.action
        hp = f"{path}.lifecycle.{name}"
        if action is not None and action.HasField("http_get"):
            _port(errs, action.http_get.port, hp + ".httpGet.port")
            if action.http_get.scheme not in ("HTTP", "HTTPS"):
                errs.append(not_supported(hp + ".httpGet.scheme", action.http_get.scheme, ["HTTP", "HTTPS"]))
        elif action is not None and action.HasField("tcp_socket"):
            _port(errs, action.tcp_socket.port, hp + ".tcpSocket.port")


def _probe(errs: Errors, probe: core_pb2.Probe, path: str, success_one: bool) -> None:
    handlers = 0
    for name, json_name in (("exec", "exec"), ("http_get", "httpGet"), ("tcp_socket", "tcpSocket"),
                            ("grpc", "grpc")):
        if not probe.HasField(name):
            continue
        hp = f"{path}.{json_name}"
        if handlers:
            errs.append(forbidden(hp, "may not specify more than 1 handler type"))
            continue
        handlers += 1
        if name == "exec" and not probe.exec.command:
            errs.append(required(hp + ".command"))
        elif name == "http_get":
            get = probe.http_get
            if not get.path:
                errs.append(required(hp + ".path"))
            _port(errs, get.port, hp + ".port")
            if get.scheme not in ("HTTP", "HTTPS"):
                errs.append(not_supported(hp + ".scheme", get.scheme, ["HTTP", "HTTPS"]))
        elif name == "tcp_socket":
            _port(errs, probe.tcp_socket.port, hp + ".port")
        elif name == "grpc" and not 1 <= probe.grpc.port <= 65535:
            errs.append(invalid(hp + ".port", probe.grpc.port, PORT_RANGE))
    if not handlers:
        errs.append(required(path, "must specify a handler type"))
    for value, name in ((probe.initial_delay_seconds, "initialDelaySeconds"), (probe.timeout_seconds, "timeoutSeconds"),
                        (probe.period_seconds, "periodSeconds"), (probe.success_threshold, "successThreshold"),
                        (probe.failure_threshold, "failureThreshold")):
        field.nonnegative(errs, value, f"{path}.{name}")
    if probe.HasField("termination_grace_period_seconds") and probe.termination_grace_period_seconds <= 0:
        errs.append(invalid(path + ".terminationGracePeriodSeconds", probe.termination_grace_period_seconds,
                            "must be greater than 0"))
    if success_one and probe.success_threshold != 1:
        errs.append(invalid(path + ".successThreshold", probe.success_threshold, "must be 1"))


def _port(errs: Errors, port: struct_pb2.Value, path: str) -> None:
    value = intstr.get(port)
    if isinstance(value, str):
        errs.extend(invalid(path, value, m) for m in _port_name(value))
    elif not 1 <= (value or 0) <= 65535:
        errs.append(invalid(path, value or 0, PORT_RANGE))
