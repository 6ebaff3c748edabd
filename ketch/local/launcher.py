"""A cluster of real processes on this machine: one control plane and any number of agents.

The one launcher behind `ketch local up`, the end-to-end test harness and the benchmarks. Each
member runs `python -m controlplane` or `python -m nodeagent` in a process group of its own, with
its own data dir (`DIR/controlplane`, `DIR/<node>`) and log file, on 127.0.0.1; stopping ends the
agents first and the control plane last (SIGTERM, then SIGKILL after a timeout), so agents can
still reach the API while they leave. It only ever starts processes: nothing here imports the
control plane or the agent.

For clusters spread over hosts (the multi-host test runs each member in a network namespace of
its own): `LocalCluster(..., host=ADDRESS)` has the control plane listen on that address (its
serving certificate covers the listen host) and agents dial it there; `prefix=[...]` on
`controlplane`/`agent`/`start_*` runs that member under an argv prefix such as
`nsenter --net=/run/netns/NS`, which execs, so the pid and process group stay the member's own.

Secure by default, as the control plane is: the CLI run with `env` uses the admin kubeconfig the
control plane writes (DIR/controlplane/admin.conf, via KETCH_CONFIG), Python clients get it with
`client()`, and every agent joins with the join token (DIR/controlplane/join-token), read when the
agent starts. `LocalCluster(..., insecure=True)` runs the control plane with --insecure instead
(plaintext, for the benchmarks' comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ketch.api import errors
from ketch.client.clientset import Client, connect
from ketch.client.config import connect_with_kubeconfig
from ketch.client.watching import until_nodes_ready

CONTROLPLANE = "controlplane"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process's group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the process; if it is still there after timeout, SIGKILL its group and reap it."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait(5)


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every live group in the order given, then wait for each (SIGKILL after timeout)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
    for proc in procs:
        wait_or_kill(proc, timeout)


@dataclass
class Member:
    """One process of the cluster, not started until `start`."""

    name: str
    argv: list[str]
    log_path: Path
    # Lower limits of open files for the process, (soft, hard or None to keep it): for tests of
    # what a crowd of connections does.
    open_files: tuple[int, int | None] | None = None
    # Arguments known only when the process starts (an agent's join token).
    late_args: Callable[[], list[str]] | None = None
    # What the process runs under (`nsenter --net=...`); it must exec, keeping the pid.
    prefix: list[str] = field(default_factory=list)
    # Run in the child before exec, after the open-files limit (tests: an agent started as another
    # user, with fewer capabilities).
    preexec: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the process runs
        argv = [*self.prefix, *self.argv, *(self.late_args() if self.late_args is not None else [])]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=True,
                                     preexec_fn=self._before_exec if self.open_files or self.preexec else None)

    def _before_exec(self) -> None:
        """In the child, before exec."""
        if self.open_files is not None:
            soft, hard = self.open_files
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard if hard is not None else
                                                        resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        if self.preexec is not None:
            self.preexec()

    @property
    def title(self) -> str:
        """How messages name it."""
        return "the control plane" if self.name == CONTROLPLANE else f"agent {self.name}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def send_signal(self, sig: int) -> None:
        """SIGKILL goes to the whole group (nothing it started survives); others to the process,
        which handles them (graceful stop, re-exec)."""
        if not self.running:
            return
        assert self.proc is not None
        if sig == signal.SIGKILL:
            signal_group(self.proc, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, timeout: float, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process and wait for it (SIGKILL to its group after timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            wait_or_kill(self.proc, timeout)
        self.close()
        return self.proc.returncode

    async def exited(self) -> int:
        """Wait for the process to end; its exit code. A pidfd turns readable at the exit, so any
        number of members are watched without a thread each."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is not None:
            return proc.returncode
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:  # reaped meanwhile
            return proc.wait()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return proc.wait()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 1) -> str:
        """The last lines of its log, joined, for one-line error messages."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


class LocalCluster:
    """Members by name: `controlplane`, and one per agent (named `agent_prefix + node`)."""

    def __init__(self, data_dir: Path, port: int = 0, env: dict[str, str] | None = None,
                 log_dir: Path | None = None, agent_prefix: str = "", insecure: bool = False,
                 host: str = "127.0.0.1") -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir) if log_dir is not None else self.dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # Where the control plane listens and agents and clients dial it: loopback unless the
        # members run on separate (network-namespace) hosts.
        self.host = host
        self.server = f"{host}:{self.port}"
        self.agent_prefix = agent_prefix
        self.env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", KETCH_SERVER=self.server)
        self.insecure = insecure
        # The control plane's data dir (its store, PKI, admin config and join token).
        self.controlplane_dir = self.dir / CONTROLPLANE
        self.env.pop("KETCH_CONFIG", None)
        self.members: dict[str, Member] = {}

    # -- security --------------------------------------------------------------------------------

    @property
    def admin_config(self) -> Path:
        """The admin kubeconfig the control plane writes at its first start."""
        return self.controlplane_dir / "admin.conf"

    def join_token(self) -> str:
        """The control plane's join token ("" before it made one, or when insecure)."""
        try:
            return (self.controlplane_dir / "join-token").read_text().strip()
        except FileNotFoundError:
            return ""

    def _token_args(self) -> list[str]:
        """--token for an agent; an agent started right after the control plane waits (briefly)
        for the token its first start writes."""
        if self.insecure:
            return []
        cp = self.members.get(CONTROLPLANE)
        deadline = time.monotonic() + 30
        token = self.join_token()
        while not token and cp is not None and cp.running and time.monotonic() < deadline:
            time.sleep(0.05)
            token = self.join_token()
        return ["--token", token] if token else []

    def client(self, wait_for_ready: bool = False, timeout: float = 30.0) -> Client:
        """A Python client as the admin (plaintext when insecure)."""
        if self.insecure:
            return connect(self.server, wait_for_ready=wait_for_ready, timeout=timeout)
        return connect_with_kubeconfig(self.admin_config, server=self.server, wait_for_ready=wait_for_ready,
                                       timeout=timeout)

    async def wait_for_admin_config(self, timeout: float) -> None:
        """The control plane has written its admin kubeconfig (nothing to wait for when insecure)."""
        deadline = time.monotonic() + timeout
        cp = self.members.get(CONTROLPLANE)
        while not self.insecure and not self.admin_config.exists():
            if cp is not None and cp.proc is not None and not cp.running:
                raise RuntimeError(f"the control plane exited with code {cp.returncode} during start-up: "
                                   f"{cp.tail() or 'no output'} (log: {cp.log_path})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the control plane wrote no {self.admin_config} within {timeout:.0f}s")
            await asyncio.sleep(0.05)

    # -- members ---------------------------------------------------------------------------------

    def controlplane(self, *flags: str, open_files: tuple[int, int | None] | None = None,
                     prefix: Sequence[str] = ()) -> Member:
        data = self.controlplane_dir
        data.mkdir(parents=True, exist_ok=True)
        if not self.insecure:
            self.env["KETCH_CONFIG"] = str(self.admin_config)  # where this control plane writes it
        argv = [sys.executable, "-m", "controlplane", "--listen", self.server, "--data-dir", str(data),
                *(["--insecure"] if self.insecure else []), *flags]
        return self._add(Member(CONTROLPLANE, argv, self.log_dir / f"{CONTROLPLANE}.log", open_files,
                                prefix=list(prefix)))

    def agent(self, node: str, *flags: str, prefix: Sequence[str] = ()) -> Member:
        name = self.agent_prefix + node
        data = self.dir / name
        data.mkdir(exist_ok=True)
        # Each agent's container logs stay in its data dir, never the host's /var/log (the kubelet's
        # layout beside each other: logs/pods and logs/containers).
        own = data  # a --data-dir among flags wins, as argparse's last value does
        for i, flag in enumerate(flags[:-1]):
            if flag == "--data-dir":
                own = Path(flags[i + 1])
        logs = [] if "--pod-logs-dir" in flags else ["--pod-logs-dir", str(own / "logs" / "pods"),
                                                    "--container-logs-dir", str(own / "logs" / "containers")]
        argv = [sys.executable, "-m", "nodeagent", "--server", self.server, "--node-name", node,
                "--data-dir", str(data), *logs, *flags]
        return self._add(Member(name, argv, self.log_dir / f"{name}.log", late_args=self._token_args,
                                prefix=list(prefix)))

    def _add(self, member: Member) -> Member:
        old = self.members.get(member.name)
        if old is not None and old.running:
            raise RuntimeError(f"{member.name} is already running")
        self.members[member.name] = member
        return member

    def start_controlplane(self, *flags: str, open_files: tuple[int, int | None] | None = None,
                           prefix: Sequence[str] = ()) -> Member:
        member = self.controlplane(*flags, open_files=open_files, prefix=prefix)
        member.start(self.env, self.dir)
        return member

    def start_agent(self, node: str, *flags: str, prefix: Sequence[str] = ()) -> Member:
        member = self.agent(node, *flags, prefix=prefix)
        member.start(self.env, self.dir)
        return member

    @property
    def agents(self) -> list[Member]:
        return [m for name, m in self.members.items() if name != CONTROLPLANE]

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, timeout: float = 20) -> None:
        """The agents first (together), then the control plane, which they may still need while
        they leave (--drain-on-exit); each group is SIGKILLed after timeout."""
        agents = self.agents
        stop_groups([m.proc for m in agents if m.proc is not None], timeout)
        cp = self.members.get(CONTROLPLANE)
        if cp is not None and cp.proc is not None:
            stop_groups([cp.proc], timeout)
        for m in [*agents, *([cp] if cp is not None else [])]:
            m.close()

    def kill(self, name: str) -> None:
        self.members[name].send_signal(signal.SIGKILL)

    # -- readiness -------------------------------------------------------------------------------

    async def wait_for_api(self, client: Client, timeout: float) -> None:
        """The API answers Version (it may not listen yet, so there is nothing to watch: retry)."""
        deadline = time.monotonic() + timeout
        cp = self.members.get(CONTROLPLANE)
        while True:
            if cp is not None and cp.proc is not None and not cp.running:
                raise RuntimeError(f"the control plane exited with code {cp.returncode} during start-up: "
                                   f"{cp.tail() or 'no output'} (log: {cp.log_path})")
            try:
                await client.version()
                return
            except (errors.Unavailable, errors.Timeout):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API server did not answer within {timeout:.0f}s (log: {self.log_dir})")
            await asyncio.sleep(0.1)

    async def wait_for_nodes(self, client: Client, names: list[str], timeout: float) -> None:
        """Every named node is Ready; fails at once, naming it, if a member exits meanwhile."""
        waiting = asyncio.ensure_future(until_nodes_ready(client, names))
        died = asyncio.ensure_future(self.first_exit())
        try:
            done, _ = await asyncio.wait({waiting, died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done:
                waiting.result()
                return
            if died in done:
                member = died.result()
                raise RuntimeError(f"{member.title} exited with code {member.returncode} during start-up: "
                                   f"{member.tail() or 'no output'} (log: {member.log_path})")
            raise TimeoutError(f"the nodes were not Ready within {timeout:.0f}s (logs in {self.log_dir})")
        finally:
            waiting.cancel()
            died.cancel()

    async def first_exit(self) -> Member:
        """The first started member to exit."""
        started = [m for m in self.members.values() if m.proc is not None]
        waits = {asyncio.ensure_future(m.exited()): m for m in started}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()
        return waits[next(iter(done))]
