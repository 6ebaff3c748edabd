"""The on-disk checkpoint round-trips; logs rotate, prune old runs and read back with options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent.runtime import checkpoint, logs
from nodeagent.runtime.checkpoint import PodRecord, Proc
from nodeagent.status import ContainerRun, PodRun, Terminated


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    run = PodRun(start_time=12.5, terminal=True, reason="DeadlineExceeded", phase_override="Failed",
                 disruption=("TerminationByKubelet", "bye"))
    run.containers["init"] = ContainerRun("init", init=True, state="terminated",
                                          terminated=Terminated(0, 0, "Completed", "", 1.0, 2.0, "process://n/5"),
                                          ready=True)
    run.containers["main"] = ContainerRun("main", state="running", started_at=3.0, restart_count=2,
                                          last=Terminated(1, 0, "Error", "", 2.0, 2.5, "process://n/6"),
                                          container_id="process://n/7", ready=True, started=True)
    rec = PodRecord("u1", "ns", "p", run, procs={"main": Proc(7, 12345, 3.0)}, backoff={"main": (20.0, 2.5)},
                    cgroups={"main": ["/sys/fs/cgroup/memory/x", ""]}, finished=False, container_names=["init", "main"])
    pod_dir = tmp_path / "u1"
    pod_dir.mkdir()
    checkpoint.save(pod_dir, rec)
    back = checkpoint.load(pod_dir)
    assert back == rec
    assert checkpoint.load_all(tmp_path) == [(pod_dir, rec)]


def test_checkpoint_missing_or_corrupt_is_none(tmp_path: Path) -> None:
    assert checkpoint.load(tmp_path) is None
    (tmp_path / checkpoint.STATE_FILE).write_text("{not json")
    assert checkpoint.load(tmp_path) is None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)


def test_rotation_keeps_one_rotated_file_and_samples(tmp_path: Path) -> None:
    clock = iter(range(100, 200))
    mgr = logs.LogManager(max_size=100, clock=lambda: float(next(clock)))
    path = logs.log_path(tmp_path, "c", 0)
    _write(path, b"a" * 60 + b"\n")
    mgr.begin("u", "c", path)
    mgr.tick()
    assert path.stat().st_size == 61
    _write(path, b"b" * 60 + b"\n")
    mgr.tick()  # 122 bytes > 100: rotated
    assert path.stat().st_size == 0
    assert Path(str(path) + ".1").read_bytes() == b"a" * 60 + b"\n" + b"b" * 60 + b"\n"
    _write(path, b"tail\n")
    ended = mgr.end("u", "c")
    assert ended is not None
    mgr.finalize(ended)
    lines, _ = logs.read_lines(path, mgr.samples(path), logs.LogOptions(), now=500.0)
    assert [line for line, _ in lines] == [b"a" * 60 + b"\n", b"b" * 60 + b"\n", b"tail\n"]
    # Write times come from the samples: first line by 100, second by 101, the tail by 102.
    assert [t for _, t in lines] == [100.0, 101.0, 102.0]


def test_read_options(tmp_path: Path) -> None:
    path = logs.log_path(tmp_path, "c", 0)
    _write(path, b"one\ntwo\nthree\n")
    samples = ([(4, 10.0), (8, 20.0), (14, 30.0)], [])
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(tail_lines=2), now=31.0)
    assert logs.render(lines, False) == b"two\nthree\n"
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(since_seconds=15), now=31.0)
    assert logs.render(lines, False) == b"two\nthree\n"
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(tail_lines=0), now=31.0)
    assert logs.render(lines, False) == b""
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(tail_lines=1), now=31.0)
    assert logs.render(lines, True) == b"1970-01-01T00:00:30.000000000Z three\n"


def test_prune_keeps_current_and_previous_runs(tmp_path: Path) -> None:
    for run in range(4):
        _write(logs.log_path(tmp_path, "c", run), b"x")
    _write(Path(str(logs.log_path(tmp_path, "c", 0)) + ".1"), b"x")
    _write(logs.log_path(tmp_path, "other", 0), b"x")
    logs.prune_runs(tmp_path, "c", 3)
    assert sorted(os.listdir(tmp_path)) == ["c.2.log", "c.3.log", "other.0.log"]


async def _collect(path: Path, opts: logs.LogOptions, running: list[bool]) -> bytes:
    out = b""
    async for chunk in logs.stream_log(path, ([], []), opts, lambda: running[0], poll=0.01):
        out += chunk
    return out


@pytest.mark.parametrize(("limit", "expected"), [(None, b"hello\nworld\n"), (7, b"hello\nw")])
async def test_stream_limit_bytes(tmp_path: Path, limit: int | None, expected: bytes) -> None:
    path = logs.log_path(tmp_path, "c", 0)
    _write(path, b"hello\nworld\n")
    assert await _collect(path, logs.LogOptions(limit_bytes=limit), [False]) == expected


async def test_follow_streams_until_the_run_ends(tmp_path: Path) -> None:
    import asyncio

    path = logs.log_path(tmp_path, "c", 0)
    _write(path, b"first\n")
    running = [True]
    task = asyncio.create_task(_collect(path, logs.LogOptions(follow=True), running))
    await asyncio.sleep(0.05)
    _write(path, b"second\n")
    await asyncio.sleep(0.05)
    running[0] = False
    assert await asyncio.wait_for(task, 5) == b"first\nsecond\n"


def test_retention_removes_gone_pods_after_the_period(tmp_path: Path) -> None:
    from nodeagent.agent import remove_expired

    for uid, gone in (("running", None), ("recent", 950.0), ("old", 100.0)):
        d = tmp_path / uid
        (d / "sandbox").mkdir(parents=True)
        checkpoint.save(d, PodRecord(uid, "ns", uid, PodRun(), gone_at=gone))
    assert remove_expired(tmp_path, retention=600, now=1000.0, active=lambda uid: False) == ["old"]
    assert sorted(os.listdir(tmp_path)) == ["recent", "running"]
    assert (tmp_path / "running" / "sandbox").exists()
    assert not (tmp_path / "recent" / "sandbox").exists()
    assert (tmp_path / "recent" / checkpoint.STATE_FILE).exists()
