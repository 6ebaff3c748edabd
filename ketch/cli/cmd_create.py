"""`ketch create -f FILE` (an existing object is an error), `create namespace NAME`, and
`create job NAME --from=cronjob/CJ` (handed to cmd_create_job, the CronJob side's module)."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Any

from ketch.api import errors, manifest
from ketch.api.validation import field
from ketch.v1 import core_pb2

from . import dryrun
from .cmd_apply import set_namespace, source_error, with_annotation
from .factory import Factory
from .main import CLIError, add_common, format_error
from .manifests import kind_of, read_documents
from .printers import print_objects
from .resources import display_name, resolve_kind


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("create", help="create objects from manifests; create job NAME --from=cronjob/CJ")
    p.add_argument("-f", "--filename", action="append", help="file, directory or - for stdin")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="with -f DIR, the manifests in its subdirectories too")
    p.add_argument("-o", "--output", default="", help="name, json or yaml")
    p.add_argument("--save-config", action="store_true", help="record the manifest for a later apply")
    p.add_argument("what", nargs="*", help="job NAME --from=cronjob/CJ, namespace NAME, configmap NAME "
                                            "or secret generic NAME (with --from-literal/--from-file)")
    p.add_argument("--from", dest="from_", default="", help="create job NAME --from=cronjob/CJ")
    p.add_argument("--image", default="", help="create job NAME --image=IMAGE -- CMD [ARGS...]: a Job of one "
                                               "container running CMD (the image is recorded, not pulled)")
    p.add_argument("--from-literal", dest="from_literal", action="append", default=[], metavar="KEY=VALUE",
                   help="create configmap|secret generic NAME: a key and its value (repeatable)")
    p.add_argument("--from-file", dest="from_file", action="append", default=[], metavar="[KEY=]PATH",
                   help="create configmap|secret generic NAME: a file (key: its name) or each file of a directory")
    p.add_argument("--from-env-file", dest="from_env_file", action="append", default=[], metavar="PATH",
                   help="create configmap|secret generic NAME: KEY=VALUE lines of a file (# comments; a KEY "
                        "alone takes its value from the environment)")
    dryrun.add_dry_run_flag(p)
    add_common(p)
    p.set_defaults(run=run, dash_args=[])  # dash_args: create job's CMD ARGS after `--` (see main.parse_args)


async def _create(factory: Factory, obj: Any, dry_run: str) -> Any:
    """Create obj, or with --dry-run=client only return it (nothing sent), or have the server
    decide it without storing it (--dry-run=server)."""
    if dry_run == dryrun.CLIENT:
        return obj
    return await factory.client().create(obj, dry_run=dry_run == dryrun.SERVER)


def _print_created(factory: Factory, args: argparse.Namespace, info: Any, created: Any, dry_run: str) -> None:
    if args.output:
        print_objects(factory.out, [created], args.output, True, info)
    else:
        factory.print(f"{display_name(info, created.metadata.name)} created{dryrun.suffix(dry_run)}")


async def run(args: argparse.Namespace, factory: Factory) -> int:
    args.dry_run = dryrun.strategy(args, factory)
    if args.what:
        kind = args.what[0]
        if kind in ("namespace", "ns"):
            return await _create_namespace(args, factory)
        if kind in ("configmap", "configmaps", "cm"):
            return await _create_literal(args, factory, "configmap", args.what[1:])
        if kind in ("secret", "secrets") and args.what[1:2] == ["generic"]:
            return await _create_literal(args, factory, "secret", args.what[2:])
        if kind in ("job", "jobs", "job.batch"):
            try:
                module = importlib.import_module("ketch.cli.cmd_create_job")
            except ModuleNotFoundError as err:
                if err.name != "ketch.cli.cmd_create_job":
                    raise
                raise CLIError("create job is not available in this build") from None
            return int(await module.run(args, factory) or 0)
        raise CLIError(f'unknown type to create: "{kind}" (use -f FILE, "job NAME --from=cronjob/CJ", '
                       '"namespace NAME", "configmap NAME --from-literal=K=V" or '
                       '"secret generic NAME --from-literal=K=V")')
    if not args.filename:
        raise CLIError("must specify one of -f and -k, or a type to create (create job NAME --from=cronjob/CJ)")
    docs = read_documents(args.filename, factory.stdin, args.recursive)
    kinds = [(source, kind_of(source, doc), doc) for source, doc in docs]
    failed = False
    printed = 0
    for source, info, doc in kinds:
        try:
            doc = set_namespace(factory, info, doc)
            if args.save_config:
                doc = with_annotation(doc)
            try:
                obj = manifest.from_dict(doc)
                created: Any = await _create(factory, obj, args.dry_run)
            except errors.Unavailable:
                raise
            except errors.StatusError as err:
                raise source_error(err, "creating", source, doc) from None
        except errors.Unavailable:
            raise
        except errors.StatusError as err:
            factory.error_line(format_error(err))
            failed = True
            continue
        if printed and args.output == "yaml":
            factory.out.write("---\n")  # kubectl's one YAMLPrinter separates the documents it prints
        _print_created(factory, args, info, created, args.dry_run)
        printed += 1
    return 1 if failed else 0


async def _create_namespace(args: argparse.Namespace, factory: Factory) -> int:
    if len(args.what) != 2:
        raise CLIError("exactly one NAME is required, got " + str(len(args.what) - 1))
    ns = core_pb2.Namespace()
    ns.metadata.name = args.what[1]
    created = await _create(factory, ns, args.dry_run)
    _print_created(factory, args, resolve_kind("namespace"), created, args.dry_run)
    return 0


def files(sources: list[str]) -> list[tuple[str, bytes]]:
    """kubectl's --from-file: [KEY=]FILE (key: the file's name), or a directory's regular files."""
    out: list[tuple[str, bytes]] = []
    for source in sources:
        key, sep, path = source.partition("=")
        if not sep:
            key, path = "", source
        elif not key or not path:
            raise CLIError(f"key names or file paths cannot be empty: {source}")
        p = Path(path)
        try:
            if p.is_dir():
                if key:
                    raise CLIError(f"cannot give a key name for a directory path: {source}")
                out.extend((f.name, f.read_bytes()) for f in sorted(p.iterdir())
                           if f.is_file() and not field.config_key(f.name))
            else:
                out.append((key or p.name, p.read_bytes()))
        except OSError as err:
            raise CLIError(f"error reading {path}: {err.strerror or err}") from None
    return out


