"""`ketch rollout status|history|undo|restart daemonset/NAME`.

- status follows the DaemonSet by watch and prints kubectl's progress lines until
  updatedNumberScheduled == numberAvailable == desiredNumberScheduled at the current generation;
  after --timeout it names the nodes whose pods hold the rollout up, so a stuck rollout shows
  where it is stuck.
- history lists the DaemonSet's ControllerRevisions (REVISION, CHANGE-CAUSE), or one revision's
  pod template with --revision.
- undo puts a revision's template (`data.spec.template`) back, the previous one by default.
- restart stamps `kubectl.kubernetes.io/restartedAt` on the pod template.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

from ketch.api import durations, errors, manifest, meta, timeutil
from ketch.api.selectors import selector_string
from ketch.client.watching import object_states
from ketch.v1 import core_pb2

from . import describe
from .factory import Factory
from .main import CLIError, add_bool_flag, add_common
from .printers import pod_status_reason
from .resources import display_name, parse_one
from .tabwriter import DESCRIBE_MINWIDTH, DESCRIBE_PADDING, tabwrite
from .terminal import escape_cell

CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION_HASH = "controller-revision-hash"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="manage the rollout of a DaemonSet")
    rsub = p.add_subparsers(dest="rollout_verb", metavar="status|history|undo|restart", required=True)
    s = rsub.add_parser("status", help="watch a rollout until it is done")
    s.add_argument("target", nargs="+", metavar="daemonset/NAME")
    add_bool_flag(s, "--watch", True, "keep watching until done (default true)", short="-w")
    s.add_argument("--timeout", default="0", help="give up after this long (0: never)")
    s.add_argument("--revision", type=int, default=0, help=argparse.SUPPRESS)
    h = rsub.add_parser("history", help="list the revisions of a DaemonSet")
    h.add_argument("target", nargs="+", metavar="daemonset/NAME")
    h.add_argument("--revision", type=int, default=0, help="show the pod template of this revision")
    h.add_argument("-o", "--output", default="", choices=["", "json", "yaml"])
    u = rsub.add_parser("undo", help="go back to an earlier revision")
    u.add_argument("target", nargs="+", metavar="daemonset/NAME")
    u.add_argument("--to-revision", type=int, default=0, help="the revision (default: the previous one)")
    r = rsub.add_parser("restart", help="replace every pod of a DaemonSet")
    r.add_argument("target", nargs="+", metavar="daemonset/NAME")
    for q in (s, h, u, r):
        add_common(q)
        q.set_defaults(run=run)
    add_common(p)


def _target(args: argparse.Namespace, viewer: str) -> tuple[Any, str]:
    """The one object, given as kubectl's `(TYPE NAME | TYPE/NAME)`: `ds/x` or `daemonset x`."""
    words = args.target
    if len(words) == 2 and "/" not in words[0] and "/" not in words[1]:
        words = [f"{words[0]}/{words[1]}"]
    if len(words) != 1:
        raise CLIError(f"rollout {args.rollout_verb} takes one object, as TYPE NAME or TYPE/NAME: got "
                       f"{' '.join(args.target)}")
    info, name = parse_one(words[0])
    if info.kind != "DaemonSet":
        raise CLIError(f"no {viewer} has been implemented for {info.kind}")
    return info, name


# -- status ---------------------------------------------------------------------------------------


def status_line(ds: Any) -> tuple[str, bool]:
    """kubectl's DaemonSetStatusViewer: (message, done)."""
    name, st = ds.metadata.name, ds.status
    strategy = ds.spec.update_strategy.type or "RollingUpdate"
    if strategy != "RollingUpdate":
        raise CLIError("rollout status is only available for RollingUpdate strategy type")
    if ds.metadata.generation <= st.observed_generation:
        if st.updated_number_scheduled < st.desired_number_scheduled:
            return (f'Waiting for daemon set "{name}" rollout to finish: {st.updated_number_scheduled} out of '
                    f"{st.desired_number_scheduled} new pods have been updated..."), False
        if st.number_available < st.desired_number_scheduled:
            return (f'Waiting for daemon set "{name}" rollout to finish: {st.number_available} of '
                    f"{st.desired_number_scheduled} updated pods are available..."), False
        return f'daemon set "{name}" successfully rolled out', True
    return "Waiting for daemon set spec update to be observed...", False


