"""The on-disk checkpoint round-trips and survives an interrupted in-place rewrite; logs rotate,
prune old runs by name and read back with options; retention removes a gone pod's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodeagent.runtime import checkpoint, layout, logs
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
    path = layout.state_file(tmp_path, "u1")
    checkpoint.save(path, rec)
    assert path == str(tmp_path / "u1.state.json")
    back = checkpoint.load(path)
    assert back == rec
    (tmp_path / "u1").mkdir()  # the sandbox
    _write(Path(layout.log_file(tmp_path, "u1", "main", 2)), b"x")
    assert checkpoint.load_all(tmp_path) == [rec]


def test_checkpoint_missing_or_corrupt_is_none(tmp_path: Path) -> None:
    path = layout.state_file(tmp_path, "u1")
    assert checkpoint.load(path) is None
    Path(path).write_text("{not json")
    assert checkpoint.load(path) is None
    Path(path).write_text("[1, 2]")
    assert checkpoint.load(path) is None


def _record(uid: str, containers: int) -> PodRecord:
    run = PodRun(start_time=1.0)
    for i in range(containers):
        run.containers[f"c{i}"] = ContainerRun(f"c{i}", state="running", started_at=2.0, container_id="process://n/9")
    return PodRecord(uid, "ns", "p", run, container_names=list(run.containers))


def test_checkpoint_rewrites_in_place(tmp_path: Path) -> None:
    path = layout.state_file(tmp_path, "u1")
    long, short = _record("u1", 3), _record("u1", 1)
    checkpoint.save(path, long)
    inode = os.stat(path).st_ino
    checkpoint.save(path, short)
    # Same inode (no tmp file, no rename), truncated to the shorter record.
    assert os.stat(path).st_ino == inode
    assert Path(path).read_bytes() == json.dumps(checkpoint.to_dict(short), separators=(",", ":")).encode()
    assert checkpoint.load(path) == short
    checkpoint.save(path, long)
    assert os.stat(path).st_ino == inode
    assert checkpoint.load(path) == long
    assert os.listdir(tmp_path) == ["u1.state.json"]


def test_checkpoint_killed_before_the_truncate_loads_the_new_record(tmp_path: Path) -> None:
    """A kill -9 between the pwrite and the ftruncate leaves the new JSON followed by the old tail."""
    path = layout.state_file(tmp_path, "u1")
    old = json.dumps(checkpoint.to_dict(_record("u1", 3)), separators=(",", ":")).encode()
    new = json.dumps(checkpoint.to_dict(_record("u1", 1)), separators=(",", ":")).encode()
    assert len(new) < len(old)
    Path(path).write_bytes(new + old[len(new):])
    assert checkpoint.load(path) == _record("u1", 1)


def test_checkpoint_bigger_than_a_page_is_replaced_whole(tmp_path: Path) -> None:
    path = layout.state_file(tmp_path, "u1")
    big = _record("u1", 40)
    assert len(json.dumps(checkpoint.to_dict(big))) > checkpoint.ATOMIC_WRITE
    checkpoint.save(path, _record("u1", 1))
    checkpoint.save(path, big)
    assert checkpoint.load(path) == big
    checkpoint.save(path, _record("u1", 2))
    assert checkpoint.load(path) == _record("u1", 2)
    assert os.listdir(tmp_path) == ["u1.state.json"]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)


def test_rotation_keeps_one_rotated_file_and_samples(tmp_path: Path) -> None:
    clock = iter(range(100, 200))
    mgr = logs.LogManager(max_size=100, clock=lambda: float(next(clock)))
    path = layout.log_file(tmp_path, "u", "c", 0)
    _write(Path(path), b"a" * 60 + b"\n")
    mgr.begin("u", "c", path)
    mgr.tick()
    assert os.stat(path).st_size == 61
    _write(Path(path), b"b" * 60 + b"\n")
    mgr.tick()  # 122 bytes > 100: rotated
    assert os.stat(path).st_size == 0
    assert Path(path + ".1").read_bytes() == b"a" * 60 + b"\n" + b"b" * 60 + b"\n"
    _write(Path(path), b"tail\n")
    mgr.tick()
    _write(Path(path), b"end\n")
    ended = mgr.end("u", "c")
    assert ended is not None
    mgr.finalize(ended)
    lines, _ = logs.read_lines(path, mgr.samples(path), logs.LogOptions(), now=500.0)
    assert [line for line, _ in lines] == [b"a" * 60 + b"\n", b"b" * 60 + b"\n", b"tail\n", b"end\n"]
    # Write times come from the samples kept next to the files: 100, 101, then 102 and 103.
    assert [t for _, t in lines] == [100.0, 101.0, 102.0, 103.0]
    assert sorted(os.listdir(tmp_path)) == ["u.c.0.log", "u.c.0.log.1", "u.c.0.log.1.idx", "u.c.0.log.idx"]


def test_a_single_sample_is_not_kept(tmp_path: Path) -> None:
    """A run that ended within a sampling tick has one sample: the file's mtime says as much."""
    mgr = logs.LogManager(clock=lambda: 100.0)
    path = layout.log_file(tmp_path, "u", "c", 0)
    _write(Path(path), b"one\ntwo\n")
    os.utime(path, (90.0, 90.0))
    mgr.begin("u", "c", path)
    ended = mgr.end("u", "c")
    assert ended is not None
    mgr.finalize(ended)
    assert os.listdir(tmp_path) == ["u.c.0.log"]
    lines, _ = logs.read_lines(path, mgr.samples(path), logs.LogOptions(timestamps=True), now=500.0)
    assert lines == [(b"one\n", 90.0), (b"two\n", 90.0)]


