"""Integers read from text as Go's strconv.Atoi / ParseInt(s, 10, 64) read them.

Kubernetes reads index intervals ("0,2-4"), index annotations, cron fields and Gt/Lt selector
values this way: an optional sign, then ASCII digits only, within int64. Python's int() also
takes surrounding whitespace, underscores between digits and non-ASCII digits (so "0, 2" would
pass where Kubernetes refuses it), and raises past 4,300 digits.
"""

from __future__ import annotations

import re

_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def atoi(text: str) -> int:
    """The value of text, or ValueError with strconv's message where Go returns an error."""
    if not _ATOI.fullmatch(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    # Leading zeros are fine and their count unbounded; more than 19 other digits is out of range.
    if len(text.lstrip("+-").lstrip("0")) > 19 or not _INT64_MIN <= int(text) <= _INT64_MAX:
        raise ValueError(f'strconv.Atoi: parsing "{text}": value out of range')
    return int(text)


def parse_int64(text: str) -> int | None:
    """atoi's value, or None where Go errs (labels.Requirement's Gt/Lt: no match, or invalid)."""
    try:
        return atoi(text)
    except ValueError:
        return None
