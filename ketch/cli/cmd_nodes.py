"""`ketch cordon|uncordon NODE...` and `ketch drain NODE`.

cordon/uncordon set spec.unschedulable. drain does what kubectl drain does: cordon, refuse when
DaemonSet pods are there without --ignore-daemonsets or pods without a controller without
--force (or emptyDir pods without --delete-emptydir-data), then evict every other pod: the
DisruptionTarget condition (reason EvictionByEvictionAPI) goes on through a status patch and
the pod is deleted gracefully, all in one Batch call; then it follows a watch until the pods are
gone, or --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from ketch.api import durations, errors, manifest, meta, timeutil
from ketch.client.clientset import Batch
from ketch.client.watching import states
from ketch.v1 import core_pb2

from .factory import Factory
from .main import CLIError, add_common, format_error
from .resources import parse_one


def register(sub: argparse._SubParsersAction) -> None:
    for verb, text in (("cordon", "mark nodes unschedulable"), ("uncordon", "mark nodes schedulable")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("nodes", nargs="*", metavar="NODE")
        p.add_argument("-l", "--selector", default="")
        add_common(p)
        p.set_defaults(run=run_cordon, unschedulable=verb == "cordon")
    d = sub.add_parser("drain", help="cordon a node and evict its pods")
    d.add_argument("nodes", nargs="*", metavar="NODE")
    d.add_argument("-l", "--selector", default="")
    d.add_argument("--ignore-daemonsets", action="store_true")
    d.add_argument("--force", action="store_true", help="also delete pods that no controller manages")
    d.add_argument("--delete-emptydir-data", "--delete-local-data", dest="delete_emptydir_data",
                   action="store_true")
    d.add_argument("--grace-period", type=int, default=-1, help="seconds to give each pod (-1: its own)")
    d.add_argument("--timeout", default="0", help="give up after this long (0: never)")
    d.add_argument("--disable-eviction", action="store_true", help="delete pods without the eviction step")
    d.add_argument("--pod-selector", default="", help="only evict pods matching this label selector")
    add_common(d)
    d.set_defaults(run=run_drain)


async def _nodes(factory: Factory, names: list[str], selector: str) -> list[Any]:
    client = factory.client()
    if names and selector:
        raise CLIError("error: cannot specify both a node name and a --selector option")
    if selector:
        items, _ = await client.list("Node", "", selector)
        return sorted(items, key=lambda n: n.metadata.name)
    if not names:
        raise CLIError("USAGE: cordon NODE [flags]: a node name is required")
    return [await client.get("Node", node_name(n)) for n in names]


def node_name(word: str) -> str:
    """NODE, or `node/NODE` (any of Node's names, as `get nodes -o name` prints it): kubectl's
    builder reads both."""
    if "/" not in word:
        return word
    info, name = parse_one(word)
    if info.kind != "Node":
        raise CLIError(f"{word} is not a node: cordon, uncordon and drain act on nodes only")
    return name


async def cordon(factory: Factory, node: core_pb2.Node, unschedulable: bool) -> None:
    """Set spec.unschedulable and print what kubectl prints."""
    name = node.metadata.name
    word = "cordoned" if unschedulable else "uncordoned"
    if node.spec.unschedulable == unschedulable:
        factory.print(f"node/{name} already {word}")
        return
    await factory.client().patch("Node", name, {"spec": {"unschedulable": unschedulable}}, patch_type="merge")
    factory.print(f"node/{name} {word}")


async def run_cordon(args: argparse.Namespace, factory: Factory) -> int:
    for node in await _nodes(factory, args.nodes, args.selector):
        await cordon(factory, node, args.unschedulable)
    return 0


# -- drain ----------------------------------------------------------------------------------------


@dataclass
class DrainPlan:
    """Pods to evict, pods left alone (with why), and what stops the drain."""

    evict: list[Any] = field(default_factory=list)
    ignored_daemonset: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _pod_name(pod: core_pb2.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _has_emptydir(pod: core_pb2.Pod) -> bool:
    return any("emptyDir" in manifest.message_to_dict(v) for v in pod.spec.volumes)


def plan_drain(pods: list[Any], ignore_daemonsets: bool, force: bool, delete_emptydir: bool,
               existing_daemonsets: set[str] | None = None) -> DrainPlan:
    """kubectl drain's pod filters, pure: which pods to evict, skip, or refuse to touch."""
    plan = DrainPlan()
    blocked_ds, blocked_unmanaged, blocked_local, missing_ds = [], [], [], []
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        terminal = pod.status.phase in ("Succeeded", "Failed")
        ref = meta.controller_ref(pod)
        if ref is not None and ref.kind == "DaemonSet" and not terminal:
            key = f"{pod.metadata.namespace}/{ref.name}"
            if existing_daemonsets is not None and key not in existing_daemonsets:
                if not force:
                    missing_ds.append(_pod_name(pod))
                    continue
            elif not ignore_daemonsets:
                blocked_ds.append(_pod_name(pod))
                continue
            else:
                plan.ignored_daemonset.append(_pod_name(pod))
                continue
        if ref is None and not terminal:
            if not force:
                blocked_unmanaged.append(_pod_name(pod))
                continue
            plan.unmanaged.append(_pod_name(pod))
        if _has_emptydir(pod) and not terminal and not delete_emptydir:
            blocked_local.append(_pod_name(pod))
            continue
        plan.evict.append(pod)
    if missing_ds:
        plan.errors.append("failed to get the DaemonSet of Pods (use --force to override): " + ", ".join(missing_ds))
    if blocked_ds:
        plan.errors.append("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
                           + ", ".join(blocked_ds))
    if blocked_unmanaged:
        plan.errors.append("cannot delete Pods that declare no controller (use --force to override): "
                           + ", ".join(blocked_unmanaged))
    if blocked_local:
        plan.errors.append("cannot delete Pods with local storage (use --delete-emptydir-data to override): "
                           + ", ".join(blocked_local))
    return plan


def disruption_condition(now: float) -> dict[str, Any]:
    return {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting", "lastTransitionTime": timeutil.format(now)}


async def evict(factory: Factory, pods: list[Any], grace: int | None, with_condition: bool = True) -> list[Any]:
    """Mark (DisruptionTarget) and delete pods in one Batch; returns those whose delete was accepted."""
    batch = Batch()
    condition = disruption_condition(factory.now())
    ops: list[tuple[str, Any]] = []
    for pod in pods:
        md = pod.metadata
        terminal = pod.status.phase in ("Succeeded", "Failed")
        if with_condition and not terminal and not md.deletion_timestamp:
            batch.patch("Pod", md.name, {"status": {"conditions": [condition]}}, namespace=md.namespace,
                        patch_type="strategic", subresource="status")
            ops.append(("mark", pod))
        batch.delete("Pod", md.name, md.namespace, grace_period_seconds=grace, uid=md.uid)
        ops.append(("delete", pod))
    accepted = []
    for (what, pod), outcome in zip(ops, await factory.client().batch(batch), strict=True):
        if what != "delete":
            continue
        if outcome.error is None or isinstance(outcome.error, errors.NotFound | errors.Conflict):
            accepted.append(pod)
            continue
        factory.error_line(f"error when evicting pods/\"{pod.metadata.name}\" -n \"{pod.metadata.namespace}\": "
                           + format_error(outcome.error))
    return accepted


async def wait_pods_gone(factory: Factory, node: str, pods: list[Any]) -> None:
    """Follow the node's pods by watch; print `pod/x evicted` as each evicted pod disappears."""
    waiting = {(p.metadata.namespace, p.metadata.name): p.metadata.uid for p in pods}
    watch = states(factory.client(), "Pod", "", field_selector=f"spec.nodeName={node}")
    async with contextlib.aclosing(watch):
        async for current in watch:
            for key, uid in list(waiting.items()):
                obj = current.get(key)
                if obj is None or obj.metadata.uid != uid:
                    del waiting[key]
                    factory.print(f"pod/{key[1]} evicted")
            if not waiting:
                return


async def drain_node(args: argparse.Namespace, factory: Factory, node: core_pb2.Node) -> None:
    client = factory.client()
    name = node.metadata.name
    await cordon(factory, node, True)
    pods, _ = await client.list("Pod", "", args.pod_selector, f"spec.nodeName={name}")
    ds_keys = {f"{p.metadata.namespace}/{r.name}" for p in pods
               for r in p.metadata.owner_references if r.kind == "DaemonSet"}
    existing = set()
    for key in ds_keys:
        ns, _, ds_name = key.partition("/")
        with contextlib.suppress(errors.NotFound):
            await client.get("DaemonSet", ds_name, ns)
            existing.add(key)
    plan = plan_drain(pods, args.ignore_daemonsets, args.force, args.delete_emptydir_data, existing)
    if plan.errors:
        raise CLIError(f'unable to drain node "{name}" due to error: {"; ".join(plan.errors)}, '
                       "continuing command...")
    if plan.ignored_daemonset:
        factory.warn("ignoring DaemonSet-managed Pods: " + ", ".join(plan.ignored_daemonset))
    if plan.unmanaged:
        factory.warn("deleting Pods that declare no controller: " + ", ".join(plan.unmanaged))
    for pod in plan.evict:
        factory.print(f"evicting pod {_pod_name(pod)}")
    factory.out.flush()
    grace = args.grace_period if args.grace_period >= 0 else None
    accepted = await evict(factory, plan.evict, grace, with_condition=not args.disable_eviction)
    timeout = durations.parse(args.timeout)
    try:
        async with asyncio.timeout(timeout if timeout > 0 else None):
            await wait_pods_gone(factory, name, accepted)
    except TimeoutError:
        left, _ = await client.list("Pod", "", args.pod_selector, f"spec.nodeName={name}")
        want = {(p.metadata.namespace, p.metadata.name, p.metadata.uid) for p in accepted}
        names = [f'"{p.metadata.name}" in namespace "{p.metadata.namespace}"' for p in left
                 if (p.metadata.namespace, p.metadata.name, p.metadata.uid) in want]
        raise CLIError(f'unable to drain node "{name}" due to error: error when waiting for pods to terminate: '
                       f'{", ".join(names) or "some pods"}: global timeout reached: {args.timeout}, '
                       "continuing command...") from None
    factory.print(f"node/{name} drained")


async def run_drain(args: argparse.Namespace, factory: Factory) -> int:
    nodes = await _nodes(factory, args.nodes, args.selector)
    for node in nodes:
        await drain_node(args, factory, node)
    return 0
