"""CRI-format container logs: the line format a shipper's CRI parser reads, the kubelet's
rotation, and `ketch logs` reading them back as plain lines."""

from __future__ import annotations

import asyncio
import calendar
import gzip
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from nodeagent.runtime import crilog, crireader, layout
from nodeagent.runtime.logs import LogOptions

# Fluent Bit's `cri` parser (parsers.conf).
CRI = re.compile(rb"^(?P<time>[^ ]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) (?P<message>.*)$")
# Go's time.RFC3339Nano as containerd writes it.
RFC3339NANO = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
T = calendar.timegm((2026, 12, 6, 14, 30, 3, 0, 0, 0)) + 0.25


def _parsed(data: bytes) -> list[dict[str, bytes]]:
    out = []
    for line in data.split(b"\n")[:-1]:
        m = CRI.match(line)
        assert m is not None, line[:80]
        assert RFC3339NANO.match(m["time"]), m["time"]
        out.append(m.groupdict())
    return out


def test_lines_are_cri_with_long_lines_cut_into_partial_parts() -> None:
    pending = bytearray()
    long = b"x" * (crilog.MAX_LINE * 2 + 5)
    data = crilog.encode(b"stdout", b"one\n" + long + b"\ntwo", pending, T)
    assert pending == b"two"
    data += crilog.encode(b"stdout", b"", pending, T + 1, final=True)
    lines = _parsed(data)
    assert [(x["logtag"], len(x["message"])) for x in lines] == [
        (b"F", 3), (b"P", crilog.MAX_LINE), (b"P", crilog.MAX_LINE), (b"F", 5), (b"P", 3)]
    assert lines[0]["time"] == b"2026-12-06T14:30:03.25Z" and lines[0]["stream"] == b"stdout"
    assert crilog.stamp(T - 0.25) == b"2026-12-06T14:30:03Z"
    assert crilog.stamp(T + 0.125) == b"2026-12-06T14:30:03.375Z"


def test_a_line_split_across_reads_is_one_line() -> None:
    pending = bytearray()
    data = crilog.encode(b"stderr", b"hal", pending, T) + crilog.encode(b"stderr", b"f\n", pending, T)
    assert _parsed(data) == [{"time": b"2026-12-06T14:30:03.25Z", "stream": b"stderr", "logtag": b"F",
                              "message": b"half"}]


async def _copy(tmp_path: Path, script: str) -> bytes | None:
    """Run script with its output going through the copier into a CRI file in the kubelet's
    layout under tmp_path; return the file (None: never made)."""
    copier = crilog.LogCopier()
    path = str(tmp_path / "pods" / "ns_pod_uid" / "c" / "0.log")
    link = str(tmp_path / "containers" / "pod_ns_c-id.log")
    os.mkdir(tmp_path / "pods")
    os.mkdir(tmp_path / "containers")
    (out, out_r), (err, err_r) = crilog.make_pipes()
    proc = subprocess.Popen(["sh", "-c", script], stdout=out, stderr=err, close_fds=True)  # noqa: ASYNC220 - the copier needs the loop
    os.close(out)
    os.close(err)
    copier.start(("uid", "c"), path, link, (out_r, err_r))
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the script did not end"
        await asyncio.sleep(0.02)
    copier.finish(("uid", "c"))
    if not os.path.exists(path):
        assert not os.path.lexists(link) and not os.listdir(tmp_path / "pods")
        return None
    assert os.readlink(link) == path
    return Path(path).read_bytes()


async def test_the_copier_tags_streams_and_keeps_the_order(tmp_path: Path) -> None:
    data = await _copy(tmp_path, "echo out1; echo err1 >&2; sleep 0.1; echo out2; printf tail")
    assert data is not None
    lines = _parsed(data)
    assert [(x["stream"], x["logtag"], x["message"]) for x in lines] == [
        (b"stdout", b"F", b"out1"), (b"stderr", b"F", b"err1"), (b"stdout", b"F", b"out2"),
        (b"stdout", b"P", b"tail")]
    assert os.stat(tmp_path / "pods" / "ns_pod_uid" / "c" / "0.log").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "pods" / "ns_pod_uid").st_mode & 0o777 == 0o755


async def test_a_run_that_writes_nothing_makes_no_file(tmp_path: Path) -> None:
    assert await _copy(tmp_path, "exit 3") is None


def test_a_writer_never_gets_sigpipe_when_nobody_reads(tmp_path: Path) -> None:
    """The agent is gone (its read ends closed): the container still writes, and a later reader
    (the next agent, through /proc/<pid>/fd) gets what was written meanwhile."""
    (out, out_r), (err, err_r) = crilog.make_pipes()
    go = tmp_path / "go"
    proc = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; echo after; sleep 30"],
                            stdout=out, stderr=err, close_fds=True)
    try:
        for fd in (out, err, out_r, err_r):
            os.close(fd)
        go.touch()
        pipes = None
        deadline = time.monotonic() + 20
        data = b""
        while b"after" not in data:
            assert proc.poll() is None, "the writer died without a reader"
            assert time.monotonic() < deadline
            pipes = pipes or crilog.reopen_pipes(proc.pid)
            assert pipes is not None
            try:
                data += os.read(pipes[0], 100)
            except BlockingIOError:
                time.sleep(0.05)
        assert data == b"after\n"
    finally:
        proc.kill()
        proc.wait()
        for fd in pipes or ():
            os.close(fd)


