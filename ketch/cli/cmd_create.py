"""`ketch create -f FILE`: create objects (an existing one is an error)."""

from __future__ import annotations

import argparse

from ketch.api import errors, manifest
from ketch.api.kinds import info_of

from .factory import Factory
from .main import add_common
from .manifests import read_documents
from .resources import display_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("create", help="create objects from manifests")
    p.add_argument("-f", "--filename", action="append", help="file, directory or - for stdin")
    p.add_argument("-o", "--output", default="", choices=["", "name", "json", "yaml"])
    p.add_argument("what", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--from", dest="from_", default="", help="create job NAME --from=cronjob/CJ")
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    if args.what:
        from . import cmd_create_job

        return await cmd_create_job.run(args, factory)
    if not args.filename:
        raise ValueError("must specify one of -f and -k, or a type to create (create job NAME --from=cronjob/CJ)")
    client = factory.client()
    objs = [manifest.from_dict(doc) for _, doc in read_documents(args.filename)]
    failed = False
    for obj in objs:
        info = info_of(obj)
        if info.namespaced and not obj.metadata.namespace:  # type: ignore[attr-defined]
            obj.metadata.namespace = factory.default_namespace  # type: ignore[attr-defined]
        try:
            created = await client.create(obj)
        except errors.StatusError as err:
            if len(objs) == 1:
                raise
            print(f"Error from server ({err.reason}): {err.message}", file=factory.err)
            failed = True
            continue
        if args.output == "json":
            print(manifest.to_json(created), file=factory.out)
        elif args.output == "yaml":
            print(manifest.to_yaml(created), file=factory.out)
        elif args.output == "name":
            print(display_name(info, created.metadata.name), file=factory.out)
        else:
            print(f"{display_name(info, created.metadata.name)} created", file=factory.out)
    return 1 if failed else 0
