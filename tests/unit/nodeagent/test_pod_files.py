"""The files a pod worker leaves under pods_root (real processes): the sandbox only when a
container runs in it, one checkpoint rewritten in place, one log file per run, old runs pruned."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ketch.client.flowcontrol import Backoff
from ketch.v1 import core_pb2
from nodeagent.limits.watchdog import MemoryWatchdog
from nodeagent.podmanager import PodWorkers
from nodeagent.podworkers import PodWorker, WorkerDeps
from nodeagent.runtime import checkpoint, layout
from nodeagent.runtime.logs import LogManager
from nodeagent.runtime.process import ProcessRuntime
from tests.conftest import eventually

UID = "0b9e7c1e-5a8f-4d3b-9c2e-7f1a2b3c4d5e"


class _Status:
    """The little of the StatusManager a worker uses; nothing is sent anywhere."""

    def register(self, uid: str, provider: Any) -> None: ...
    def unregister(self, uid: str) -> None: ...
    def mark(self, uid: str) -> None: ...
    async def flushed(self, uid: str) -> None: ...
    async def delete(self, pod: core_pb2.Pod) -> None: ...


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[WorkerDeps]:
    runtime = ProcessRuntime()
    runtime.install()
    root = tmp_path / "pods"
    root.mkdir()
    d = WorkerDeps(node_name="n", host_ip="127.0.0.1", pods_root=root, client=None,  # type: ignore[arg-type]
                   runtime=runtime, status=_Status(), logs=LogManager(),  # type: ignore[arg-type]
                   backoff=Backoff(0.01, 0.01), watchdog=MemoryWatchdog())
    try:
        yield d
    finally:
        runtime.close()
        d.io.shutdown(wait=False)


def _pod(script: str, working_dir: str = "", policy: str = "Never") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "p", "default", UID
    pod.spec.restart_policy = policy
    pod.spec.containers.add(name="main", command=["sh", "-c", script], working_dir=working_dir)
    return pod


async def _run(deps: WorkerDeps, pod: core_pb2.Pod) -> PodWorker:
    done = asyncio.Event()
    worker = PodWorker(deps, pod, None, lambda w: done.set())
    worker.start()
    await asyncio.wait_for(done.wait(), 20)
    return worker


def _files(root: Path) -> list[str]:
    return sorted(os.listdir(root))


async def test_a_pod_with_a_working_dir_makes_no_sandbox(deps: WorkerDeps, tmp_path: Path) -> None:
    work = tmp_path / "work" / "here"
    worker = await _run(deps, _pod("pwd", str(work)))
    assert worker.record.finished
    assert _files(deps.pods_root) == [f"{UID}.main.0.log", f"{UID}.state.json"]
    assert Path(layout.log_file(deps.pods_root, UID, "main", 0)).read_text() == f"{work}\n"
    assert work.is_dir()


async def test_the_default_working_dir_is_the_sandbox(deps: WorkerDeps) -> None:
    await _run(deps, _pod("pwd; touch mine"))
    sandbox = layout.sandbox_dir(deps.pods_root, UID)
    assert sandbox == str(deps.pods_root / UID)
    assert _files(deps.pods_root) == [UID, f"{UID}.main.0.log", f"{UID}.state.json"]
    assert Path(layout.log_file(deps.pods_root, UID, "main", 0)).read_text() == f"{sandbox}\n"
    assert os.listdir(sandbox) == ["mine"]


async def test_the_checkpoint_is_rewritten_in_place(deps: WorkerDeps, tmp_path: Path) -> None:
    go = tmp_path / "go"
    done = asyncio.Event()
    worker = PodWorker(deps, _pod(f"while [ ! -e {go} ]; do sleep 0.02; done", str(tmp_path)), None,
                       lambda w: done.set())
    worker.start()
    state = layout.state_file(deps.pods_root, UID)

    def started() -> bool:
        rec = checkpoint.load(state)
        return rec is not None and "main" in rec.procs

    try:
        await eventually(started, timeout=20, what="the checkpoint of the running container")
        inode = os.stat(state).st_ino
    finally:
        go.touch()  # the container ends by itself, whatever happened above
    await asyncio.wait_for(done.wait(), 20)
    rec = checkpoint.load(state)
    assert rec is not None and rec.finished and not rec.procs
    assert os.stat(state).st_ino == inode
    assert worker.record.run.containers["main"].terminated is not None


async def test_restarts_keep_the_current_and_the_previous_run(deps: WorkerDeps, tmp_path: Path) -> None:
    # Each run counts itself; runs 0-2 fail, run 3 succeeds.
    count = tmp_path / "count"
    script = f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}; echo run $n; [ $n -ge 3 ]"
    worker = await _run(deps, _pod(script, str(tmp_path), policy="OnFailure"))
    assert worker.record.run.containers["main"].restart_count == 3
    logs = [n for n in _files(deps.pods_root) if n.endswith(".log")]
    assert logs == [f"{UID}.main.2.log", f"{UID}.main.3.log"]
    assert Path(layout.log_file(deps.pods_root, UID, "main", 3)).read_text() == "run 3\n"


@pytest.mark.parametrize(("uid", "container"), [("../../escape", "main"), (UID, "../main"), (UID, "a.b")],
                         ids=["uid", "container", "container with a dot"])
async def test_a_pod_whose_names_would_leave_pods_root_is_never_run(
        deps: WorkerDeps, tmp_path: Path, uid: str, container: str) -> None:
    pod = _pod("touch ran")
    pod.metadata.uid = uid
    pod.spec.containers[0].name = container
    workers = PodWorkers(deps)
    workers.update(pod)
    workers.update(pod)  # and again: still nothing (and logged once)
    assert workers.workers == {} and workers.refused == {uid}
    assert os.listdir(deps.pods_root) == [] and sorted(os.listdir(tmp_path)) == ["pods"]
    workers.delete(pod)
    assert workers.refused == set()
