"""Flat container logs, as agents before the CRI logs (runtime/crilog.py) wrote them: still read
for runs started before an upgrade, and still sampled and rotated for such runs adopted by this
agent (they hold their file themselves). New runs write CRI logs.

A run's stdout and stderr go straight into `<data-dir>/pods/<uid>.<container>.<run>.log` (see
runtime/layout.py; the process holds the file itself, so logging survives an agent restart and
costs the agent nothing). The agent checks the files of running containers every second: a file
over the size cap is rotated copytruncate-style into `<run>.log.1` (one rotated file kept), and
the size is sampled so that lines can be given write times (to about a second) for
`--timestamps` and `--since`; an ended run's samples are kept in `.log.idx` / `.log.1.idx`. The
current and the previous run are kept (`--previous`); a run's start removes the files of the
run before the previous one. Paths are plain strings (the per-pod hot path avoids pathlib).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ketch.api import timeutil

from . import layout

MAX_SAMPLES = 2048
CHUNK = 32 * 1024


def prune_runs(pods_root: str | os.PathLike[str], uid: str, container: str, current: int) -> None:
    """Remove the files of run current-2, by name: pods_root is flat and large, never scanned.

    Every run's start prunes (run numbers go up one at a time), so older runs are gone already.
    """
    if current < 2:
        return
    for path in layout.log_files(layout.log_file(pods_root, uid, container, current - 2)):
        with contextlib.suppress(OSError):
            os.unlink(path)


@dataclass(slots=True)
class _Active:
    path: str
    samples: list[tuple[int, float]] = field(default_factory=list)
    rotated_samples: list[tuple[int, float]] = field(default_factory=list)
    size: int = 0


def _thin(samples: list[tuple[int, float]]) -> None:
    if len(samples) > MAX_SAMPLES:
        del samples[1:-1:2]


def _write_index(path: str, samples: list[tuple[int, float]]) -> None:
    """Keep an ended run's samples. A single one (the run ended within a sampling tick, as most
    short runs do) says no more than the file's mtime, which readers fall back to: no file then,
    as each new file is an inode and inodes are what a pod costs the kernel most."""
    if len(samples) > 1:
        with contextlib.suppress(OSError), open(path, "w") as f:
            f.write(json.dumps(samples))


def _read_index(path: str) -> list[tuple[int, float]]:
    try:
        with open(path) as f:
            return [(int(o), float(t)) for o, t in json.loads(f.read())]
    except (OSError, ValueError, TypeError):
        return []


class LogManager:
    """Watches the log files of running containers: rotation and write-time samples."""

    def __init__(self, max_size: int = 10 * 1024 * 1024, clock: Callable[[], float] = time.time) -> None:
        self.max_size = max_size
        self.clock = clock
        self._active: dict[tuple[str, str], _Active] = {}

    def begin(self, uid: str, container: str, path: str) -> None:
        self._active[(uid, container)] = _Active(path)

    def end(self, uid: str, container: str) -> _Active | None:
        """The run is over: stop watching it. Pass the result to finalize() (file I/O, any thread)."""
        return self._active.pop((uid, container), None)

    def finalize(self, act: _Active) -> None:
        """Sample the ended run once more and keep its samples next to the file."""
        self._sample(act)
        _write_index(act.path + ".idx", act.samples)
        _write_index(act.path + ".1.idx", act.rotated_samples)

    def samples(self, path: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(samples of the file, samples of its rotated part)."""
        for act in self._active.values():
            if act.path == path:
                return list(act.samples), list(act.rotated_samples)
        return _read_index(path + ".idx"), _read_index(path + ".1.idx")

    def tick(self) -> None:
        for act in list(self._active.values()):
            self._sample(act)

    def _sample(self, act: _Active) -> None:
        try:
            size = os.stat(act.path).st_size
        except OSError:
            return
        if size == act.size:
            return
        now = self.clock()
        if size < act.size:  # truncated by someone else
            act.samples.clear()
        act.samples.append((size, now))
        _thin(act.samples)
        act.size = size
        if size > self.max_size:
            self._rotate(act)

    def _rotate(self, act: _Active) -> None:
        rotated = act.path + ".1"
        tmp = act.path + ".1.tmp"
        try:
            shutil.copyfile(act.path, tmp)
            os.replace(tmp, rotated)
            os.truncate(act.path, 0)
        except OSError:
            return
        act.rotated_samples = act.samples
        act.samples = []
        act.size = 0


