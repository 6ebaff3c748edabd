"""Patches on the JSON form of an object: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
and the part of Kubernetes' strategic merge patch that clients of Ketch use.

Pure functions on dicts; the API server converts the object to its JSON form, patches it and
decodes the result strictly, so a patch can never store a field that a manifest could not.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .errors import BadRequest, Invalid

# Lists that strategic merge patch merges by a key instead of replacing.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "conditions": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ownerReferences": "uid",
    "addresses": "type",
}
# Primitive lists that strategic merge patch unions.
MERGE_PRIMITIVES = {"finalizers"}


def parse_patch(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadRequest(f"the patch is not valid JSON: {err}") from err


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.partition("/")[2]
            if not isinstance(value, list):
                raise BadRequest(f"{key} must be a list")
            drop = set(json.dumps(v) for v in value)
            result[field] = [v for v in result.get(field) or [] if json.dumps(v) not in drop]
            continue
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGE_PRIMITIVES and isinstance(result.get(key), list):
            merged = list(result[key])
            merged.extend(v for v in value if v not in merged)
            result[key] = merged
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_keyed_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    out = [copy.deepcopy(item) for item in current]
    index = {item.get(merge_key): i for i, item in enumerate(out)
             if isinstance(item, dict) and _primitive(item.get(merge_key))}
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            out.append(copy.deepcopy(item))
            continue
        k = item[merge_key]
        if not _primitive(k):
            raise BadRequest(f"the merge key {merge_key} of a list item must be a string or number, not {k!r}")
        if item.get("$patch") == "delete":
            if k in index:
                out[index[k]] = None
            continue
        if k in index and out[index[k]] is not None:
            out[index[k]] = strategic_merge_patch(out[index[k]], item)
        else:
            index[k] = len(out)
            out.append({kk: vv for kk, vv in item.items() if kk != "$patch"})
    return [item for item in out if item is not None]


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# ---------------------------------------------------------------------------------------------
# RFC 6902


def _pointer(path: Any) -> list[str]:
    if path == "":
        return []
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(part: str, size: int, parts: list[str]) -> int:
    """An array index as RFC 6901 writes it (digits, no sign, no leading zero), below size."""
    if not part.isdecimal() or not part.isascii() or (part != "0" and part.startswith("0")) or int(part) >= size:
        raise Invalid(f"path /{'/'.join(parts)} does not exist")
    return int(part)


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[_index(part, len(doc), parts)]
        elif isinstance(doc, dict):
            if part not in doc:
                raise Invalid(f"path /{'/'.join(parts)} does not exist")
            doc = doc[part]
        else:
            raise Invalid(f"path /{'/'.join(parts)} does not exist")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(_index(last, len(parent) + 1, parts), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise Invalid("cannot add to a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise Invalid("the whole object cannot be removed")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        del parent[_index(last, len(parent), parts)]
    elif isinstance(parent, dict) and last in parent:
        del parent[last]
    else:
        raise Invalid(f"path /{'/'.join(parts)} does not exist")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise BadRequest("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f"invalid JSON patch operation: {op!r}")
        kind = op["op"]
        parts = _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _walk(doc, parts)
            doc = _add(_remove(doc, parts), parts, copy.deepcopy(op.get("value"))) if parts else op.get("value")
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise Invalid(f"test operation failed at {op['path']}")
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, parts, value)
        else:
            raise BadRequest(f"unknown JSON patch operation {kind!r}")
    return doc


def apply_patch(target: dict[str, Any], patch_type: str, text: str) -> dict[str, Any]:
    patch = parse_patch(text)
    if patch_type in ("", "merge"):
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch must be a JSON object")
        return merge_patch(target, patch)
    if patch_type == "strategic":
        if not isinstance(patch, dict):
            raise BadRequest("a strategic merge patch must be a JSON object")
        return strategic_merge_patch(target, patch)
    if patch_type == "json":
        return json_patch(target, patch)
    raise BadRequest(f'unknown patch type "{patch_type}": use merge, json or strategic')
