"""spec.successPolicy of Indexed Jobs: when enough indexes succeeded for the Job to succeed.

A rule with only succeededIndexes needs all of them; with only succeededCount, that many
succeeded indexes in all; with both, that many within the listed ones. Rules are tried in
order; the message names the first that matched. A rule whose succeededIndexes cannot be
parsed is ignored. Pure; called by the Job controller's sync.
"""

from __future__ import annotations

from typing import Any

from .indexed import Intervals

MATCHED_MESSAGE = "Matched rules at index"


def _overlap(rule: Intervals, succeeded: Intervals) -> int:
    contains = 0
    i = j = 0
    a, b = rule.spans, succeeded.spans
    while i < len(a) and j < len(b):
        n = min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]) + 1
        if n > 0:
            contains += n
        if b[j][1] < a[i][1]:
            j += 1
        else:
            i += 1
    return contains


def match(policy: Any | None, completions: int, succeeded: Intervals) -> tuple[str, bool]:
    """(message, matched) for the succeeded indexes."""
    if policy is None or not succeeded.spans:
        return "", False
    for index, rule in enumerate(policy.rules):
        count = rule.succeeded_count if rule.HasField("succeeded_count") else None
        if rule.HasField("succeeded_indexes"):
            required = Intervals.parse(rule.succeeded_indexes, completions)
            if not required.spans:
                continue
            contains = _overlap(required, succeeded)
            if contains == required.total() or (count is not None and contains >= count):
                return f"{MATCHED_MESSAGE} {index}", True
        elif count is not None and succeeded.total() >= count:
            return f"{MATCHED_MESSAGE} {index}", True
    return "", False