# ---------------------------------------------------------------------------------------------
# Reading

@dataclass(slots=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    limit_bytes: int | None = None
    timestamps: bool = False


def _line_times(data: bytes, samples: list[tuple[int, float]], fallback: float) -> list[tuple[bytes, float]]:
    """Split data into lines (keeping newlines), each with the time it was written (upper bound)."""
    lines = data.splitlines(keepends=True)
    out = []
    pos, si = 0, 0
    for line in lines:
        pos += len(line)
        while si < len(samples) and samples[si][0] < pos:
            si += 1
        out.append((line, samples[si][1] if si < len(samples) else fallback))
    return out


def _stamp(ts: float) -> bytes:
    """`<RFC3339 with nine fraction digits> ` as the kubelet prints --timestamps."""
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    base = timeutil.format(whole)[:-1]
    return f"{base}.{nanos:09d}Z ".encode()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _read_from(path: str, offset: int, length: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    except OSError:
        return b""


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


def read_lines(path: str, samples: tuple[list[tuple[int, float]], list[tuple[int, float]]],
               opts: LogOptions, now: float) -> tuple[list[tuple[bytes, float]], int]:
    """The lines of a run's log (rotated part first) after tail/since, and the file's size read."""
    rotated = path + ".1"
    current = _read(path)
    lines: list[tuple[bytes, float]] = []
    if os.path.exists(rotated):
        lines.extend(_line_times(_read(rotated), samples[1], _mtime(rotated)))
    lines.extend(_line_times(current, samples[0], _mtime(path)))
    if opts.since_seconds is not None:
        cutoff = now - opts.since_seconds
        lines = [(line, t) for line, t in lines if t >= cutoff]
    if opts.tail_lines is not None:
        lines = lines[-opts.tail_lines:] if opts.tail_lines > 0 else []
    return lines, len(current)


def render(lines: list[tuple[bytes, float]], timestamps: bool) -> bytes:
    if not timestamps:
        return b"".join(line for line, _ in lines)
    return b"".join(_stamp(t) + line for line, t in lines)



class ByteBudget:
    """limitBytes: what may still be sent of a log (None: no limit)."""

    __slots__ = ("left",)

    def __init__(self, opts: LogOptions) -> None:
        self.left = opts.limit_bytes if opts.limit_bytes is not None and opts.limit_bytes > 0 else None

    def take(self, chunk: bytes) -> bytes:
        """What of chunk may be sent, counted as sent."""
        if self.left is None:
            return chunk
        chunk = chunk[:self.left]
        self.left -= len(chunk)
        return chunk

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def chunks(self, data: bytes) -> list[bytes]:
        """data in CHUNK-sized pieces, cut at the budget."""
        out = []
        for i in range(0, len(data), CHUNK):
            piece = self.take(data[i:i + CHUNK])
            if piece:
                out.append(piece)
            if self.spent:
                break
        return out


async def stream_log(path: str, samples: tuple[list[tuple[int, float]], list[tuple[int, float]]],
                     opts: LogOptions, is_running: Callable[[], bool],
                     poll: float = 0.25) -> AsyncIterator[bytes]:
    """The log as chunks; with follow, keeps sending what the run writes until it ends."""
    lines, offset = read_lines(path, samples, opts, time.time())
    budget = ByteBudget(opts)
    data = render(lines, opts.timestamps)
    for piece in budget.chunks(data):
        yield piece
    if budget.spent:
        return
    if not opts.follow:
        return
    at_line_start = not data or data.endswith(b"\n")
    rotated = path + ".1"
    while True:
        running = is_running()
        chunk = b""
        try:
            size = os.stat(path).st_size
        except OSError:
            size = offset
        if size < offset:
            # Rotated: what we had not sent yet went into the rotated file.
            old = _read(rotated)
            chunk += old[offset:]
            offset = 0
        if size > offset:
            new = _read_from(path, offset, size - offset)
            offset += len(new)
            chunk += new
        if chunk:
            if opts.timestamps:
                out = bytearray()
                stamp = _stamp(time.time())
                for line in chunk.splitlines(keepends=True):
                    if at_line_start:
                        out += stamp
                    out += line
                    at_line_start = line.endswith(b"\n")
                chunk = bytes(out)
            else:
                at_line_start = chunk.endswith(b"\n")
            yield budget.take(chunk)
            if budget.spent:
                return
            continue
        if not running:
            return
        await asyncio.sleep(poll)
