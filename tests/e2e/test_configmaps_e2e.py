"""A Job whose pod takes its environment from a ConfigMap and a Secret, with a real control plane
and agent: the container waits in CreateContainerConfigError (the kubelet's message) while the
ConfigMap is missing, starts once it exists, and prints what it was given."""

from __future__ import annotations

import json
from typing import Any

from .harness import condition, wait_until

JOB = {
    "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "show-env"},
    "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
        "name": "main", "image": "busybox",
        "command": ["sh", "-c", 'echo "mode=$APP_mode level=$LOG_LEVEL password=$DB_PASSWORD opt=${OPT-unset}"'],
        "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "APP_"}],
        "env": [
            {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "level"}}},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ]}]}}},
}


def _waiting(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return dict(statuses[0].get("state", {}).get("waiting") or {})


def test_job_env_from_configmap_and_secret(cluster_factory: Any) -> None:
    c = cluster_factory([])
    c.start_controlplane()
    c.start_agent("node-a")
    c.ketch("create", "secret", "generic", "db", "--from-literal", "password=s3cret")
    c.apply(json.dumps(JOB))

    def config_error() -> dict[str, Any] | None:
        pods = c.items("pods", "-l", "job-name=show-env")
        waiting = _waiting(pods[0]) if pods else {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = wait_until(config_error, 60, "the pod to wait in CreateContainerConfigError")
    assert waiting["message"] == 'configmap "app-config" not found'

    c.ketch("create", "configmap", "app-config", "--from-literal", "mode=batch", "--from-literal", "level=debug")
    job = wait_until(lambda: (lambda j: j if condition(j, "Complete") or condition(j, "Failed") else None)(
        c.get("job", "show-env")), 90, "the Job to finish")
    assert condition(job, "Complete"), job["status"]
    pod = c.items("pods", "-l", "job-name=show-env")[0]["metadata"]["name"]
    assert c.ketch("logs", pod).stdout == "mode=batch level=debug password=s3cret opt=unset\n"
