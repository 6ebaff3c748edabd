"""`ketch apply -f FILE|-`: create objects, or update them with kubectl's three-way merge.

The last applied manifest is kept in the annotation kubectl uses
(`kubectl.kubernetes.io/last-applied-configuration`). An update sends a strategic merge patch
built as kubectl builds it: the fields the manifest sets that differ from the live object, plus
a deletion for every field the last applied manifest had and this one has not. So fields the
server or controllers filled in stay, a field removed from the manifest is removed from the
object, and applying an unchanged manifest sends nothing at all ("unchanged").

--dry-run=client reads the live objects but writes nothing (the patch is applied here);
--dry-run=server sends the writes marked dry run: the server decides them and stores nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

from ketch.api import errors, manifest
from ketch.api.kinds import KindInfo
from ketch.api.patch import (
    MERGE_KEYS,  # the lists the server merges by key: the patch must agree
    apply_patch,
)

from . import dryrun
from .factory import Factory
from .main import CLIError, add_common
from .manifests import kind_of, read_documents
from .printers import check_output, print_objects
from .resources import display_name

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Lists the API server's strategic merge patch merges element by element, and their keys.
# Set by the server; a manifest copied from `get -o yaml` carries them, a patch must not.
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink",
                 "deletionTimestamp", "deletionGracePeriodSeconds")
_MISSING = object()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="create or update objects from manifests")
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="with -f DIR, the manifests in its subdirectories too")
    p.add_argument("-o", "--output", default="", help="name, json or yaml")
    dryrun.add_dry_run_flag(p)
    add_common(p)
    p.set_defaults(run=run)


# -- the three-way patch (pure) -------------------------------------------------------------------


def _keyed(items: Any, key: str) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and key in i for i in items)


def _find(items: object, key: str, value: Any) -> Any:
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get(key) == value:
            return item
    return None


def _changes(current: Any, modified: dict[str, Any]) -> dict[str, Any]:
    """What modified sets that current lacks or has otherwise (additions and changes only)."""
    out: dict[str, Any] = {}
    for k, mv in modified.items():
        cv = current.get(k, _MISSING) if isinstance(current, dict) else _MISSING
        if mv is None:
            if cv is not _MISSING and cv is not None:
                out[k] = None
        elif cv is _MISSING:
            out[k] = copy.deepcopy(mv)
        elif isinstance(mv, dict) and isinstance(cv, dict):
            d = _changes(cv, mv)
            if d:
                out[k] = d
        elif k in MERGE_KEYS and _keyed(mv, MERGE_KEYS[k]) and _keyed(cv, MERGE_KEYS[k]):
            key = MERGE_KEYS[k]
            items = []
            for me in mv:
                ce = _find(cv, key, me[key])
                if ce is None:
                    items.append(copy.deepcopy(me))
                else:
                    d = _changes(ce, me)
                    if d:
                        items.append({key: me[key], **d})
            if items:
                out[k] = items
        elif mv != cv:
            out[k] = copy.deepcopy(mv)
    return out


def _deletions(original: dict[str, Any], modified: dict[str, Any]) -> dict[str, Any]:
    """A null for every field original had and modified has not (deletions only)."""
    out: dict[str, Any] = {}
    for k, ov in original.items():
        if k not in modified:
            out[k] = None
            continue
        mv = modified[k]
        if isinstance(ov, dict) and isinstance(mv, dict):
            d = _deletions(ov, mv)
            if d:
                out[k] = d
        elif k in MERGE_KEYS and _keyed(ov, MERGE_KEYS[k]) and _keyed(mv, MERGE_KEYS[k]):
            key = MERGE_KEYS[k]
            items = []
            for oe in ov:
                me = _find(mv, key, oe[key])
                if me is None:
                    items.append({key: oe[key], "$patch": "delete"})
                else:
                    d = _deletions(oe, me)
                    if d:
                        items.append({key: oe[key], **d})
            if items:
                out[k] = items
    return out


def _combine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _combine(out[k], v)
        elif k in MERGE_KEYS and isinstance(v, list) and isinstance(out.get(k), list):
            key = MERGE_KEYS[k]
            merged = [dict(i) for i in out[k]]
            for item in v:
                have = _find(merged, key, item.get(key))
                if have is None:
                    merged.append(item)
                else:
                    have.update(item)
            out[k] = merged
        else:
            out[k] = v
    return out


def three_way_patch(original: dict[str, Any], modified: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """kubectl's CreateThreeWayMergePatch: deletions(original→modified) + changes(current→modified)."""
    modified = strip_server_fields(modified)
    original = strip_server_fields(original)
    patch = _combine(_deletions(original, modified), _changes(current, modified))
    for k in ("apiVersion", "kind"):
        patch.pop(k, None)
    return patch


def strip_server_fields(doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc)
    doc.pop("status", None)
    md = dict(doc.get("metadata") or {})
    for k in SERVER_FIELDS:
        md.pop(k, None)
    if "metadata" in doc:
        doc["metadata"] = md
    return doc


