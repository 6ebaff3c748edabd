"""Per-pod state on disk, so a restarted agent re-adopts its processes (Nomad's TaskState).

Each pod's record is `<data-dir>/pods/<uid>.state.json` (see runtime/layout.py), rewritten in
place on every container start and exit (write()). The record carries the pod's identity (so
`ketch logs` finds a pod that is gone from the API), every container's runs (pid plus process
start time in clock ticks for the running one) and whether the pod is finished, so a finished
batch pod is never run again.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
from dataclasses import dataclass, field, fields
from typing import Any

from nodeagent.status import ContainerRun, PodRun, Terminated

from . import layout

# A write of at most one page at offset 0 lands in the page cache in one step (see write()).
ATOMIC_WRITE = mmap.PAGESIZE
_DECODER = json.JSONDecoder()


@dataclass(slots=True)
class Proc:
    """The live process of a container's current run."""

    pid: int
    start_ticks: int
    started_at: float


@dataclass(slots=True)
class PodRecord:
    uid: str
    namespace: str
    name: str
    run: PodRun
    procs: dict[str, Proc] = field(default_factory=dict)
    # Crash-loop back-off per container: (current back-off, finish time it counts from).
    backoff: dict[str, tuple[float, float]] = field(default_factory=dict)
    cgroups: dict[str, list[str]] = field(default_factory=dict)
    # The final status was computed (the pod will never run again).
    finished: bool = False
    # When the pod left the API (deleted); its logs are kept for the retention period after.
    gone_at: float | None = None
    container_names: list[str] = field(default_factory=list)


_TERMINATED_FIELDS = tuple(f.name for f in fields(Terminated))
_RUN_FIELDS = tuple(f.name for f in fields(ContainerRun))


def _terminated(d: dict[str, Any] | None) -> Terminated | None:
    return Terminated(**d) if d else None


def _terminated_dict(t: Terminated | None) -> dict[str, Any] | None:
    return None if t is None else {f: getattr(t, f) for f in _TERMINATED_FIELDS}


def _run_dict(c: ContainerRun) -> dict[str, Any]:
    out = {f: getattr(c, f) for f in _RUN_FIELDS}
    out["terminated"] = _terminated_dict(c.terminated)
    out["last"] = _terminated_dict(c.last)
    return out


def to_dict(rec: PodRecord) -> dict[str, Any]:
    run = rec.run
    return {
        "uid": rec.uid, "namespace": rec.namespace, "name": rec.name,
        "containerNames": rec.container_names,
        "finished": rec.finished, "goneAt": rec.gone_at,
        "run": {
            "startTime": run.start_time, "terminal": run.terminal, "reason": run.reason,
            "message": run.message, "phaseOverride": run.phase_override,
            "disruption": list(run.disruption) if run.disruption else None,
            "containers": [_run_dict(c) for c in run.containers.values()],
        },
        "procs": {name: {"pid": p.pid, "start_ticks": p.start_ticks, "started_at": p.started_at}
                  for name, p in rec.procs.items()},
        "backoff": {name: list(v) for name, v in rec.backoff.items()},
        "cgroups": {name: list(v) for name, v in rec.cgroups.items()},
    }


def from_dict(d: dict[str, Any]) -> PodRecord:
    r = d.get("run", {})
    run = PodRun(start_time=r.get("startTime"), terminal=bool(r.get("terminal")), reason=r.get("reason", ""),
                 message=r.get("message", ""), phase_override=r.get("phaseOverride", ""))
    if r.get("disruption"):
        run.disruption = (r["disruption"][0], r["disruption"][1])
    for c in r.get("containers", []):
        c = dict(c)
        c["terminated"] = _terminated(c.get("terminated"))
        c["last"] = _terminated(c.get("last"))
        cr = ContainerRun(**c)
        run.containers[cr.name] = cr
    return PodRecord(
        uid=d["uid"], namespace=d.get("namespace", ""), name=d.get("name", ""), run=run,
        procs={name: Proc(**p) for name, p in d.get("procs", {}).items()},
        backoff={name: (float(v[0]), float(v[1])) for name, v in d.get("backoff", {}).items()},
        cgroups={name: list(v) for name, v in d.get("cgroups", {}).items()},
        finished=bool(d.get("finished")), gone_at=d.get("goneAt"),
        container_names=list(d.get("containerNames", [])),
    )


def save(path: str, rec: PodRecord) -> None:
    write(path, to_dict(rec))


def write(path: str, record: dict[str, Any]) -> None:
    """Write a record (to_dict) over the old one in place: no new inode, no rename.

    On ext4 a new inode costs far more system CPU than a write, and tmp+rename allocated one per
    write. In place is safe against the agent being killed (SIGKILL, a crash; not power loss:
    no fsync, as before): the kernel checks for a fatal signal only between the pages of a
    write, so a single pwrite of at most a page at offset 0 is never torn. Killed between the
    pwrite and the ftruncate, the file holds the new record followed by the old one's tail,
    which load() ignores. A record bigger than a page (many containers) still goes through
    tmp+rename, which is atomic at any size.
    """
    data = json.dumps(record, separators=(",", ":")).encode()
    if len(data) > ATOMIC_WRITE:
        _replace(path, data)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        longer = os.fstat(fd).st_size > len(data)
        os.pwrite(fd, data, 0)
        if longer:
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _replace(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load(path: str) -> PodRecord | None:
    """The record at path; the first JSON value counts (an interrupted rewrite leaves a tail).
    A record whose uid or container names could not name a file under pods_root is no record:
    its names become paths (logs, sandbox) wherever it is used."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
        rec = from_dict(_DECODER.raw_decode(text)[0])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(rec.uid, str) or not layout.is_part(rec.uid):
        return None
    if not all(isinstance(n, str) and layout.is_part(n) for n in (*rec.run.containers, *rec.container_names)):
        return None
    return rec


def load_all(pods_root: str | os.PathLike[str]) -> list[PodRecord]:
    """Every record under pods_root (`*.state.json`)."""
    out = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(pods_root):
            if entry.name.endswith(layout.STATE_SUFFIX):
                rec = load(entry.path)
                if rec is not None:
                    out.append(rec)
    return out
