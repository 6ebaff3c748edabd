"""`ketch replace -f FILE|- [--force] [--grace-period N] [--cascade C] [--timeout D] [-o FORMAT]
[--dry-run=client|server] [--save-config] [-R]`: the manifest in place of the live object, as
`kubectl replace`.

Without --force each object is updated whole (kubectl's PUT, at the live object's
resourceVersion when the manifest names none): what the manifest leaves out is cleared, and what
the server will not change (a Job's pod template or selector) is refused, as in Kubernetes. It
prints `job.batch/pi replaced`.

With --force each object is deleted (one that is missing is fine), followed until it is gone
(--timeout, 5m by default), then created anew from the manifest: kubectl's way to run a Job
again from its file. It prints `job.batch "pi" deleted`, then `job.batch/pi replaced`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ketch.api import durations, errors, manifest
from ketch.api.kinds import KindInfo

from . import dryrun
from .cmd_apply import set_namespace, source_error, with_annotation
from .factory import Factory
from .main import CLIError, add_common, format_error
from .manifests import kind_of, read_documents
from .printers import check_output, print_objects
from .resources import display_name, quoted_name

FORCE_TIMEOUT = 300.0  # kubectl replace --force waits 5 minutes for the old objects by default
CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan", "true": "Background",
           "false": "Orphan"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replace", help="replace objects by their manifests (--force: delete and create them)")
    p.add_argument("-f", "--filename", action="append", help="file, directory or - for stdin")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="with -f DIR, the manifests in its subdirectories too")
    p.add_argument("--force", action="store_true", help="delete each object, wait until it is gone, create it anew")
    p.add_argument("--grace-period", type=int, default=-1, help="with --force: seconds the deleted pods get")
    p.add_argument("--cascade", default="background", help="with --force: background, foreground or orphan")
    p.add_argument("--timeout", default="0", help="with --force: how long to wait for the deletion (default 5m)")
    p.add_argument("-o", "--output", default="", help="name, json, yaml or jsonpath=...")
    p.add_argument("--save-config", action="store_true", help="record the manifest for a later apply")
    dryrun.add_dry_run_flag(p)
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    if not args.filename:
        raise CLIError("Must specify --filename to replace")
    if args.grace_period >= 0 and not args.force:
        raise CLIError("--grace-period must have --force specified")
    timeout = durations.parse(args.timeout)
    if timeout and not args.force:
        raise CLIError("--timeout must have --force specified")
    policy = CASCADE.get(args.cascade.lower())
    if policy is None:
        raise CLIError(f'invalid --cascade "{args.cascade}": must be one of background, foreground, orphan')
    dry_run = dryrun.strategy(args, factory)
    if args.force and dry_run != dryrun.NONE:
        raise CLIError("--dry-run cannot be used with --force: it deletes the objects")
    if args.output:
        check_output(args.output)
    objs: list[tuple[str, KindInfo, Any]] = []
    for source, doc in read_documents(args.filename, factory.stdin, args.recursive):
        info = kind_of(source, doc)
        doc = set_namespace(factory, info, doc)
        if args.save_config:
            doc = with_annotation(doc)
        try:
            objs.append((source, info, manifest.from_dict(doc)))
        except errors.StatusError as err:
            raise source_error(err, "replacing", source, doc) from None
    if args.force:
        return await _force(args, factory, objs, policy, timeout or FORCE_TIMEOUT)
    client = factory.client()

    async def replace(info: KindInfo, obj: Any) -> Any:
        md = obj.metadata
        if dry_run == dryrun.CLIENT:
            return obj
        if not md.resource_version:  # kubectl's Replace(overwrite=true): at the live version
            md.resource_version = (await client.get(info.kind, md.name, md.namespace)).metadata.resource_version
        return await client.update(obj, dry_run=dry_run == dryrun.SERVER)

    return await _write_each(factory, args, objs, "replacing", replace, dryrun.suffix(dry_run))


async def _write_each(factory: Factory, args: argparse.Namespace, objs: list[tuple[str, KindInfo, Any]], doing: str,
                      write: Callable[[KindInfo, Any], Awaitable[Any]], suffix: str = "") -> int:
    """write each object in turn, printing what it became; one that fails is reported (naming its
    file) and the rest still go. 1 when any failed."""
    failed = False
    for source, info, obj in objs:
        try:
            written = await write(info, obj)
        except errors.Unavailable:
            raise
        except errors.StatusError as err:
            factory.error_line(format_error(source_error(err, doing, source)))
            failed = True
            continue
        _print(factory, args, info, written, suffix)
    return 1 if failed else 0


def _print(factory: Factory, args: argparse.Namespace, info: KindInfo, obj: Any, suffix: str = "") -> None:
    if args.output:
        print_objects(factory.out, [obj], args.output, True, info)
    else:
        factory.print(f"{display_name(info, obj.metadata.name)} replaced{suffix}")


async def _force(args: argparse.Namespace, factory: Factory, objs: list[tuple[str, KindInfo, Any]], policy: str,
                 timeout: float) -> int:
    """kubectl's forceReplace: delete (missing is fine), wait until gone, create."""
    from ketch.client.clientset import Batch

    from .cmd_delete import wait_all_gone

    client = factory.client()
    batch = Batch()
    for _source, info, obj in objs:
        batch.delete(info.kind, obj.metadata.name, obj.metadata.namespace, propagation_policy=policy,
                     grace_period_seconds=args.grace_period if args.grace_period >= 0 else None)
    pending: list[tuple[KindInfo, str, str, str]] = []
    for (source, info, obj), outcome in zip(objs, await client.batch(batch), strict=True):
        if isinstance(outcome.error, errors.NotFound):
            continue
        if outcome.error is not None:
            raise source_error(outcome.error, "deleting", source) if isinstance(outcome.error, errors.StatusError) \
                else outcome.error
        factory.print(f"{quoted_name(info, obj.metadata.name)} deleted")
        if not outcome.deleted and outcome.object is not None:
            pending.append((info, obj.metadata.name, obj.metadata.namespace, outcome.object.metadata.uid))
    if pending:
        try:
            async with asyncio.timeout(timeout):
                await wait_all_gone(factory, pending)
        except TimeoutError:
            names = ", ".join(display_name(info, name) for info, name, _ns, _uid in pending)
            raise CLIError(f"timed out waiting for the condition on {names}") from None
    return await _write_each(factory, args, objs, "creating", lambda _info, obj: client.create(obj))
