"""The agent's Node: what it registers (capacity, labels, addresses, nodeInfo, conditions) and
how its status is kept current.

Registration creates the Node, or, when it exists (an agent restart), keeps its spec (a cordon
survives) and replaces its status. Status is recomputed every heartbeat and written when
something other than heartbeat times changed, or when the last write is older than the report
interval (the kubelet's nodeStatusReportFrequency).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ketch import __version__
from ketch.api import errors, timeutil
from ketch.client.cache import resource_version_of
from ketch.client.clientset import Client
from ketch.v1 import core_pb2

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.31.0-ketch"
RUNTIME_VERSION = f"process://{__version__}"
MAX_PODS = 110
MEMORY_EVICTION_BYTES = 100 * 1024 * 1024  # memory.available<100Mi
DISK_EVICTION_FRACTION = 0.10  # nodefs.available<10%
PID_PRESSURE_FRACTION = 0.95

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

CONDITIONS = {
    # type: (status when fine, reason fine, message fine, reason bad, message bad)
    "MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available",
                       "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                     "KubeletHasDiskPressure", "kubelet has disk pressure"),
    "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available",
                    "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
}


def arch() -> str:
    machine = os.uname().machine
    return _ARCH.get(machine, machine)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    host = host.strip("[]")
    return host, int(port) if port.isdigit() else 0


def node_ip_for(servers: str) -> str:
    """The address the API server reaches this node at: 127.0.0.1 for a loopback server, else the
    local address of the route to the server (the host's primary IP towards it)."""
    first = servers.split(",")[0]
    host, port = split_host_port(first)
    if not host or _is_loopback(host):
        return "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port or 6443))
            return str(s.getsockname()[0])
    except OSError:
        pass
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


def _read_first(*paths: str) -> str:
    for p in paths:
        with contextlib.suppress(OSError):
            text = Path(p).read_text().strip()
            if text:
                return text
    return ""


def _os_image() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {os.uname().release}"


def system_info() -> core_pb2.NodeSystemInfo:
    return core_pb2.NodeSystemInfo(
        machine_id=_read_first("/etc/machine-id", "/var/lib/dbus/machine-id"),
        system_uuid=_read_first("/sys/class/dmi/id/product_uuid"),
        boot_id=_read_first("/proc/sys/kernel/random/boot_id"),
        kernel_version=os.uname().release,
        os_image=_os_image(),
        container_runtime_version=RUNTIME_VERSION,
        kubelet_version=KUBELET_VERSION,
        operating_system=platform.system().lower(),
        architecture=arch(),
    )


def capacity(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable) as the kubelet reports them, less its hard eviction thresholds."""
    mem = psutil.virtual_memory().total
    cpus = psutil.cpu_count() or 1
    try:
        disk = psutil.disk_usage(str(data_dir)).total
    except OSError:
        disk = 0
    cap = {"cpu": str(cpus), "memory": f"{mem // 1024}Ki", "pods": str(MAX_PODS),
           "ephemeral-storage": f"{disk // 1024}Ki"}
    alloc = dict(cap)
    alloc["memory"] = f"{max(mem - MEMORY_EVICTION_BYTES, 0) // 1024}Ki"
    alloc["ephemeral-storage"] = str(int(disk * (1 - DISK_EVICTION_FRACTION)))
    return cap, alloc


@dataclass(slots=True)
class Pressures:
    memory: bool = False
    disk: bool = False
    pid: bool = False


def measure_pressures(data_dir: Path) -> Pressures:
    p = Pressures()
    with contextlib.suppress(Exception):
        p.memory = psutil.virtual_memory().available < MEMORY_EVICTION_BYTES
    with contextlib.suppress(Exception):
        du = psutil.disk_usage(str(data_dir))
        p.disk = du.total > 0 and du.free / du.total < DISK_EVICTION_FRACTION
    with contextlib.suppress(Exception):
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        p.pid = len(psutil.pids()) > PID_PRESSURE_FRACTION * pid_max
    return p


@dataclass
class NodeConfig:
    name: str
    data_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"
    port: int = 0


def node_labels(cfg: NodeConfig) -> dict[str, str]:
    labels = {"kubernetes.io/hostname": cfg.name, "kubernetes.io/os": platform.system().lower(),
              "kubernetes.io/arch": arch(), "beta.kubernetes.io/os": platform.system().lower(),
              "beta.kubernetes.io/arch": arch()}
    labels.update(cfg.labels)
    return labels


def desired_status(cfg: NodeConfig, old: core_pb2.NodeStatus, pressures: Pressures, now: float,
                   ready: bool = True) -> core_pb2.NodeStatus:
    """The node status to report; heartbeat times are kept from old (the caller refreshes them)."""
    st = core_pb2.NodeStatus()
    cap, alloc = capacity(cfg.data_dir)
    st.capacity.update(cap)
    st.allocatable.update(alloc)
    st.addresses.add(type="InternalIP", address=cfg.address)
    st.addresses.add(type="Hostname", address=cfg.name)
    st.daemon_endpoints.kubelet_endpoint.port = cfg.port
    st.node_info.CopyFrom(system_info())
    previous = {c.type: c for c in old.conditions}
    stamp = timeutil.format(now)
    wanted = []
    for ctype, bad in (("MemoryPressure", pressures.memory), ("DiskPressure", pressures.disk),
                       ("PIDPressure", pressures.pid)):
        ok_reason, ok_msg, bad_reason, bad_msg = CONDITIONS[ctype]
        wanted.append((ctype, "True" if bad else "False", bad_reason if bad else ok_reason, bad_msg if bad else ok_msg))
    wanted.append(("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady",
                   "kubelet is posting ready status" if ready else "kubelet is shutting down"))
    for ctype, status, reason, message in wanted:
        c = st.conditions.add(type=ctype, status=status, reason=reason, message=message)
        prev = previous.get(ctype)
        c.last_heartbeat_time = prev.last_heartbeat_time if prev is not None else stamp
        c.last_transition_time = (prev.last_transition_time if prev is not None and prev.status == status
                                  else stamp)
    return st


def heartbeat(status: core_pb2.NodeStatus, now: float) -> None:
    stamp = timeutil.format(now)
    for c in status.conditions:
        c.last_heartbeat_time = stamp


class NodeRegistrar:
    """Creates the Node and keeps its status current."""

    def __init__(self, client: Client, cfg: NodeConfig, cached: Callable[[], core_pb2.Node | None],
                 report_interval: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.cfg = cfg
        self.cached = cached
        self.report_interval = report_interval
        self.clock = clock
        self.node: core_pb2.Node | None = None
        self.last_report = 0.0
        self.ready = True

    @property
    def uid(self) -> str:
        return self.node.metadata.uid if self.node is not None else ""

    def _latest(self) -> core_pb2.Node | None:
        cached = self.cached()
        if self.node is None:
            return cached
        if (cached is not None and cached.metadata.uid == self.node.metadata.uid
                and resource_version_of(cached) >= resource_version_of(self.node)):
            self.node = cached  # the cache caught up with (or passed) our last write
        return self.node

    async def register(self) -> core_pb2.Node:
        """Create the Node, or take over the existing one (its spec stays, status is ours)."""
        now = self.clock()
        node = core_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = self.cfg.name
        node.metadata.labels.update(node_labels(self.cfg))
        node.metadata.annotations["node.alpha.kubernetes.io/ttl"] = "0"
        status = desired_status(self.cfg, core_pb2.NodeStatus(), measure_pressures(self.cfg.data_dir), now)
        node.status.CopyFrom(status)
        try:
            created = await self.client.create(node)
            log.info("registered node %s", self.cfg.name)
        except errors.AlreadyExists:
            existing = await self.client.get("Node", self.cfg.name)
            missing = {k: v for k, v in node_labels(self.cfg).items() if existing.metadata.labels.get(k) != v}
            if missing:
                existing.metadata.labels.update(missing)
                existing = await self.client.update(existing)
            self.node = existing
            await self.report(force=True)
            log.info("node %s exists: updated its status", self.cfg.name)
            assert self.node is not None
            return self.node
        # Status is a subresource: a create may drop it, so write it explicitly.
        self.node = created
        await self.report(force=True)
        assert self.node is not None
        return self.node

    async def report(self, force: bool = False) -> bool:
        """Write the node status if it changed (or is due); returns whether a write happened."""
        for _ in range(3):
            node = self._latest()
            if node is None:
                return False
            now = self.clock()
            status = desired_status(self.cfg, node.status, measure_pressures(self.cfg.data_dir), now, self.ready)
            due = force or now - self.last_report >= self.report_interval
            if not due and status.SerializeToString(deterministic=True) == \
                    node.status.SerializeToString(deterministic=True):
                return False
            heartbeat(status, now)
            out = core_pb2.Node(api_version="v1", kind="Node")
            out.metadata.name = node.metadata.name
            out.metadata.uid = node.metadata.uid
            out.metadata.resource_version = node.metadata.resource_version
            out.status.CopyFrom(status)
            try:
                self.node = await self.client.update_status(out)
                self.last_report = now
                return True
            except errors.Conflict:
                self.node = await self.client.get("Node", self.cfg.name)
        return False

    async def cordon(self) -> None:
        for _ in range(5):
            node = await self.client.get("Node", self.cfg.name)
            if node.spec.unschedulable:
                return
            node.spec.unschedulable = True
            try:
                await self.client.update(node)
                return
            except errors.Conflict:
                continue

    async def delete(self) -> None:
        with contextlib.suppress(errors.NotFound):
            await self.client.delete("Node", self.cfg.name)
