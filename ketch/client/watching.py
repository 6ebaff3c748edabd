"""Waiting on the API without polling: list once, then follow a watch from the list's version.

`states()` yields the current set of matching objects after the list and again after every
change, so a caller states what it waits for as a predicate over that set (the CLI's `wait`,
`delete --wait`, `rollout status`, `drain`; the local-cluster launcher waiting for Ready
nodes). A watch that ends or falls out of the server's window ("too old resource version") is
resumed by listing again, as an informer does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from ketch.api import errors
from ketch.client.clientset import Client

Key = tuple[str, str]


def key_of(obj: Any) -> Key:
    return (obj.metadata.namespace, obj.metadata.name)


async def states(client: Client, kind: str, namespace: str = "", label_selector: str = "",
                 field_selector: str = "") -> AsyncGenerator[dict[Key, Any], None]:
    """The matching objects by (namespace, name): after the list, then after every watch event."""
    current: dict[Key, Any] = {}
    while True:
        items, rv = await client.list(kind, namespace, label_selector, field_selector)
        current.clear()
        current.update((key_of(o), o) for o in items)
        yield current
        try:
            async for ev in client.watch(kind, namespace, label_selector, field_selector, rv,
                                         allow_bookmarks=False):
                if ev.object is None or ev.type == "BOOKMARK":
                    continue
                if ev.type == "DELETED":
                    current.pop(key_of(ev.object), None)
                else:
                    current[key_of(ev.object)] = ev.object
                yield current
        except errors.Gone:
            continue


async def object_states(client: Client, kind: str, name: str, namespace: str = "") -> AsyncGenerator[Any, None]:
    """One object's successive states (None while it does not exist)."""
    async for current in states(client, kind, namespace, field_selector=f"metadata.name={name}"):
        yield current.get((namespace, name))


async def until_each(client: Client, kind: str, namespace: str, names: list[str], done: Any,
                     on_done: Any = None) -> None:
    """Follow one watch over a kind in a namespace until `done(name, obj_or_None)` holds for every name.

    `on_done(name)` is called as each one gets there. One stream serves any number of objects.
    """
    pending = list(names)
    # One object: let the server filter by name; several: watch the kind in the namespace.
    field_selector = f"metadata.name={names[0]}" if len(names) == 1 else ""
    watch = states(client, kind, namespace, field_selector=field_selector)
    async with contextlib.aclosing(watch):
        async for current in watch:
            for name in list(pending):
                if done(name, current.get((namespace, name))):
                    pending.remove(name)
                    if on_done is not None:
                        on_done(name)
            if not pending:
                return


def node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


async def until_nodes_ready(client: Client, names: list[str]) -> None:
    """Every named Node exists and is Ready (one watch)."""
    watch = states(client, "Node")
    async with contextlib.aclosing(watch):
        async for current in watch:
            if all((n := current.get(("", name))) is not None and node_ready(n) for name in names):
                return