async def revisions(factory: Factory, ds: Any) -> list[Any]:
    """The DaemonSet's ControllerRevisions, oldest first."""
    items, _ = await factory.client().list("ControllerRevision", ds.metadata.namespace,
                                           selector_string(ds.spec.selector))
    if not items:  # revisions carry the pod labels; fall back to every revision in the namespace
        items, _ = await factory.client().list("ControllerRevision", ds.metadata.namespace)
    owned = [r for r in items if (ref := meta.controller_ref(r)) is not None and ref.uid == ds.metadata.uid]
    return sorted(owned, key=lambda r: r.revision)


def stuck_nodes(ds: Any, pods: list[Any], current_hash: str) -> list[str]:
    """`node (why)` for every node whose daemon pod is not an available pod of the current revision."""
    out = []
    for pod in sorted(pods, key=lambda p: (p.spec.node_name, p.metadata.name)):
        if pod.metadata.deletion_timestamp:
            why = "old pod terminating"
        elif current_hash and pod.metadata.labels.get(REVISION_HASH, current_hash) != current_hash:
            why = "old revision"
        elif not meta.condition_true(pod.status.conditions, "Ready"):
            why = f"pod {pod.metadata.name} {pod_status_reason(pod)}"
        else:
            continue
        out.append(f"{pod.spec.node_name or '<unscheduled>'} ({why})")
    return out


async def _stuck_message(factory: Factory, ds: Any) -> str:
    client = factory.client()
    pods, _ = await client.list("Pod", ds.metadata.namespace, selector_string(ds.spec.selector))
    pods = [p for p in pods if any(r.uid == ds.metadata.uid for r in p.metadata.owner_references)]
    revs = await revisions(factory, ds)
    current_hash = ""
    if revs:
        last = revs[-1]
        current_hash = last.metadata.labels.get(REVISION_HASH, "") or last.metadata.name.rpartition("-")[2]
    stuck = stuck_nodes(ds, pods, current_hash)
    nodes_with_pods = {p.spec.node_name for p in pods if not p.metadata.deletion_timestamp}
    missing = ds.status.desired_number_scheduled - len(nodes_with_pods)
    parts = []
    if stuck:
        parts.append("not available on node " + ", ".join(stuck) if len(stuck) == 1 else
                     "not available on nodes " + ", ".join(stuck))
    if missing > 0:
        parts.append(f"{missing} node(s) without a daemon pod")
    return "; ".join(parts)


async def rollout_status(args: argparse.Namespace, factory: Factory) -> int:
    info, name = _target(args, "status viewer")
    ns = factory.default_namespace
    watch = args.watch
    timeout = durations.parse(args.timeout)
    client = factory.client()
    ds = await client.get(info.kind, name, ns)
    if not watch:
        line, _done = status_line(ds)
        factory.print(line)
        return 0
    last_line = ""
    latest = ds

    async def follow() -> None:
        nonlocal last_line, latest
        states = object_states(client, info.kind, name, ns)
        async with contextlib.aclosing(states):
            async for obj in states:
                if obj is None:
                    raise errors.NotFound(f'{info.qualified_plural} "{name}" not found')
                latest = obj
                line, done = status_line(obj)
                if line != last_line:
                    factory.print(line)
                    factory.out.flush()
                    last_line = line
                if done:
                    return

    try:
        async with asyncio.timeout(timeout if timeout > 0 else None):
            await follow()
    except TimeoutError:
        detail = await _stuck_message(factory, latest)
        raise CLIError("timed out waiting for the condition" + (f": daemon set \"{name}\" rollout is stuck: "
                                                                 f"{detail}" if detail else "")) from None
    return 0


