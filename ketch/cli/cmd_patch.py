"""`ketch patch KIND NAME -p JSON [--type merge|json|strategic] [--subresource status]`."""

from __future__ import annotations

import argparse

from ketch.api import manifest

from .factory import Factory
from .main import add_common
from .resources import display_name, parse_targets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patch", help="patch an object")
    p.add_argument("targets", nargs="+", metavar="KIND NAME")
    p.add_argument("-p", "--patch", required=True, help="the patch, JSON")
    p.add_argument("--type", default="merge", choices=["merge", "json", "strategic"])
    p.add_argument("--subresource", default="", choices=["", "status"])
    p.add_argument("-o", "--output", default="")
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    for info, name in parse_targets(args.targets):
        if name is None:
            raise ValueError("a name is required to patch")
        ns = factory.default_namespace if info.namespaced else ""
        before = await client.get(info.kind, name, ns)
        obj = await client.patch(info.kind, name, args.patch, namespace=ns, patch_type=args.type,
                                 subresource=args.subresource)
        if args.output == "json":
            print(manifest.to_json(obj), file=factory.out)
        elif args.output == "yaml":
            print(manifest.to_yaml(obj), file=factory.out)
        else:
            changed = obj.metadata.resource_version != before.metadata.resource_version
            verb = "patched" if changed else "patched (no change)"
            print(f"{display_name(info, name)} {verb}", file=factory.out)
    return 0
