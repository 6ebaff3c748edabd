"""Finding a container's log for PodLogs: by uid, by name for pods gone from the API, the
previous run, Kubernetes' error messages, and requests that try to name files outside."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.api import errors
from ketch.v1 import api_pb2
from nodeagent.runtime import checkpoint, crilog, layout, logs
from nodeagent.runtime.checkpoint import PodRecord
from nodeagent.server import LogSource, open_log, pod_logs
from nodeagent.status import ContainerRun, PodRun

OLD, NEW, TWO = "0a3f6c52-1b1e-4a8e-9a55-6f7c2d1e0001", "0a3f6c52-1b1e-4a8e-9a55-6f7c2d1e0002", \
    "0a3f6c52-1b1e-4a8e-9a55-6f7c2d1e0003"
NEVER = "0a3f6c52-1b1e-4a8e-9a55-6f7c2d1e0004"


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
    pods = tmp_path / "pods"
    pods.mkdir()
    _record(pods, OLD, "web", 10.0, {"main": 0})
    _record(pods, NEW, "web", 20.0, {"main": 2})
    _record(pods, TWO, "pair", 5.0, {"a": 0, "b": 0})
    return LogSource(pods, lambda uid: None, lambda uid, c, r: False, logs.LogManager())


def test_by_name_picks_the_most_recent_pod(source: LogSource) -> None:
    path, running, _ = open_log(source, api_pb2.PodLogsRequest(namespace="default", name="web"))
    assert path == layout.log_file(source.pods_root, NEW, "main", 2)
    assert Path(path).read_text() == "web main run 2\n"
    assert running() is False


def test_previous_run(source: LogSource) -> None:
    path, _, _ = open_log(source, api_pb2.PodLogsRequest(name="web", pod_uid=NEW, previous=True))
    assert Path(path).read_text() == "web main run 1\n"
    with pytest.raises(errors.BadRequest, match='previous terminated container "main" in pod "web" not found'):
        open_log(source, api_pb2.PodLogsRequest(name="web", pod_uid=OLD, previous=True))


def test_errors(source: LogSource) -> None:
    with pytest.raises(errors.NotFound):
        open_log(source, api_pb2.PodLogsRequest(namespace="default", name="nothere"))
    with pytest.raises(errors.BadRequest, match=r"choose one of: \[a b\]"):
        open_log(source, api_pb2.PodLogsRequest(namespace="default", name="pair"))
    with pytest.raises(errors.BadRequest, match="container zzz is not valid"):
        open_log(source, api_pb2.PodLogsRequest(name="pair", pod_uid=TWO, container="zzz"))
    with pytest.raises(errors.BadRequest, match="waiting to start"):
        open_log(source, api_pb2.PodLogsRequest(name="fresh", pod_uid=NEVER, container="main"))


async def test_stream_with_tail(source: LogSource) -> None:
    req = api_pb2.PodLogsRequest(name="pair", pod_uid=TWO, container="b", tail_lines=5)
    chunks = [c.data async for c in pod_logs(source, req)]
    assert b"".join(chunks) == b"pair b run 0\n"


def _planted(root: Path, uid: str) -> None:
    """A checkpoint and a log named for a traversing uid, outside pods_root (in its parent)."""
    rec = PodRecord(uid, "default", "ghost", PodRun(start_time=1.0), container_names=["main"])
    rec.run.containers["main"] = ContainerRun("main", state="terminated")
    checkpoint.write(str(root / "secret.state.json"), checkpoint.to_dict(rec))
    (root / "secret.main.0.log").write_text("TOP SECRET\n")


@pytest.mark.parametrize(("req", "field"), [
    (api_pb2.PodLogsRequest(namespace="default", name="ghost", pod_uid="../secret"), "podUID"),
    (api_pb2.PodLogsRequest(namespace="default", name="../secret"), "name"),
    (api_pb2.PodLogsRequest(namespace="../..", name="ghost"), "namespace"),
    (api_pb2.PodLogsRequest(name="pair", pod_uid=TWO, container="../../a"), "container"),
    (api_pb2.PodLogsRequest(name="web", pod_uid=NEW + "/.."), "podUID"),
], ids=["uid", "name", "namespace", "container", "uid with a suffix"])
async def test_a_request_naming_a_path_is_invalid_and_reads_nothing(
        source: LogSource, req: api_pb2.PodLogsRequest, field: str) -> None:
    _planted(source.pods_root.parent, "../secret")
    with pytest.raises(errors.Invalid, match=rf'^The PodLogOptions "[^"]*" is invalid: {field}: Invalid value: '):
        async for _ in pod_logs(source, req):
            raise AssertionError("no byte may be served")


async def test_a_uid_opens_only_the_pod_the_request_names(source: LogSource) -> None:
    # TWO is pod default/pair: asking for default/web or other/pair with its uid finds nothing.
    for ns, name in (("default", "web"), ("other", "pair")):
        with pytest.raises(errors.NotFound, match=f'pods "{name}" not found'):
            open_log(source, api_pb2.PodLogsRequest(namespace=ns, name=name, pod_uid=TWO, container="a"))


def test_a_checkpoint_whose_uid_names_a_path_is_ignored(source: LogSource) -> None:
    _planted(source.pods_root.parent, "../secret")
    (source.pods_root / "x.state.json").write_bytes((source.pods_root.parent / "secret.state.json").read_bytes())
    assert checkpoint.load(str(source.pods_root / "x.state.json")) is None
    with pytest.raises(errors.NotFound):
        open_log(source, api_pb2.PodLogsRequest(namespace="default", name="ghost"))


def test_a_log_file_that_resolves_outside_is_refused(source: LogSource) -> None:
    outside = source.pods_root.parent / "elsewhere.log"
    outside.write_text("not yours\n")
    path = Path(layout.log_file(source.pods_root, TWO, "b", 0))
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(errors.BadRequest, match="outside the agent's pods directory"):
        open_log(source, api_pb2.PodLogsRequest(name="pair", pod_uid=TWO, container="b"))


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a.b", "x\0"])
def test_layout_refuses_names_that_are_not_one_plain_part(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="cannot name a file"):
        layout.log_file(tmp_path, name, "main", 0)
    with pytest.raises(ValueError, match="cannot name a file"):
        layout.log_file(tmp_path, NEW, name, 0)
    with pytest.raises(ValueError, match="cannot name a file"):
        layout.sandbox_dir(tmp_path, name)


@pytest.fixture
def upgraded(source: LogSource, tmp_path: Path) -> LogSource:
    """The same pods on an agent that writes CRI logs: NEW's current run is in the kubelet's
    layout; its earlier runs and the other pods' are flat files from before the upgrade."""
    dirs = crilog.LogDirs(str(tmp_path / "log" / "pods"), str(tmp_path / "log" / "containers"))
    dirs.prepare()
    path = Path(layout.cri_log_file(dirs.pods, "default", "web", NEW, "main", 2))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"2026-12-06T14:30:03.5Z stdout F new\n2026-12-06T14:30:04Z stderr P lo\n"
                     b"2026-12-06T14:30:04.1Z stderr F ng\n")
    return LogSource(source.pods_root, lambda uid: None, lambda uid, c, r: False, logs.LogManager(), dirs)


