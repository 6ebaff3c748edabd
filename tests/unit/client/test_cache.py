"""The informer cache's secondary indexes follow every change of the values they index."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketch.client.cache import (
    ORPHANS_BY_NAMESPACE_INDEX,
    STANDARD_INDEXERS,
    Indexer,
    LastWrites,
    orphans_by_namespace,
)
from ketch.v1 import core_pb2


def pod(name: str, node: str = "", owner: str = "", ns: str = "default") -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, ns
    p.spec.node_name = node
    if owner:
        ref = p.metadata.owner_references.add(kind="Job", name="j", uid=owner)
        ref.controller = True
    return p


def by_node(obj: core_pb2.Pod) -> list[str]:
    return [obj.spec.node_name] if obj.spec.node_name else []


def names(items: list[core_pb2.Pod]) -> list[str]:
    return sorted(p.metadata.name for p in items)


def test_an_update_moves_the_key_between_index_values_and_removal_clears_it() -> None:
    idx = Indexer({**STANDARD_INDEXERS, "node": by_node})
    idx.upsert(pod("a", owner="u1"))
    idx.upsert(pod("b", node="n1", owner="u1"))
    assert names(idx.by_index("node", "n1")) == ["b"]
    assert names(idx.by_index("controller", "u1")) == ["a", "b"]

    idx.upsert(pod("a", node="n2", owner="u1"))  # bound: appears under n2
    idx.upsert(pod("b", node="n1", owner="u2"))  # adopted by another owner
    assert names(idx.by_index("node", "n2")) == ["a"]
    assert names(idx.by_index("controller", "u1")) == ["a"]
    assert names(idx.by_index("controller", "u2")) == ["b"]

    idx.remove("default/b")
    assert idx.by_index("node", "n1") == [] and idx.by_index("controller", "u2") == []
    assert "n1" not in idx.indices["node"]  # no empty sets left behind
    assert names(idx.by_index("namespace", "default")) == ["a"]


def test_an_index_value_is_one_string_across_objects_and_indexes() -> None:
    """A Job's uid on each of its pods is kept once, not once per pod and index (each read of a
    message's field makes a new string)."""
    idx = Indexer(dict(STANDARD_INDEXERS))
    for name in ("a", "b", "c"):
        idx.upsert(pod(name, owner="".join(["job", "-uid"])))
    idx.add_indexer("owner-again", lambda p: [r.uid for r in p.metadata.owner_references])
    held = [given for values in idx._values.values() for given in values if given == "job-uid"]
    assert len(held) == 9 and all(v is held[0] for v in held)
    assert names(idx.by_index("controller", "job-uid")) == ["a", "b", "c"]


def test_an_object_key_is_one_string_in_the_cache_and_its_indexes() -> None:
    idx = Indexer({"node": by_node})
    idx.upsert(pod("web-7x2kq", node="n1"))
    idx.upsert(pod("web-7x2kq", node="n2"))  # a new message: a new key string is made from it
    (key,) = idx.items
    assert key == "default/web-7x2kq" and idx.indices["node"]["n2"] is key


def test_an_indexer_added_later_covers_cached_objects_and_later_changes() -> None:
    idx = Indexer()
    idx.upsert(pod("a", node="n1"))
    idx.add_indexer("node", by_node)
    assert names(idx.by_index("node", "n1")) == ["a"]
    idx.upsert(pod("a", node="n3"))
    assert idx.by_index("node", "n1") == [] and names(idx.by_index("node", "n3")) == ["a"]


def test_a_shared_indexer_registers_once_and_a_conflicting_one_is_refused() -> None:
    idx = Indexer()
    idx.upsert(pod("a", node="n1"))
    idx.add_indexer("node", by_node)
    idx.add_indexer("node", by_node)  # a second controller on the same informer: no-op
    assert names(idx.by_index("node", "n1")) == ["a"]
    with pytest.raises(ValueError, match="indexer conflict"):
        idx.add_indexer("node", lambda obj: [obj.metadata.namespace])
    assert names(idx.by_index("node", "n1")) == ["a"]  # the first one still answers


