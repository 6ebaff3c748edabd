"""`ketch get KIND [NAME] [-n NS|-A] [-l SEL] [-o json|yaml|wide|name] [-w]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from ketch.api import errors, manifest

from .factory import Factory
from .main import add_common
from .printers import format_rows, print_objects, table
from .resources import parse_targets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("get", help="list or show objects")
    p.add_argument("targets", nargs="+", metavar="KIND [NAME...]")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", default="", help="label selector")
    p.add_argument("--field-selector", default="")
    p.add_argument("-o", "--output", default="", help="json, yaml, wide or name")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true")
    p.add_argument("--show-labels", action="store_true")
    p.add_argument("--no-headers", action="store_true")
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    targets = parse_targets(args.targets)
    namespace = "" if args.all_namespaces else factory.default_namespace
    if args.watch or args.watch_only:
        if len(targets) != 1:
            raise ValueError("you may only watch one kind at a time")
        return await _watch(args, factory, targets[0][0], targets[0][1], namespace)
    named = [t for t in targets if t[1] is not None]
    if named:
        objs = []
        failed = False
        for info, name in named:
            assert name is not None
            try:
                objs.append((info, await client.get(info.kind, name, namespace if info.namespaced else "")))
            except errors.NotFound as err:
                print(f"Error from server (NotFound): {err.message}", file=factory.err)
                failed = True
        if objs:
            single = len(named) == 1
            if args.output in ("json", "yaml") and not single:
                print_objects(factory.out, [o for _, o in objs], args.output, False, objs[0][0])
            else:
                for info in dict.fromkeys(i for i, _ in objs):
                    print_objects(factory.out, [o for i, o in objs if i is info], args.output, single, info,
                                  show_labels=args.show_labels, headers=not args.no_headers)
        return 1 if failed else 0
    all_objs = []
    for info, _ in targets:
        items, _rv = await client.list(info.kind, namespace if info.namespaced else "", args.selector,
                                       args.field_selector)
        items.sort(key=lambda o: (o.metadata.namespace, o.metadata.name))
        all_objs.append((info, items))
    if args.output in ("json", "yaml"):
        flat = [o for _, items in all_objs for o in items]
        print_objects(factory.out, flat, args.output, False, all_objs[0][0])
        return 0
    if all(not items for _, items in all_objs) and args.output != "name":
        where = "" if args.all_namespaces else f" in {namespace} namespace"
        print(f"No resources found{where}.", file=factory.err)
        return 0
    for i, (info, items) in enumerate(all_objs):
        if not items:
            continue
        if i and len(all_objs) > 1:
            factory.out.write("\n")
        print_objects(factory.out, items, args.output, False, info, all_namespaces=args.all_namespaces,
                      show_labels=args.show_labels, headers=not args.no_headers)
    return 0


async def _watch(args: argparse.Namespace, factory: Factory, info, name, namespace) -> int:  # type: ignore[no-untyped-def]
    client = factory.client()
    field_selector = args.field_selector
    if name:
        field_selector = ",".join(s for s in (field_selector, f"metadata.name={name}") if s)
    ns = namespace if info.namespaced else ""
    headers_done = False
    rv = ""

    def emit(objs, event_type: str = "") -> None:  # type: ignore[no-untyped-def]
        nonlocal headers_done
        if args.output == "json":
            for o in objs:
                doc = manifest.to_dict(o)
                factory.out.write(json.dumps(doc, indent=4) + "\n")
        elif args.output == "yaml":
            for o in objs:
                factory.out.write("---\n" + manifest.to_yaml(o))
        else:
            rows = table(info, objs, wide=args.output == "wide", all_namespaces=args.all_namespaces,
                         show_labels=args.show_labels, headers=not headers_done and not args.no_headers,
                         now=time.time())
            factory.out.write(format_rows(rows))
            headers_done = True
        factory.out.flush()

    if not args.watch_only:
        items, rv = await client.list(info.kind, ns, args.selector, field_selector)
        items.sort(key=lambda o: o.metadata.name)
        if items:
            emit(items)
    try:
        async for ev in client.watch(info.kind, ns, args.selector, field_selector, rv or "", allow_bookmarks=False):
            if ev.object is not None:
                emit([ev.object], ev.type)
    except asyncio.CancelledError:
        return 0
    return 0
