"""Container output in the CRI log format, written where the kubelet keeps it.

Each line a container writes becomes `<RFC3339Nano> stdout|stderr F|P <message>\\n` (containerd's
CRI logger): the time the agent read it, the stream, F for a full line or P for a part of one.
A line longer than 16 KiB (containerd's max_container_log_line_size, the kubelet's buffer) is cut
into P parts and ends with an F part; output that ends without a newline when the run ends is a
P part, as containerd writes it. Readers join P parts up to the next F.

How output gets here: a run's stdout and stderr are two pipes whose read ends one LogCopier
(the agent's event loop, no thread, no process per container) reads, stamps and appends to the
run's file. The container holds each pipe through a descriptor opened read-write
(`/proc/self/fd/N`, O_RDWR), so it never sees EPIPE or SIGPIPE when the agent is gone: it writes
into the pipe's buffer (64 KiB; blocking when full) until the next agent opens the pipe again
through `/proc/<pid>/fd/1` and `/2` on adoption and drains it. Only what the dead agent had read
and not yet written (an unfinished line) is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import layout

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024  # containerd's default max_container_log_line_size
READ_SIZE = 64 * 1024
STREAMS = (b"stdout", b"stderr")


class Stamper:
    """RFC3339Nano in UTC as Go formats it (fraction without trailing zeros), cached per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def __call__(self, t: float) -> bytes:
        whole = int(t)
        if whole != self._second:
            self._second = whole
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)).encode()
        nanos = int((t - whole) * 1e9)
        if nanos <= 0:
            return self._prefix + b"Z"
        return self._prefix + b"." + (b"%09d" % nanos).rstrip(b"0") + b"Z"


stamp = Stamper()


def encode(stream: bytes, data: bytes, pending: bytearray, now: float, final: bool = False) -> bytes:
    """CRI lines for data read from stream, given what an earlier read left unfinished (pending,
    updated in place). final: the stream is over; an unfinished line is written as P."""
    ts = stamp(now)
    head_f = ts + b" " + stream + b" F "
    head_p = ts + b" " + stream + b" P "
    out = bytearray()
    if pending:
        pending += data
        data = bytes(pending)
        pending.clear()
    start, end = 0, len(data)
    while start < end:
        nl = data.find(b"\n", start)
        if nl < 0:
            break
        while nl - start > MAX_LINE:
            out += head_p + data[start:start + MAX_LINE] + b"\n"
            start += MAX_LINE
        out += head_f + data[start:nl] + b"\n"
        start = nl + 1
    while end - start > MAX_LINE:
        out += head_p + data[start:start + MAX_LINE] + b"\n"
        start += MAX_LINE
    if start < end:
        if final:
            out += head_p + data[start:end] + b"\n"
        else:
            pending += data[start:end]
    return bytes(out)


