"""Real clusters for end-to-end tests: a control plane and agents as separate processes.

Every process starts in its own process group on 127.0.0.1 with a free port and a data dir under
the test's tmp_path; `stop()` ends every group it started and any pod process left from its
data dirs, so a failing test leaves nothing running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from ketch.client import Client
from ketch.local.launcher import LocalCluster
from ketch.security import anonymous
from nodeagent.volumes.mountpoints import MountPoints
from nodeagent.volumes.setup import cleanup_under

T = TypeVar("T")
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not checkable yet
            last = exc
        time.sleep(interval)
    suffix = f" (last error: {last})" if last else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{suffix}")


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


_CLUSTERS: dict[str, LocalCluster] = {}


def admin_client(server: str, **kwargs: Any) -> Client:
    """A Python client as the admin of the test cluster serving at server (the secure default:
    TLS and the cluster's admin kubeconfig)."""
    return _CLUSTERS[server].client(**kwargs)


def health_channel(server: str) -> grpc.aio.Channel:
    """A channel for gRPC health checks, which need no identity: TLS with the cluster's CA and
    the public no-identity client certificate (plaintext when the cluster is insecure)."""
    cluster = _CLUSTERS[server]
    if cluster.insecure:
        return grpc.aio.insecure_channel(server)
    ca = (cluster.controlplane_dir / "pki" / "ca.crt").read_bytes()
    return grpc.aio.secure_channel(server, grpc.ssl_channel_credentials(ca, anonymous.KEY, anonymous.CERT))


class Cluster(LocalCluster):
    """The shared local-cluster launcher, with the CLI at hand and agents named `agent-<node>`."""

    def __init__(self, workdir: Path, cp_flags: list[str] | None = None, insecure: bool = False,
                 host: str = "127.0.0.1", cli_prefix: list[str] | None = None) -> None:
        super().__init__(workdir, agent_prefix="agent-", insecure=insecure, host=host)
        self.cp_flags = cp_flags or []
        # What the CLI runs under: `nsenter --net=...` when the cluster is on namespaced hosts.
        self.cli_prefix = cli_prefix or []
        _CLUSTERS[self.server] = self

    def start_controlplane(self, extra: list[str] | None = None, wait: bool = True,  # type: ignore[override]
                           prefix: list[str] | None = None) -> None:
        super().start_controlplane(*self.cp_flags, *(extra or []), prefix=prefix or [])
        if wait:
            wait_until(lambda: self.ketch("get", "ns", check=False).returncode == 0, 30, "the control plane")

    def start_agent(self, node: str, extra: list[str] | None = None, wait_ready: bool = True,  # type: ignore[override]
                    prefix: list[str] | None = None) -> None:
        super().start_agent(node, "--heartbeat-interval", "1s", *(extra or []), prefix=prefix or [])
        if wait_ready:
            wait_until(lambda: self.node_ready(node), 30, f"node {node} to be Ready")

    def send(self, name: str, sig: int) -> None:
        self.members[name].send_signal(sig)

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        member = self.members.get(name)
        return member.stop(timeout, sig) if member is not None else None

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)
        self.kill_leftover_pods()
        if os.geteuid() == 0:  # volumes its agents left mounted (tmpfs) or holding mount points
            cleanup_under(str(self.dir), MountPoints())

    def kill_leftover_pods(self) -> None:
        mine = str(self.dir)
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(pid_dir / "cwd")
                environ = (pid_dir / "environ").read_bytes()
            except OSError:
                continue
            if cwd.startswith(mine) or f"KETCH_SERVER={self.server}".encode() in environ:
                try:
                    os.kill(int(pid_dir.name), signal.SIGKILL)
                except OSError:
                    pass

    def logs(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- CLI -----------------------------------------------------------------------------------

    def ketch(self, *args: str, input: str | None = None, check: bool = True,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.cli_prefix, str(BIN / "ketch"), "--server", self.server, *args], input=input,
                                capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"`ketch {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()[-800:]}")
        return result

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.ketch("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str | None = None, *args: str) -> Any:
        argv = ["get", kind] + ([name] if name else []) + ["-o", "json", *args]
        return json.loads(self.ketch(*argv).stdout)

    def try_get(self, kind: str, name: str, *args: str) -> Any:
        result = self.ketch("get", kind, name, "-o", "json", *args, check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def items(self, kind: str, *args: str) -> list[dict[str, Any]]:
        return list(self.get(kind, None, *args).get("items", []))

    def node_ready(self, node: str) -> bool:
        obj = self.try_get("node", node)
        return bool(obj) and any(c.get("type") == "Ready" and c.get("status") == "True"
                                 for c in obj.get("status", {}).get("conditions", []))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WatchObserver(threading.Thread):
    """Follows watches through the API in a thread for a whole test, reconnecting when a stream
    ends (a control plane restart), and hands each event to `on_event(kind, type, object)`.

    Subclasses keep the worst moments they saw (most pods at once, most unavailable), which a
    test asserts on afterwards: sampling with `ketch get` could miss a short peak.
    """

    def __init__(self, server: str, watches: list[tuple[str, str]]) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.watches = watches  # (kind, label selector), in namespace default
        self._stop = threading.Event()

    def on_event(self, kind: str, etype: str, obj: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        await asyncio.gather(*(self._follow(kind, selector) for kind, selector in self.watches))

    async def _follow(self, kind: str, selector: str) -> None:
        while not self._stop.is_set():
            client = admin_client(self.server)
            try:
                async for ev in client.watch(kind, namespace="default", label_selector=selector):
                    if self._stop.is_set():
                        return
                    if ev.object is not None:
                        self.on_event(kind, ev.type, ev.object)
            except Exception:
                await asyncio.sleep(0.3)
            finally:
                await client.close()
