from __future__ import annotations

import json

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


# -- bounds: what one patch may cost ------------------------------------------------------------


def _bomb(copies: int) -> list[dict[str, object]]:
    """Kubernetes' CVE-2019-1002100: add /t, then copy /t into itself; each copy doubles it."""
    ops: list[dict[str, object]] = [{"op": "add", "path": "/t", "value": {"v": "x" * 16}}]
    ops += [{"op": "copy", "from": "/t", "path": f"/t/c{i}"} for i in range(copies)]
    return ops


def test_json_patch_copy_bomb_is_refused_before_the_copy_that_passes_3_mib() -> None:
    # 23 copies would make ~8 million nodes (gigabytes in Python); the limit stops it at 3 MiB.
    with pytest.raises(errors.Invalid, match=r"accumulated size increase of copy and add is at least \d+, "
                                             r"exceeding the limit 3145728"):
        json_patch({"metadata": {"name": "n"}}, _bomb(23))


def test_json_patch_copies_below_the_limit_still_work() -> None:
    out = json_patch({}, _bomb(10))
    assert len(json.dumps(out)) > 20_000


def test_json_patch_adds_count_toward_the_copy_limit() -> None:
    big = "x" * (1024 * 1024)
    ops = [{"op": "add", "path": f"/a{i}", "value": big} for i in range(4)]
    with pytest.raises(errors.Invalid, match="Unable to complete the add"):
        json_patch({}, ops)


def test_json_patch_over_10000_operations_is_too_large() -> None:
    ops = [{"op": "test", "path": "", "value": {}}] * 10_001
    with pytest.raises(errors.TooLarge, match="The allowed maximum operations in a JSON patch is 10000, got 10001"):
        json_patch({}, ops)
    assert json_patch({}, ops[:10_000]) == {}


@pytest.mark.parametrize("patch_type", ["merge", "strategic", "json"])
def test_deeply_nested_patch_is_a_bad_request_not_a_recursion_error(patch_type: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(errors.BadRequest, match="nested too deeply"):
        apply_patch({}, patch_type, '{"a": ' + deep + "}" if patch_type != "json" else deep)
    just_over = "{}"
    for _ in range(100):
        just_over = '{"a": ' + just_over + "}"
    with pytest.raises(errors.BadRequest, match="nested too deeply"):
        apply_patch({}, patch_type, just_over if patch_type != "json" else f"[{just_over}]")


def test_json_patch_cannot_build_deep_nesting_from_shallow_operations() -> None:
    ops: list[dict[str, object]] = [{"op": "add", "path": "/a", "value": {}}]
    path = "/a"
    for _ in range(120):
        path += "/a"
        ops.append({"op": "add", "path": path, "value": {}})
    with pytest.raises(errors.Invalid, match="nested more than 100 levels"):
        json_patch({}, ops)


def test_patch_over_3_mib_is_too_large() -> None:
    text = json.dumps({"metadata": {"annotations": {"a": "x" * (3 * 1024 * 1024)}}})
    with pytest.raises(errors.TooLarge, match="Request entity too large: limit is 3145728"):
        apply_patch({}, "merge", text)


def test_huge_integers_and_bad_indexes_are_client_errors() -> None:
    with pytest.raises(errors.BadRequest, match="not valid JSON"):
        apply_patch({}, "merge", '{"a": ' + "9" * 5000 + "}")
    with pytest.raises(errors.Invalid, match="not an array index"):
        json_patch({"l": [1, 2]}, [{"op": "remove", "path": "/l/-1"}])
    with pytest.raises(errors.Invalid, match="not an array index"):
        json_patch({"l": [1, 2]}, [{"op": "add", "path": "/l/" + "9" * 5000, "value": 1}])
    with pytest.raises(errors.Invalid):
        json_patch({"a": 1}, [{"op": "remove", "path": ""}])


class _CountingStr(str):
    """A string that counts how often it is compared: the work a merge does, without a clock."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _CountingStr.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_strategic_union_of_a_long_primitive_list_is_linear() -> None:
    # Each new value was looked up in the merged list: n*n/2 comparisons (200,000 values took
    # minutes). Now a set: about one comparison per value.
    values = [_CountingStr(f"f{i}") for i in range(2_000)]
    _CountingStr.compared = 0
    out = strategic_merge_patch({"metadata": {"finalizers": ["f0"]}}, {"metadata": {"finalizers": values}})
    assert out["metadata"]["finalizers"] == values
    assert _CountingStr.compared < 10 * len(values)
