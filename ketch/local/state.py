"""Where a named local cluster keeps its record, and whether it runs, for `ketch local up|down|status`.

Each cluster NAME has the directory `~/.ketch/local/NAME` (from $HOME, whatever the working
directory), its default data dir too. In it `state.json` records what `up` started: the `up`
process and every member (pid and start time), the API address, the data dir and the admin
config; `lock` is held (flock) by the `up` that owns the name for as long as it runs, so two
`up`s of one name cannot both pass the check. A cluster runs while any recorded process runs;
a record whose processes are all gone is stale and `down` removes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .procs import ProcessRef

STATE_FILE = "state.json"
LOCK_FILE = "lock"
DEFAULT_NAME = "default"
# A DNS label, as kind's and k3d's cluster names: it becomes a directory name.
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def root() -> Path:
    """~/.ketch/local, from $HOME."""
    return Path.home() / ".ketch" / "local"


def check_name(name: str) -> str:
    """The name, or ValueError saying what is wrong with it."""
    if len(name) > 63 or not NAME_RE.fullmatch(name):
        raise ValueError(f'--name "{name}": must be a DNS label (lower-case letters, digits and "-", '
                         "starting and ending with a letter or digit, at most 63 characters)")
    return name


def cluster_dir(name: str) -> Path:
    return root() / check_name(name)


@dataclass
class ClusterState:
    """What one `ketch local up` started."""

    name: str
    up: ProcessRef
    server: str
    data_dir: Path
    admin_config: Path | None  # None when insecure
    nodes: list[str] = field(default_factory=list)
    # member name (controlplane, node-1, ...) -> process, added as each starts
    members: dict[str, ProcessRef] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return cluster_dir(self.name) / STATE_FILE

    def running(self) -> dict[str, ProcessRef]:
        """The recorded processes that still run, `up` included (as "up")."""
        procs = {"up": self.up, **self.members}
        return {name: p for name, p in procs.items() if p.alive}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "up": self.up.to_json(), "server": self.server, "dataDir": str(self.data_dir),
                "adminConfig": str(self.admin_config) if self.admin_config else "", "nodes": self.nodes,
                "members": {k: v.to_json() for k, v in self.members.items()}}

    @classmethod
    def from_json(cls, data: Any) -> ClusterState:
        try:
            return cls(name=str(data["name"]), up=ProcessRef.from_json(data["up"]), server=str(data["server"]),
                       data_dir=Path(data["dataDir"]),
                       admin_config=Path(data["adminConfig"]) if data.get("adminConfig") else None,
                       nodes=[str(n) for n in data.get("nodes", [])],
                       members={str(k): ProcessRef.from_json(v) for k, v in data.get("members", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"malformed local cluster state: {err}") from None

    def save(self) -> None:
        """Write the record atomically (a reader sees the old or the new one, never half)."""
        path = self.path
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)

    def remove(self) -> None:
        """Remove the record if it is still this one (same `up` process)."""
        current = load(self.name)
        if current is not None and current.up == self.up:
            self.path.unlink(missing_ok=True)


def load(name: str) -> ClusterState | None:
    """The record of the cluster NAME; None if there is none. ValueError if it is unreadable."""
    path = cluster_dir(name) / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return ClusterState.from_json(json.loads(text))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON: {err}") from None


def load_all() -> list[ClusterState]:
    """Every readable record under ~/.ketch/local, by name."""
    states = []
    base = root()
    if not base.is_dir():
        return []
    for entry in sorted(base.iterdir()):
        if not NAME_RE.fullmatch(entry.name):
            continue
        try:
            state = load(entry.name)
        except (ValueError, OSError):
            continue
        if state is not None:
            states.append(state)
    return states


class NameLock:
    """The exclusive flock on ~/.ketch/local/NAME/lock, held by the running `up`; the kernel drops
    it when that process ends, however it ends."""

    def __init__(self, name: str) -> None:
        self.path = cluster_dir(name) / LOCK_FILE
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "ab")  # noqa: SIM115 - held open for the life of `up`
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