async def _read(source: LogSource, **req: object) -> bytes:
    return b"".join([c.data async for c in pod_logs(source, api_pb2.PodLogsRequest(**req))])  # type: ignore[arg-type]


async def test_cri_logs_are_served_as_plain_lines_and_flat_ones_of_before_the_upgrade_still(
        upgraded: LogSource) -> None:
    assert await _read(upgraded, name="web", pod_uid=NEW) == b"new\nlong\n"
    assert await _read(upgraded, name="web", pod_uid=NEW, timestamps=True) == (
        b"2026-12-06T14:30:03.500000000Z new\n2026-12-06T14:30:04.000000000Z long\n")
    assert await _read(upgraded, name="web", pod_uid=NEW, previous=True) == b"web main run 1\n"
    assert await _read(upgraded, name="pair", pod_uid=TWO, container="b") == b"pair b run 0\n"


async def test_a_run_that_wrote_nothing_reads_as_empty(upgraded: LogSource, tmp_path: Path) -> None:
    rec = PodRecord(NEVER, "default", "quiet", PodRun(start_time=1.0), container_names=["main"])
    rec.run.containers["main"] = ContainerRun("main", state="terminated", container_id="process://n/1")
    checkpoint.save(layout.state_file(upgraded.pods_root, NEVER), rec)
    assert await _read(upgraded, name="quiet", pod_uid=NEVER) == b""
