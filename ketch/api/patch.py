"""Patches on the JSON form of an object: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
and the part of Kubernetes' strategic merge patch that clients of Ketch use.

Pure functions on dicts; the API server converts the object to its JSON form, patches it and
decodes the result strictly, so a patch can never store a field that a manifest could not.

What a patch may cost is bounded as kube-apiserver bounds it (ketch.api.limits): the document
is at most 3 MiB and MAX_JSON_DEPTH deep (so no function here recurses past that, whatever the
input), a JSON patch has at most 10,000 operations, and the bytes its add, replace and copy
operations put into the object are counted before each copy is made and refused past 3 MiB, so
a small patch that copies a value into itself again and again (CVE-2019-1002100) fails at once
instead of doubling the object until memory runs out.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import BadRequest, Invalid, TooLarge
from .limits import (
    JSON_PATCH_MAX_COPY_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_PATCH_OPERATIONS,
    MAX_REQUEST_BYTES,
    clip,
    request_too_large,
)

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
    if len(text) > MAX_REQUEST_BYTES:
        raise request_too_large()
    try:
        doc = json.loads(text)
    except RecursionError:
        raise BadRequest(f"the patch is nested too deeply: more than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, or an integer of more digits than Python converts
        raise BadRequest(f"the patch is not valid JSON: {err}") from None
    if _measure(doc, max_depth=MAX_JSON_DEPTH)[1] > MAX_JSON_DEPTH:
        raise BadRequest(f"the patch is nested too deeply: more than {MAX_JSON_DEPTH} levels")
    return doc


def _measure(value: Any, budget: int | None = None, max_depth: int | None = None) -> tuple[int, int]:
    """(bytes of value as JSON, levels of nesting), without recursion. Stops early, with the
    totals so far, once the bytes pass budget or the nesting passes max_depth: the walk never
    costs more than the limit it checks."""
    size, deepest = 0, 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            depth += 1
            size += 2 + len(v)
            for k, item in v.items():
                size += len(k) + 3
                stack.append((item, depth))
        elif isinstance(v, list):
            depth += 1
            size += 2 + len(v)
            stack.extend((item, depth) for item in v)
        elif isinstance(v, str):
            size += len(v) + 2
        elif v is None or isinstance(v, bool):
            size += 5
        else:
            size += len(repr(v))
        deepest = max(deepest, depth)
        if (budget is not None and size > budget) or (max_depth is not None and deepest > max_depth):
            break
    return size, deepest


def _clone(value: Any) -> Any:
    """A deep copy of a JSON value (faster than copy.deepcopy; depth is bounded by the caller)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else json.dumps(value, sort_keys=True)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return _clone(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.partition("/")[2]
            if value is not None and not isinstance(value, list):
                raise BadRequest(f"{clip(key)} must be a list")
            drop = {_hashable(v) for v in value or []}
            result[field] = [v for v in result.get(field) or [] if _hashable(v) not in drop]
            continue
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGE_PRIMITIVES and isinstance(result.get(key), list):
            merged = list(result[key])
            seen = {_hashable(v) for v in merged}
            for v in value:
                h = _hashable(v)
                if h not in seen:
                    seen.add(h)
                    merged.append(v)
            result[key] = merged
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_keyed_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    out = [_clone(item) for item in current]
    index = {_hashable(item.get(merge_key)): i for i, item in enumerate(out) if isinstance(item, dict)}
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            out.append(_clone(item))
            continue
        if not _primitive(item[merge_key]):
            raise BadRequest(f"the merge key {merge_key} of a list item must be a string or number, "
                             f"not {clip(repr(item[merge_key]))}")
        k = _hashable(item[merge_key])
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


_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise BadRequest(f"invalid JSON pointer {clip(repr(path))}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise BadRequest(f"invalid JSON pointer {clip(repr(path))}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _where(parts: list[str]) -> str:
    return clip("/" + "/".join(parts))


def _index(part: str, parts: list[str]) -> int:
    """An array index as RFC 6901 spells it: digits without leading zeros (no "-1")."""
    if not _INDEX.fullmatch(part):
        raise Invalid(f"path {_where(parts)} does not exist: {clip(repr(part))} is not an array index")
    return int(part)


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            i = _index(part, parts)
            if i >= len(doc):
                raise Invalid(f"path {_where(parts)} does not exist")
            doc = doc[i]
        elif isinstance(doc, dict):
            if part not in doc:
                raise Invalid(f"path {_where(parts)} does not exist")
            doc = doc[part]
        else:
            raise Invalid(f"path {_where(parts)} does not exist")
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
            idx = _index(last, parts)
            if idx > len(parent):
                raise Invalid(f"index {idx} out of range")
            parent.insert(idx, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise Invalid("cannot add to a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise Invalid("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        idx = _index(last, parts)
        if idx >= len(parent):
            raise Invalid(f"path {_where(parts)} does not exist")
        del parent[idx]
    elif isinstance(parent, dict) and last in parent:
        del parent[last]
    else:
        raise Invalid(f"path {_where(parts)} does not exist")
    return doc


class _Budget:
    """The bytes a JSON patch's add, replace and copy operations may put into the document, and
    its nesting: each value is measured before it is copied or placed."""

    def __init__(self, limit: int = JSON_PATCH_MAX_COPY_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, kind: str, parts: list[str], value: Any, counts: bool = True) -> None:
        room = self.limit - self.used if counts else None
        size, depth = _measure(value, room, MAX_JSON_DEPTH - len(parts))
        if counts:
            self.used += size
            if self.used > self.limit:
                raise Invalid(f"Unable to complete the {kind}, the accumulated size increase of copy and add "
                              f"is at least {self.used}, exceeding the limit {self.limit}")
        if len(parts) + depth > MAX_JSON_DEPTH:
            raise Invalid(f"Unable to complete the {kind}: the result would be nested more than {MAX_JSON_DEPTH} "
                          "levels deep")


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise BadRequest("a JSON patch must be a list of operations")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise TooLarge(f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
                       f"got {len(ops)}")
    budget = _Budget()
    doc = _clone(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f"invalid JSON patch operation: {clip(repr(op))}")
        kind = op["op"]
        parts = _pointer(op["path"])
        if kind in ("add", "replace"):
            value = op.get("value")
            budget.charge(kind, parts, value)
            if kind == "replace":
                _walk(doc, parts)
                if not parts:
                    doc = _clone(value)
                    continue
                doc = _remove(doc, parts)
            doc = _add(doc, parts, _clone(value))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise Invalid(f"test operation failed at {_where(parts)}")
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = _walk(doc, src)
            # Measured before the copy is made: the copy that would pass the limit is never made.
            budget.charge(kind, parts, value, counts=kind == "copy")
            if kind == "move":
                if parts[:len(src)] == src and len(parts) > len(src):
                    raise Invalid(f"cannot move {_where(src)} into itself")
                doc = _remove(doc, src)
            else:
                value = _clone(value)
            doc = _add(doc, parts, value)
        else:
            raise BadRequest(f"unknown JSON patch operation {clip(repr(kind))}")
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
    raise BadRequest(f'unknown patch type "{clip(patch_type)}": use merge, json or strategic')
