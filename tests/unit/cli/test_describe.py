"""describe pages: kubectl's section layout, alignment and the Events table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ketch.api import manifest, timeutil
from ketch.cli import describe

NOW = timeutil.parse("2026-01-01T12:00:00Z")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def ago(s: float) -> str:
    return timeutil.format(NOW - s)


def test_describe_job() -> None:
    job = manifest.from_dict({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "labels": {"job-name": "pi", "a": "b"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"completions": 8, "parallelism": 2, "backoffLimit": 6, "completionMode": "NonIndexed",
                 "suspend": False, "selector": {"matchLabels": {"job-name": "pi"}},
                 "template": {"metadata": {"labels": {"job-name": "pi"}}, "spec": {
                     "containers": [{"name": "pi", "image": "perl", "command": ["perl", "-wle", "print 1"]}],
                     "restartPolicy": "Never"}}},
        "status": {"startTime": ago(100), "completionTime": ago(40), "succeeded": 8,
                   "conditions": [{"type": "Complete", "status": "True"}]}})
    text = describe.describe_job(job, NOW).text()
    assert text.splitlines()[:14] == [
        "Name:             pi",
        "Namespace:        default",
        "Selector:         job-name=pi",
        "Labels:           a=b",
        "                  job-name=pi",
        "Annotations:      <none>",
        "Parallelism:      2",
        "Completions:      8",
        "Completion Mode:  NonIndexed",
        "Suspend:          false",
        "Backoff Limit:    6",
        "Start Time:       Thu, 01 Jan 2026 11:58:20 +0000",
        "Completed At:     Thu, 01 Jan 2026 11:59:20 +0000",
        "Duration:         60s",
    ]
    assert "Pods Statuses:    0 Active (0 Ready) / 8 Succeeded / 0 Failed" in text
    assert "Pod Template:\n  Labels:  job-name=pi\n  Containers:\n   pi:\n    Image:      perl\n" in text
    assert "    Command:\n      perl\n      -wle\n      print 1\n" in text


def event(reason: str, age: float, count: int = 1, etype: str = "Normal") -> Any:
    return manifest.from_dict({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": reason, "namespace": "default"},
        "involvedObject": {"kind": "Job", "name": "pi"}, "reason": reason, "type": etype,
        "message": f"{reason} happened", "source": {"component": "job-controller"},
        "firstTimestamp": ago(age + 60 if count > 1 else age), "lastTimestamp": ago(age), "count": count})


def test_events_table_sorted_by_time() -> None:
    text = describe.events_text([event("Completed", 5), event("SuccessfulCreate", 90, count=3)], NOW)
    assert text == (
        "Events:\n"
        "  Type    Reason            Age                  From            Message\n"
        "  ----    ------            ----                 ----            -------\n"
        "  Normal  SuccessfulCreate  90s (x3 over 2m30s)  job-controller  SuccessfulCreate happened\n"
        "  Normal  Completed         5s                   job-controller  Completed happened\n"
    )
    lines = text.splitlines()
    assert lines[3].split()[1] == "SuccessfulCreate" and lines[4].split()[1] == "Completed"
    assert "(x3 over 2m30s)" in lines[3]
    assert describe.events_text([], NOW) == "Events:  <none>\n"


def test_describe_node_with_pods_and_resources() -> None:
    node = manifest.from_dict({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "creationTimestamp": ago(600)},
        "spec": {"unschedulable": True},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})
    pod = manifest.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default",
                                                        "creationTimestamp": ago(30)},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "command": ["x"], "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}}]},
        "status": {"phase": "Running"}})
    text = describe.describe_node(node, NOW, [pod]).text()
    assert "Unschedulable:      true" in text
    assert "Non-terminated Pods:          (1 in total)" in text
    # The pod table shares its first column with "Non-terminated Pods:", exactly as in kubectl's output.
    assert "  default                     p     500m (25%)    1 (50%)     1Gi (25%)        2Gi (50%)      30s" in text
    assert "  cpu       500m (25%)  1 (50%)" in text


def test_generic_describe_turns_fields_into_titles() -> None:
    lease = manifest.from_dict({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                                "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}})
    text = describe.describe_generic(lease, NOW).text()
    assert "Kind:         Lease" in text
    assert "Spec:\n  Holder Identity:         node-1\n  Lease Duration Seconds:  40\n" in text


def test_describe_role_lists_rules_as_kubectl() -> None:
    role = manifest.from_dict({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "lead"},
        "rules": [{"apiGroups": ["", "batch"], "resources": ["jobs", "pods/log"], "verbs": ["get", "list"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"], "resourceNames": ["a"]},
                  {"nonResourceURLs": ["/version"], "verbs": ["get"]}]})
    assert describe.describe_role(role, NOW).text() == (
        "Name:         lead\n"
        "Labels:       <none>\n"
        "Annotations:  <none>\n"
        "PolicyRule:\n"
        "  Resources       Non-Resource URLs  Resource Names  Verbs\n"
        "  ---------       -----------------  --------------  -----\n"
        "  pods            []                 [a]             [delete]\n"
        "  jobs            []                 []              [get list]\n"
        "  pods/log        []                 []              [get list]\n"
        "  jobs.batch      []                 []              [get list]\n"
        "  pods.batch/log  []                 []              [get list]\n"
        "                  [/version]         []              [get]\n")


def test_describe_binding_shows_role_and_subjects() -> None:
    binding = manifest.from_dict({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "devs", "namespace": "team"}, "roleRef": {"kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "alice"},
                     {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]})
    assert describe.describe_binding(binding, NOW).text() == (
        "Name:         devs\n"
        "Labels:       <none>\n"
        "Annotations:  <none>\n"
        "Role:\n"
        "  Kind:  ClusterRole\n"
        "  Name:  edit\n"
        "Subjects:\n"
        "  Kind            Name   Namespace\n"
        "  ----            ----   ---------\n"
        "  User            alice  \n"
        "  ServiceAccount  ci     build\n")


def test_describe_configmap_shows_values_and_binary_sizes() -> None:
    cm = manifest.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "app", "namespace": "default", "creationTimestamp": ago(60)},
                             "data": {"b": "two\nlines", "a": "1"}, "binaryData": {"blob": "AAEC"}})
    text = describe.describe_configmap(cm, NOW).text()
    assert text == ("Name:         app\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\n"
                    "Data\n====\na:\n----\n1\n\nb:\n----\ntwo\nlines\n\n\n"
                    "BinaryData\n====\nblob: 3 bytes\n\n")


def test_describe_pod_env_from_configmaps_and_secrets() -> None:
    pod = manifest.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "p", "namespace": "default", "creationTimestamp": ago(60)},
                              "spec": {"containers": [{
                                  "name": "main", "command": ["true"],
                                  "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "APP_"},
                                              {"secretRef": {"name": "db", "optional": True}}],
                                  "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                                          {"name": "MODE", "valueFrom": {"configMapKeyRef": {
                                              "name": "cfg", "key": "mode", "optional": True}}}]}]}})
    text = describe.describe_pod(pod, NOW).text()
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("Environment Variables from:")
    assert [" ".join(line.split()) for line in lines[start:start + 6]] == [
        "Environment Variables from:",
        "cfg ConfigMap with prefix 'APP_' Optional: false",
        "db Secret Optional: true",
        "Environment:",
        "PW: <set to the key 'pw' in secret 'db'> Optional: false",
        "MODE: <set to the key 'mode' of config map 'cfg'> Optional: true",
    ]
