"""The agent's wiring: registration, heartbeats, the pod informer and workers, logs, the gRPC
server, and leaving (detach, or drain with --drain-on-exit).

Start-up order matters for re-adoption: checkpoints are loaded before the pod informer delivers
its first pods, so a pod the agent ran before is resumed (processes adopted) rather than
started again; once the informer has synced, checkpointed pods the API no longer has are
stopped. Everything runs on one event loop; the only other threads are gRPC's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ketch.api import errors
from ketch.api.attach import stdin_refusal
from ketch.cancelsafe import wait_for
from ketch.client.cache import DeletedFinalStateUnknown
from ketch.client.clientset import Client, connect
from ketch.client.events import EventRecorder
from ketch.client.flowcontrol import Backoff
from ketch.client.informer import Informer
from ketch.client.transport import GrpcTransport
from ketch.serving.http import HTTPServer
from ketch.v1 import api_pb2, core_pb2

from . import credentials as node_credentials
from . import execs, metrics, observe, stdins
from .heartbeat import LeaseHeartbeat
from .limits.cgroups import CgroupManager
from .limits.watchdog import MemoryWatchdog
from .podmanager import PodWorkers
from .podworkers import WorkerDeps
from .registration import NodeConfig, NodeRegistrar, capacity, node_ip_for
from .runtime import checkpoint, crilog, layout
from .runtime.crilog import LogCopier, LogDirs
from .runtime.logs import LogManager
from .runtime.process import ProcessRuntime
from .server import LogSource, NodeAgentServicer, ServingCertificate, pick_container, start_server
from .statusmanager import StatusManager
from .volumes import setup as volsetup
from .volumes.mountpoints import MountPoints

log = logging.getLogger("ketch.agent")


@dataclass
class AgentConfig:
    server: str
    node_name: str
    data_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_interval: float = 10.0
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    drain_on_exit: bool = False
    listen: str = ""
    log_retention: float = 3600.0
    log_max_size: int = 10 * 1024 * 1024
    log_max_files: int = 5
    # Container logs (--pod-logs-dir, --container-logs-dir); None: DATA/logs/pods and DATA/logs/containers.
    log_dirs: LogDirs | None = None
    status_interval: float = 0.05
    node_status_report: float | None = None
    use_cgroups: bool = True
    # The node's certificates (None: plaintext, a control plane started with --insecure).
    credentials: node_credentials.NodeCredentials | None = None
    serving_sans: list[str] = field(default_factory=list)
    metrics_listen: str = ""  # HOST:PORT of /metrics and the health paths ("" for none)


def _pod_files(pods_root: str) -> dict[str, list[str]]:
    """The files under pods_root by pod uid (`<uid>.*`; sandboxes, named `<uid>`, are not files)."""
    out: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(pods_root):
            uid, dot, _ = entry.name.partition(".")
            if dot and uid:
                out.setdefault(uid, []).append(entry.path)
    return out


def remove_expired(pods_root: str | os.PathLike[str], retention: float, now: float,
                   active: Callable[[str], bool], mountpoints: MountPoints | None = None,
                   log_dirs: LogDirs | None = None) -> list[str]:
    """Files of pods gone from the API: the sandbox and volumes go at once, logs (the pod's log
    dir, then links left dangling) and exit details after the retention period. Returns the
    uids removed entirely.

    One scan of the (flat) pods_root per pass finds every pod's files, those of older runs a
    record no longer names included. The checkpoint goes last: a pass cut short is done again.
    """
    root = os.fspath(pods_root)
    removed = []
    for uid, files in _pod_files(root).items():
        state = layout.state_file(root, uid)
        rec = checkpoint.load(state)
        if rec is None or rec.gone_at is None or active(uid):
            continue
        sandbox = layout.sandbox_dir(root, uid)
        if os.path.isdir(sandbox):
            shutil.rmtree(sandbox, ignore_errors=True)
        if os.path.isdir(volsetup.volumes_dir(root, uid)):
            volsetup.remove(root, uid)
            if mountpoints is not None:
                with contextlib.suppress(OSError):
                    mountpoints.release(volsetup.volumes_dir(root, uid))
        if now - rec.gone_at > retention:
            if log_dirs is not None:
                with contextlib.suppress(ValueError):
                    crilog.remove_pod(log_dirs, rec.namespace, rec.name, uid)
            for path in sorted(files, key=lambda p: p == state):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            removed.append(uid)
    if removed and log_dirs is not None:
        crilog.sweep_links(log_dirs)
    return removed


class Agent:
    """Everything is built in __init__ (no I/O but the host's facts: its address, cgroups and
    capacity), started by run, and stopped by shutdown whatever run reached."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.pods_root = cfg.data_dir / "pods"
        self.stopping = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._reregister = asyncio.Event()
        self.host_ip = node_ip_for(cfg.server)
        self.runtime = ProcessRuntime()
        self.cgroups = CgroupManager.detect() if cfg.use_cgroups else None
        creds = cfg.credentials
        self.client: Client = connect(cfg.server, tls=creds.tls if creds is not None else None)
        self.serving = ServingCertificate(creds.ca, creds.serving_cert, creds.serving_key) if creds else None
        self.pod_informer = Informer(self.client, core_pb2.Pod, field_selector=f"spec.nodeName={cfg.node_name}")
        self.pod_informer.add_indexer("uid", lambda p: [p.metadata.uid])
        self.node_informer = Informer(self.client, core_pb2.Node, field_selector=f"metadata.name={cfg.node_name}")
        self.status = StatusManager(self.client, self._cached_pod, cfg.status_interval)
        self.logs = LogManager(cfg.log_max_size)
        self.log_dirs = cfg.log_dirs or LogDirs(str(cfg.data_dir / "logs" / "pods"),
                                                 str(cfg.data_dir / "logs" / "containers"))
        self.copier = LogCopier(cfg.log_max_size, cfg.log_max_files, compress=self._compress_logs)
        self.watchdog = MemoryWatchdog()
        self.recorder = EventRecorder(self.client, "kubelet", cfg.node_name)
        _, allocatable = capacity(cfg.data_dir)
        self.deps = WorkerDeps(
            node_name=cfg.node_name, host_ip=self.host_ip, pods_root=self.pods_root, client=self.client,
            runtime=self.runtime, status=self.status, logs=self.logs, copier=self.copier, log_dirs=self.log_dirs,
            backoff=Backoff(cfg.backoff_base, cfg.backoff_max), watchdog=self.watchdog,
            cgroups=self.cgroups, recorder=self.recorder, allocatable=allocatable)
        self.workers = PodWorkers(self.deps)
        metrics.track_pod_workers(self.workers)  # kubelet_running_pods/_containers, read when scraped
        self.listen = cfg.listen or ("127.0.0.1:0" if self.host_ip == "127.0.0.1" else "0.0.0.0:0")
        source = LogSource(self.pods_root, self._live_record, self.workers.run_active, self.logs, self.log_dirs)
        self.servicer = NodeAgentServicer(cfg.node_name, source, self._running_containers,
                                          require_control_plane=creds is not None, execute=self._exec,
                                          attach=self._attach_stdin)
        self.server: grpc.aio.Server | None = None
        report = cfg.node_status_report or min(300.0, max(6 * cfg.heartbeat_interval, 1.0))
        # The port is the server's, known once it listens (run sets it before registering).
        self.node_config = NodeConfig(cfg.node_name, cfg.data_dir, cfg.labels, self.host_ip)
        self.registrar = NodeRegistrar(self.client, self.node_config,
                                       lambda: self.node_informer.get("", cfg.node_name), report)
        self.heartbeat = LeaseHeartbeat(self.client, cfg.node_name, cfg.heartbeat_interval,
                                        lambda: self.registrar.uid)
        self.health = observe.AgentHealth(lambda: bool(self.registrar.uid), cfg.heartbeat_interval)
        self.side: HTTPServer | None = None
        self._side_renewed: Callable[[bytes, bytes], Any] | None = None

    @property
    def port(self) -> int:
        return self.node_config.port

    # -- start ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Start everything, serve until stop is set, then shut down."""
        self.pods_root.mkdir(parents=True, exist_ok=True)
        self.log_dirs.prepare()
        moved = layout.migrate_nested(self.pods_root)
        if moved:
            log.info("moved the files of %d pods to the flat layout of %s", len(moved), self.pods_root)
        self.runtime.install()
        self.server, self.node_config.port = await start_server(self.servicer, self.listen, self.serving)
        log.info("agent %s: serving logs and stats on %s (port %d), node address %s",
                 self.cfg.node_name, self.listen, self.port, self.host_ip)
        if self.cfg.metrics_listen:
            await self._serve_side()
        if not await self._register(stop):
            await self._close()
            return 0

        self.workers.load_checkpoints()
        self.status.start()
        self.watchdog.start()
        self.pod_informer.add_handler(self.workers.update, lambda old, new: self.workers.update(new),
                                      self._pod_deleted)
        self.node_informer.add_handler(on_delete=self._node_deleted)
        self.pod_informer.start()
        self.node_informer.start()
        self._spawn(self._heartbeat_loop(), "heartbeat")
        self._spawn(self._log_loop(), "log-sampler")
        self._spawn(self._gc_loop(), "log-retention")
        self._spawn(self._after_sync(), "adopt")
        if self.cfg.credentials is not None:
            self._spawn(self._rotate_loop(), "certificate-rotation")

        await stop.wait()
        await self.shutdown()
        return 0

    async def _serve_side(self) -> None:
        """--metrics-listen: /metrics (the kubelet's webhook authorization) and the health paths."""
        creds = self.cfg.credentials
        serving = webhook = None
        if creds is not None:
            serving = observe.Serving(creds.serving_cert, creds.serving_key, creds.ca)
            webhook = observe.Webhook(self.client, self.cfg.server, lambda: self._ca(), self.cfg.node_name)
        self.side, port, self._side_renewed = await observe.serve(self.cfg.metrics_listen, self.health, serving,
                                                                  webhook)
        log.info("agent %s: serving /metrics, /livez, /readyz and /healthz on %s (port %d, %s)", self.cfg.node_name,
                 self.cfg.metrics_listen, port, "HTTPS" if serving is not None else "plain HTTP")

    def _ca(self) -> bytes:
        assert self.cfg.credentials is not None
        return self.cfg.credentials.ca

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def _register(self, stop: asyncio.Event) -> bool:
        """Register the Node, retrying until the API answers (or we are told to stop)."""
        backoff = 0.2
        while not stop.is_set():
            try:
                await self.registrar.register()
                await self.heartbeat.renew()
                self.health.loop_ran(renewed=True)
                return True
            except errors.StatusError as err:
                self.health.loop_ran(renewed=False)
                log.info("cannot register node %s yet (%s); retrying in %.1fs", self.cfg.node_name, err, backoff)
            with contextlib.suppress(TimeoutError):
                await wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
        return False

    async def _after_sync(self) -> None:
        await self.pod_informer.wait_for_sync()
        await self.workers.reap_orphans()

    # -- informer glue -------------------------------------------------------------------------

    def _cached_pod(self, uid: str) -> core_pb2.Pod | None:
        found = self.pod_informer.by_index("uid", uid)
        return found[0] if found else None

    def _pod_deleted(self, obj: Any) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.obj
        if obj is not None:
            self.workers.delete(obj)
            self.recorder.forget(obj.metadata.uid)

    def _node_deleted(self, obj: Any) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.obj
        if not self.stopping and obj is not None and obj.metadata.uid == self.registrar.uid:
            log.warning("node %s was deleted while the agent runs: registering it again", self.cfg.node_name)
            self._reregister.set()

    def _live_record(self, uid: str) -> checkpoint.PodRecord | None:
        worker = self.workers.worker(uid)
        return worker.record if worker is not None else None

    def _exec(self, req: api_pb2.ExecRequest, stdin: AsyncIterator[bytes]) -> AsyncIterator[api_pb2.ExecOutput]:
        """`ketch exec`: the pod by uid (filled in by the API server), in a running container."""
        namespace = req.namespace or "default"
        worker = self.workers.worker(req.pod_uid) if req.pod_uid else None
        if worker is None or (worker.record.namespace, worker.record.name) != (namespace, req.name):
            raise errors.NotFound(f'pods "{req.name}" not found')
        if not req.command:
            raise errors.BadRequest("you must specify at least one command for the container")
        container = pick_container(worker.record, req.name, req.container)
        target = worker.exec_target(container)
        if target is None:
            raise errors.BadRequest(f'unable to upgrade connection: container not found ("{container}")')
        return execs.run(self.runtime, target, list(req.command), stdin if req.stdin else None)

    def _attach_stdin(self, req: api_pb2.AttachRequest,
                      stdin: AsyncIterator[bytes]) -> AsyncIterator[api_pb2.AttachOutput]:
        """`ketch run -i` / Attach: the caller's bytes into a running container's stdin pipe."""
        namespace = req.namespace or "default"
        worker = self.workers.worker(req.pod_uid) if req.pod_uid else None
        if worker is None or (worker.record.namespace, worker.record.name) != (namespace, req.name):
            raise errors.NotFound(f'pods "{req.name}" not found')
        container = pick_container(worker.record, req.name, req.container)
        spec = next((c for c in worker.pod.spec.containers if c.name == container), None)
        if spec is not None and not spec.stdin:
            raise errors.BadRequest(stdin_refusal(container))
        target = worker.stdins.get(container)
        if target is None or worker.exec_target(container) is None:
            raise errors.BadRequest(f'unable to upgrade connection: container not found ("{container}")')
        return _attached(target, stdin)

    def _running_containers(self) -> list[tuple[str, str, str, int]]:
        out = []
        for worker in list(self.workers.workers.values()):
            for name, handle in list(worker.handles.items()):
                out.append((worker.record.namespace, worker.record.name, name, handle.pid))
        return out

    # -- periodic work -------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.cfg.heartbeat_interval
        backoff = 0.2
        while True:
            try:
                if self._reregister.is_set():
                    self._reregister.clear()
                    await self.registrar.register()
                await self.heartbeat.renew()
                self.health.loop_ran(renewed=True)
                await self.registrar.report()
                backoff = 0.2
                delay = interval
            except errors.StatusError as err:
                self.health.loop_ran(renewed=False)
                log.info("heartbeat failed (%s); retrying in %.1fs", err, backoff)
                delay = min(backoff, interval)
                backoff = min(backoff * 2, 7.0)
            except Exception:
                log.exception("heartbeat failed")
                delay = min(backoff, interval)
                backoff = min(backoff * 2, 7.0)
            await asyncio.sleep(delay)

    async def _rotate_loop(self) -> None:
        """Renew the node's certificates at 80 % of their life (the kubelet's rotation)."""
        backoff = 1.0
        while True:
            creds = self.cfg.credentials
            assert creds is not None
            await asyncio.sleep(max(0.0, creds.renew_at() - time.time()))
            try:
                new = await node_credentials.renew(self.client, self.cfg.node_name, self.cfg.serving_sans)
            except errors.StatusError as err:
                log.warning("cannot renew the node certificate yet (%s); retrying in %.0fs", err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            await self.deps.run_io(node_credentials.save, self.cfg.data_dir, new)
            self.cfg.credentials = new
            if isinstance(self.client.transport, GrpcTransport):
                self.client.transport.set_tls(new.tls)
            if self.serving is not None:
                self.serving.replace(new.serving_cert, new.serving_key)
            if self._side_renewed is not None:
                await self._side_renewed(new.serving_cert, new.serving_key)
            log.info("renewed the node certificates; next renewal at %s",
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(new.renew_at())))

    async def _log_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.logs.tick()
                self.copier.tick()
            except Exception:
                log.exception("log sampling failed")

    async def _gc_loop(self) -> None:
        """Remove the files of pods gone from the API longer than the retention period."""
        period = max(1.0, min(60.0, self.cfg.log_retention / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self.deps.run_io(self.collect_garbage, time.time())
            except Exception:
                log.exception("log retention pass failed")

    def collect_garbage(self, now: float) -> None:
        remove_expired(self.pods_root, self.cfg.log_retention, now, lambda uid: self.workers.worker(uid) is not None,
                       self.deps.mountpoints, self.log_dirs)

    def _compress_logs(self, paths: list[str]) -> None:
        """gzip rotated container logs on the I/O thread (the copier runs on the event loop)."""
        with contextlib.suppress(RuntimeError):  # shutting down
            self.deps.io.submit(crilog.compress_logs, paths)

    # -- stop ----------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        self.stopping = True
        if self.cfg.drain_on_exit:
            log.info("draining node %s before exiting", self.cfg.node_name)
            with contextlib.suppress(errors.StatusError):
                await self.registrar.cordon()
            await self.workers.drain()
            with contextlib.suppress(errors.StatusError):
                await self.status.flush()
        else:
            await self.workers.detach_all()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.cfg.drain_on_exit:
            with contextlib.suppress(errors.StatusError):
                await self.registrar.delete()
            with contextlib.suppress(errors.StatusError):
                await self.heartbeat.delete()
            log.info("node %s removed", self.cfg.node_name)
        await self._close()

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pod_informer.stop()
            await self.node_informer.stop()
        await self.status.stop()
        await self.watchdog.stop()
        with contextlib.suppress(Exception):
            await self.recorder.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop(grace=0.5)
        self.copier.close()
        if self.side is not None:
            await self.side.stop()
        self.runtime.close()
        self.deps.io.shutdown(wait=False)
        await self.client.close()


async def _attached(target: stdins.ContainerStdin, stdin: AsyncIterator[bytes]) -> AsyncIterator[api_pb2.AttachOutput]:
    yield api_pb2.AttachOutput(attached=True)
    await target.attach(stdin)
