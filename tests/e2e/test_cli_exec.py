"""`ketch exec` end to end: a real control plane and agent, the CLI as a process. What a user
relies on: the command runs in the running container's environment (its env, working dir and
user), its stdout and stderr come back apart, and the CLI exits with its exit code; a completed
pod is refused in kubectl's words; under RBAC, a user without create on pods/exec is refused,
and `edit` has it as in Kubernetes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from .harness import BIN, Cluster, wait_until


def _pod(name: str, command: list[str], restart: str, **container: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"restartPolicy": restart,
                                "containers": [{"name": "main", "command": command, **container}]}})


def _phase(cluster: Cluster, name: str) -> str:
    pod = cluster.try_get("pod", name)
    return str(pod["status"].get("phase", "")) if pod else ""


def test_exec_runs_in_the_container_and_exits_with_its_code(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    cluster.start_agent("node-a")
    workdir = cluster.dir / "work"  # under the cluster's dir: its leftover pods are killed at stop by cwd
    cluster.apply(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                              "data": {"greeting": "from the configmap"}}))
    cluster.apply(_pod("sleeper", ["sleep", "300"], "Never", workingDir=str(workdir),
                       env=[{"name": "MYVAR", "value": "hello from the spec"},
                            {"name": "FROMCM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}}]))
    wait_until(lambda: _phase(cluster, "sleeper") == "Running", 60, "the pod running")
    script = "echo $MYVAR; echo $FROMCM; pwd; id -u; echo to-stderr >&2; exit 3"
    result = cluster.ketch("exec", "sleeper", "--", "sh", "-c", script, check=False)
    assert result.returncode == 3, result.stderr
    assert result.stdout == f"hello from the spec\nfrom the configmap\n{workdir}\n{os.getuid()}\n"
    assert result.stderr == "to-stderr\ncommand terminated with exit code 3\n"
    ok = cluster.ketch("exec", "sleeper", "-c", "main", "--", "echo", "fine")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "fine\n", "")
    wrong = cluster.ketch("exec", "sleeper", "-c", "nope", "--", "true", check=False)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "Error from server (BadRequest): container nope is not valid for pod sleeper"


def test_exec_into_a_completed_pod_is_refused(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    cluster.start_agent("node-a")
    cluster.apply(_pod("done", ["true"], "Never"))
    wait_until(lambda: _phase(cluster, "done") == "Succeeded", 60, "the pod succeeded")
    result = cluster.ketch("exec", "done", "--", "echo", "never printed", check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == ("Error from server (BadRequest): cannot exec into a container in a completed "
                                     "pod; current phase is Succeeded")


def test_exec_needs_create_on_pods_exec(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("viewer-token,bob,uid-bob\neditor-token,alice,uid-alice\n")
    # The controllers run: the aggregation controller fills in `view` and `edit`.
    cluster: Cluster = cluster_factory(["--authorization-mode", "Node,RBAC", "--token-auth-file", str(tokens)])
    cluster.start_controlplane()
    cluster.apply(_pod("target", ["sleep", "300"], "Always"))
    for user, role in (("bob", "view"), ("alice", "edit")):
        cluster.apply(json.dumps({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{role}", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]}))
    wait_until(lambda: cluster.ketch("--token", "viewer-token", "get", "pod", "target", check=False).returncode == 0,
               60, "bob reading pods")
    refused = cluster.ketch("--token", "viewer-token", "exec", "target", "--", "true", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ('Error from server (Forbidden): pods "target" is forbidden: User "bob" cannot '
                                      'create resource "pods/exec" in API group "" in the namespace "default"')
    # `edit` may exec: past authorization, the pod (never scheduled: no agent) is what stops it.
    def past_authorization() -> subprocess.CompletedProcess[str] | None:
        r = cluster.ketch("--token", "editor-token", "exec", "target", "--", "true", check=False)
        return r if "Forbidden" not in r.stderr else None

    allowed = wait_until(past_authorization, 60, "alice's exec past authorization")
    assert allowed.returncode == 1
    assert allowed.stderr.strip() == "Error from server (BadRequest): pod target does not have a host assigned"


def test_exec_i_streams_stdin_to_the_command_and_its_end_closes_it(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    cluster.start_agent("node-a")
    cluster.apply(_pod("reader", ["sleep", "300"], "Never", workingDir=str(cluster.dir)))
    wait_until(lambda: _phase(cluster, "reader") == "Running", 60, "the pod running")
    echoed = cluster.ketch("exec", "-i", "reader", "--", "cat", input="hi\n")
    assert (echoed.stdout, echoed.stderr) == ("hi\n", "")
    # More than any pipe holds, through the control plane and the agent, in order.
    data = "".join(f"line {i}\n" for i in range(200_000))
    counted = cluster.ketch("exec", "--stdin", "reader", "--", "sh", "-c", "wc -c; echo done >&2", input=data)
    assert (counted.stdout.strip(), counted.stderr) == (str(len(data)), "done\n")
    digest = cluster.ketch("exec", "-i", "reader", "--", "sha256sum", input=data).stdout.split()[0]
    assert digest == hashlib.sha256(data.encode()).hexdigest()
    # Without -i the command reads nothing, whatever the CLI's stdin holds.
    assert cluster.ketch("exec", "reader", "--", "cat", input="not sent\n").stdout == ""
    # A command that exits without reading ends the CLI, though its stdin never ends.
    with subprocess.Popen([*cluster.cli_prefix, str(BIN / "ketch"), "--server", cluster.server, "exec", "-i",
                           "reader", "--", "echo", "bye"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=cluster.env) as proc:
        try:
            code = proc.wait(timeout=60)  # stdin still open: communicate() would close it
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
        assert proc.stdout is not None and proc.stderr is not None
        assert (code, proc.stdout.read(), proc.stderr.read()) == (0, b"bye\n", b"")
    tty = cluster.ketch("exec", "-t", "reader", "--", "true", check=False)
    assert (tty.returncode, tty.stderr.strip()) == (
        1, "error: -t is not supported: ketch exec has no tty (use -i for stdin)")
