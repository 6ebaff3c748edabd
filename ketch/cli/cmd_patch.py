"""`ketch patch KIND NAME -p PATCH [--type merge|strategic|json] [--subresource status]`.

The default is a JSON merge patch (RFC 7386), as the external contract says (kubectl's own
default is strategic; `--type strategic` gives that).

The patch may be JSON or YAML (as kubectl takes it). Prints `job.batch/pi patched`, or
`patched (no change)` when the object came back the same. --dry-run=client patches the object
read from the server here and writes nothing; --dry-run=server has the server decide the patch
without storing it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ketch.api import manifest, safeyaml
from ketch.api.patch import apply_patch

from . import dryrun
from .factory import Factory
from .main import CLIError, add_common
from .manifests import read_text
from .printers import print_objects
from .resources import display_name, parse_targets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patch", help="patch an object")
    p.add_argument("targets", nargs="+", metavar="KIND NAME")
    p.add_argument("-p", "--patch", default="", help="the patch, JSON or YAML")
    p.add_argument("--patch-file", default="", help="a file holding the patch")
    p.add_argument("--type", default="merge", choices=["merge", "json", "strategic"],
                   help="merge (default: JSON merge patch), strategic or json")
    p.add_argument("--subresource", default="", choices=["", "status"])
    p.add_argument("-o", "--output", default="")
    dryrun.add_dry_run_flag(p)
    add_common(p)
    p.set_defaults(run=run)


def parse_patch(text: str) -> Any:
    """The patch as JSON or YAML, or a one-line error naming it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_err:
        try:
            value = safeyaml.safe_load(text)
        except safeyaml.YAMLLimitError as err:
            raise CLIError(f"unable to parse the patch: yaml: {err}") from None
        except yaml.MarkedYAMLError as err:  # kubectl reads patches as YAML: its words, with the line
            raise CLIError(f'unable to parse "{text}": yaml: {manifest.yaml_problem(err)}') from None
        except yaml.YAMLError:
            raise CLIError(f'unable to parse "{text}": {json_err}') from None
        if not isinstance(value, dict | list):
            raise CLIError(f'unable to parse "{text}": {json_err}') from None
        return value


async def run(args: argparse.Namespace, factory: Factory) -> int:
    dry_run = dryrun.strategy(args, factory)
    if bool(args.patch) == bool(args.patch_file):
        raise CLIError("must specify exactly one of -p/--patch and --patch-file")
    text = args.patch or read_text(Path(args.patch_file))
    patch = parse_patch(text)
    if args.type == "json" and not isinstance(patch, list):
        raise CLIError("a JSON patch (--type json) must be a list of operations")
    if args.type != "json" and not isinstance(patch, dict):
        raise CLIError(f"a {args.type} merge patch must be a JSON object")
    client = factory.client()
    targets = parse_targets(args.targets)
    for info, name in targets:
        if name is None:
            raise CLIError("resource name may not be empty")
        ns = factory.default_namespace if info.namespaced else ""
        before = await client.get(info.kind, name, ns)
        obj: Any
        if dry_run == dryrun.CLIENT:
            patched = apply_patch(manifest.to_dict(before), args.type, json.dumps(patch))
            obj = manifest.from_dict(patched)
        else:
            obj = await client.patch(info.kind, name, patch, namespace=ns, patch_type=args.type,
                                     subresource=args.subresource, dry_run=dry_run == dryrun.SERVER)
        if args.output:
            print_objects(factory.out, [obj], args.output, True, info)
            continue
        same = manifest.to_dict(obj) == manifest.to_dict(before)
        factory.print(f"{display_name(info, name)} patched" + (" (no change)" if same else "")
                      + dryrun.suffix(dry_run))
    return 0
