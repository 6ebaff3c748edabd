"""Garbage-collector settings for the long-running processes (control plane, node agent)."""

from __future__ import annotations

import gc

# Young-generation collections happen every this many net allocations of container objects
# (CPython's default is 700). The servers allocate many short-lived objects per request and
# few reference cycles, so collecting that often costs CPU and finds little.
YOUNG_THRESHOLD = 20_000


def tune_for_server() -> None:
    """Collect the young generation less often, and leave what start-up created (modules,
    message descriptors, the loaded store) out of every later collection."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
