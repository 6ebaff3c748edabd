"""Durations as the command-line flags take them: `500ms`, `10s`, `6m`, `1h30m`, or plain seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str) -> float:
    """Seconds in text; raises ValueError with the accepted forms."""
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: use forms like 500ms, 10s, 6m, 1h30m")
    return total


def format(seconds: float) -> str:
    """A short human form, as kubectl prints ages: 5s, 3m20s, 2h5m, 4d."""
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 120:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 10:
        return f"{m}m{s}s" if s else f"{m}m"
    if m < 60 * 3:
        h, m = divmod(m, 60)
        if h == 0:
            return f"{m}m"
        return f"{h}h{m}m" if m else f"{h}h"
    h = m // 60
    if h < 48:
        return f"{h}h"
    d, h = divmod(h, 24)
    if d < 8:
        return f"{d}d{h}h" if h else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def argument(text: str) -> float:
    """parse as an argparse type: a bad duration is a usage error naming it."""
    import argparse

    try:
        return parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
