"""What every benchmark shares: a throwaway cluster of real processes on 127.0.0.1, the xargs
baseline, and waiting for nodes.

`with LocalCluster("jobs") as c:` makes a temporary dir, `c.start_controlplane(...)` and
`c.start_agent(...)` start `python -m controlplane` / `python -m nodeagent` in their own process
groups (output to one log file), and leaving the block stops every group (SIGTERM, then SIGKILL)
and removes the files unless `keep` is set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ketch.client.clientset import Client  # noqa: E402
from ketch.testing.processes import signal_group, stop_groups  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class LocalCluster:
    def __init__(self, name: str, keep: bool = False, log_path: Path | None = None,
                 data_root: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"ketch-bench-{name}-", dir=data_root))
        self.keep = keep
        self.log_path = log_path or self.dir / "cluster.log"
        self.server = f"127.0.0.1:{free_port()}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log: IO[bytes] | None = None
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, start_new_session=True, stdout=self._log,
                                stderr=self._log, env=self.env)
        self.procs[name] = proc
        return proc

    def start_controlplane(self, *flags: str, controllers: str = "*") -> None:
        self._spawn("controlplane", ["-m", "controlplane", "--listen", self.server, "--data-dir",
                                     str(self.dir / "cp"), "--controllers", controllers, "--log-level", "WARNING",
                                     *flags])

    def start_agent(self, name: str, *flags: str) -> None:
        self._spawn(name, ["-m", "nodeagent", "--server", self.server, "--node-name", name, "--data-dir",
                           str(self.dir / name), "--log-level", "WARNING", *flags])

    def kill(self, name: str) -> None:
        signal_group(self.procs[name], signal.SIGKILL)

    def stop(self) -> None:
        stop_groups(reversed(self.procs.values()), 20)  # agents first, the control plane last
        if self._log is not None:
            self._log.close()
        if self.keep:
            print(f"logs: {self.log_path}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
