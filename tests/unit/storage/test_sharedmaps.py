"""Labels and fields maps are kept once per content, and go when nothing holds them."""

from __future__ import annotations

import gc

import pytest

from controlplane.storage.sharedmaps import EMPTY, MapPool


def test_equal_content_is_one_map_whatever_the_order() -> None:
    pool = MapPool()
    a = pool.get([("app", "web"), ("tier", "db")])
    b = pool.get({"tier": "db", "app": "web"}.items())
    assert a is b and a == {"app": "web", "tier": "db"}
    other = pool.get([("app", "web")])
    assert other is not a and other == {"app": "web"}
    assert pool.get([]) is EMPTY and EMPTY == {}


def test_a_map_goes_when_its_last_holder_does() -> None:
    pool = MapPool()
    held = pool.get([("job-name", "pi")])
    assert len(pool) == 1
    again = pool.get([("job-name", "pi")])
    assert again is held
    del held, again
    gc.collect()
    assert len(pool) == 0
    assert pool.get([("job-name", "pi")]) == {"job-name": "pi"}


def test_keys_and_values_are_one_string_each() -> None:
    pool = MapPool()
    key, value = "".join(["controller", "-uid"]), "".join(["9f1c", "-uid"])
    m = pool.get([(key, value)])
    n = pool.get([("".join(["controller", "-uid"]), "".join(["9f1c", "-uid"]))])
    assert m is n
    (k,) = m
    assert next(iter(pool.get([("".join(["controller", "-uid"]), "other")]))) is k  # shared across maps


def test_a_shared_map_refuses_writes_and_a_copy_takes_them() -> None:
    """Every version holding it would see a change: the empty one is every unlabelled object's."""
    pool = MapPool()
    shared = pool.get([("app", "web")])
    for write in (lambda m: m.__setitem__("app", "db"), lambda m: m.update(app="db"), lambda m: m.pop("app"),
                  lambda m: m.clear(), lambda m: m.setdefault("x", "y"), lambda m: m.__delitem__("app")):
        with pytest.raises(TypeError, match="read-only"):
            write(shared)
    with pytest.raises(TypeError, match="read-only"):
        EMPTY["app"] = "web"  # type: ignore[index]
    assert shared == {"app": "web"} and EMPTY == {}
    copy = dict(shared)
    copy["app"] = "db"
    assert copy == {"app": "db"} and pool.get([("app", "web")]) is shared
