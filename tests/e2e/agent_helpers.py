"""Helpers for the agent's end-to-end tests: pods bound to a node (no scheduler needed), and
reading pods and processes back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .harness import Cluster, wait_until


def pod_manifest(name: str, node: str, command: list[str], restart: str = "Never", **extra: Any) -> str:
    """A one-container pod bound to node, as JSON (a YAML subset `ketch apply` reads)."""
    container: dict[str, Any] = {"name": extra.pop("container", "main"), "image": "busybox", "command": command}
    container.update(extra.pop("container_fields", {}))
    spec: dict[str, Any] = {"nodeName": node, "restartPolicy": restart, "containers": [container]}
    spec.update(extra.pop("spec", {}))
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **extra}, "spec": spec})


def apply_all(cluster: Cluster, *manifests: str) -> None:
    cluster.apply("\n---\n".join(manifests))


def pod(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.try_get("pod", name)  # type: ignore[no-any-return]


def container(p: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return p["status"]["containerStatuses"][index]  # type: ignore[no-any-return]


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = pod(cluster, name)
        return p if p and p.get("status", {}).get("phase") == phase else None

    return wait_until(check, timeout, f"pod {name} to be {phase}")


def wait_running(cluster: Cluster, name: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = pod(cluster, name)
        if not p:
            return None
        statuses = p.get("status", {}).get("containerStatuses") or []
        return p if statuses and all("running" in s.get("state", {}) for s in statuses) else None

    return wait_until(check, timeout, f"pod {name} to run")


def pid_of(p: dict[str, Any], index: int = 0) -> int:
    return int(container(p, index)["containerID"].rsplit("/", 1)[1])


def processes_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains marker, but for the
    children of such processes: a shell's child between its fork and its exec (the `sleep` of a
    wait loop) still shows the shell's command line for a moment."""
    found: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            found[int(entry.name)] = int(ppid)
    return [pid for pid, ppid in found.items() if ppid not in found]


def logs(cluster: Cluster, *args: str) -> str:
    return cluster.ketch("logs", *args).stdout
