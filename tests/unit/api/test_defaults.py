"""Kubernetes 1.31 defaults, field by field, as `ketch get -o json` shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ketch.api import manifest
from ketch.api.defaults.core import image_pull_policy_for

from .objects import CRONJOB, DAEMONSET, JOB, LEASE, NAMESPACE, NODE, POD, apply_defaults, container, merge, pod_spec

MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    changes: dict[str, Any]
    path: str
    want: Any


def defaulted(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    obj = manifest.from_dict(merge(doc, changes))
    apply_defaults(obj)
    return manifest.to_dict(obj)


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict):
            if part not in data:
                return "<unset>"
            data = data[part]
    return data


JS = "spec"
PS = "spec.template.spec"
C0 = PS + ".containers.0"
PROBE = {"livenessProbe": {"httpGet": {"port": 8080}}}
CASES = [
    # Job
    Case("parallelism and completions both 1 when both unset", JOB, {}, JS, {"parallelism": 1, "completions": 1}),
    Case("completions alone gives parallelism 1", JOB, {"spec": {"completions": 8}}, JS + ".parallelism", 1),
    Case("parallelism alone leaves completions unset (work queue)", JOB, {"spec": {"parallelism": 3}},
         JS + ".completions", "<unset>"),
    Case("backoffLimit 6", JOB, {}, JS + ".backoffLimit", 6),
    Case("backoffLimit MaxInt32 with backoffLimitPerIndex", JOB,
         {"spec": {"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1}},
         JS + ".backoffLimit", MAX_INT32),
    Case("an explicit backoffLimit stays", JOB, {"spec": {"backoffLimit": 0}}, JS + ".backoffLimit", 0),
    Case("completionMode NonIndexed", JOB, {}, JS + ".completionMode", "NonIndexed"),
    Case("suspend false", JOB, {}, JS + ".suspend", False),
    Case("manualSelector false", JOB, {}, JS + ".manualSelector", False),
    Case("an explicit manualSelector stays", JOB, {"spec": {"manualSelector": True}}, JS + ".manualSelector", True),
    Case("a CronJob's job template keeps manualSelector unset", CRONJOB, {},
         "spec.jobTemplate.spec.manualSelector", "<unset>"),
    Case("podReplacementPolicy TerminatingOrFailed", JOB, {}, JS + ".podReplacementPolicy", "TerminatingOrFailed"),
    Case("podReplacementPolicy Failed with a pod failure policy", JOB,
         {"spec": {"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "X"}]}]}}},
         JS + ".podReplacementPolicy", "Failed"),
    Case("onPodConditions status True", JOB,
         {"spec": {"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "X"}]}]}}},
         JS + ".podFailurePolicy.rules.0.onPodConditions.0.status", "True"),
    Case("job labels from template labels", JOB, {"spec": {"template": {"metadata": {"labels": {"app": "pi"}}}}},
         "metadata.labels", {"app": "pi"}),
    Case("job labels of its own stay", JOB, {"metadata": {"labels": {"team": "a"}},
                                             "spec": {"template": {"metadata": {"labels": {"app": "pi"}}}}},
         "metadata.labels", {"team": "a"}),
    # PodSpec, through the Job template
    Case("restartPolicy Always", JOB, {"spec": {"template": {"spec": {"restartPolicy": None}}}},
         PS + ".restartPolicy", "Always"),
    Case("terminationGracePeriodSeconds 30", JOB, {}, PS + ".terminationGracePeriodSeconds", 30),
    Case("dnsPolicy ClusterFirst", JOB, {}, PS + ".dnsPolicy", "ClusterFirst"),
    Case("schedulerName default-scheduler", JOB, {}, PS + ".schedulerName", "default-scheduler"),
    Case("securityContext {}", JOB, {}, PS + ".securityContext", {}),
    Case("terminationMessagePath", JOB, {}, C0 + ".terminationMessagePath", "/dev/termination-log"),
    Case("terminationMessagePolicy File", JOB, {}, C0 + ".terminationMessagePolicy", "File"),
    Case("imagePullPolicy Always without a tag", JOB, {"spec": {"template": {"spec": pod_spec(
        containers=[container(image="perl")])}}}, C0 + ".imagePullPolicy", "Always"),
    Case("imagePullPolicy IfNotPresent with a tag", JOB, {"spec": {"template": {"spec": pod_spec(
        containers=[container(image="perl:5.40")])}}}, C0 + ".imagePullPolicy", "IfNotPresent"),
    Case("probe thresholds and periods", JOB, {"spec": {"template": {"spec": pod_spec(
        containers=[container(**PROBE)])}}}, C0 + ".livenessProbe",
         {"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
          "successThreshold": 1, "failureThreshold": 3}),
    Case("explicit probe settings stay", JOB, {"spec": {"template": {"spec": pod_spec(containers=[container(
        readinessProbe={"exec": {"command": ["x"]}, "periodSeconds": 2, "failureThreshold": 1})])}}},
         C0 + ".readinessProbe", {"exec": {"command": ["x"]}, "timeoutSeconds": 1, "periodSeconds": 2,
                                  "successThreshold": 1, "failureThreshold": 1}),
    Case("env fieldRef apiVersion v1", JOB, {"spec": {"template": {"spec": pod_spec(containers=[container(
        env=[{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])])}}},
         C0 + ".env.0.valueFrom.fieldRef.apiVersion", "v1"),
    Case("container port protocol TCP", JOB, {"spec": {"template": {"spec": pod_spec(containers=[container(
        ports=[{"containerPort": 80}])])}}}, C0 + ".ports.0.protocol", "TCP"),
    Case("templates do not get requests from limits", JOB, {"spec": {"template": {"spec": pod_spec(containers=[
        container(resources={"limits": {"cpu": "1"}})])}}}, C0 + ".resources.requests", "<unset>"),
    # Pod only
    Case("pod requests default to limits, key by key", POD, {"spec": {"containers": [container(resources={
        "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})]}},
         "spec.containers.0.resources.requests", {"cpu": "500m", "memory": "1Gi"}),
    Case("pod enableServiceLinks true", POD, {}, "spec.enableServiceLinks", True),
    Case("pod restartPolicy Always", POD, {}, "spec.restartPolicy", "Always"),
    # CronJob
    Case("concurrencyPolicy Allow", CRONJOB, {}, "spec.concurrencyPolicy", "Allow"),
    Case("cronjob suspend false", CRONJOB, {}, "spec.suspend", False),
    Case("successfulJobsHistoryLimit 3", CRONJOB, {}, "spec.successfulJobsHistoryLimit", 3),
    Case("failedJobsHistoryLimit 1", CRONJOB, {}, "spec.failedJobsHistoryLimit", 1),
    Case("the job template's pod template is defaulted", CRONJOB, {},
         "spec.jobTemplate.spec.template.spec.terminationGracePeriodSeconds", 30),
    Case("the job template's job fields are left to the Job's own creation", CRONJOB, {},
         "spec.jobTemplate.spec.backoffLimit", "<unset>"),
    # DaemonSet
    Case("updateStrategy RollingUpdate 1 unavailable, 0 surge", DAEMONSET, {}, "spec.updateStrategy",
         {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    Case("a percentage maxUnavailable stays", DAEMONSET, {"spec": {"updateStrategy": {"rollingUpdate": {
        "maxUnavailable": "25%"}}}}, "spec.updateStrategy.rollingUpdate.maxUnavailable", "25%"),
    Case("OnDelete gets no rollingUpdate", DAEMONSET, {"spec": {"updateStrategy": {"type": "OnDelete"}}},
         "spec.updateStrategy", {"type": "OnDelete"}),
    Case("revisionHistoryLimit 10", DAEMONSET, {}, "spec.revisionHistoryLimit", 10),
    Case("minReadySeconds 0 (omitted)", DAEMONSET, {}, "spec.minReadySeconds", "<unset>"),
    Case("daemonset template restartPolicy Always", DAEMONSET, {}, "spec.template.spec.restartPolicy", "Always"),
    # Node, Namespace, Lease
    Case("allocatable from capacity", NODE, {"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}},
         "status.allocatable", {"cpu": "4", "memory": "8Gi"}),
    Case("namespace name label", NAMESPACE, {}, "metadata.labels", {"kubernetes.io/metadata.name": "team-a"}),
    Case("namespace phase Active", NAMESPACE, {}, "status.phase", "Active"),
    Case("a lease is left alone", LEASE, {}, "spec", {"holderIdentity": "node-a", "leaseDurationSeconds": 40}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_defaults(case: Case) -> None:
    got = lookup(defaulted(case.doc, case.changes), case.path)
    if isinstance(case.want, dict) and isinstance(got, dict) and case.path in (JS,):
        got = {k: got.get(k, "<unset>") for k in case.want}
    assert got == case.want


@pytest.mark.parametrize("doc", [POD, JOB, CRONJOB, DAEMONSET, NODE, NAMESPACE], ids=lambda d: d["kind"])
def test_defaults_are_idempotent(doc: dict[str, Any]) -> None:
    once = manifest.from_dict(doc)
    apply_defaults(once)
    twice = type(once)()
    twice.CopyFrom(once)
    apply_defaults(twice)
    assert twice == once


@pytest.mark.parametrize(("image", "policy"), [
    ("perl", "Always"), ("perl:latest", "Always"), ("perl:5.40", "IfNotPresent"),
    ("registry.local:5000/tools/perl", "Always"), ("registry.local:5000/perl:1", "IfNotPresent"),
    ("perl@sha256:" + "a" * 64, "IfNotPresent"), ("", "IfNotPresent"), ("Perl", "IfNotPresent"),
])
def test_image_pull_policy_follows_the_tag(image: str, policy: str) -> None:
    assert image_pull_policy_for(image) == policy
