"""Reading CRI-format logs back for `ketch logs`: plain lines, as the kubelet serves them.

Each CRI line `<time> <stream> <tag> <message>` gives its message; P parts are joined up to the
next F part, so a line the writer cut at 16 KiB comes back whole, with the time of its first
part. stdout and stderr come merged in the order they were written. `--timestamps` puts the
time in front (RFC3339 with nine fraction digits, as the kubelet writes it); `--since` compares
it. The newest rotated file, while it is not compressed yet, is read before the current one.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable

from . import crilog
from .logs import ByteBudget, LogOptions, _stamp

READ_MAX = 1024 * 1024
_seconds: dict[bytes, float] = {}


def parse_time(ts: bytes) -> float | None:
    """Epoch seconds of an RFC3339(Nano) time (`Z` or a numeric offset)."""
    if len(ts) < 20 or ts[10:11] != b"T":
        return None
    base = ts[:19]
    whole = _seconds.get(base)
    if whole is None:
        try:
            whole = float(calendar.timegm(time.strptime(base.decode(), "%Y-%m-%dT%H:%M:%S")))
        except ValueError:
            return None
        if len(_seconds) > 4096:
            _seconds.clear()
        _seconds[base] = whole
    rest = ts[19:]
    frac = 0.0
    if rest[:1] == b".":
        end = 1
        while end < len(rest) and rest[end:end + 1].isdigit():
            end += 1
        frac = float(b"0" + rest[:end]) if end > 1 else 0.0
        rest = rest[end:]
    if rest == b"Z":
        return whole + frac
    if len(rest) == 6 and rest[:1] in (b"+", b"-") and rest[3:4] == b":":
        offset = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
        return whole + frac - (offset if rest[:1] == b"+" else -offset)
    return None


Line = tuple[bytes, float, bytes]  # (message line, time, time as --timestamps prints it)


def fixed(raw: bytes, t: float) -> bytes:
    """The kubelet's --timestamps form (RFC3339, nine fraction digits) of a line's time, from its
    text where it is UTC (exact to the nanosecond: a float of epoch seconds is not)."""
    if raw.endswith(b"Z") and len(raw) >= 20:
        whole, _, frac = raw[:-1].partition(b".")
        if len(whole) == 19 and len(frac) <= 9 and (not frac or frac.isdigit()):
            return whole + b"." + frac.ljust(9, b"0") + b"Z "
    return _stamp(t)


class Joiner:
    """Turns CRI lines into message lines with their times, joining P parts; keeps state across reads."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.first: float = 0.0
        self.first_raw = b""
        self.carry = b""  # a CRI line not complete yet (the writer's next write finishes it)

    def feed(self, data: bytes, fallback: float) -> list[Line]:
        if self.carry:
            data = self.carry + data
            self.carry = b""
        out: list[Line] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self.carry = data[start:]
                return out
            line = data[start:nl]
            start = nl + 1
            fields = line.split(b" ", 3)
            if len(fields) < 4 or fields[1] not in crilog.STREAMS:
                out.append((line + b"\n", fallback, _stamp(fallback)))  # not a CRI line: served as it is
                continue
            if not self.parts:
                t = parse_time(fields[0])
                self.first = t if t is not None else fallback
                self.first_raw = fields[0] if t is not None else b""
            self.parts.append(fields[3])
            if fields[2].split(b":", 1)[0] == b"P":
                continue
            out.append((b"".join(self.parts) + b"\n", self.first, fixed(self.first_raw, self.first)))
            self.parts.clear()

    def rest(self) -> list[Line]:
        """P parts with no F after them: the run ended in the middle of a line (no newline)."""
        if not self.parts:
            return []
        out = [(b"".join(self.parts), self.first, fixed(self.first_raw, self.first))]
        self.parts.clear()
        return out


def render(lines: list[Line], timestamps: bool) -> bytes:
    if not timestamps:
        return b"".join(line for line, _, _ in lines)
    return b"".join(stamp + line for line, _, stamp in lines)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def read_lines(path: str, opts: LogOptions, now: float) -> tuple[list[Line], int, Joiner]:
    """The lines of a run's log after tail/since, the size of the current file read, and the
    joiner holding an unfinished line (follow continues from it)."""
    joiner = Joiner()
    lines: list[Line] = []
    rotated = [p for p in crilog.rotated_logs(path) if not p.endswith(".gz")][-1:]
    for old in rotated:
        lines.extend(joiner.feed(_read(old), now))
        joiner.carry = b""
    current = _read(path)
    lines.extend(joiner.feed(current, now))
    read = len(current) - len(joiner.carry)
    joiner.carry = b""
    held = joiner.rest() if not opts.follow else []
    lines.extend(held)
    if opts.since_seconds is not None:
        cutoff = now - opts.since_seconds
        lines = [x for x in lines if x[1] >= cutoff]
    if opts.tail_lines is not None:
        lines = lines[-opts.tail_lines:] if opts.tail_lines > 0 else []
    return lines, read, joiner


async def stream_log(path: str, opts: LogOptions, is_running: Callable[[], bool],
                     poll: float = 0.25) -> AsyncIterator[bytes]:
    """The log as chunks; with follow, keeps sending what the run writes until it ends."""
    lines, offset, joiner = read_lines(path, opts, time.time())
    budget = ByteBudget(opts)
    data = render(lines, opts.timestamps)
    for piece in budget.chunks(data):
        yield piece
    if budget.spent:
        return
    if not opts.follow:
        return
    while True:  # a run makes its file on its first output
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            break
        except OSError:
            if not is_running():
                return
            await asyncio.sleep(poll)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        while True:
            running = is_running()
            new = os.read(fd, READ_MAX)
            if not new:
                try:
                    rotated = os.stat(path).st_ino != os.fstat(fd).st_ino
                except OSError:
                    rotated = False
                if rotated:  # renamed away and a new file opened: read that from its start
                    with contextlib.suppress(OSError):
                        newer = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                        os.close(fd)
                        fd = newer
                        continue
                if not running:
                    tail = joiner.rest()
                    if tail:
                        chunk = render(tail, opts.timestamps)
                        yield budget.take(chunk)
                    return
                await asyncio.sleep(poll)
                continue
            chunk = render(joiner.feed(new, time.time()), opts.timestamps)
            if not chunk:
                continue
            yield budget.take(chunk)
            if budget.spent:
                return
    finally:
        os.close(fd)
