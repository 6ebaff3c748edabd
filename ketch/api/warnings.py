"""Warnings for fields that are stored but mean nothing to a host process.

Kubernetes manifests apply unchanged (docs/design.md): ports, volumes, image pull settings, service
accounts, DNS settings, pod affinity and the like are accepted and stored, and the API server
returns one warning per field that the user set, which `ketch apply` prints as kubectl prints
server warnings:

    spec.template.spec.containers[0].ports: ignored: Ketch runs host processes (no container networking)

Runs after defaulting, so defaulted values (dnsPolicy ClusterFirst, the imagePullPolicy implied by
the image, ...) are not reported; `image` itself is accepted silently. Called on every create and
spec update, so it only looks at fields and never serializes anything.

Volumes the agent mounts (emptyDir, configMap, secret, downwardAPI, hostPath, projected from
configMaps, secrets and the downward API) are not warned about; any other volume type, a
projection of another kind and subPathExpr are: the API stores them as Kubernetes does, and the
agent refuses the pod's containers with the reason (nodeagent/volumes/).

Lifecycle hooks are not warned about: the agent runs postStart and preStop (nodeagent/hooks.py).

Security settings the agent honours (users and groups, runAsNonRoot, capabilities, privileged,
allowPrivilegeEscalation, readOnlyRootFilesystem) are not warned about; those it has no means for
(SELinux, seccomp, AppArmor, sysctls, procMount) are. A capability name no kernel knows is warned
about too: Kubernetes stores it, and the container then cannot start.
"""

from __future__ import annotations

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from ketch.api import capabilities
from ketch.api.defaults.core import image_pull_policy_for
from ketch.v1 import core_pb2

NETWORK = "no container networking"
VOLUMES = "no block devices are attached"
MOUNTED_VOLUMES = ("emptyDir", "configMap", "secret", "downwardAPI", "hostPath", "projected")
MOUNTED_PROJECTIONS = ("configMap", "secret", "downwardAPI")
IMAGES = "no images are pulled"
ACCOUNTS = "no service accounts"
HOST = "processes run in the host's network, DNS and namespaces"
SCHEDULER = "not used by the Ketch scheduler"

# PodSpec fields: (proto name, JSON name, reason). Repeated and map fields count when non-empty,
# messages and optional scalars when set, plain scalars when non-zero.
_POD_FIELDS = (
    ("image_pull_secrets", "imagePullSecrets", IMAGES),
    ("service_account_name", "serviceAccountName", ACCOUNTS),
    ("service_account", "serviceAccount", ACCOUNTS),
    ("automount_service_account_token", "automountServiceAccountToken", ACCOUNTS),
    ("dns_config", "dnsConfig", HOST),
    ("host_network", "hostNetwork", HOST),
    ("host_pid", "hostPID", HOST),
    ("host_ipc", "hostIPC", HOST),
    ("share_process_namespace", "shareProcessNamespace", HOST),
    ("host_aliases", "hostAliases", HOST),
    ("host_users", "hostUsers", HOST),
    ("set_hostname_as_fqdn", "setHostnameAsFQDN", HOST),
    ("topology_spread_constraints", "topologySpreadConstraints", SCHEDULER),
    ("priority_class_name", "priorityClassName", SCHEDULER),
    ("scheduling_gates", "schedulingGates", SCHEDULER),
    ("readiness_gates", "readinessGates", "readiness gates are not evaluated"),
    ("runtime_class_name", "runtimeClassName", "there is no container runtime"),
    ("overhead", "overhead", "there is no container runtime"),
    ("os", "os", "processes run on the host's OS"),
    ("resource_claims", "resourceClaims", "no dynamic resource allocation"),
    ("ephemeral_containers", "ephemeralContainers", "no ephemeral containers"),
)
# Security settings the agent has no means for (the others are honoured or refused: nodeagent/security.py).
SELINUX = ("se_linux_options", "seLinuxOptions", "no SELinux labels are applied")
WINDOWS = ("windows_options", "windowsOptions", "Linux hosts only")
SECCOMP = ("seccomp_profile", "seccompProfile", "no seccomp filter is applied")
APPARMOR = ("app_armor_profile", "appArmorProfile", "no AppArmor profile is applied")
_POD_SECURITY_FIELDS = (
    SELINUX, WINDOWS, SECCOMP, APPARMOR,
    ("sysctls", "sysctls", "processes share the host's kernel settings"),
    ("fs_group_change_policy", "fsGroupChangePolicy", "only the pod's sandbox directory gets the fsGroup"),
)
_CONTAINER_FIELDS = (
    ("ports", "ports", NETWORK),
    ("volume_devices", "volumeDevices", VOLUMES),
    ("resize_policy", "resizePolicy", "resources cannot be resized in place"),
    # stdin and stdinOnce are honoured (a pipe the agent holds, fed by Attach); a tty is not.
    ("tty", "tty", "no terminal is attached"),
)
_CONTAINER_SECURITY_FIELDS = (
    SELINUX, WINDOWS, SECCOMP, APPARMOR, ("proc_mount", "procMount", "processes see the host's /proc"),
)


def _warn(out: list[str], path: str, reason: str) -> None:
    out.append(f"{path}: ignored: Ketch runs host processes ({reason})")


def _checks(message: type[Message], fields: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, str, str, bool], ...]:
    """(proto name, JSON name, reason, has presence) per field, looked up once at import."""
    by_name = message.DESCRIPTOR.fields_by_name
    return tuple((f[0], f[1], f[2], by_name[f[0]].has_presence) for f in fields)


