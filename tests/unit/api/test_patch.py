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


@pytest.mark.parametrize("ops", [
    # Found by tests/unit/api/test_fuzz_api.py: each raised ValueError or IndexError, which the
    # API server answered as an internal error instead of the client's mistake.
    [{"op": "add", "path": "", "value": []}, {"op": "add", "path": "/apiVersion", "value": 1}],
    [{"op": "move", "path": "/a"}],  # no "from": the whole document would move
    [{"op": "remove", "path": ""}],
    [{"op": "remove", "path": "/a/b/x"}],
    [{"op": "add", "path": "/a/b/-1", "value": 0}],  # Python would insert before the last item
    [{"op": "replace", "path": "/a/b/01", "value": 0}],  # not an RFC 6901 array index
    [{"op": "add", "path": 5, "value": 0}],
])
def test_a_bad_json_patch_is_the_clients_error(ops: list[dict[str, object]]) -> None:
    doc = {"a": {"b": [1, 2]}}
    with pytest.raises((errors.Invalid, errors.BadRequest)):
        json_patch(doc, ops)
    assert doc == {"a": {"b": [1, 2]}}


@pytest.mark.parametrize("patch", [
    # Found by tests/unit/api/test_fuzz_api.py: a list as a merge key's value raised TypeError
    # (unhashable), which the API server answered as an internal error.
    {"spec": {"containers": [{"name": ["main"], "image": "x"}]}},
    {"metadata": {"$deleteFromPrimitiveList/finalizers": 5}},
])
def test_a_bad_strategic_merge_patch_is_the_clients_error(patch: dict[str, object]) -> None:
    doc = {"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}
    with pytest.raises(errors.BadRequest):
        strategic_merge_patch(doc, patch)
