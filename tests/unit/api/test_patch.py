from __future__ import annotations

import pytest

from ketch.api import errors
from ketch.api.patch import apply_patch, json_patch, merge_patch, strategic_merge_patch


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}


def test_strategic_merge_merges_keyed_lists_and_deletes_from_primitive_lists() -> None:
    target = {"metadata": {"finalizers": ["a", "b"]},
              "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]},
             "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "New", "status": "True"}]}}
    out = strategic_merge_patch(target, patch)
    assert out["metadata"]["finalizers"] == ["a"]
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "X", "status": "True"},
                                           {"type": "New", "status": "True"}]


def test_json_patch_ops_and_failed_test() -> None:
    doc = {"a": {"b": [1, 2]}}
    out = json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3},
                           {"op": "replace", "path": "/a/b/0", "value": 0},
                           {"op": "remove", "path": "/a/b/1"},
                           {"op": "copy", "from": "/a/b", "path": "/c"}])
    assert out == {"a": {"b": [0, 3]}, "c": [0, 3]}
    assert doc == {"a": {"b": [1, 2]}}, "the input is not modified"
    with pytest.raises(errors.Invalid):
        json_patch(doc, [{"op": "test", "path": "/a/b/0", "value": 9}])


def test_unknown_patch_type_and_bad_json() -> None:
    with pytest.raises(errors.BadRequest):
        apply_patch({}, "weird", "{}")
    with pytest.raises(errors.BadRequest):
        apply_patch({}, "merge", "{not json")
