"""Helpers for controller integration tests: run controllers in-process against a TestAPIServer,
and build the Nodes, Pods and Jobs they act on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.options import ControllerOptions
from ketch.api import manifest, timeutil
from ketch.client.clientset import Client
from ketch.client.informer import InformerFactory
from ketch.v1 import batch_pb2, core_pb2


@asynccontextmanager
async def running(client: Client, *makers: Callable[[ControllerContext], Controller],
                  options: ControllerOptions | None = None) -> AsyncIterator[list[Controller]]:
    """Build the controllers on one informer factory, start everything, stop it all on exit."""
    informers = InformerFactory(client)
    ctx = ControllerContext(client=client, informers=informers, options=options or ControllerOptions())
    controllers = [make(ctx) for make in makers]
    informers.start()
    tasks = [asyncio.create_task(c.run(), name=f"test-{c.name}") for c in controllers]
    try:
        yield controllers
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await informers.stop()
        for rec in ctx.recorders.values():
            await rec.close()


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", ready: str = "True",
         labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         unschedulable: bool = False) -> core_pb2.Node:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                            "lastHeartbeatTime": timeutil.now(), "lastTransitionTime": timeutil.now()}],
        },
    }
    return manifest.from_dict(doc)  # type: ignore[return-value]


async def create_node(client: Client, n: core_pb2.Node) -> core_pb2.Node:
    """Create a Node with its status (status is set through the status subresource)."""
    created = await client.create(n)
    created.status.CopyFrom(n.status)
    return await client.update_status(created)


def pod(name: str, namespace: str = "default", cpu: str = "", memory: str = "",
        node_selector: dict[str, str] | None = None, tolerations: list[dict[str, Any]] | None = None,
        owner: Any = None, node_name: str = "", extra_spec: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None) -> core_pb2.Pod:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: dict[str, Any] = {"name": "c", "image": "busybox", "command": ["true"]}
    if requests:
        container["resources"] = {"requests": requests}
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [container], "restartPolicy": "Never",
                 "nodeSelector": node_selector or {}, "tolerations": tolerations or [],
                 **(extra_spec or {})},
    }
    if node_name:
        doc["spec"]["nodeName"] = node_name
    p: core_pb2.Pod = manifest.from_dict(doc)  # type: ignore[assignment]
    if owner is not None:
        from ketch.api.meta import owner_ref_for

        p.metadata.owner_references.append(owner_ref_for(owner))
    return p


def job(name: str, namespace: str = "default", ttl: int | None = None) -> batch_pb2.Job:
    doc: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox", "command": ["true"]}]}}},
    }
    if ttl is not None:
        doc["spec"]["ttlSecondsAfterFinished"] = ttl
    return manifest.from_dict(doc)  # type: ignore[return-value]


async def exists(client: Client, kind: str, name: str, namespace: str = "") -> bool:
    from ketch.api import errors

    try:
        await client.get(kind, name, namespace)
    except errors.NotFound:
        return False
    return True


async def finish_job(client: Client, j: batch_pb2.Job, condition: str = "Complete",
                     at: float | None = None) -> batch_pb2.Job:
    """Mark a Job finished (status as the Job controller writes it): Complete or Failed."""
    fresh = await client.get("Job", j.metadata.name, j.metadata.namespace)
    stamp = timeutil.format(at) if at is not None else timeutil.now()
    interim = "SuccessCriteriaMet" if condition == "Complete" else "FailureTarget"
    fresh.status.start_time = stamp
    for ctype in (interim, condition):
        c = fresh.status.conditions.add()
        c.type, c.status, c.last_transition_time, c.last_probe_time = ctype, "True", stamp, stamp
        c.reason = "CompletionsReached" if condition == "Complete" else "BackoffLimitExceeded"
    if condition == "Complete":
        fresh.status.completion_time = stamp
        fresh.status.succeeded = 1
    else:
        fresh.status.failed = 1
    return await client.update_status(fresh)
