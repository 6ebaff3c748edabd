"""Pod volumes with a real control plane and agent (as root: they are bind mounts in each
container's private mount namespace): a Job reads a ConfigMap's files (binaryData too), a
Secret's key at its own path and mode, its labels through the downward API, a file an init
container left in an emptyDir, and a read-only hostPath that it cannot write, all under a
read-only root; a volume of a missing ConfigMap keeps the container waiting until it exists; a
volume type the node cannot mount is refused with the reason. The mount points made on the host
go once the pods are done."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .harness import Cluster, condition, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="volumes are mounted in a private mount namespace: "
                                "the agent needs root (CAP_SYS_ADMIN)")

MAIN = """
cat /mnt/app/greeting; echo
od -An -tx1 /mnt/app/blob | tr -d ' \\n'; echo
stat -L -c %a /mnt/secret/db/pw; cat /mnt/secret/db/pw; echo
cat /mnt/info/labels; echo
cat /mnt/info/note; echo
cat /mnt/scratch/from-init
cat /mnt/host/in.txt
touch /mnt/host/x 2>/dev/null && echo host-writable || echo host-read-only
touch /mnt/app/x 2>/dev/null && echo config-writable || echo config-read-only
touch /mnt/x 2>/dev/null && echo root-writable || echo root-read-only
echo out > /mnt/scratch/out && echo scratch-writable
"""


def _job(root: Path, host_dir: Path) -> dict[str, Any]:
    def mount(name: str, path: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "mountPath": f"{root}/{path}", **extra}

    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "volumes"},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app": "vol"},
                                                              "annotations": {"note": 'say "hi"'}},
                                                 "spec": {
            "restartPolicy": "Never",
            # Its working dir is below the mount path: made in the volume, as runc makes it.
            "initContainers": [{"name": "init", "image": "busybox", "workingDir": f"{root}/scratch/work",
                                "command": ["sh", "-c", "echo from-init > ../from-init"],
                "volumeMounts": [mount("scratch", "scratch")]}],
            "containers": [{"name": "main", "image": "busybox",
                            "command": ["sh", "-c", MAIN.replace("/mnt", str(root))],
                            "securityContext": {"readOnlyRootFilesystem": True},
                            "volumeMounts": [mount("app", "app"), mount("db", "secret/db"), mount("info", "info"),
                                             mount("scratch", "scratch"), mount("host", "host", readOnly=True)]}],
            "volumes": [
                {"name": "app", "configMap": {"name": "app-config"}},
                {"name": "db", "secret": {"secretName": "db",
                                          "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "note", "fieldRef": {"fieldPath": "metadata.annotations['note']"}}]}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": str(host_dir), "type": "Directory"}},
            ]}}}}


def _finished(c: Cluster, job: str) -> dict[str, Any] | None:
    got = c.get("job", job)
    return got if condition(got, "Complete") or condition(got, "Failed") else None


def _waiting(c: Cluster, selector: str) -> dict[str, Any] | None:
    pods = c.items("pods", "-l", selector)
    statuses = (pods[0].get("status", {}).get("containerStatuses") or [{}]) if pods else [{}]
    waiting = statuses[0].get("state", {}).get("waiting") or {}
    return dict(waiting) if waiting.get("reason") == "CreateContainerConfigError" else None


def test_job_reads_its_volumes(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory([])
    c.start_controlplane()
    c.start_agent("node-a", ["--log-retention", "4s"])  # a gone pod's files go within seconds
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from-host\n")
    root = tmp_path / "mnt"  # does not exist: the agent makes the mount points, and removes them after
    c.apply(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
                        "data": {"greeting": "hello"}, "binaryData": {"blob": "3q2+7w=="}}))
    c.ketch("create", "secret", "generic", "db", "--from-literal", "password=s3cret")
    result = c.apply(json.dumps(_job(root, host_dir)))
    assert "Warning" not in result.stderr

    job = wait_until(lambda: _finished(c, "volumes"), 90, "the Job to finish")
    pod = c.items("pods", "-l", "job-name=volumes")[0]
    out = c.ketch("logs", pod["metadata"]["name"], "-c", "main").stdout
    assert condition(job, "Complete"), out
    labels = "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(pod["metadata"]["labels"].items()))
    assert out.splitlines() == [
        "hello", "deadbeef", "400", "s3cret", *labels.splitlines(), 'say "hi"', "from-init", "from-host",
        "host-read-only", "config-read-only", "root-read-only", "scratch-writable"]
    assert 'app="vol"' in labels
    assert not (host_dir / "x").exists()
    wait_until(lambda: not root.exists(), 30, "the mount points made on the host to go")

    # The pod's volumes go with it.
    pods_root = c.dir / f"{c.agent_prefix}node-a" / "pods"
    assert any(p.name.endswith(".volumes") for p in pods_root.iterdir())
    c.ketch("delete", "pod", "-l", "job-name=volumes")
    wait_until(lambda: not any(p.name.endswith(".volumes") for p in pods_root.iterdir()), 60, "the volumes to go")


def test_missing_configmap_waits_and_unsupported_volume_is_refused(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory([])
    c.start_controlplane()
    c.start_agent("node-a")
    target = tmp_path / "cfg"
    c.apply(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late", "labels": {"t": "late"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox", "command": ["cat", f"{target}/k"],
            "volumeMounts": [{"name": "cfg", "mountPath": str(target)}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "late"}}]}}))
    waiting = wait_until(lambda: _waiting(c, "t=late"), 60, "the pod to wait for its ConfigMap")
    assert waiting["message"] == 'MountVolume.SetUp failed for volume "cfg" : configmap "late" not found'
    events = c.ketch("get", "events", "-o", "json").stdout
    assert "FailedMount" in events
    c.ketch("create", "configmap", "late", "--from-literal", "k=v")
    wait_until(lambda: c.get("pod", "late")["status"].get("phase") == "Succeeded", 60, "the pod to run")
    assert c.ketch("logs", "late").stdout == "v"

    result = c.apply(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pvc", "labels": {"t": "pvc"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"],
                                                           "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}}))
    assert "persistentVolumeClaim volumes are not supported" in result.stderr
    waiting = wait_until(lambda: _waiting(c, "t=pvc"), 60, "the pod to be refused")
    assert waiting["message"] == ('volume "data": persistentVolumeClaim volumes are not supported on this node '
                                  "(a host-process runtime mounts only emptyDir, configMap, secret, downwardAPI, "
                                  "hostPath, projected)")