def last_applied_text(doc: dict[str, Any]) -> str:
    """The annotation's value: the manifest as applied, minus the annotation itself."""
    doc = copy.deepcopy(doc)
    anns = doc.get("metadata", {}).get("annotations")
    if isinstance(anns, dict):
        anns.pop(LAST_APPLIED, None)
        if not anns:
            doc["metadata"].pop("annotations")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def with_annotation(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    md = out.setdefault("metadata", {})
    anns = md.get("annotations") or {}
    md["annotations"] = {**anns, LAST_APPLIED: last_applied_text(doc)}
    return out


# -- running --------------------------------------------------------------------------------------


def set_namespace(factory: Factory, info: KindInfo, doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its namespace settled: the manifest's, else -n's, else default."""
    doc = copy.deepcopy(doc)
    md = doc.setdefault("metadata", {})
    if not isinstance(md, dict):
        raise CLIError("metadata must be an object")
    if info.namespaced:
        ns = md.get("namespace") or ""
        if ns and factory.namespace_given and ns != factory.default_namespace:
            raise CLIError(f'the namespace from the provided object "{ns}" does not match the namespace '
                           f'"{factory.default_namespace}". You must pass \'--namespace={ns}\' to perform this '
                           "operation.")
        md["namespace"] = ns or factory.default_namespace
    else:
        md.pop("namespace", None)
    return doc


async def apply_one(factory: Factory, info: KindInfo, doc: dict[str, Any], source: str = "STDIN",
                    dry_run: str = dryrun.NONE) -> tuple[Any, str]:
    """Create or patch one object; returns (the object, created|configured|unchanged).

    Server errors come back as kubectl words them: `error when creating "pi.yaml": ...`.
    """
    server_dry = dry_run == dryrun.SERVER
    client = factory.client()
    md = doc["metadata"]
    name, ns = md.get("name", ""), md.get("namespace", "")
    annotated = with_annotation(doc)
    if not name:
        if md.get("generateName"):
            raise CLIError("cannot use generate name with apply")
        raise CLIError("resource name may not be empty")
    try:
        live = await client.get(info.kind, name, ns)
    except errors.NotFound:
        obj = manifest.from_dict(annotated)
        if dry_run == dryrun.CLIENT:
            return obj, "created"
        try:
            return await client.create(obj, dry_run=server_dry), "created"
        except errors.AlreadyExists:
            live = await client.get(info.kind, name, ns)
        except errors.Unavailable:
            raise
        except errors.StatusError as err:
            raise source_error(err, "creating", source) from None
    current = manifest.to_dict(live)
    last = (current.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if last is None:
        factory.warn(f"resource {info.qualified_plural}/{name} is missing the {LAST_APPLIED} annotation which "
                     "is required by ketch apply. ketch apply should only be used on resources created "
                     "declaratively by either ketch create --save-config or ketch apply. The missing "
                     "annotation will be patched automatically.")
    try:
        original = json.loads(last) if last else {}
    except json.JSONDecodeError:
        original = {}
    patch = three_way_patch(original if isinstance(original, dict) else {}, annotated, current)
    if not patch:
        return live, "unchanged"
    if dry_run == dryrun.CLIENT:
        try:
            patched = apply_patch(current, "strategic", json.dumps(patch))
            return manifest.from_dict(patched), "configured"
        except errors.StatusError as err:
            raise source_error(err, "patching", source) from None
    try:
        new = await client.patch(info.kind, name, patch, namespace=ns, patch_type="strategic", dry_run=server_dry)
    except errors.Unavailable:
        raise
    except errors.StatusError as err:
        raise source_error(err, "patching", source) from None
    if server_dry:  # a dry run keeps the resourceVersion: the object itself tells
        return new, "unchanged" if manifest.to_dict(new) == manifest.to_dict(live) else "configured"
    if new.metadata.resource_version == live.metadata.resource_version:
        return new, "unchanged"
    return new, "configured"


def source_error(err: errors.StatusError, verb: str, source: str,
                 doc: dict[str, Any] | None = None) -> errors.StatusError:
    """kubectl's AddSourceToErr: `error when creating "pi.yaml": ...` (Invalid keeps its own text);
    a field of the wrong type in doc is named with its line in the file, as a YAML error is."""
    if isinstance(err, errors.Invalid):
        return err
    if doc is not None:
        from .manifests import with_lines

        placed = with_lines(err, source, doc)
        assert isinstance(placed, errors.StatusError)
        err = placed
    wrapped = type(err)(f'error when {verb} "{source}": {err.message}')
    wrapped.code = err.code
    return wrapped


async def run(args: argparse.Namespace, factory: Factory) -> int:
    dry_run = dryrun.strategy(args, factory)
    docs = read_documents(args.filename, factory.stdin, args.recursive)
    # A document without apiVersion/kind stops everything before any write, as kubectl's builder.
    kinds = [(source, kind_of(source, doc), doc) for source, doc in docs]
    failed = False
    # As kubectl's printObjects: -o json|yaml|jsonpath... prints once, after every object is
    # applied, and several objects as one List (valid JSON, one YAML document).
    whole = bool(args.output) and args.output != "name"
    if args.output:
        check_output(args.output)  # a bad -o stops everything before any write, as kubectl's flags do
    applied: list[tuple[KindInfo, Any]] = []
    for source, info, doc in kinds:
        try:
            doc = set_namespace(factory, info, doc)
            try:
                manifest.from_dict(doc)  # strict decoding, per object as the server does it
            except errors.StatusError as err:
                raise source_error(err, "creating", source, doc) from None
            obj, verb = await apply_one(factory, info, doc, source, dry_run)
        except errors.Unavailable:
            raise
        except errors.StatusError as err:
            factory.error_line(_error_text(err))
            failed = True
            continue
        if whole:
            applied.append((info, obj))
        elif args.output:
            print_objects(factory.out, [obj], args.output, True, info)
        else:
            factory.print(f"{display_name(info, obj.metadata.name)} {verb}{dryrun.suffix(dry_run)}")
    if failed:
        return 1
    if applied:
        print_objects(factory.out, [o for _, o in applied], args.output, len(applied) == 1, applied[0][0])
    return 0


def _error_text(err: errors.StatusError) -> str:
    from .main import format_error

    return format_error(err)
