"""Warnings for stored-but-ignored pod fields: named when the user set them, never for defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ketch.api.warnings import ignored_fields

from .objects import CRONJOB, DAEMONSET, JOB, LEASE, POD, container, pod_spec, server_view

HOST = "ignored: Ketch runs host processes"


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    changes: dict[str, Any]
    warnings: tuple[str, ...] = ()


def tmpl(**spec: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": pod_spec(restartPolicy="Never", **spec)}}}


CASES = [
    Case("a plain job warns about nothing (not even its image)", JOB,
         tmpl(containers=[container(image="perl")])),
    Case("defaults are not reported", POD, {"spec": {"dnsPolicy": "ClusterFirst", "containers": [
        container(image="perl:5", imagePullPolicy="IfNotPresent")]}}),
    Case("stdin and stdinOnce are honoured, a tty is not", POD,
         {"spec": {"containers": [container(stdin=True, stdinOnce=True, tty=True)]}},
         (f"spec.containers[0].tty: {HOST} (no terminal is attached)",)),
    Case("ports", JOB, tmpl(containers=[container(ports=[{"containerPort": 80}])]),
         (f"spec.template.spec.containers[0].ports: {HOST} (no container networking)",)),
    Case("an imagePullPolicy other than the image's default", POD,
         {"spec": {"containers": [container(image="perl:5", imagePullPolicy="Always")],
                   "imagePullSecrets": [{"name": "regcred"}]}},
         (f"spec.imagePullSecrets: {HOST} (no images are pulled)",
          f"spec.containers[0].imagePullPolicy: {HOST} (no images are pulled)")),
    Case("volumes the agent mounts are not warned about", JOB, tmpl(volumes=[
        {"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}},
        {"name": "s", "secret": {"secretName": "s"}}, {"name": "h", "hostPath": {"path": "/tmp"}},
        {"name": "d", "downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "p", "projected": {"sources": [{"configMap": {"name": "c"}}]}}], containers=[
        container(volumeMounts=[{"name": "data", "mountPath": "/data", "subPath": "x"}])])),
    Case("volume types, projections and subPathExpr the agent cannot give", JOB, tmpl(volumes=[
        {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
        {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}], containers=[
        container(volumeMounts=[{"name": "data", "mountPath": "/data", "subPathExpr": "$(X)"}],
                  volumeDevices=[{"name": "data", "devicePath": "/dev/x"}])]),
         ("spec.template.spec.volumes[0].persistentVolumeClaim: persistentVolumeClaim volumes are not supported by "
          "the Ketch node agent: the pod's containers will not start",
          "spec.template.spec.volumes[1].projected.sources[0].serviceAccountToken: serviceAccountToken projections "
          "are not supported by the Ketch node agent: the pod's containers will not start",
          f"spec.template.spec.containers[0].volumeDevices: {HOST} (no block devices are attached)",
          "spec.template.spec.containers[0].volumeMounts[0].subPathExpr: subPathExpr is not supported by the Ketch "
          "node agent: the pod's containers will not start")),
    Case("service account, DNS and host network", DAEMONSET, {"spec": {"template": {"spec": pod_spec(
        serviceAccountName="agent", dnsPolicy="ClusterFirstWithHostNet", hostNetwork=True)}}},
         (f"spec.template.spec.serviceAccountName: {HOST} (no service accounts)",
          f"spec.template.spec.hostNetwork: {HOST} (processes run in the host's network, DNS and namespaces)",
          f"spec.template.spec.dnsPolicy: {HOST} (processes run in the host's network, DNS and namespaces)")),
    # The agent resolves them when it starts the container: nothing to warn about.
    Case("config maps and secrets in env", POD, {"spec": {"containers": [container(
        envFrom=[{"configMapRef": {"name": "cfg"}}],
        env=[{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])]}},
         ()),
    Case("pod anti-affinity but not node affinity", POD, {"spec": {"affinity": {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []},
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}},
         (f"spec.affinity.podAntiAffinity: {HOST} (not used by the Ketch scheduler)",)),
    Case("readiness gates and runtime class, but not lifecycle hooks (the agent runs them)", POD, {"spec": {
        "readinessGates": [{"conditionType": "x"}], "runtimeClassName": "gvisor",
        "containers": [container(lifecycle={"postStart": {"httpGet": {"port": 8080}},
                                            "preStop": {"exec": {"command": ["x"]}}})]}},
         (f"spec.readinessGates: {HOST} (readiness gates are not evaluated)",
          f"spec.runtimeClassName: {HOST} (there is no container runtime)")),
    Case("security settings the agent honours are not warned about", POD, {"spec": {
        "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000],
                            "supplementalGroupsPolicy": "Strict", "runAsNonRoot": True},
        "containers": [container(securityContext={
            "runAsGroup": 1, "privileged": False, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "cap_chown"]}})]}}),
    Case("security settings the agent has no means for", POD, {"spec": {
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroupChangePolicy": "Always",
                            "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]},
        "containers": [container(securityContext={"seLinuxOptions": {"level": "s0"}, "procMount": "Default"})]}},
         (f"spec.securityContext.seccompProfile: {HOST} (no seccomp filter is applied)",
          f"spec.securityContext.sysctls: {HOST} (processes share the host's kernel settings)",
          f"spec.securityContext.fsGroupChangePolicy: {HOST} (only the pod's sandbox directory gets the fsGroup)",
          f"spec.containers[0].securityContext.seLinuxOptions: {HOST} (no SELinux labels are applied)",
          f"spec.containers[0].securityContext.procMount: {HOST} (processes see the host's /proc)")),
    Case("unknown capability names and capabilities fields", JOB, tmpl(containers=[container(securityContext={
        "capabilities": {"add": ["NET_ADMIN", "FLY"], "drop": ["all", "CAP_NOPE"], "keep": ["CHOWN"]}})]),
         ('unknown field "spec.template.spec.containers[0].securityContext.capabilities.keep"',
          'spec.template.spec.containers[0].securityContext.capabilities.add[1]: unknown capability "FLY": '
          "the container will not start",
          'spec.template.spec.containers[0].securityContext.capabilities.drop[1]: unknown capability "CAP_NOPE": '
          "the container will not start")),
    Case("gRPC probes", POD, {"spec": {"containers": [container(livenessProbe={"grpc": {"port": 9000}})]}},
         (f"spec.containers[0].livenessProbe.grpc: {HOST} (gRPC probes are not run; use exec, httpGet or "
          "tcpSocket)",)),
    Case("a cronjob's pod template", CRONJOB, {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec(
        restartPolicy="OnFailure", initContainers=[container("init", ports=[{"containerPort": 1}])])}}}}},
         (f"spec.jobTemplate.spec.template.spec.initContainers[0].ports: {HOST} (no container networking)",)),
    Case("kinds without pods have no warnings", LEASE, {}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ignored_fields(case: Case) -> None:
    assert ignored_fields(server_view(case.doc, case.changes)) == list(case.warnings)
