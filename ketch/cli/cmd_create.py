"""`ketch create -f FILE` (an existing object is an error), `create namespace NAME`, and
`create job NAME --from=cronjob/CJ` (handed to cmd_create_job, the CronJob side's module)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ketch.api import errors, manifest
from ketch.v1 import core_pb2

from .cmd_apply import set_namespace, source_error, with_annotation
from .factory import Factory
from .main import CLIError, add_common, format_error
from .manifests import kind_of, read_documents
from .printers import print_objects
from .resources import display_name, resolve_kind


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("create", help="create objects from manifests; create job NAME --from=cronjob/CJ")
    p.add_argument("-f", "--filename", action="append", help="file, directory or - for stdin")
    p.add_argument("-o", "--output", default="", help="name, json or yaml")
    p.add_argument("--save-config", action="store_true", help="record the manifest for a later apply")
    p.add_argument("what", nargs="*", help="job NAME --from=cronjob/CJ, or namespace NAME")
    p.add_argument("--from", dest="from_", default="", help="create job NAME --from=cronjob/CJ")
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    if args.what:
        kind = args.what[0]
        if kind in ("namespace", "ns"):
            return await _create_namespace(args, factory)
        if kind in ("job", "jobs", "job.batch"):
            try:
                module = importlib.import_module("ketch.cli.cmd_create_job")
            except ModuleNotFoundError as err:
                if err.name != "ketch.cli.cmd_create_job":
                    raise
                raise CLIError("create job is not available in this build") from None
            return int(await module.run(args, factory) or 0)
        raise CLIError(f'unknown type to create: "{kind}" (use -f FILE, "job NAME --from=cronjob/CJ" or '
                       '"namespace NAME")')
    if not args.filename:
        raise CLIError("must specify one of -f and -k, or a type to create (create job NAME --from=cronjob/CJ)")
    docs = read_documents(args.filename, factory.stdin)
    kinds = [(source, kind_of(source, doc), doc) for source, doc in docs]
    client = factory.client()
    failed = False
    for source, info, doc in kinds:
        try:
            doc = set_namespace(factory, info, doc)
            if args.save_config:
                doc = with_annotation(doc)
            try:
                obj = manifest.from_dict(doc)
                created: Any = await client.create(obj)
            except errors.Unavailable:
                raise
            except errors.StatusError as err:
                raise source_error(err, "creating", source) from None
        except errors.Unavailable:
            raise
        except errors.StatusError as err:
            factory.error_line(format_error(err))
            failed = True
            continue
        if args.output:
            print_objects(factory.out, [created], args.output, True, info)
        else:
            factory.print(f"{display_name(info, created.metadata.name)} created")
    return 1 if failed else 0


async def _create_namespace(args: argparse.Namespace, factory: Factory) -> int:
    if len(args.what) != 2:
        raise CLIError("exactly one NAME is required, got " + str(len(args.what) - 1))
    ns = core_pb2.Namespace()
    ns.metadata.name = args.what[1]
    created = await factory.client().create(ns)
    info = resolve_kind("namespace")
    if args.output:
        print_objects(factory.out, [created], args.output, True, info)
    else:
        factory.print(f"{display_name(info, created.metadata.name)} created")
    return 0