def test_orphans_are_indexed_by_namespace_until_a_controller_owns_them() -> None:
    idx = Indexer()
    idx.add_indexer(ORPHANS_BY_NAMESPACE_INDEX, orphans_by_namespace)
    idx.upsert(pod("a", node="n1"))
    idx.upsert(pod("b", node="n1", owner="u1"))
    assert names(idx.by_index(ORPHANS_BY_NAMESPACE_INDEX, "default")) == ["a"]
    idx.upsert(pod("a", node="n1", owner="u2"))  # adopted
    assert idx.by_index(ORPHANS_BY_NAMESPACE_INDEX, "default") == []


def _at(rv: int, uid: str = "u1") -> core_pb2.Pod:
    p = pod("a")
    p.metadata.uid, p.metadata.resource_version = uid, str(rv)
    return p


@pytest.mark.parametrize(("written", "cached", "want", "kept"), [
    (None, 5, 5, False),
    (7, 5, 7, True),          # the cache lags our write
    (7, 7, 7, False),         # caught up: the cache wins, the write is forgotten
    (7, 9, 9, False),         # someone wrote after us
    (7, None, None, False),   # deleted: gone, whatever we wrote
], ids=["nothing-written", "cache-lags", "caught-up", "newer-in-cache", "deleted"])
def test_last_writes_give_the_newer_of_cache_and_our_write(written: int | None, cached: int | None,
                                                           want: int | None, kept: bool) -> None:
    writes: LastWrites[core_pb2.Pod] = LastWrites()
    if written is not None:
        writes.remember("default/a", _at(written))
    got = writes.latest("default/a", _at(cached) if cached is not None else None)
    assert (got.metadata.resource_version if got is not None else None) == (str(want) if want else None)
    assert len(writes) == (1 if kept else 0)


def test_last_writes_ignore_a_write_to_an_object_since_replaced() -> None:
    writes: LastWrites[core_pb2.Pod] = LastWrites()
    writes.remember("default/a", _at(50, uid="old"))
    assert writes.latest("default/a", _at(20, uid="new")).metadata.uid == "new"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(["", "n1", "n2"]),
                          st.sampled_from(["", "u1", "u2"]), st.booleans()), max_size=40))
def test_every_index_answers_as_a_scan_of_the_cache_would(ops: list[tuple[str, str, str, bool]]) -> None:
    """After any sequence of upserts and removes, each index value gives exactly the cached
    objects whose index function gives it (one key or many, none left behind)."""
    idx = Indexer({**STANDARD_INDEXERS, "node": by_node})
    for name, node, owner, remove in ops:
        if remove:
            idx.remove(f"default/{name}")
        else:
            idx.upsert(pod(name, node=node, owner=owner))
    for index_name, fn in idx.indexers.items():
        expected: dict[str, list[str]] = {}
        for obj in idx.list():
            for value in fn(obj):
                expected.setdefault(value, []).append(obj.metadata.name)
        assert set(idx.indices[index_name]) == set(expected)
        for value, want in expected.items():
            assert names(idx.by_index(index_name, value)) == sorted(want)


def test_a_cache_emptied_gives_back_the_table_it_grew_to() -> None:
    """A dict keeps its table at its largest: the pods of a 10,000-pod Job, all deleted, left
    ~1 MB of empty tables in every pod cache."""
    idx = Indexer(dict(STANDARD_INDEXERS))
    for i in range(10_000):
        idx.upsert(pod(f"p-{i}", owner="job-uid"))
    for i in range(10_000):
        idx.remove(f"default/p-{i}")
    assert sys.getsizeof(idx.items) == sys.getsizeof(idx._values) == sys.getsizeof({})
    idx.upsert(pod("again", owner="job-uid"))
    assert names(idx.by_index("controller", "job-uid")) == ["again"]