# -- history, undo, restart -----------------------------------------------------------------------


def revision_template(rev: Any) -> dict[str, Any]:
    data = manifest.message_to_dict(rev.data) if rev.HasField("data") else {}
    template = (data.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        raise CLIError(f"revision {rev.revision} ({rev.metadata.name}) holds no pod template")
    return {k: v for k, v in template.items() if k != "$patch"}


async def rollout_history(args: argparse.Namespace, factory: Factory) -> int:
    info, name = _target(args, "history viewer")
    ds = await factory.client().get(info.kind, name, factory.default_namespace)
    revs = await revisions(factory, ds)
    if args.revision:
        chosen = [r for r in revs if r.revision == args.revision]
        if not chosen:
            raise CLIError(f"unable to find the specified revision {args.revision}")
        rev = chosen[0]
        if args.output:
            doc = manifest.to_dict(rev)
            factory.out.write(json.dumps(doc, indent=4) + "\n" if args.output == "json" else manifest.to_yaml(doc))
            return 0
        template = core_pb2.PodTemplateSpec()
        manifest.decode_into(template, revision_template(rev))
        w = describe.Writer()
        describe.pod_template(w, template)
        factory.print(f"{display_name(info, name)} with revision #{rev.revision}")
        factory.out.write(w.text())
        return 0
    factory.print(display_name(info, name))
    if not revs:
        factory.print("No rollout history found.")
        return 0
    text = "REVISION\tCHANGE-CAUSE\n" + "".join(
        f"{r.revision}\t{escape_cell(r.metadata.annotations.get(CHANGE_CAUSE) or '<none>')}\n" for r in revs)
    factory.out.write(tabwrite(text, DESCRIBE_MINWIDTH, DESCRIBE_PADDING) + "\n")
    return 0


def _normal(template: dict[str, Any]) -> dict[str, Any]:
    """A template for comparison: without the labels the controller stamps on each revision."""
    t = json.loads(json.dumps(template))
    labels = (t.get("metadata") or {}).get("labels") or {}
    for k in (REVISION_HASH, "pod-template-generation"):
        labels.pop(k, None)
    return t


async def rollout_undo(args: argparse.Namespace, factory: Factory) -> int:
    info, name = _target(args, "rollbacker")
    client = factory.client()
    ns = factory.default_namespace
    ds = await client.get(info.kind, name, ns)
    revs = await revisions(factory, ds)
    if not revs:
        raise CLIError(f"no rollout history found for daemonset \"{name}\"")
    if args.to_revision:
        chosen = [r for r in revs if r.revision == args.to_revision]
        if not chosen:
            raise CLIError(f"unable to find specified revision {args.to_revision} in history")
        target = chosen[0]
    else:
        if len(revs) < 2:
            raise CLIError("no last revision to roll back to")
        target = revs[-2]
    template = revision_template(target)
    current = manifest.to_dict(ds).get("spec", {}).get("template", {})
    if _normal(current) == _normal(template):
        factory.print(f"{display_name(info, name)} skipped rollback (current template already matches revision "
                      f"{target.revision})")
        return 0
    await client.patch(info.kind, name, [{"op": "replace", "path": "/spec/template", "value": template}],
                       namespace=ns, patch_type="json")
    factory.print(f"{display_name(info, name)} rolled back")
    return 0


async def rollout_restart(args: argparse.Namespace, factory: Factory) -> int:
    info, name = _target(args, "restarter")
    stamp = timeutil.format(factory.now())
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    await factory.client().patch(info.kind, name, patch, namespace=factory.default_namespace,
                                 patch_type="strategic")
    factory.print(f"{display_name(info, name)} restarted")
    return 0


async def run(args: argparse.Namespace, factory: Factory) -> int:
    verbs = {"status": rollout_status, "history": rollout_history, "undo": rollout_undo,
             "restart": rollout_restart}
    return await verbs[args.rollout_verb](args, factory)
