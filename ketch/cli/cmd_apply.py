"""`ketch apply -f FILE|-`: create objects, or update them with kubectl's three-way merge.

The last applied manifest is kept in the annotation kubectl uses
(`kubectl.kubernetes.io/last-applied-configuration`), so that a field removed from the manifest
is removed from the object, while fields the server or controllers filled in stay.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ketch.api import errors, manifest
from ketch.api.kinds import KindInfo

from .factory import Factory
from .main import add_common
from .manifests import read_documents
from .resources import display_name

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="create or update objects from manifests")
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    p.add_argument("-o", "--output", default="", choices=["", "name", "json", "yaml"])
    add_common(p)
    p.set_defaults(run=run)


def _removed_keys(last: Any, new: Any) -> Any:
    """A merge patch that deletes what `last` had and `new` no longer has."""
    if not isinstance(last, dict) or not isinstance(new, dict):
        return None
    patch: dict[str, Any] = {}
    for key, value in last.items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            sub = _removed_keys(value, new[key])
            if sub:
                patch[key] = sub
    return patch


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_patch_for(doc: dict[str, Any], live_annotations: dict[str, str]) -> dict[str, Any]:
    last_text = live_annotations.get(LAST_APPLIED)
    last = json.loads(last_text) if last_text else {}
    patch = _deep_merge(_removed_keys(last, doc) or {}, doc)
    patch.pop("status", None)
    return patch


async def apply_one(factory: Factory, info: KindInfo, doc: dict[str, Any], namespace: str) -> tuple[Any, str]:
    client = factory.client()
    doc = dict(doc)
    md = dict(doc.get("metadata") or {})
    name = md.get("name", "")
    if info.namespaced:
        md["namespace"] = md.get("namespace") or namespace
    else:
        md.pop("namespace", None)
    doc["metadata"] = md
    annotated = json.loads(json.dumps(doc))
    annotated["metadata"].setdefault("annotations", {})
    annotated["metadata"]["annotations"][LAST_APPLIED] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    obj = manifest.from_dict(annotated)
    if not name:
        return await client.create(obj), "created"
    try:
        live = await client.get(info.kind, name, md.get("namespace", ""))
    except errors.NotFound:
        return await client.create(obj), "created"
    patch = apply_patch_for(annotated, dict(live.metadata.annotations))
    patch.get("metadata", {}).pop("resourceVersion", None)
    new = await client.patch(info.kind, name, patch, namespace=md.get("namespace", ""))
    if new.metadata.resource_version == live.metadata.resource_version:
        return new, "unchanged"
    return new, "configured"


async def run(args: argparse.Namespace, factory: Factory) -> int:
    docs = read_documents(args.filename)
    # Decode every document first: a bad one stops the apply before anything is written.
    decoded = []
    for _source, doc in docs:
        info = manifest.kind_of_document(doc)
        manifest.from_dict(doc)
        decoded.append((info, doc))
    failed = False
    for info, doc in decoded:
        try:
            obj, verb = await apply_one(factory, info, doc, factory.default_namespace)
        except errors.StatusError as err:
            if len(decoded) == 1:
                raise
            print(f"Error from server ({err.reason}): {err.message}".replace("\n", " "), file=factory.err)
            failed = True
            continue
        name = obj.metadata.name
        if args.output == "name":
            print(display_name(info, name), file=factory.out)
        elif args.output == "json":
            print(manifest.to_json(obj), file=factory.out)
        elif args.output == "yaml":
            print(manifest.to_yaml(obj), file=factory.out)
        else:
            print(f"{display_name(info, name)} {verb}", file=factory.out)
    return 1 if failed else 0