def test_read_options(tmp_path: Path) -> None:
    path = layout.log_file(tmp_path, "u", "c", 0)
    _write(Path(path), b"one\ntwo\nthree\n")
    samples = ([(4, 10.0), (8, 20.0), (14, 30.0)], [])
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(tail_lines=2), now=31.0)
    assert logs.render(lines, False) == b"two\nthree\n"
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(since_seconds=15), now=31.0)
    assert logs.render(lines, False) == b"two\nthree\n"
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(tail_lines=0), now=31.0)
    assert logs.render(lines, False) == b""
    lines, _ = logs.read_lines(path, samples, logs.LogOptions(tail_lines=1), now=31.0)
    assert logs.render(lines, True) == b"1970-01-01T00:00:30.000000000Z three\n"


def test_prune_removes_the_run_before_the_previous_by_name(tmp_path: Path) -> None:
    for run in range(3):
        for path in layout.log_files(layout.log_file(tmp_path, "u", "c", run)):
            _write(Path(path), b"x")
    _write(Path(layout.log_file(tmp_path, "u", "other", 0)), b"x")
    _write(Path(layout.log_file(tmp_path, "v", "c", 0)), b"x")
    (tmp_path / "u").mkdir()
    logs.prune_runs(tmp_path, "u", "c", 1)  # nothing is older than the previous run
    assert len(os.listdir(tmp_path)) == 15
    logs.prune_runs(tmp_path, "u", "c", 2)
    assert sorted(os.listdir(tmp_path)) == [
        "u", "u.c.1.log", "u.c.1.log.1", "u.c.1.log.1.idx", "u.c.1.log.idx",
        "u.c.2.log", "u.c.2.log.1", "u.c.2.log.1.idx", "u.c.2.log.idx", "u.other.0.log", "v.c.0.log"]
    logs.prune_runs(tmp_path, "u", "c", 3)  # run 1 went; run 0's files are missing: fine
    logs.prune_runs(tmp_path, "u", "c", 2)
    assert sorted(os.listdir(tmp_path)) == [
        "u", "u.c.2.log", "u.c.2.log.1", "u.c.2.log.1.idx", "u.c.2.log.idx", "u.other.0.log", "v.c.0.log"]


def test_prune_scans_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan(*args: object) -> None:
        raise AssertionError("prune_runs must not list the pods dir")

    monkeypatch.setattr(os, "scandir", no_scan)
    monkeypatch.setattr(os, "listdir", no_scan)
    _write(Path(layout.log_file(tmp_path, "u", "c", 3)), b"x")
    logs.prune_runs(tmp_path, "u", "c", 5)
    assert not Path(layout.log_file(tmp_path, "u", "c", 3)).exists()


async def _collect(path: str, opts: logs.LogOptions, running: list[bool]) -> bytes:
    out = b""
    async for chunk in logs.stream_log(path, ([], []), opts, lambda: running[0], poll=0.01):
        out += chunk
    return out


