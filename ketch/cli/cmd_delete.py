"""`ketch delete KIND NAME... [-l SEL|--all] [--cascade=background|foreground|orphan] [--wait]
[--grace-period N] [--force] [--now] [--ignore-not-found] [-f FILE]`.

Prints `job.batch "pi" deleted` per object, as kubectl. Deletes go out in one Batch call; then,
as kubectl does by default (`--wait=true`), a watch is followed until each deleted object (by uid)
is gone: a pod is gone once its agent has stopped it, a foreground delete once its dependents
are. `--wait=false` returns at once. --dry-run=client sends no delete (a selector is still
listed); --dry-run=server sends them marked dry run: checked by the server, nothing deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from ketch.api import durations, errors, manifest
from ketch.api.kinds import KindInfo, info_of
from ketch.client.clientset import Batch
from ketch.client.watching import until_each

from . import dryrun
from .factory import Factory
from .main import CLIError, add_bool_flag, add_common, format_error
from .manifests import read_documents
from .resources import display_name, parse_targets, quoted_name, refuse_names_across_namespaces

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan", "true": "Background",
           "false": "Orphan"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delete", help="delete objects")
    p.add_argument("targets", nargs="*", metavar="KIND NAME")
    p.add_argument("-f", "--filename", action="append")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="with -f DIR, the manifests in its subdirectories too")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--field-selector", default="")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--all", action="store_true", help="every object of the kinds given")
    p.add_argument("--cascade", default="background", help="background (default), foreground or orphan")
    p.add_argument("--grace-period", type=int, default=-1, help="seconds to give the pod (-1: its own)")
    p.add_argument("--now", action="store_true", help="grace period 1")
    p.add_argument("--force", action="store_true", help="remove at once, without waiting for the processes")
    add_bool_flag(p, "--wait", True, "wait until the objects are gone (default true; --wait=false returns at once)")
    p.add_argument("--timeout", default="0", help="how long --wait waits (0: forever)")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("-o", "--output", default="", choices=["", "name"])
    dryrun.add_dry_run_flag(p)
    add_common(p)
    p.set_defaults(run=run)


def grace_period(args: argparse.Namespace) -> int | None:
    """kubectl's rules: --now is 1; 0 without --force becomes 1; --force alone is 0."""
    grace = args.grace_period
    if args.now:
        if grace >= 0:
            raise CLIError("--now and --grace-period cannot be specified together")
        grace = 1
    if grace == 0 and not args.force:
        grace = 1
    if args.force and grace < 0:
        grace = 0
    return grace if grace >= 0 else None


async def _targets(args: argparse.Namespace, factory: Factory) -> list[tuple[KindInfo, str, str]]:
    client = factory.client()
    targets: list[tuple[KindInfo, str, str]] = []
    if args.filename:
        for _, doc in read_documents(args.filename, factory.stdin, args.recursive):
            obj = manifest.from_dict(doc)
            info = info_of(obj)
            ns = (obj.metadata.namespace or factory.default_namespace) if info.namespaced else ""  # type: ignore[attr-defined]
            targets.append((info, obj.metadata.name, ns))  # type: ignore[attr-defined]
        return targets
    if not args.targets:
        raise CLIError("you must provide one or more resources by argument or filename")
    parsed = parse_targets(args.targets)
    refuse_names_across_namespaces(parsed, args.all_namespaces)
    for info, name in parsed:
        ns = factory.default_namespace if info.namespaced else ""
        if name is not None:
            if args.all or args.selector:
                raise CLIError("name cannot be provided when a selector or --all is specified")
            targets.append((info, name, ns))
            continue
        if not (args.all or args.selector or args.field_selector):
            raise CLIError(f'resource(s) were provided, but no name was specified (e.g. "ketch delete '
                           f'{info.plural} NAME", or --all)')
        if args.all_namespaces and info.namespaced:
            ns = ""
        items, _ = await client.list(info.kind, ns, args.selector, args.field_selector)
        items.sort(key=lambda o: (o.metadata.namespace, o.metadata.name))
        targets.extend((info, o.metadata.name, o.metadata.namespace) for o in items)
    return targets


async def run(args: argparse.Namespace, factory: Factory) -> int:
    policy = CASCADE.get(args.cascade.lower())
    if policy is None:
        raise CLIError(f'invalid --cascade "{args.cascade}": must be one of background, foreground, orphan')
    grace = grace_period(args)
    dry_run = dryrun.strategy(args, factory)
    wait = args.wait and dry_run == dryrun.NONE
    timeout = durations.parse(args.timeout)
    targets = await _targets(args, factory)
    if not targets:
        if not args.ignore_not_found:
            factory.error_line("No resources found")
        return 0
    if grace == 0 and args.force:
        factory.warn("Immediate deletion does not wait for confirmation that the running resource has been "
                     "terminated. The resource may continue to run on the cluster indefinitely.")
    # kubectl's PrintObj: a zero grace period (--force) is "force deleted".
    operation = "force deleted" if grace == 0 else "deleted"
    if dry_run == dryrun.CLIENT:
        for info, name, _ns in targets:
            factory.print(display_name(info, name) if args.output == "name"
                          else f"{quoted_name(info, name)} {operation} (dry run)")
        return 0
    client = factory.client()
    batch = Batch()
    for info, name, ns in targets:
        batch.delete(info.kind, name, ns, propagation_policy=policy, grace_period_seconds=grace,
                     dry_run=dry_run == dryrun.SERVER)
    outcomes = await client.batch(batch)
    failed = False
    pending: list[tuple[KindInfo, str, str, str]] = []
    for (info, name, ns), outcome in zip(targets, outcomes, strict=True):
        if outcome.error is not None:
            if isinstance(outcome.error, errors.NotFound):
                if args.ignore_not_found:
                    continue
                factory.error_line(f'Error from server (NotFound): {info.qualified_plural} "{name}" not found')
            else:
                factory.error_line(format_error(outcome.error))
            failed = True
            continue
        factory.print(display_name(info, name) if args.output == "name"
                      else f"{quoted_name(info, name)} {operation}{dryrun.suffix(dry_run)}")
        if not outcome.deleted and outcome.object is not None:
            pending.append((info, name, ns, outcome.object.metadata.uid))
    if wait and pending:
        try:
            async with asyncio.timeout(timeout if timeout > 0 else None):
                await wait_all_gone(factory, pending)
        except TimeoutError:
            left = []
            for info, name, ns, _uid in pending:
                with contextlib.suppress(errors.NotFound):
                    await client.get(info.kind, name, ns)
                    left.append(display_name(info, name))
            raise CLIError(f"timed out waiting for the condition on {', '.join(left) or 'the objects'}") from None
    return 1 if failed else 0


async def wait_all_gone(factory: Factory, objs: list[tuple[KindInfo, str, str, str]]) -> None:
    """Return once every (kind, name, namespace, uid) is gone; one watch per kind and namespace."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for info, name, ns, uid in objs:
        groups.setdefault((info.kind, ns), {})[name] = uid

    def gone(uids: dict[str, str]) -> Any:
        return lambda name, obj: obj is None or (uids[name] and obj.metadata.uid != uids[name])

    await asyncio.gather(*(until_each(factory.client(), kind, ns, list(uids), gone(uids))
                           for (kind, ns), uids in groups.items()))
