"""RFC 3339 times as Kubernetes writes them, and their conversion to epoch seconds.

Objects carry times as strings (metav1.Time: whole seconds; metav1.MicroTime: microseconds),
so that their JSON form is Kubernetes' own. Code that computes with times converts to float
epoch seconds with parse() and back with format().
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def format(ts: float, micro: bool = False) -> str:
    """Epoch seconds to `2024-05-01T12:00:00Z` (or `...00.123456Z` with micro)."""
    dt = datetime.fromtimestamp(ts, UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def now(micro: bool = False) -> str:
    return format(time.time(), micro)


def parse(text: str) -> float:
    """RFC 3339 (with or without fraction, `Z` or an offset) to epoch seconds; "" gives 0."""
    if not text:
        return 0.0
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text).timestamp()


def parse_or_none(text: str) -> float | None:
    return parse(text) if text else None
