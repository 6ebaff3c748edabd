"""`ketch events [--for KIND/NAME] [-A] [--types Warning,Normal] [-w] [-o json|yaml]` (kubectl events).

The same table as `get events` (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE), oldest first; `--for`
narrows to one object's events by its uid.
"""

from __future__ import annotations

import argparse
from typing import Any

from ketch.api import errors

from .factory import Factory
from .main import CLIError, add_common
from .printers import event_time, print_objects, table
from .resources import parse_one, resolve_kind
from .tabwriter import table_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="list events, oldest first")
    p.add_argument("--for", dest="for_", default="", metavar="KIND/NAME")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--types", default="", help="comma-separated: Normal, Warning")
    p.add_argument("-w", "--watch", action="store_true")
    p.add_argument("-o", "--output", default="")
    p.add_argument("--no-headers", action="store_true")
    add_common(p)
    p.set_defaults(run=run)


def _keep(types: set[str], ev: Any) -> bool:
    return not types or ev.type.lower() in types


async def run(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    ns = "" if args.all_namespaces else factory.default_namespace
    types = {t.strip().lower() for t in args.types.split(",") if t.strip()}
    unknown = types - {"normal", "warning"}
    if unknown:
        raise CLIError(f"valid --types are Normal or Warning, got {','.join(sorted(unknown))}")
    field_selector = ""
    if args.for_:
        info, name = parse_one(args.for_)
        try:
            obj = await client.get(info.kind, name, ns if info.namespaced else "")
        except errors.NotFound:
            field_selector = f"involvedObject.kind={info.kind},involvedObject.name={name}"
        else:
            field_selector = f"involvedObject.uid={obj.metadata.uid}"
    info = resolve_kind("events")
    items, rv = await client.list("Event", ns, field_selector=field_selector)
    items = sorted((e for e in items if _keep(types, e)), key=event_time)
    if args.output:
        print_objects(factory.out, items, args.output, False, info, all_namespaces=args.all_namespaces)
    elif items:
        factory.out.write(table_text(table(info, items, all_namespaces=args.all_namespaces,
                                           headers=not args.no_headers, now=factory.now())))
    elif not args.watch:
        factory.error_line(f"No events found in {ns} namespace." if ns else "No events found.")
    if not args.watch:
        return 0
    factory.out.flush()
    async for ev in client.watch("Event", ns, field_selector=field_selector, resource_version=rv,
                                 allow_bookmarks=False):
        if ev.object is None or ev.type == "DELETED" or not _keep(types, ev.object):
            continue
        factory.out.write(table_text(table(info, [ev.object], all_namespaces=args.all_namespaces, headers=False,
                                           now=factory.now())))
        factory.out.flush()
    return 0
