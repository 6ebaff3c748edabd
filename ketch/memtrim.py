"""Give the heap back to the system after many objects were freed (glibc's malloc_trim).

CPython hands blocks over 512 bytes (every stored object's bytes, parsed messages' buffers) to
malloc, and glibc keeps what is freed in its arenas for later allocations instead of returning
it: after the pods of a large Job are deleted the control plane stayed at its peak size. Calling
malloc_trim(0) once the deletes are over gives the free pages back (madvise), as long-running C
servers do. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TRIM_AFTER = 1000  # freed objects (deletes) that make a trim worth it
QUIET_DELAY = 2.0  # seconds without more deletes before trimming: once per burst, not per delete
# The longest a due trim waits for quiet: a cluster's steady churn (a thousand nodes' lease renewals
# leaving the watch window) frees something every few milliseconds and never goes quiet.
MAX_WAIT = 10.0


# Above this a container's table is worth freeing once it is empty; below it, freeing would only
# make the next insertion allocate the same small table again (a queue that drains often).
_GROWN_TABLE_BYTES = 4096


def release_if_emptied(container: dict[Any, Any] | set[Any]) -> None:
    """Free the table an emptied dict or set grew to in a burst (10,000 pods: 0.3-0.5 MB each).
    Python keeps a table at its largest until the container is cleared, so the caches and queues
    a big Job filled held their size empty after it was gone."""
    if not container and sys.getsizeof(container) > _GROWN_TABLE_BYTES:
        container.clear()


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")  # runs ldconfig: once per process
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_libc = _load_libc()


def _libc_function(name: str, argtypes: list[Any], restype: Any) -> Callable[..., int] | None:
    """A glibc function, or None where the C library has no such function (musl, macOS)."""
    if _libc is None:
        return None
    try:
        fn = getattr(_libc, name)
    except AttributeError:
        return None
    fn.argtypes = argtypes
    fn.restype = restype
    return fn  # type: ignore[no-any-return]


_malloc_trim = _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)

M_ARENA_MAX = -8  # glibc's mallopt parameter: the most arenas malloc may make


def limit_arenas(count: int = 1) -> bool:
    """Have every thread allocate from count malloc arenas (glibc), unless MALLOC_ARENA_MAX
    says otherwise; whether the limit was set. Call it before the process starts threads.

    glibc gives each new thread that allocates an arena of its own, up to eight per core, and
    gRPC's threads fill theirs with message buffers under a load; each arena keeps its own free
    pages, so what they held stayed after the load (docs/scale.md, the eighth day). The GIL
    keeps the threads from contending for one arena's lock."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, count))


def trim() -> bool:
    """Return free heap memory to the system now; whether anything was given back."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False


class Trimmer:
    """Counts freed objects; after TRIM_AFTER of them and QUIET_DELAY without more (or MAX_WAIT at
    the latest), trims once (in a thread: a trim of a large heap takes milliseconds, and takes
    malloc's own locks)."""

    def __init__(self, threshold: int = TRIM_AFTER, delay: float = QUIET_DELAY,
                 trim_fn: Callable[[], bool] = trim, max_wait: float = MAX_WAIT) -> None:
        self.threshold = threshold
        self.delay = delay
        self.max_wait = max_wait
        self._trim = trim_fn
        self._freed = 0
        self._timer: asyncio.TimerHandle | None = None
        self._due_by = 0.0  # loop time by which the pending trim runs, quiet or not
        self.trims = 0  # how many trims ran (for tests and logs)

    def freed(self, count: int) -> None:
        """count objects were just freed; call from the event loop."""
        if count <= 0 or (_malloc_trim is None and self._trim is trim):
            return
        self._freed += count
        if self._freed < self.threshold:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._timer is None:
            self._due_by = now + self.max_wait
        else:
            self._timer.cancel()
        self._timer = loop.call_at(min(now + self.delay, self._due_by), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._freed = 0
        asyncio.get_running_loop().run_in_executor(None, self._run)

    def _run(self) -> None:
        self.trims += 1
        returned = self._trim()
        log.debug("malloc_trim after deletes: %s", "memory returned" if returned else "nothing to return")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
