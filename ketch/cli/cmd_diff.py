"""`ketch diff -f FILE`: how `apply -f FILE` would change the live objects, as a unified diff.

kubectl asks the server for a dry-run apply; Ketch computes the result on the client instead,
with the very merge `apply` sends (cmd_apply.three_way_patch, then the server's strategic merge
patch from ketch.api.patch), so server-side defaulting and admission are not shown: an object
that does not exist yet diffs as the manifest itself. Exit codes are kubectl's: 0 no
differences, 1 differences, 2 (>1) an error. Secret values are masked as kubectl masks them.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ketch.api import errors

from .factory import Factory
from .main import add_common

if TYPE_CHECKING:
    from ketch.api.kinds import KindInfo

MASK = "***"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diff", help="show how apply -f would change the live objects")
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or - for stdin")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="with -f DIR, the manifests in its subdirectories too")
    add_common(p)
    p.set_defaults(run=run)


def file_name(info: KindInfo, name: str, namespace: str) -> str:
    """kubectl's per-object file name: group.version.Kind.namespace.name."""
    group, _, version = info.api_version.rpartition("/")
    parts = [group, version, info.kind] if group else [version, info.kind]
    if namespace:
        parts.append(namespace)
    return ".".join([*parts, name])


def _clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    md = doc.get("metadata")
    if isinstance(md, dict):
        md.pop("managedFields", None)
    return doc


def mask_secrets(live: dict[str, Any] | None, merged: dict[str, Any] | None) -> None:
    """kubectl's masking of a Secret's data: `***`, or `*** (before)`/`*** (after)` when it changes."""
    for doc in (live, merged):
        if doc is None or doc.get("kind") != "Secret":
            return
    for field in ("data", "stringData"):
        before = (live or {}).get(field) or {}
        after = (merged or {}).get(field) or {}
        for key in set(before) | set(after):
            changed = before.get(key) != after.get(key)
            if key in before:
                before[key] = MASK + (" (before)" if changed and key in after else "")
            if key in after:
                after[key] = MASK + (" (after)" if changed and key in before else "")


def merged_object(live: dict[str, Any] | None, doc: dict[str, Any]) -> dict[str, Any]:
    """What `apply` would leave: the manifest when nothing is live, else live + apply's patch."""
    from ketch.api import manifest
    from ketch.api.patch import strategic_merge_patch

    from .cmd_apply import LAST_APPLIED, three_way_patch, with_annotation

    annotated = with_annotation(doc)
    if live is None:
        merged: dict[str, Any] = annotated
    else:
        last = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
        try:
            original = json.loads(last) if last else {}
        except json.JSONDecodeError:
            original = {}
        patch = three_way_patch(original if isinstance(original, dict) else {}, annotated, live)
        if not patch:
            return live
        merged = strategic_merge_patch(live, patch)
    return fold_string_data(manifest.to_dict(manifest.from_dict(merged)))  # strict, in the server's order


def fold_string_data(doc: dict[str, Any]) -> dict[str, Any]:
    """A Secret's stringData as the server stores it: base64 in data, overriding its keys."""
    if doc.get("kind") == "Secret" and isinstance(doc.get("stringData"), dict):
        import base64

        data = dict(doc.get("data") or {})
        for key, value in doc.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        doc["data"] = dict(sorted(data.items()))
    return doc


def unified(name: str, live: dict[str, Any] | None, merged: dict[str, Any]) -> str:
    import difflib

    from ketch.api import manifest

    before = manifest.to_yaml(live).splitlines(keepends=True) if live is not None else []
    after = manifest.to_yaml(merged).splitlines(keepends=True)
    lines = list(difflib.unified_diff(before, after, f"LIVE/{name}", f"MERGED/{name}"))
    if not lines:
        return ""
    return f"diff -u -N LIVE/{name} MERGED/{name}\n" + "".join(lines)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    from ketch.api import manifest

    from .cmd_apply import set_namespace
    from .main import format_error
    from .manifests import kind_of, read_documents
    from .terminal import escape

    try:
        docs = read_documents(args.filename, factory.stdin, args.recursive)
        kinds = [(kind_of(source, doc), doc) for source, doc in docs]
        client = factory.client()
        texts = []
        for info, doc in kinds:
            doc = set_namespace(factory, info, doc)
            md = doc["metadata"]
            try:
                live_obj = await client.get(info.kind, md.get("name", ""), md.get("namespace", ""))
                live: dict[str, Any] | None = _clean(manifest.to_dict(live_obj))
            except errors.NotFound:
                live = None
            merged = _clean(merged_object(live, doc))
            assert merged is not None
            mask_secrets(live, merged)
            texts.append(unified(file_name(info, md.get("name", ""), md.get("namespace", "")), live, merged))
    except Exception as err:  # kubectl's CheckDiffErr: any failure exits above 1
        factory.error_line(format_error(err, factory.server_address))
        return 2
    out = "".join(texts)
    factory.out.write(escape(out) if out else "")
    return 1 if out else 0
