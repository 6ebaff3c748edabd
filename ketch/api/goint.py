"""Integers read from text as Go's strconv.Atoi reads them.

Kubernetes parses index intervals ("0,2-4") and index annotations with strconv.Atoi: an
optional sign, then ASCII digits only, within int64. Python's int() also takes surrounding
whitespace, underscores between digits and non-ASCII digits, so "0, 2" would pass where
Kubernetes refuses it.
"""

from __future__ import annotations

import re

_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def atoi(text: str) -> int:
    """The value of text, or ValueError where strconv.Atoi returns an error."""
    if not _ATOI.fullmatch(text):
        raise ValueError(f"strconv.Atoi: parsing {text!r}: invalid syntax")
    n = int(text)
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise ValueError(f"strconv.Atoi: parsing {text!r}: value out of range")
    return n
