"""`ketch describe KIND [NAME...] [-l SEL] [-A]`: kubectl-like sections per kind, then the Events.

Reads the object (and what its section shows: a DaemonSet's pods, a node's pods and Lease), then
the events whose involvedObject.uid is the object's, sorted by time. Several objects are
separated by a blank line, as kubectl does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from ketch.api import errors
from ketch.api.kinds import KindInfo
from ketch.api.selectors import selector_string

from . import describe
from .factory import Factory
from .main import add_bool_flag, add_common
from .resources import parse_targets, refuse_names_across_namespaces


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="show details of objects and their events")
    p.add_argument("targets", nargs="+", metavar="KIND [NAME...]")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    add_bool_flag(p, "--show-events", True, "show the object's events (default true)")
    add_common(p)
    p.set_defaults(run=run)


async def _events(factory: Factory, obj: Any) -> list[Any]:
    items, _ = await factory.client().list("Event", "", field_selector=f"involvedObject.uid={obj.metadata.uid}")
    return items


async def describe_object(factory: Factory, info: KindInfo, obj: Any, show_events: bool = True) -> str:
    client = factory.client()
    now = factory.now()
    kind = info.kind
    events_task = asyncio.ensure_future(_events(factory, obj)) if show_events else None
    try:
        if kind == "Pod":
            w = describe.describe_pod(obj, now)
        elif kind == "Job":
            w = describe.describe_job(obj, now)
        elif kind == "CronJob":
            w = describe.describe_cronjob(obj, now)
        elif kind == "Namespace":
            w = describe.describe_namespace(obj, now)
            show_events = False
        elif kind == "DaemonSet":
            pods, _ = await client.list("Pod", obj.metadata.namespace, selector_string(obj.spec.selector))
            owned = [p for p in pods if any(r.uid == obj.metadata.uid for r in p.metadata.owner_references)]
            w = describe.describe_daemonset(obj, now, owned)
        elif kind == "Node":
            pods_task = client.list("Pod", "", field_selector=f"spec.nodeName={obj.metadata.name}")
            lease = None
            with contextlib.suppress(errors.NotFound):
                lease = await client.get("Lease", obj.metadata.name, "kube-node-lease")
            pods, _ = await pods_task
            w = describe.describe_node(obj, now, pods, lease)
        elif kind == "Secret":
            w = describe.describe_secret(obj, now)
        elif kind == "ConfigMap":
            w = describe.describe_configmap(obj, now)
        elif kind in ("Role", "ClusterRole"):
            w = describe.describe_role(obj, now)
            show_events = False
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            w = describe.describe_binding(obj, now)
            show_events = False
        else:
            w = describe.describe_generic(obj, now, info.namespaced)
        text = w.text()
        if events_task is not None and show_events:
            text += describe.events_text(await events_task, now)
        return text
    finally:
        if events_task is not None and not events_task.done():
            events_task.cancel()


async def run(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    show_events = args.show_events
    namespace = "" if args.all_namespaces else factory.default_namespace
    objs: list[tuple[KindInfo, Any]] = []
    failed = False
    targets = parse_targets(args.targets)
    refuse_names_across_namespaces(targets, args.all_namespaces)
    for info, name in targets:
        ns = namespace if info.namespaced else ""
        if name is None:
            items, _ = await client.list(info.kind, ns, args.selector)
            objs.extend((info, o) for o in sorted(items, key=lambda o: (o.metadata.namespace, o.metadata.name)))
            continue
        try:
            objs.append((info, await client.get(info.kind, name, ns)))
        except errors.NotFound:
            factory.error_line(f'Error from server (NotFound): {info.qualified_plural} "{name}" not found')
            failed = True
    if not objs and not failed:
        if namespace and all(i.namespaced for i, _ in targets):
            factory.error_line(f"No resources found in {namespace} namespace.")
        else:
            factory.error_line("No resources found")
        return 0
    texts = await asyncio.gather(*(describe_object(factory, info, o, show_events) for info, o in objs))
    factory.out.write("\n\n".join(t.rstrip("\n") for t in texts) + ("\n" if texts else ""))
    return 1 if failed else 0
