"""Finding a container's log for PodLogs: by uid, by name for pods gone from the API, the
previous run, and Kubernetes' error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.api import errors
from ketch.v1 import api_pb2
from nodeagent.runtime import checkpoint, layout, logs
from nodeagent.runtime.checkpoint import PodRecord
from nodeagent.server import LogSource, open_log, pod_logs
from nodeagent.status import ContainerRun, PodRun


def _record(root: Path, uid: str, name: str, start: float, runs: dict[str, int]) -> PodRecord:
    run = PodRun(start_time=start)
    for cname, count in runs.items():
        run.containers[cname] = ContainerRun(cname, state="terminated", restart_count=count)
    rec = PodRecord(uid, "default", name, run, container_names=list(runs))
    (root / uid).mkdir()  # the sandbox
    checkpoint.save(layout.state_file(root, uid), rec)
    for cname, count in runs.items():
        for r in range(count + 1):
            Path(layout.log_file(root, uid, cname, r)).write_text(f"{name} {cname} run {r}\n")
    return rec


@pytest.fixture
def source(tmp_path: Path) -> LogSource:
    _record(tmp_path, "old", "web", 10.0, {"main": 0})
    _record(tmp_path, "new", "web", 20.0, {"main": 2})
    _record(tmp_path, "two", "pair", 5.0, {"a": 0, "b": 0})
    return LogSource(tmp_path, lambda uid: None, lambda uid, c, r: False, logs.LogManager())


def test_by_name_picks_the_most_recent_pod(source: LogSource) -> None:
    path, running, _ = open_log(source, api_pb2.PodLogsRequest(namespace="default", name="web"))
    assert path == layout.log_file(source.pods_root, "new", "main", 2)
    assert Path(path).read_text() == "web main run 2\n"
    assert running() is False


def test_previous_run(source: LogSource) -> None:
    path, _, _ = open_log(source, api_pb2.PodLogsRequest(name="web", pod_uid="new", previous=True))
    assert Path(path).read_text() == "web main run 1\n"
    with pytest.raises(errors.BadRequest, match='previous terminated container "main" in pod "web" not found'):
        open_log(source, api_pb2.PodLogsRequest(name="web", pod_uid="old", previous=True))


def test_errors(source: LogSource) -> None:
    with pytest.raises(errors.NotFound):
        open_log(source, api_pb2.PodLogsRequest(namespace="default", name="nothere"))
    with pytest.raises(errors.BadRequest, match=r"choose one of: \[a b\]"):
        open_log(source, api_pb2.PodLogsRequest(namespace="default", name="pair"))
    with pytest.raises(errors.BadRequest, match="container zzz is not valid"):
        open_log(source, api_pb2.PodLogsRequest(name="pair", pod_uid="two", container="zzz"))
    with pytest.raises(errors.BadRequest, match="waiting to start"):
        open_log(source, api_pb2.PodLogsRequest(name="fresh", pod_uid="never-started", container="main"))


async def test_stream_with_tail(source: LogSource) -> None:
    req = api_pb2.PodLogsRequest(name="pair", pod_uid="two", container="b", tail_lines=5)
    chunks = [c.data async for c in pod_logs(source, req)]
    assert b"".join(chunks) == b"pair b run 0\n"
