"""`Did you mean this?`: the names near a mistyped verb or kind, by cobra's rule."""

from __future__ import annotations

from collections.abc import Iterable

from ketch.api.kinds import SERVED


def distance(a: str, b: str) -> int:
    """Levenshtein distance, as cobra's suggestions use."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def suggest(typed: str, names: Iterable[str]) -> list[str]:
    """cobra's SuggestionsFor: names within distance 2 of what was typed, or that it begins."""
    low = typed.lower()
    return [n for n in names if distance(low, n.lower()) <= 2 or (low and n.lower().startswith(low))]


def near_kinds(typed: str) -> list[str]:
    """The kind names (plural and singular) nearest to a mistyped one: `podz` gets pod and pods,
    not node, which is as far as cobra's rule allows but farther than those."""
    if "," in typed or "." in typed:
        return []
    near = suggest(typed, sorted({n for k in SERVED for n in (k.plural, k.singular)}))
    best = min((distance(typed.lower(), n) for n in near), default=0)
    return [n for n in near if distance(typed.lower(), n) == best]
