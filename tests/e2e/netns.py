"""Hosts on one machine: network namespaces joined by veth pairs to a bridge, for the tests of what
crosses a network (TLS between hosts, a link that goes down).

`with Network("kt", ["cp", "a1", "a2"]) as net:` makes one namespace per host with the address
10.X.0.N/24 on its end of a veth pair, the other ends on a bridge in a namespace of its own, and
loopback up in each; `net.run("a1", argv)` prefixes a command to run inside a host;
`net.cut("a1")` takes that host's link down (its peers see it vanish); leaving the block kills
whatever still runs in the namespaces and deletes them. Needs root and iproute2; `available()`
says why not where they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from types import TracebackType


def available() -> str:
    """Why network namespaces cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"ketch-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return ""


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")


class Network:
    def __init__(self, prefix: str, hosts: list[str], subnet: int | None = None) -> None:
        # Short, unique names: interface names are at most 15 characters.
        self.tag = f"{prefix}{os.getpid() % 100000}"
        self.subnet = subnet if subnet is not None else 100 + os.getpid() % 100
        self.hosts = list(hosts)
        self.bridge_ns = f"{self.tag}-br"
        self.addresses = {h: f"10.{self.subnet}.0.{i + 1}" for i, h in enumerate(self.hosts)}
        self.made: list[str] = []

    def netns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _link(self, i: int) -> tuple[str, str]:
        return f"{self.tag}h{i}", f"{self.tag}b{i}"

    def create(self) -> None:
        _ip("netns", "add", self.bridge_ns)
        self.made.append(self.bridge_ns)
        _ip("link", "add", "br0", "type", "bridge", netns=self.bridge_ns)
        _ip("link", "set", "br0", "up", netns=self.bridge_ns)
        for i, host in enumerate(self.hosts):
            ns = self.netns(host)
            _ip("netns", "add", ns)
            self.made.append(ns)
            inside, outside = self._link(i)
            _ip("link", "add", inside, "netns", ns, "type", "veth", "peer", "name", outside,
                "netns", self.bridge_ns)
            _ip("link", "set", outside, "master", "br0", netns=self.bridge_ns)
            _ip("link", "set", outside, "up", netns=self.bridge_ns)
            _ip("addr", "add", f"{self.addresses[host]}/24", "dev", inside, netns=ns)
            _ip("link", "set", inside, "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)

    def run(self, host: str, argv: list[str]) -> list[str]:
        """argv, to be run inside the host's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns(host), *argv]

    def cut(self, host: str) -> None:
        """Take the host's link down at the bridge: nothing reaches it, nothing leaves it."""
        _ip("link", "set", self._link(self.hosts.index(host))[1], "down", netns=self.bridge_ns)

    def mend(self, host: str) -> None:
        _ip("link", "set", self._link(self.hosts.index(host))[1], "up", netns=self.bridge_ns)

    def destroy(self) -> None:
        for ns in reversed(self.made):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self.made.clear()

    def __enter__(self) -> Network:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()
