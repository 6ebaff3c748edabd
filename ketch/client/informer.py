"""Shared informers: list then watch one kind, keep a lister cache, call event handlers.

The contract is client-go's SharedInformer: the cache is filled by a LIST and kept current by a
WATCH from the list's resourceVersion; handlers see every change after the cache has it; a
watch that ends is resumed from the last resourceVersion seen (bookmarks keep it fresh), and a
"too old resource version" error (or any gap) leads to a relist whose differences are delivered
as adds, updates and deletes (a DeletedFinalStateUnknown for objects that vanished unseen).
Handlers must be quick and never call the API: they enqueue keys.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from google.protobuf.message import Message

from ketch.api import errors
from ketch.api.kinds import KindInfo, kind_info
from ketch.api.meta import key_of
from ketch.cancelsafe import wait_for

from .cache import STANDARD_INDEXERS, DeletedFinalStateUnknown, Indexer, IndexFunc
from .clientset import Client, WatchEvent

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
# Watch events applied (cache and handlers) between two yields to the event loop: a batch of
# thousands of pod events must not hold the loop, and the API server beside it, for its whole
# length when the informer runs in the control plane's process.
EVENTS_PER_TURN = 64
AddFunc = Callable[[Any], None]
UpdateFunc = Callable[[Any, Any], None]
DeleteFunc = Callable[[Any], None]


@dataclass
class Handler:
    on_add: AddFunc | None = None
    on_update: UpdateFunc | None = None
    on_delete: DeleteFunc | None = None


class Informer(Generic[M]):
    """The informer of one kind; typed by the kind's message when made from its class
    (`Informer(client, core_pb2.Pod)`), Any when made from its name."""

    def __init__(self, client: Client, kind: str | type[M], namespace: str = "", label_selector: str = "",
                 field_selector: str = "", indexers: dict[str, IndexFunc] | None = None) -> None:
        self.client = client
        self.info: KindInfo = kind_info(kind if isinstance(kind, str) else kind.DESCRIPTOR.name)
        self.kind = self.info.kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store: Indexer[M] = Indexer({**STANDARD_INDEXERS, **(indexers or {})})
        self.handlers: list[Handler] = []
        self.resource_version = ""
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.relists = 0

    # -- registration --------------------------------------------------------------------------

    def add_handler(self, on_add: AddFunc | None = None, on_update: UpdateFunc | None = None,
                    on_delete: DeleteFunc | None = None) -> None:
        """Register handlers; objects already cached are delivered to on_add at once."""
        handler = Handler(on_add, on_update, on_delete)
        self.handlers.append(handler)
        if on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.store.add_indexer(name, fn)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            await wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- lister --------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> M | None:
        return self.store.get_by(namespace, name)

    def list(self, namespace: str = "") -> builtins.list[M]:
        if namespace:
            return self.store.by_index("namespace", namespace)
        return self.store.list()

    def by_index(self, name: str, value: str) -> builtins.list[M]:
        return self.store.by_index(name, value)

    # -- running -------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.kind}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run(self) -> None:
        backoff = 0.1
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except errors.Gone:
                need_list = True
            except errors.StatusError as err:
                # TooManyRequests (after the transport's own retries), Unavailable, ...: wait,
                # jittered so that informers refused together do not come back together.
                delay = backoff * random.uniform(0.5, 1.5)
                log.debug("informer %s: %s; retrying in %.1fs", self.kind, err, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 5.0)
                if not self.resource_version:
                    need_list = True
            except Exception:
                delay = backoff * random.uniform(0.5, 1.5)
                log.exception("informer %s failed; relisting in %.1fs", self.kind, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 5.0)
                need_list = True

    async def _relist(self) -> None:
        items, rv = await self.client.list(self.kind, self.namespace, self.label_selector, self.field_selector)
        self.relists += 1
        seen = set()
        for obj in items:
            k = key_of(obj)
            seen.add(k)
            old: Any = self.store.upsert(obj)
            if old is None:
                self._dispatch_add(obj)
            elif old.metadata.resource_version != obj.metadata.resource_version:
                self._dispatch_update(old, obj)
        for k in [k for k in self.store.items if k not in seen]:
            old = self.store.remove(k)
            self._dispatch_delete(DeletedFinalStateUnknown(k, old))
        self.resource_version = rv
        self._synced.set()

    async def _watch(self) -> None:
        n = 0
        async for ev in self.client.watch(self.kind, self.namespace, self.label_selector,
                                          self.field_selector, self.resource_version, allow_bookmarks=True):
            n += 1
            if n % EVENTS_PER_TURN == 0:
                await asyncio.sleep(0)
            self._apply(ev)
            del ev  # a quiet watch holds no object of its last event (a deleted one's, after a load)

    def _apply(self, ev: WatchEvent) -> None:
        obj: Any = ev.object  # the kind's message, decoded
        if ev.type == "BOOKMARK" or obj is None:
            self.resource_version = ev.resource_version or self.resource_version
            return
        if ev.type == "DELETED":
            self.store.remove(key_of(obj))
            self._dispatch_delete(obj)
        else:
            old = self.store.upsert(obj)
            if old is None:
                self._dispatch_add(obj)
            else:
                self._dispatch_update(old, obj)
        self.resource_version = ev.resource_version

    # -- dispatch ------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("informer %s: event handler failed", self.kind)

    def _dispatch_add(self, obj: Any) -> None:
        for h in self.handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: Any, new: Any) -> None:
        for h in self.handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Any) -> None:
        for h in self.handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)


class InformerFactory:
    """One informer per (kind, namespace, selectors), shared by every controller that asks."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.informers: dict[tuple[str, str, str, str], Informer[Any]] = {}
        self.started = False

    @overload
    def informer(self, kind: type[M], namespace: str = "", label_selector: str = "",
                 field_selector: str = "") -> Informer[M]: ...

    @overload
    def informer(self, kind: str, namespace: str = "", label_selector: str = "",
                 field_selector: str = "") -> Informer[Any]: ...

    def informer(self, kind: str | type[Message], namespace: str = "", label_selector: str = "",
                 field_selector: str = "") -> Informer[Any]:
        """The shared informer of a kind, by its message class (typed) or its name."""
        name = kind if isinstance(kind, str) else kind.DESCRIPTOR.name
        k = (name, namespace, label_selector, field_selector)
        inf = self.informers.get(k)
        if inf is None:
            inf = Informer(self.client, name, namespace, label_selector, field_selector)
            self.informers[k] = inf
            if self.started:
                inf.start()
        return inf

    def start(self) -> None:
        self.started = True
        for inf in self.informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        results = await asyncio.gather(*(inf.wait_for_sync(timeout) for inf in self.informers.values()))
        return all(results)

    async def stop(self) -> None:
        for inf in self.informers.values():
            await inf.stop()
