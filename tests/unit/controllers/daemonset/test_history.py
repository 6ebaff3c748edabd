"""Template hashing and ControllerRevision bookkeeping."""

from __future__ import annotations

import pytest

from controlplane.controllers.daemonset import history
from ketch.v1 import apps_pb2

from .builders import make_ds


def test_fnv32a_known_values() -> None:
    # Reference values of the 32-bit FNV-1a hash.
    assert history.fnv32a(b"") == 0x811C9DC5
    assert history.fnv32a(b"a") == 0xE40C292C
    assert history.fnv32a(b"foobar") == 0xBF9CF968


def test_hash_is_stable_safe_and_depends_on_template_and_collisions() -> None:
    ds = make_ds()
    h = history.compute_hash(ds.spec.template)
    assert h == history.compute_hash(make_ds().spec.template)
    assert set(h) <= set(history.SAFE_ALPHABET)
    assert 1 <= len(h) <= 10
    assert history.compute_hash(ds.spec.template, 1) != h
    assert history.compute_hash(ds.spec.template, 1) != history.compute_hash(ds.spec.template, 2)
    other = make_ds()
    other.spec.template.spec.containers[0].command.append("x")
    assert history.compute_hash(other.spec.template) != h
    # Fields outside the template do not matter.
    moved = make_ds(max_unavailable=3, generation=7)
    assert history.compute_hash(moved.spec.template) == h


def _rev(ds: apps_pb2.DaemonSet, number: int, hash_: str) -> apps_pb2.ControllerRevision:
    return history.new_revision(ds, hash_, number)


def test_new_revision_shape_and_match() -> None:
    ds = make_ds()
    rev = _rev(ds, 3, "abc")
    assert rev.metadata.name == "ds-abc"
    assert rev.metadata.labels["controller-revision-hash"] == "abc"
    assert rev.metadata.labels["app"] == "ds"
    assert rev.revision == 3
    assert rev.metadata.owner_references[0].uid == "ds-uid"
    data = history.revision_patch(ds)
    assert data["spec"]["template"]["$patch"] == "replace"
    assert history.revision_matches(history.revision_key(ds), rev)
    changed = make_ds()
    changed.spec.template.metadata.labels["v"] = "2"
    assert not history.revision_matches(history.revision_key(changed), rev)
    template = history.revision_template(rev)
    assert template is not None and "$patch" not in template
    assert template["spec"]["containers"][0]["command"] == ["sleep", "1000"]


def test_split_and_pick_current_keeps_the_highest_revision() -> None:
    ds = make_ds()
    other = make_ds()
    other.spec.template.metadata.labels["v"] = "2"
    revs = [_rev(ds, 1, "a"), _rev(other, 2, "b"), _rev(ds, 4, "c"), _rev(other, 3, "d")]
    current, old = history.split_revisions(history.revision_key(ds), revs)
    assert [r.metadata.name for r in current] == ["ds-a", "ds-c"]
    assert [r.metadata.name for r in old] == ["ds-b", "ds-d"]
    keep, dups = history.pick_current(current)
    assert keep.metadata.name == "ds-c"
    assert [r.metadata.name for r in dups] == ["ds-a"]
    assert history.max_revision(old) == 3


@pytest.mark.parametrize(("limit", "live", "expected"), [
    (10, set(), []),
    (2, set(), ["ds-h1", "ds-h2"]),
    (2, {"h1"}, ["ds-h2", "ds-h3"]),
    (0, {"h1", "h2", "h3", "h4"}, []),
    (0, set(), ["ds-h1", "ds-h2", "ds-h3", "ds-h4"]),
], ids=["under the limit", "oldest first", "a live pod's revision is kept", "all live", "limit zero"])
def test_revisions_to_clean(limit: int, live: set[str], expected: list[str]) -> None:
    ds = make_ds()
    old = [_rev(ds, n, f"h{n}") for n in (3, 1, 4, 2)]
    assert [r.metadata.name for r in history.revisions_to_clean(old, limit, live)] == expected