@dataclass(frozen=True, slots=True)
class LogDirs:
    """Where container logs go: --pod-logs-dir and --container-logs-dir."""

    pods: str
    containers: str

    def prepare(self) -> None:
        """Make both directories (0755, as the kubelet makes /var/log/pods and /var/log/containers)."""
        for d in (self.pods, self.containers):
            os.makedirs(d, 0o755, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# Pipes


def _rw_end(w: int) -> int:
    """A descriptor that is both a reader and a writer of w's pipe (Linux opens a pipe through
    /proc as a FIFO), so that a writer holding it never meets a pipe without readers."""
    try:
        return os.open(f"/proc/self/fd/{w}", os.O_RDWR | os.O_CLOEXEC)
    finally:
        os.close(w)


def make_pipes() -> tuple[tuple[int, int], tuple[int, int]]:
    """((stdout for the child, its read end), (stderr for the child, its read end)). The read
    ends are non-blocking; the child's ends are closed by the caller once the child has them."""
    made: list[int] = []
    try:
        pairs = []
        for _ in STREAMS:
            r, w = os.pipe2(os.O_CLOEXEC)
            made.append(r)
            child = _rw_end(w)
            made.append(child)
            os.set_blocking(r, False)
            pairs.append((child, r))
        return pairs[0], pairs[1]
    except OSError:
        for fd in made:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise


def reopen_pipes(pid: int) -> tuple[int, int] | None:
    """Read ends of a running process's stdout and stderr pipes (after an agent restart); -1 for
    one the process pointed elsewhere itself; None when neither is a pipe (a run of an agent
    before this format: its output goes to a file)."""
    fds: list[int] = []
    for n in (1, 2):
        try:
            fd = os.open(f"/proc/{pid}/fd/{n}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            fds.append(-1)
            continue
        try:
            fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError:
            fifo = False
        if not fifo:
            os.close(fd)
            fd = -1
        fds.append(fd)
    if fds == [-1, -1]:
        return None
    return fds[0], fds[1]


# ---------------------------------------------------------------------------------------------
# Files


def open_log(path: str) -> int:
    """The run's log file for appending (0640, as containerd makes it)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)


@dataclass(slots=True)
class Run:
    """One run's output: its pipes, its file, and each stream's unfinished line.

    The file, its container's dir (and the pod's) and its link are made on the first output: a
    run that writes nothing (most batch pods) costs no inode; a missing file reads as empty."""

    path: str
    link: str
    pipes: tuple[int, int]
    fd: int = -1
    pending: tuple[bytearray, bytearray] = field(default_factory=lambda: (bytearray(), bytearray()))
    size: int = 0
    reading: bool = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        try:
            if self.fd < 0:
                self.fd = create_log(self.path, self.link)
                self.size = os.fstat(self.fd).st_size
            os.write(self.fd, data)
            self.size += len(data)
        except OSError as err:
            log.warning("cannot write the log %s: %s", self.path, err)


def create_log(path: str, link: str) -> int:
    """Open path for appending, making its dir, its pod's dir (0755) and its link if need be."""
    try:
        fd = open_log(path)
    except FileNotFoundError:
        container_dir = os.path.dirname(path)
        try:
            os.mkdir(container_dir, 0o755)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(os.path.dirname(container_dir), 0o755)
            with contextlib.suppress(FileExistsError):
                os.mkdir(container_dir, 0o755)
        except FileExistsError:
            pass
        fd = open_log(path)
    if link:
        with contextlib.suppress(FileExistsError):
            os.symlink(path, link)
    return fd


class LogCopier:
    """Copies every running container's output into its CRI log file, on the event loop.

    Rotation is the kubelet's (containerLogMaxSize, containerLogMaxFiles): a file over max_size is
    renamed `<n>.log.<YYYYMMDD-HHMMSS>` and a new `<n>.log` opened; before that, rotated files
    beyond the newest are gzipped and the oldest removed so that at most max_files are kept.
    """

    def __init__(self, max_size: int = 10 * 1024 * 1024, max_files: int = 5,
                 clock: Callable[[], float] = time.time,
                 compress: Callable[[list[str]], None] | None = None) -> None:
        self.max_size = max_size
        self.max_files = max(2, max_files)
        self.clock = clock
        self.compress = compress  # runs the gzip of rotated files off the loop; None: inline
        self._runs: dict[tuple[str, str], Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, key: tuple[str, str], path: str, link: str, pipes: tuple[int, int]) -> None:
        """Begin copying a run's pipes (read ends, owned from now on) into path, linked from link."""
        old = self._runs.pop(key, None)
        if old is not None:
            self._close(old)
        run = Run(path, link, pipes)
        self._runs[key] = run
        loop = asyncio.get_running_loop()
        for i, p in enumerate(pipes):
            if p >= 0:
                loop.add_reader(p, self._readable, run, i)
        run.reading = True

    def active(self, key: tuple[str, str]) -> bool:
        return key in self._runs

    def _readable(self, run: Run, i: int) -> None:
        self._drain(run, i, final=False, most=16)
        if run.size > self.max_size:
            self._rotate(run)

    def _drain(self, run: Run, i: int, final: bool, most: int = 1 << 30) -> None:
        """Read what the pipe holds (at most `most` reads: a chatty container must not hold the
        loop) and append it as CRI lines."""
        fd = run.pipes[i]
        if fd < 0:
            return
        chunks = []
        for _ in range(most):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        if chunks or (final and run.pending[i]):
            run.write(encode(STREAMS[i], b"".join(chunks), run.pending[i], self.clock(), final))

    def finish(self, key: tuple[str, str]) -> None:
        """The run ended: copy what is left in its pipes, its unfinished lines, and let go."""
        run = self._runs.pop(key, None)
        if run is None:
            return
        # Both streams are drained before either's last part is written: stdout first, as read.
        for i in (0, 1):
            self._drain(run, i, final=False)
        for i in (0, 1):
            self._drain(run, i, final=True)
        self._close(run)

    def close(self) -> None:
        """The agent is stopping: leave the pipes to the containers (the next agent reopens them)."""
        for run in self._runs.values():
            for i in (0, 1):
                self._drain(run, i, final=False)
            self._close(run)
        self._runs.clear()

    def _close(self, run: Run) -> None:
        if run.reading:
            loop = asyncio.get_running_loop()
            for p in run.pipes:
                if p >= 0:
                    loop.remove_reader(p)
            run.reading = False
        for fd in (*run.pipes, run.fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- rotation ---------------------------------------------------------------------------

    def tick(self) -> None:
        for run in list(self._runs.values()):
            if run.size > self.max_size:
                self._rotate(run)

    def _rotate(self, run: Run) -> None:
        if run.fd < 0:
            return
        rotated = rotated_logs(run.path)
        keep = self.max_files - 2  # the new file and the one rotated now come on top
        for old in rotated[:max(0, len(rotated) - keep)]:
            with contextlib.suppress(OSError):
                os.unlink(old)
        to_compress = [p for p in rotated[max(0, len(rotated) - keep):] if not p.endswith(".gz")]
        target = f"{run.path}.{time.strftime('%Y%m%d-%H%M%S', time.localtime(self.clock()))}"
        if os.path.exists(target):
            return  # rotated within this second already: the next tick does it
        try:
            os.rename(run.path, target)
            fd = open_log(run.path)
        except OSError as err:
            log.warning("cannot rotate the log %s: %s", run.path, err)
            return
        os.close(run.fd)
        run.fd, run.size = fd, 0
        if to_compress:
            (self.compress or compress_logs)(to_compress)


def rotated_logs(path: str) -> list[str]:
    """The rotated files of path, oldest first (`<path>.<timestamp>[.gz]`; no temporary files)."""
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    prefix = base + "."
    found = [n for n in names if n.startswith(prefix) and not n.endswith(".tmp")]
    found = [n for n in found if (n + ".gz") not in found]
    return [os.path.join(directory, n) for n in sorted(found)]


def compress_logs(paths: list[str]) -> None:
    """gzip each file to `<file>.gz` (through `.tmp`), then remove it, as the kubelet does."""
    for path in paths:
        tmp = path + ".gz.tmp"
        try:
            with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(tmp, 0o640)
            os.rename(tmp, path + ".gz")
            os.unlink(path)
        except OSError as err:
            log.warning("cannot compress the rotated log %s: %s", path, err)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# Removal


def prune_run(dirs: LogDirs, namespace: str, pod: str, uid: str, container: str, run: int) -> None:
    """Remove a run's files and its link (the kubelet keeps the current and the previous run)."""
    path = layout.cri_log_file(dirs.pods, namespace, pod, uid, container, run)
    for f in (path, *rotated_logs(path)):
        with contextlib.suppress(OSError):
            os.unlink(f)
    with contextlib.suppress(OSError):
        os.unlink(layout.container_log_link(dirs.containers, namespace, pod, uid, container, run))


def remove_pod(dirs: LogDirs, namespace: str, pod: str, uid: str) -> None:
    """Remove a pod's log dir; its links go with the next sweep_links()."""
    shutil.rmtree(layout.pod_log_dir(dirs.pods, namespace, pod, uid), ignore_errors=True)


def sweep_links(dirs: LogDirs) -> int:
    """Remove links whose log file is gone (the kubelet's container GC does the same)."""
    removed = 0
    try:
        entries = list(os.scandir(dirs.containers))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.endswith(".log") and entry.is_symlink() and not os.path.exists(entry.path):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed
