"""`ketch label|annotate KIND NAME k=v... k-... [--overwrite] [-l SEL|--all] [--list]`.

One merge patch per object on metadata.labels (or annotations); an existing key is changed only
with --overwrite, as kubectl refuses otherwise.
"""

from __future__ import annotations

import argparse
import json

from .factory import Factory
from .main import CLIError, add_common
from .resources import display_name, parse_targets


def register(sub: argparse._SubParsersAction) -> None:
    for verb, field in (("label", "labels"), ("annotate", "annotations")):
        p = sub.add_parser(verb, help=f"update the {field} of objects")
        p.add_argument("args", nargs="+", metavar="KIND NAME KEY=VAL|KEY-")
        p.add_argument("--overwrite", action="store_true")
        p.add_argument("-l", "--selector", default="")
        p.add_argument("--all", action="store_true")
        p.add_argument("--list", action="store_true", help=f"print the {field}")
        add_common(p)
        p.set_defaults(run=run, field=field, verb=verb)


def parse_changes(items: list[str], field: str) -> tuple[dict[str, str], list[str]]:
    """`k=v` to set and `k-` to remove."""
    sets: dict[str, str] = {}
    removes: list[str] = []
    for item in items:
        if item.endswith("-") and "=" not in item:
            removes.append(item[:-1])
        elif "=" in item:
            k, _, v = item.partition("=")
            if not k:
                raise CLIError(f"invalid {field[:-1]} spec: {item}")
            sets[k] = v
        else:
            raise CLIError(f"invalid {field[:-1]} spec: {item}, should be KEY=VALUE or KEY-")
    return sets, removes


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """Resource words first, then the changes (words with `=` or ending in `-`)."""
    for i, a in enumerate(args):
        if "=" in a or (a.endswith("-") and i > 0):
            return args[:i], args[i:]
    return args, []


async def run(args: argparse.Namespace, factory: Factory) -> int:
    resources, changes = _split(args.args)
    sets, removes = parse_changes(changes, args.field)
    if not args.list and not sets and not removes:
        raise CLIError(f"at least one {args.field[:-1]} update is required")
    client = factory.client()
    targets = []
    for info, name in parse_targets(resources):
        ns = factory.default_namespace if info.namespaced else ""
        if name is not None:
            targets.append((info, await client.get(info.kind, name, ns)))
        elif args.all or args.selector:
            items, _ = await client.list(info.kind, ns, args.selector)
            targets.extend((info, o) for o in sorted(items, key=lambda o: o.metadata.name))
        else:
            raise CLIError("resource(s) were provided, but no name was specified")
    for info, obj in targets:
        current = dict(getattr(obj.metadata, args.field))
        if args.list:
            for k, v in sorted(current.items()):
                factory.print(f"{k}={v}")
            continue
        clashes = [k for k, v in sets.items() if k in current and current[k] != v]
        if clashes and not args.overwrite:
            if args.verb == "annotate":
                raise CLIError("--overwrite is false but found the following declared annotation(s): "
                               + "; ".join(f"'{k}' already has a value ({current[k]})" for k in clashes))
            raise CLIError(f"'{clashes[0]}' already has a value ({current[clashes[0]]}), and --overwrite is false")
        patch: dict[str, str | None] = {k: v for k, v in sets.items() if current.get(k) != v}
        patch.update({k: None for k in removes if k in current})
        name = display_name(info, obj.metadata.name)
        if args.verb == "label":
            for k in removes:
                if k not in current:
                    factory.print(f'label "{k}" not found.')
        past = _outcome(args, current, patch)
        if patch:
            await client.patch(info.kind, obj.metadata.name, {"metadata": {args.field: patch}},
                               namespace=obj.metadata.namespace, patch_type="merge")
        factory.print(f"{name} {past}")
    return 0


def _outcome(args: argparse.Namespace, current: dict[str, str], patch: dict[str, str | None]) -> str:
    """kubectl's words: annotate always says "annotated"; label says "not labeled" when nothing
    changes, and "unlabeled" when (without --overwrite) the labels came out shorter than they were."""
    if args.verb == "annotate":
        return "annotated"
    if not patch:
        return "not labeled"
    after = {k: v for k, v in {**current, **patch}.items() if v is not None}
    shorter = len(json.dumps(after, separators=(",", ":"))) < len(json.dumps(current, separators=(",", ":")))
    return "unlabeled" if shorter and not args.overwrite else "labeled"