def test_a_process_writing_to_a_file_has_no_pipes_to_reopen(tmp_path: Path) -> None:
    with open(tmp_path / "flat.log", "ab") as f:
        proc = subprocess.Popen(["sleep", "30"], stdout=f, stderr=f)
    try:
        assert crilog.reopen_pipes(proc.pid) is None
    finally:
        proc.kill()
        proc.wait()


def test_rotation_as_the_kubelet(tmp_path: Path) -> None:
    """Over the size: `<n>.log.<YYYYMMDD-HHMMSS>`, a new `<n>.log`; older rotated files gzipped;
    at most max_files files in all."""
    now = [T]
    copier = crilog.LogCopier(max_size=100, max_files=3, clock=lambda: now[0])
    path = str(tmp_path / "0.log")
    run = crilog.Run(path, "", (-1, -1), fd=crilog.open_log(path))
    try:
        for _ in range(4):
            run.write(b"x" * 150)
            copier._rotate(run)
            now[0] += 1
        names = sorted(os.listdir(tmp_path))
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(T + 3))
        assert names[0] == "0.log" and names[-1] == f"0.log.{stamp}"
        assert len(names) == 3 and names[1].endswith(".gz")
        with gzip.open(tmp_path / names[1]) as f:
            assert f.read() == b"x" * 150
        assert os.path.getsize(path) == 0
    finally:
        os.close(run.fd)


def _cri(path: Path, *lines: tuple[float, str, str, str]) -> None:
    with open(path, "ab") as f:
        for t, stream, tag, msg in lines:
            f.write(crilog.stamp(t) + f" {stream} {tag} {msg}\n".encode())


def test_reading_back_gives_plain_lines_joined_and_merged(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    _cri(path.with_name(f"0.log.{time.strftime('%Y%m%d-%H%M%S')}"), (T, "stdout", "F", "rotated"))
    _cri(path, (T + 1, "stdout", "F", "one"), (T + 2, "stderr", "P", "lo"), (T + 2.5, "stderr", "F", "ng"),
         (T + 3, "stdout", "F", "three"), (T + 4, "stdout", "P", "no newline"))
    lines, _, _ = crireader.read_lines(str(path), LogOptions(), T + 10)
    assert [(x, t) for x, t, _ in lines] == [(b"rotated\n", T), (b"one\n", T + 1), (b"long\n", T + 2),
                                            (b"three\n", T + 3), (b"no newline", T + 4)]
    tail, _, _ = crireader.read_lines(str(path), LogOptions(tail_lines=2), T + 10)
    assert [x for x, _, _ in tail] == [b"three\n", b"no newline"]
    since, _, _ = crireader.read_lines(str(path), LogOptions(since_seconds=8), T + 10)
    assert [x for x, _, _ in since] == [b"long\n", b"three\n", b"no newline"]


async def test_timestamps_and_follow(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    _cri(path, (T, "stdout", "F", "first"), (T + 1, "stdout", "P", "par"))
    running = [True]
    opts = LogOptions(follow=True, timestamps=True)
    got: list[bytes] = []

    async def read() -> None:
        async for chunk in crireader.stream_log(str(path), opts, lambda: running[0], poll=0.02):
            got.append(chunk)

    task = asyncio.create_task(read())
    deadline = time.monotonic() + 10
    while not got:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    _cri(path, (T + 2, "stdout", "F", "tial"), (T + 3, "stderr", "F", "last"))
    running[0] = False
    await asyncio.wait_for(task, 10)
    assert b"".join(got) == (b"2026-12-06T14:30:03.250000000Z first\n"
                             b"2026-12-06T14:30:04.250000000Z partial\n"
                             b"2026-12-06T14:30:06.250000000Z last\n")


def test_the_layout_names_and_refuses_what_is_not_a_dns_name() -> None:
    uid = "0a3f6c52-1b1e-4a8e-9a55-6f7c2d1e0003"
    assert layout.cri_log_file("/var/log/pods", "default", "web-1", uid, "main", 2) == \
        f"/var/log/pods/default_web-1_{uid}/main/2.log"
    link = layout.container_log_link("/var/log/containers", "default", "web-1", uid, "main", 2)
    assert re.fullmatch(r"/var/log/containers/web-1_default_main-[0-9a-f]{64}\.log", link)
    for bad in ("../x", "a_b", "", "A"):
        with pytest.raises(ValueError):
            layout.pod_log_dir("/var/log/pods", bad, "p", uid)


def test_a_stream_the_process_pointed_elsewhere_is_not_reopened(tmp_path: Path) -> None:
    (out, out_r), (err, err_r) = crilog.make_pipes()
    proc = subprocess.Popen(["sh", "-c", "exec 2>/dev/null; sleep 30"], stdout=out, stderr=err, close_fds=True)
    pipes = None
    try:
        for fd in (out, err, out_r, err_r):
            os.close(fd)
        deadline = time.monotonic() + 20
        while os.readlink(f"/proc/{proc.pid}/fd/2") != "/dev/null":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pipes = crilog.reopen_pipes(proc.pid)
        assert pipes is not None and pipes[0] >= 0 and pipes[1] == -1
    finally:
        proc.kill()
        proc.wait()
        for fd in pipes or ():
            if fd >= 0:
                os.close(fd)