def _set(msg: Message, name: str, has_presence: bool) -> bool:
    return msg.HasField(name) if has_presence else bool(getattr(msg, name))


_POD_CHECKS = _checks(core_pb2.PodSpec, _POD_FIELDS)
_POD_SECURITY_CHECKS = _checks(core_pb2.PodSecurityContext, _POD_SECURITY_FIELDS)
_CONTAINER_CHECKS = _checks(core_pb2.Container, _CONTAINER_FIELDS)
_CONTAINER_SECURITY_CHECKS = _checks(core_pb2.SecurityContext, _CONTAINER_SECURITY_FIELDS)


def ignored_fields(obj: Message) -> list[str]:
    """One warning per ignored field the user set, for Pods and the pod templates of workloads."""
    name = obj.DESCRIPTOR.full_name
    if name == "ketch.v1.Pod":
        return pod_spec_warnings(obj.spec, "spec")  # type: ignore[attr-defined]
    if name in ("ketch.v1.Job", "ketch.v1.DaemonSet"):
        return pod_spec_warnings(obj.spec.template.spec, "spec.template.spec")  # type: ignore[attr-defined]
    if name == "ketch.v1.CronJob":
        return pod_spec_warnings(obj.spec.job_template.spec.template.spec,  # type: ignore[attr-defined]
                                 "spec.jobTemplate.spec.template.spec")
    return []


def pod_spec_warnings(spec: core_pb2.PodSpec, path: str) -> list[str]:
    out: list[str] = []
    for field_name, json_name, reason, presence in _POD_CHECKS:
        if _set(spec, field_name, presence):
            _warn(out, f"{path}.{json_name}", reason)
    if spec.dns_policy and spec.dns_policy != "ClusterFirst":
        _warn(out, path + ".dnsPolicy", HOST)
    if spec.HasField("affinity"):
        for field_name, json_name in (("pod_affinity", "podAffinity"), ("pod_anti_affinity", "podAntiAffinity")):
            if spec.affinity.HasField(field_name):
                _warn(out, f"{path}.affinity.{json_name}", SCHEDULER)
    if spec.HasField("security_context"):
        for field_name, json_name, reason, presence in _POD_SECURITY_CHECKS:
            if _set(spec.security_context, field_name, presence):
                _warn(out, f"{path}.securityContext.{json_name}", reason)
    for i, volume in enumerate(spec.volumes):
        _volume(out, volume, f"{path}.volumes[{i}]")
    for list_name, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            _container(out, c, f"{path}.{list_name}[{i}]")
    return out


def _not_mounted(out: list[str], path: str, what: str) -> None:
    out.append(f"{path}: {what} not supported by the Ketch node agent: the pod's containers will not start")


def _volume(out: list[str], volume: struct_pb2.Struct, path: str) -> None:
    """Volume types (and projections) the agent cannot mount: it refuses the pod, so say so now."""
    for key, value in volume.fields.items():
        if key == "name" or value.WhichOneof("kind") != "struct_value":
            continue
        if key not in MOUNTED_VOLUMES:
            _not_mounted(out, f"{path}.{key}", f"{key} volumes are")
        elif key == "projected":
            sources = value.struct_value.fields.get("sources")
            for j, src in enumerate(sources.list_value.values if sources is not None else ()):
                for kind in src.struct_value.fields:
                    if kind not in MOUNTED_PROJECTIONS:
                        _not_mounted(out, f"{path}.projected.sources[{j}].{kind}", f"{kind} projections are")


def _container(out: list[str], c: core_pb2.Container, path: str) -> None:
    if c.image_pull_policy and c.image_pull_policy != image_pull_policy_for(c.image):
        _warn(out, path + ".imagePullPolicy", IMAGES)
    for field_name, json_name, reason, presence in _CONTAINER_CHECKS:
        if _set(c, field_name, presence):
            _warn(out, f"{path}.{json_name}", reason)
    for i, mount in enumerate(c.volume_mounts):
        if "subPathExpr" in mount.fields:
            _not_mounted(out, f"{path}.volumeMounts[{i}].subPathExpr", "subPathExpr is")
    for field_name, json_name in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe"),
                                  ("startup_probe", "startupProbe")):
        if c.HasField(field_name) and getattr(c, field_name).HasField("grpc"):
            _warn(out, f"{path}.{json_name}.grpc", "gRPC probes are not run; use exec, httpGet or tcpSocket")
    if c.HasField("security_context"):
        for field_name, json_name, reason, presence in _CONTAINER_SECURITY_CHECKS:
            if _set(c.security_context, field_name, presence):
                _warn(out, f"{path}.securityContext.{json_name}", reason)
        if c.security_context.HasField("capabilities"):
            _capabilities(out, c.security_context.capabilities, f"{path}.securityContext.capabilities")


def _capabilities(out: list[str], struct: struct_pb2.Struct, path: str) -> None:
    """Names no kernel knows (the container will not start) and fields Kubernetes' decoder would drop."""
    caps = capabilities.parse(struct)
    for where, problem in caps.problems:
        if problem.startswith("unknown field"):
            out.append(f'unknown field "{path}.{where}"')
    for which, i, name in caps.unknown:
        out.append(f'{path}.{which}[{i}]: unknown capability "{name}": the container will not start')
