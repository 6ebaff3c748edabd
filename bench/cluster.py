"""What every benchmark shares: a throwaway cluster of real processes on 127.0.0.1, the xargs
baseline, and waiting for nodes.

`with BenchCluster("jobs") as c:` makes a temporary dir, `c.start_controlplane(...)` and
`c.start_agent(...)` start the control plane and agents with the shared launcher
(ketch.local.launcher: own process groups, one log file each), and leaving the block stops every
group (agents first; SIGTERM, then SIGKILL) and removes the files unless logs are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ketch.client.clientset import Client  # noqa: E402
from ketch.local.launcher import LocalCluster, Member, free_port  # noqa: E402, F401 - free_port for the benches
from ketch.testing.etcd import Etcd  # noqa: E402


def xargs_seconds(n: int, parallelism: int) -> float:
    """Wall time of `xargs -P parallelism` running `true` n times: the baseline of the pod benches."""
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallelism), "-n", "1", "true"], input="x\n" * n, text=True, check=True)
    return time.perf_counter() - start


async def wait_for_ready_nodes(client: Client, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes, _ = await client.list("Node")
        ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
        if len(ready) >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ready)} of {count} nodes became Ready")
        await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process (every thread of it) has used so far, from
    /proc/PID/stat: what a run cost, which other load on the machine changes far less than its
    wall time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def filesystem_of(path: str | Path) -> str:
    """The type and mount point of the filesystem holding path ("ext4 on /"), for the report:
    the agents' per-pod files cost what that filesystem charges for new inodes."""
    best = ("?", "")
    target = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, fstype, *_ = line.split()
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best[1]):
                    best = (fstype, mount)
    except OSError:
        pass
    return f"{best[0]} on {best[1] or '?'}"


class BenchCluster(LocalCluster):
    """The shared local-cluster launcher in a throwaway dir, quiet (WARNING logs) unless asked."""

    def __init__(self, name: str, keep: bool = False, log_dir: Path | None = None,
                 data_root: str | None = None, insecure: bool = False) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix=f"ketch-bench-{name}-", dir=data_root)), log_dir=log_dir,
                         insecure=insecure)
        self.keep = keep or log_dir is not None

    def start_controlplane(self, *flags: str, controllers: str = "*") -> Member:  # type: ignore[override]
        """Start it; when secure, wait for its admin kubeconfig and make it this process's (and its
        children's) KETCH_CONFIG, so `connect_with_kubeconfig(server=...)` connects as the admin."""
        member = super().start_controlplane("--controllers", controllers, "--log-level", "WARNING", *flags)
        if not self.insecure:
            asyncio.run(self.wait_for_admin_config(30))
            os.environ["KETCH_CONFIG"] = str(self.admin_config)
        return member

    def start_agent(self, node: str, *flags: str) -> Member:
        return super().start_agent(node, "--log-level", "WARNING", *flags)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each running member, by name ("controlplane", agents)."""
        return {name: cpu_seconds(m.proc.pid) for name, m in self.members.items()
                if m.proc is not None and m.running}

    def stop(self, timeout: float = 20) -> None:
        super().stop(timeout)
        if self.keep:
            print(f"logs: {self.log_dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> BenchCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def store_flags(store: str) -> Iterator[list[str]]:
    """The control plane's --store flags; for etcd, a real etcd for the length of the block."""
    if store == "sqlite":
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as tmp, Etcd(Path(tmp)) as etcd:
        yield ["--store", etcd.url]
