"""`ketch get KIND [NAME...] [-n NS|-A] [-l SEL] [--field-selector F] [-o FORMAT] [-w] [--sort-by P]`,
and `ketch api-resources`.

Lists come back sorted by namespace and name (events by time, as `kubectl get events` users
expect); `-w` prints the list and then one row per change, from a watch that resumes itself.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ketch.api import errors, manifest
from ketch.api.kinds import SERVED, KindInfo

from .factory import Factory
from .main import add_common
from .printers import check_output, event_time, headers_for, print_objects, qualified_name, sort_objects, table
from .resources import parse_targets, refuse_names_across_namespaces, resolve_kind
from .tabwriter import GET_MINWIDTH, GET_PADDING, table_text
from .terminal import escape_cell

ALL_KINDS = ("Pod", "DaemonSet", "Job", "CronJob")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("get", help="list or show objects")
    p.add_argument("targets", nargs="+", metavar="KIND [NAME...]")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", default="", help="label selector")
    p.add_argument("--field-selector", default="")
    p.add_argument("-o", "--output", default="",
                   help="json, yaml, wide, name, jsonpath=TEMPLATE, custom-columns=SPEC")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true")
    p.add_argument("--show-labels", action="store_true")
    p.add_argument("--show-kind", action="store_true", help="name every object as KIND/NAME")
    p.add_argument("-L", "--label-columns", action="append", default=[], help="labels to show as columns")
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--sort-by", default="", help="a JSONPath, e.g. .metadata.creationTimestamp")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--chunk-size", default="", help=argparse.SUPPRESS)
    add_common(p)
    p.set_defaults(run=run)

    r = sub.add_parser("api-resources", help="list the kinds the server serves")
    r.add_argument("-o", "--output", default="", choices=["", "name", "wide"])
    r.add_argument("--no-headers", action="store_true")
    r.add_argument("--namespaced", nargs="?", const="true", default=None, metavar="true|false",
                   help="only namespaced kinds (--namespaced=false: only cluster-wide ones)")
    r.add_argument("--verbs", action="append", default=[], help="only kinds that support these verbs (list,get)")
    r.add_argument("--api-group", default=None, help="only kinds of this API group ('' for the core group)")
    r.add_argument("--sort-by", default="", choices=["", "name", "kind"])
    add_common(r)
    r.set_defaults(run=run_api_resources)


def _targets(args: argparse.Namespace) -> list[tuple[KindInfo, str | None]]:
    if args.targets == ["all"]:
        return [(resolve_kind(k), None) for k in ALL_KINDS]
    return parse_targets(args.targets)


def _label_columns(args: argparse.Namespace) -> list[str]:
    return [c.strip() for spec in args.label_columns for c in spec.split(",") if c.strip()]


def _print_table(factory: Factory, args: argparse.Namespace, info: KindInfo, objs: list[Any],
                 with_kind: bool) -> None:
    headers = not args.no_headers
    rows = table(info, objs, wide=args.output == "wide", all_namespaces=args.all_namespaces,
                 show_labels=args.show_labels, headers=headers, now=factory.now(),
                 label_columns=_label_columns(args))
    # kubectl's decorateTable prefixes the kind to the NAME column, and only that column: a
    # table without one shown (events, but with -o wide) keeps its cells.
    columns = headers_for(info, wide=args.output == "wide", all_namespaces=args.all_namespaces)
    if with_kind and "NAME" in columns:
        name_col = columns.index("NAME")
        for row, obj in zip(rows[1 if headers else 0:], objs, strict=False):
            row[name_col] = qualified_name(obj)
    factory.out.write(table_text(rows))


def _sorted(info: KindInfo, items: list[Any], sort_by: str) -> list[Any]:
    if sort_by:
        return sort_objects(items, sort_by)
    if info.kind == "Event":
        return sorted(items, key=lambda e: (event_time(e), e.metadata.namespace, e.metadata.name))
    return sorted(items, key=lambda o: (o.metadata.namespace, o.metadata.name))


async def run(args: argparse.Namespace, factory: Factory) -> int:
    check_output(args.output)
    targets = _targets(args)
    refuse_names_across_namespaces(targets, args.all_namespaces)
    namespace = "" if args.all_namespaces else factory.default_namespace
    if args.watch or args.watch_only:
        if len(targets) != 1:
            raise ValueError(f"watch is only supported on individual resources and resource collections, but "
                             f"{len(targets)} resources were found")
        return await _watch(args, factory, targets[0][0], targets[0][1], namespace)
    client = factory.client()
    named = [t for t in targets if t[1] is not None]
    structured = args.output.partition("=")[0] in ("json", "yaml", "jsonpath", "jsonpath-as-json")
    if named:
        objs: list[tuple[KindInfo, Any]] = []
        failed = False
        for info, name in named:
            assert name is not None
            try:
                objs.append((info, await client.get(info.kind, name, namespace if info.namespaced else "")))
            except errors.NotFound:
                if args.ignore_not_found:
                    continue
                factory.error_line(f"Error from server (NotFound): {info.qualified_plural} \"{name}\" not found")
                failed = True
        if objs:
            single = len(named) == 1
            if structured or args.output.startswith(("name", "custom-columns")):
                print_objects(factory.out, [o for _, o in objs], args.output, single, objs[0][0],
                              headers=not args.no_headers, now=factory.now())
            else:
                kinds = list(dict.fromkeys(i for i, _ in objs))
                for n, info in enumerate(kinds):
                    if n:
                        factory.print()
                    _print_table(factory, args, info, [o for i, o in objs if i is info],
                                 len(kinds) > 1 or args.show_kind)
        return 1 if failed else 0

    listed: list[tuple[KindInfo, list[Any]]] = []
    for info, _ in targets:
        items, _rv = await client.list(info.kind, namespace if info.namespaced else "", args.selector,
                                       args.field_selector)
        listed.append((info, _sorted(info, items, args.sort_by)))
    if structured or args.output == "name" or args.output.startswith("custom-columns"):
        # kubectl's printGeneric: every kind's items in one List, printed once (custom columns:
        # one header, even over no items; nothing says "No resources found").
        flat = [o for _, items in listed for o in items]
        print_objects(factory.out, flat, args.output, False, listed[0][0], headers=not args.no_headers,
                      now=factory.now())
        return 0
    nonempty = [(info, items) for info, items in listed if items]
    if not nonempty:
        if not args.ignore_not_found:
            all_namespaced = not args.all_namespaces and all(info.namespaced for info, _ in listed)
            if all_namespaced:
                factory.error_line(f"No resources found in {namespace} namespace.")
            else:
                factory.error_line("No resources found")
        return 0
    with_kind = len(listed) > 1 or args.show_kind
    for n, (info, items) in enumerate(nonempty):
        if n:
            factory.print()
        _print_table(factory, args, info, items, with_kind)
    return 0


class _WatchTable:
    """Rows printed one batch at a time with column widths remembered, as kubectl's -w does."""

    def __init__(self) -> None:
        self.widths: list[int] = []

    def render(self, rows: list[list[str]]) -> str:
        rows = [[escape_cell(c) for c in row] for row in rows]
        for row in rows:
            for i, cell in enumerate(row[:-1]):
                w = max(GET_MINWIDTH, len(cell) + GET_PADDING)
                if i < len(self.widths):
                    self.widths[i] = max(self.widths[i], w)
                else:
                    self.widths.append(w)
        lines = []
        for row in rows:
            cells = [c.ljust(self.widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
            lines.append("".join(cells) + "\n")
        return "".join(lines)


async def _watch(args: argparse.Namespace, factory: Factory, info: KindInfo, name: str | None,
                 namespace: str) -> int:
    client = factory.client()
    field_selector = args.field_selector
    if name:
        field_selector = ",".join(s for s in (field_selector, f"metadata.name={name}") if s)
    ns = namespace if info.namespaced else ""
    printer = _WatchTable()
    headers_done = args.no_headers
    fmt = args.output.partition("=")[0]

    def emit(objs: list[Any]) -> None:
        nonlocal headers_done
        if fmt == "json":
            for o in objs:
                factory.out.write(json.dumps(manifest.to_dict(o), indent=4, ensure_ascii=False) + "\n")
        elif fmt == "yaml":
            for o in objs:
                factory.out.write("---\n" + manifest.to_yaml(o))
        elif fmt in ("name", "jsonpath", "jsonpath-as-json", "custom-columns"):
            print_objects(factory.out, objs, args.output, True, info, headers=False)
            if fmt == "jsonpath":
                factory.out.write("\n")
        else:
            rows = table(info, objs, wide=args.output == "wide", all_namespaces=args.all_namespaces,
                         show_labels=args.show_labels, headers=not headers_done, now=factory.now(),
                         label_columns=_label_columns(args))
            factory.out.write(printer.render(rows))
            headers_done = True
        factory.out.flush()

    rv = ""
    first = True
    while True:
        if first or not rv:
            items, rv = await client.list(info.kind, ns, args.selector, field_selector)
            if first and not args.watch_only:
                items = _sorted(info, items, args.sort_by)
                if items:
                    emit(items)
                elif not name:
                    where = f" in {ns} namespace" if ns else ""
                    factory.error_line(f"No resources found{where}.")
            first = False
        try:
            async for ev in client.watch(info.kind, ns, args.selector, field_selector, rv, allow_bookmarks=True):
                rv = ev.resource_version or rv
                if ev.type == "BOOKMARK" or ev.object is None:
                    continue
                rv = ev.object.metadata.resource_version or rv  # type: ignore[attr-defined]
                emit([ev.object])
        except errors.Gone:
            rv = ""


# What the API server does for every stored kind; the access reviews are only created.
SERVED_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


def verbs_of(info: KindInfo) -> tuple[str, ...]:
    return ("create",) if info.create_only else SERVED_VERBS


def run_api_resources(args: argparse.Namespace, factory: Factory) -> int:
    """kubectl api-resources, with its filters: --namespaced, --verbs, --api-group."""
    namespaced: bool | None = None
    if args.namespaced is not None:
        if args.namespaced.lower() not in ("true", "false", "1", "0", "t", "f"):
            raise ValueError(f'invalid argument "{args.namespaced}" for "--namespaced" flag: use true or false')
        namespaced = args.namespaced.lower() in ("true", "1", "t")
    verbs = {v.strip() for spec in args.verbs for v in spec.split(",") if v.strip()}
    wide = args.output == "wide"
    rows = [] if args.no_headers else [["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
                                      + (["VERBS", "CATEGORIES"] if wide else [])]
    key = {"name": lambda k: k.plural, "kind": lambda k: k.kind}.get(args.sort_by, lambda k: k.plural)
    for info in sorted(SERVED, key=key):
        if namespaced is not None and info.namespaced != namespaced:
            continue
        if args.api_group is not None and info.group != args.api_group:
            continue
        if not verbs <= set(verbs_of(info)):
            continue
        if args.output == "name":
            factory.print(info.qualified_plural)
            continue
        row = [info.plural, ",".join(info.short_names), info.api_version, str(info.namespaced).lower(), info.kind]
        if wide:
            row += [f"[{' '.join(verbs_of(info))}]", "all" if info.kind in ALL_KINDS else ""]
        rows.append(row)
    if args.output != "name":
        factory.out.write(table_text(rows))
    return 0