@pytest.mark.parametrize(("limit", "expected"), [(None, b"hello\nworld\n"), (7, b"hello\nw")])
async def test_stream_limit_bytes(tmp_path: Path, limit: int | None, expected: bytes) -> None:
    path = layout.log_file(tmp_path, "u", "c", 0)
    _write(Path(path), b"hello\nworld\n")
    assert await _collect(path, logs.LogOptions(limit_bytes=limit), [False]) == expected


async def test_follow_streams_until_the_run_ends(tmp_path: Path) -> None:
    import asyncio

    path = layout.log_file(tmp_path, "u", "c", 0)
    _write(Path(path), b"first\n")
    running = [True]
    task = asyncio.create_task(_collect(path, logs.LogOptions(follow=True), running))
    await asyncio.sleep(0.05)
    _write(Path(path), b"second\n")
    await asyncio.sleep(0.05)
    running[0] = False
    assert await asyncio.wait_for(task, 5) == b"first\nsecond\n"


def test_retention_removes_gone_pods_after_the_period(tmp_path: Path) -> None:
    from nodeagent.agent import remove_expired

    for uid, gone in (("running", None), ("recent", 950.0), ("old", 100.0), ("busy", 100.0)):
        (tmp_path / uid).mkdir()  # the sandbox, with something in it
        (tmp_path / uid / "out").write_text("x")
        checkpoint.save(layout.state_file(tmp_path, uid), PodRecord(uid, "ns", uid, PodRun(), gone_at=gone))
        for run in (3, 4):
            for path in layout.log_files(layout.log_file(tmp_path, uid, "main", run)):
                _write(Path(path), b"x")
    _write(Path(layout.log_file(tmp_path, "old", "main", 0)), b"leaked")  # a run no record names
    _write(Path(layout.log_file(tmp_path, "nostate", "main", 0)), b"x")  # no checkpoint: not ours to judge
    (tmp_path / "oldlike").mkdir()

    def pod_files(uid: str) -> list[str]:
        return sorted(n for n in os.listdir(tmp_path) if n.startswith(uid + "."))

    assert remove_expired(tmp_path, retention=600, now=1000.0, active=lambda uid: uid == "busy") == ["old"]
    # Gone from the API: the sandbox goes at once, the files after the retention period.
    assert not (tmp_path / "old").exists() and pod_files("old") == []
    assert not (tmp_path / "recent").exists()
    assert len(pod_files("recent")) == 9 and "recent.state.json" in pod_files("recent")
    # Still running here, or not gone: untouched.
    for uid in ("running", "busy"):
        assert (tmp_path / uid / "out").exists() and len(pod_files(uid)) == 9
    assert pod_files("nostate") == ["nostate.main.0.log"]
    assert (tmp_path / "oldlike").is_dir()
    assert sorted(remove_expired(tmp_path, retention=600, now=1600.0, active=lambda uid: False)) == ["busy", "recent"]
    assert sorted(os.listdir(tmp_path)) == ["nostate.main.0.log", "oldlike", "running", *pod_files("running")]


def test_retention_removes_a_gone_pods_log_dir_and_its_links(tmp_path: Path) -> None:
    from nodeagent.agent import remove_expired
    from nodeagent.runtime import crilog

    pods = tmp_path / "pods"
    pods.mkdir()
    dirs = crilog.LogDirs(str(tmp_path / "log" / "pods"), str(tmp_path / "log" / "containers"))
    dirs.prepare()
    for uid, gone in (("kept", None), ("gone", 100.0)):
        checkpoint.save(layout.state_file(pods, uid), PodRecord(uid, "ns", f"pod-{uid}", PodRun(), gone_at=gone))
        for run in (0, 1):
            path = layout.cri_log_file(dirs.pods, "ns", f"pod-{uid}", uid, "main", run)
            os.close(crilog.create_log(path, layout.container_log_link(dirs.containers, "ns", f"pod-{uid}", uid,
                                                                         "main", run)))
    assert remove_expired(pods, retention=600, now=1000.0, active=lambda uid: False, log_dirs=dirs) == ["gone"]
    assert os.listdir(dirs.pods) == ["ns_pod-kept_kept"]
    links = sorted(os.listdir(dirs.containers))
    assert len(links) == 2 and all(n.startswith("pod-kept_ns_main-") for n in links)
