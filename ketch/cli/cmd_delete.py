"""`ketch delete KIND NAME... [--cascade=background|foreground|orphan] [--wait] [--grace-period N]`."""

from __future__ import annotations

import argparse
import asyncio
import time

from ketch.api import errors
from ketch.api.kinds import KindInfo

from .factory import Factory
from .main import add_common
from .manifests import read_documents
from .resources import display_name, parse_targets

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan", "true": "Background",
           "false": "Orphan"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delete", help="delete objects")
    p.add_argument("targets", nargs="*", metavar="KIND NAME")
    p.add_argument("-f", "--filename", action="append")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--all", action="store_true")
    p.add_argument("--cascade", default="background", help="background (default), foreground or orphan")
    p.add_argument("--grace-period", type=int, default=None)
    p.add_argument("--now", action="store_true", help="grace period 1")
    p.add_argument("--force", action="store_true")
    p.add_argument("--wait", nargs="?", const="true", default="false", help="wait until the objects are gone")
    p.add_argument("--timeout", default="0", help="how long --wait waits (0: forever)")
    p.add_argument("--ignore-not-found", action="store_true")
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    from ketch.api import durations, manifest
    from ketch.api.kinds import info_of

    client = factory.client()
    policy = CASCADE.get(args.cascade.lower())
    if policy is None:
        raise ValueError(f'invalid --cascade "{args.cascade}": use background, foreground or orphan')
    grace = args.grace_period
    if args.now:
        grace = 1
    if args.force and grace is None:
        grace = 0
    targets: list[tuple[KindInfo, str, str]] = []
    if args.filename:
        for _, doc in read_documents(args.filename):
            obj = manifest.from_dict(doc)
            info = info_of(obj)
            ns = (obj.metadata.namespace or factory.default_namespace) if info.namespaced else ""  # type: ignore[attr-defined]
            targets.append((info, obj.metadata.name, ns))  # type: ignore[attr-defined]
    elif args.targets:
        parsed = parse_targets(args.targets)
        for info, name in parsed:
            ns = factory.default_namespace if info.namespaced else ""
            if name is None:
                if not (args.all or args.selector):
                    raise ValueError("resource(s) were provided, but no name was specified")
                items, _ = await client.list(info.kind, ns, args.selector)
                targets.extend((info, o.metadata.name, ns) for o in items)
            else:
                targets.append((info, name, ns))
    else:
        raise ValueError("you must provide one or more resources by argument or filename")
    failed = False
    pending: list[tuple[KindInfo, str, str, str]] = []
    for info, name, ns in targets:
        try:
            obj, _gone = await client.delete(info.kind, name, ns, propagation_policy=policy,
                                             grace_period_seconds=grace)
        except errors.NotFound as err:
            if args.ignore_not_found:
                continue
            print(f"Error from server (NotFound): {err.message}", file=factory.err)
            failed = True
            continue
        print(f'{display_name(info, name)} deleted', file=factory.out)
        pending.append((info, name, ns, obj.metadata.uid if obj is not None else ""))
    if args.wait.lower() in ("true", "1", "yes") and pending:
        timeout = durations.parse(args.timeout)
        deadline = time.monotonic() + timeout if timeout > 0 else None
        for info, name, ns, uid in pending:
            while True:
                try:
                    obj = await client.get(info.kind, name, ns)
                    if uid and obj.metadata.uid != uid:
                        break
                except errors.NotFound:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    print(f"error: timed out waiting for {display_name(info, name)} to be deleted", file=factory.err)
                    return 1
                await asyncio.sleep(0.2)
    return 1 if failed else 0