def _lines(data: bytes) -> list[bytes]:
    """The lines of data as Go's bufio.ScanLines gives them (no "\n", a trailing "\r" dropped)."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def env_file(path: str) -> list[tuple[str, str]]:
    """kubectl's --from-env-file: KEY=VALUE per line, the value verbatim (quotes and trailing
    spaces kept); blank lines and lines starting with # skipped; a KEY without `=` takes its value
    from the environment; a key must be a valid environment variable name."""
    p = Path(path)
    try:
        if p.is_dir():
            raise CLIError("env config file cannot be a directory")
        data = p.read_bytes()
    except OSError as err:
        raise CLIError(f"error reading {path}: {err.strerror or err}") from None
    out: list[tuple[str, str]] = []
    for number, raw in enumerate(_lines(data)):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CLIError(f"env file {path} contains invalid utf8 bytes at line {number + 1}: "
                           f"[{' '.join(str(b) for b in raw)}]") from None
        if number == 0:
            line = line.removeprefix("\ufeff")
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if errs := field.env_var_name(key):
            raise CLIError(f'"{key}" is not a valid key name: ' + ";".join(errs))
        out.append((key, value if sep else os.environ.get(key, "")))
    return out


def literals(pairs: list[str], kind: str, name: str) -> dict[str, str]:
    """kubectl's --from-literal: KEY=VALUE (the value may hold '='), each key once."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"invalid literal source {pair}, expected key=value")
        if key in out:
            raise CLIError(f'cannot add key {key}, another key by that name already exists in Data for '
                           f'{kind} "{name}"')
        out[key] = value
    return out


async def _create_literal(args: argparse.Namespace, factory: Factory, what: str, names: list[str]) -> int:
    """`create configmap NAME --from-literal=K=V` and `create secret generic NAME ...`, as kubectl."""
    if len(names) != 1:
        raise CLIError("exactly one NAME is required, got " + str(len(names)))
    name = names[0]
    info = resolve_kind(what)
    obj: Any = info.new()
    obj.api_version, obj.kind = info.api_version, info.kind
    obj.metadata.name = name
    obj.metadata.namespace = factory.default_namespace
    if args.from_env_file and (args.from_file or args.from_literal):
        raise CLIError("from-env-file cannot be combined with from-file or from-literal")
    data: dict[str, bytes] = {}
    sources = [(k, v.encode()) for path in args.from_env_file for k, v in env_file(path)]
    for key, raw in [*sources, *files(args.from_file), *((k, v.encode()) for k, v in
                                                         literals(args.from_literal, info.kind, name).items())]:
        if key in data:
            raise CLIError(f'cannot add key {key}, another key by that name already exists in Data for '
                           f'{info.kind} "{name}"')
        data[key] = raw
    for key, raw in data.items():
        if what == "secret":
            obj.data[key] = raw
        else:
            try:
                obj.data[key] = raw.decode()
            except UnicodeDecodeError:
                obj.binary_data[key] = raw  # as kubectl: what is not UTF-8 goes to binaryData
    created = await _create(factory, obj, args.dry_run)
    _print_created(factory, args, info, created, args.dry_run)
    return 0
