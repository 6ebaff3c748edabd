"""Per-container cgroups for `resources.limits` (memory and cpu), v1 or v2, found at run time.

Container cgroups live under a `ketch` child of the agent's own cgroup, so whatever limits the
agent's service has also bound its pods (and a systemd unit with Delegate=yes works as is). On
cgroup v1 the memory and cpu hierarchies are used; on v2 the agent moves itself into a leaf
(`<own>/agent`) so its cgroup may delegate controllers, as the "no internal processes" rule
requires. Each container run gets a fresh cgroup, removed after the run; an OOM kill is read
from the cgroup's oom_kill counter. When nothing here works the watchdog takes over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000
PARENT = "ketch"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _own_cgroups() -> dict[str, str]:
    """controller -> path of this process's cgroup ("" key: the v2 unified path)."""
    out: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, root, super options) of every cgroup mount."""
    out = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((rf[0], lf[4], lf[3], set(rf[2].split(","))))
    return out


def _join(mount: str, root: str, path: str) -> Path:
    rel = path
    if root != "/" and path.startswith(root):
        rel = path[len(root):]
    return Path(mount + "/" + rel.lstrip("/"))


@dataclass(slots=True)
class Cgroup:
    version: int
    memory_dir: Path | None
    cpu_dir: Path | None

    @property
    def dirs(self) -> list[Path]:
        out = []
        for d in (self.memory_dir, self.cpu_dir):
            if d is not None and d not in out:
                out.append(d)
        return out

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_kills(self) -> int:
        if self.memory_dir is None:
            return 0
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in _read(self.memory_dir / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                with contextlib.suppress(ValueError):
                    return int(value)
        if self.version == 1:
            # Old kernels have no oom_kill counter: a limit that was hit is the best sign there is.
            with contextlib.suppress(ValueError):
                return 1 if int(_read(self.memory_dir / "memory.failcnt") or 0) > 0 else 0
        return 0

    def memory_usage(self) -> int | None:
        if self.memory_dir is None:
            return None
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        try:
            return int(_read(self.memory_dir / name))
        except ValueError:
            return None

    def pids(self) -> list[int]:
        out: list[int] = []
        for d in self.dirs:
            for line in _read(d / "cgroup.procs").split():
                if line.isdigit() and int(line) not in out:
                    out.append(int(line))
        return out

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        ok = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        return ok


class CgroupManager:
    def __init__(self, version: int, memory_parent: Path | None, cpu_parent: Path | None) -> None:
        self.version = version
        self.memory_parent = memory_parent
        self.cpu_parent = cpu_parent

    @classmethod
    def detect(cls) -> CgroupManager | None:
        """A manager if this host lets the agent make cgroups, else None (use the watchdog)."""
        try:
            own = _own_cgroups()
            mounts = _mounts()
            mgr = cls._detect_v2(own, mounts) or cls._detect_v1(own, mounts)
        except OSError as err:
            log.info("cgroups unavailable (%s): limits are enforced by the watchdog", err)
            return None
        if mgr is None:
            log.info("no usable cgroup hierarchy: memory limits are enforced by the watchdog")
        return mgr

    @classmethod
    def _detect_v1(cls, own: dict[str, str], mounts: list[tuple[str, str, str, set[str]]]) -> CgroupManager | None:
        parents: dict[str, Path | None] = {"memory": None, "cpu": None}
        for fstype, mount, root, opts in mounts:
            if fstype != "cgroup":
                continue
            for ctl in parents:
                if ctl in opts and ctl in own and parents[ctl] is None:
                    base = _join(mount, root, own[ctl])
                    if not base.is_dir():
                        base = Path(mount)
                    parent = base / PARENT
                    try:
                        parent.mkdir(exist_ok=True)
                        if ctl == "memory":
                            (parent / "memory.limit_in_bytes").stat()
                    except OSError:
                        continue
                    parents[ctl] = parent
        if parents["memory"] is None and parents["cpu"] is None:
            return None
        return cls(1, parents["memory"], parents["cpu"])

    @classmethod
    def _detect_v2(cls, own: dict[str, str], mounts: list[tuple[str, str, str, set[str]]]) -> CgroupManager | None:
        if "" not in own:
            return None
        for fstype, mount, root, _ in mounts:
            if fstype != "cgroup2":
                continue
            base = _join(mount, root, own[""])
            available = set(_read(base / "cgroup.controllers").split())
            wanted = [c for c in ("memory", "cpu") if c in available]
            if "memory" not in wanted:
                continue
            try:
                cls._delegate_v2(base, wanted)
            except OSError as err:
                log.info("cannot delegate cgroup v2 controllers under %s: %s", base, err)
                continue
            parent = base / PARENT
            return cls(2, parent, parent if "cpu" in wanted else None)
        return None

    @staticmethod
    def _delegate_v2(base: Path, controllers: Sequence[str]) -> None:
        enable = " ".join("+" + c for c in controllers)
        try:
            _write(base / "cgroup.subtree_control", enable)
        except OSError:
            # Processes in base (the agent): move them into a leaf first.
            leaf = base / "agent"
            leaf.mkdir(exist_ok=True)
            for pid in _read(base / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    _write(leaf / "cgroup.procs", pid)
            _write(base / "cgroup.subtree_control", enable)
        parent = base / PARENT
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)

    def create(self, name: str, memory_bytes: int | None, cpu_millis: int | None) -> Cgroup | None:
        """A cgroup for one container run with its limits set, or None if that fails."""
        mem_dir = self.memory_parent / name if (memory_bytes and self.memory_parent) else None
        cpu_dir = self.cpu_parent / name if (cpu_millis and self.cpu_parent) else None
        if mem_dir is None and cpu_dir is None:
            return None
        cg = Cgroup(self.version, mem_dir, cpu_dir)
        try:
            for d in cg.dirs:
                d.mkdir(exist_ok=True)
            if mem_dir is not None and memory_bytes:
                self._set_memory(mem_dir, memory_bytes)
            if cpu_dir is not None and cpu_millis:
                quota = max(1000, cpu_millis * CPU_PERIOD_US // 1000)
                if self.version == 1:
                    _write(cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                    _write(cpu_dir / "cpu.cfs_quota_us", str(quota))
                else:
                    _write(cpu_dir / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        except OSError as err:
            log.warning("cannot set up cgroup %s: %s", name, err)
            cg.remove()
            return None
        return cg

    def _set_memory(self, d: Path, limit: int) -> None:
        if self.version == 1:
            _write(d / "memory.limit_in_bytes", str(limit))
            swap = d / "memory.memsw.limit_in_bytes"
            if swap.exists():
                with contextlib.suppress(OSError):
                    _write(swap, str(limit))
        else:
            _write(d / "memory.max", str(limit))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")

    def existing(self, name: str, memory: bool, cpu: bool) -> Cgroup:
        """The cgroup of a run started by an earlier agent (for re-adoption)."""
        return Cgroup(self.version, self.memory_parent / name if memory and self.memory_parent else None,
                      self.cpu_parent / name if cpu and self.cpu_parent else None)
