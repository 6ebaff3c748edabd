"""Per-pod state on disk, so a restarted agent re-adopts its processes (Nomad's TaskState).

Each pod has a directory `<data-dir>/pods/<uid>/` holding `state.json` (written atomically on
every container start and exit), its log files and its default working directory. The record
carries the pod's identity (so `ketch logs` finds a pod that is gone from the API), every
container's runs (pid plus process start time in clock ticks for the running one) and whether
the pod is finished, so a finished batch pod is never run again.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nodeagent.status import ContainerRun, PodRun, Terminated

STATE_FILE = "state.json"


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


def save(pod_dir: Path, rec: PodRecord) -> None:
    write(pod_dir, to_dict(rec))


def write(pod_dir: Path, record: dict[str, Any]) -> None:
    """Write a record (to_dict) atomically (rename); no fsync: this guards agent crashes, not power loss."""
    path = pod_dir / STATE_FILE
    tmp = pod_dir / (STATE_FILE + ".tmp")
    data = json.dumps(record, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load(pod_dir: Path) -> PodRecord | None:
    try:
        with open(pod_dir / STATE_FILE, "rb") as f:
            return from_dict(json.loads(f.read()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_all(pods_root: Path) -> list[tuple[Path, PodRecord]]:
    out = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(pods_root):
            if entry.is_dir():
                rec = load(Path(entry.path))
                if rec is not None:
                    out.append((Path(entry.path), rec))
    return out
