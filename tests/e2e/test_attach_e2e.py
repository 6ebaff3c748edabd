"""Attach end to end: a real control plane and agent. What a user relies on: a container with
`stdin: true` reads what attaches send, in order; without stdinOnce its stdin stays open across
attaches, with it the first attach's end (the client going away too) is the container's end of
file; a container without stdin is refused in kubectl's words; under RBAC, `ketch run -i` needs
create on pods/attach, which `edit` has, as in Kubernetes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ketch.api import errors

from .harness import Cluster, wait_until


def _pod(name: str, command: list[str], **container: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"restartPolicy": "Never",
                                "containers": [{"name": "main", "command": command, **container}]}})


def _phase(cluster: Cluster, name: str) -> str:
    pod = cluster.try_get("pod", name)
    return str(pod["status"].get("phase", "")) if pod else ""


def _running(cluster: Cluster, name: str) -> bool:
    pod = cluster.try_get("pod", name)
    return bool(pod) and any("running" in s.get("state", {}) for s in pod["status"].get("containerStatuses", []))


async def _chunks(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _attach(cluster: Cluster, name: str, stdin: AsyncIterator[bytes]) -> None:
    client = cluster.client()
    stream = client.attach(name, "default", stdin)
    try:
        async for out in stream:
            assert out.attached
    finally:
        await stream.aclose()


async def test_attach_to_a_container_without_stdin_is_refused(cluster: Cluster) -> None:
    cluster.apply(_pod("deaf", ["sleep", "300"]))
    wait_until(lambda: _running(cluster, "deaf"), 60, "the container running")
    with pytest.raises(errors.BadRequest) as refused:
        await _attach(cluster, "deaf", _chunks(b"ignored\n"))
    assert refused.value.message == "Unable to use stdin - container main did not allocate one"
    assert _phase(cluster, "deaf") == "Running"  # nothing reached it, nothing ended it


async def test_stdin_stays_open_across_attaches_without_stdin_once(cluster: Cluster) -> None:
    cluster.apply(_pod("twice", ["sh", "-c", "read a; read b; echo got $a $b"], stdin=True))
    wait_until(lambda: _running(cluster, "twice"), 60, "the container running")
    await _attach(cluster, "twice", _chunks(b"first\n"))
    assert _phase(cluster, "twice") == "Running"  # the first attach's end closed nothing
    await _attach(cluster, "twice", _chunks(b"sec", b"ond\n"))
    wait_until(lambda: _phase(cluster, "twice") == "Succeeded", 60, "the pod succeeded")
    assert cluster.ketch("logs", "twice").stdout == "got first second\n"


async def test_stdin_once_closes_when_the_attaching_client_goes_away(cluster: Cluster) -> None:
    cluster.apply(_pod("once", ["sh", "-c", "cat; echo eof"], stdin=True, stdinOnce=True))
    wait_until(lambda: _running(cluster, "once"), 60, "the container running")
    sent = asyncio.Event()

    async def never_ending() -> AsyncIterator[bytes]:
        yield b"hello\n"
        sent.set()
        await asyncio.Event().wait()  # the client's input never ends: it goes away instead
        yield b""

    task = asyncio.ensure_future(_attach(cluster, "once", never_ending()))
    await asyncio.wait_for(sent.wait(), 30)
    wait_until(lambda: cluster.ketch("logs", "once").stdout == "hello\n", 60, "the input read")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    wait_until(lambda: _phase(cluster, "once") == "Succeeded", 60, "the container's end of file")
    assert cluster.ketch("logs", "once").stdout == "hello\neof\n"


def test_run_i_needs_create_on_pods_attach(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("runner-token,bob,uid-bob\neditor-token,alice,uid-alice\n")
    cluster: Cluster = cluster_factory(["--authorization-mode", "Node,RBAC", "--token-auth-file", str(tokens)])
    cluster.start_controlplane()
    cluster.start_agent("node-a")
    # bob may run pods and read their logs, but not attach to them.
    cluster.apply(json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "runner",
                                                                                   "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"],
                   "verbs": ["create", "get", "list", "watch", "delete"]}]}))
    for user, kind, role in (("bob", "Role", "runner"), ("alice", "ClusterRole", "edit")):
        cluster.apply(json.dumps({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{role}", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]}))
    wait_until(lambda: cluster.ketch("--token", "runner-token", "get", "pods", check=False).returncode == 0,
               60, "bob reading pods")
    refused = cluster.ketch("--token", "runner-token", "run", "-i", "--rm", "--restart=Never", "x", "--", "cat",
                            input="never read\n", check=False)
    assert refused.returncode == 1
    assert 'Error from server (Forbidden): pods "x" is forbidden: User "bob" cannot create resource ' \
           '"pods/attach" in API group "" in the namespace "default"' in refused.stderr
    assert cluster.try_get("pod", "x") is None  # --rm deleted it all the same
    # `edit` may attach (the aggregation controller fills it in: wait for it).
    allowed = wait_until(lambda: r if (r := cluster.ketch("--token", "editor-token", "run", "-i", "--rm",
                                                            "--restart=Never", "y", "--", "cat", input="fed\n",
                                                            check=False)).returncode == 0 else None,
                         120, "alice's run -i")
    assert allowed.stdout == 'fed\npod "y" deleted\n'
