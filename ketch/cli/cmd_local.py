"""`ketch local up --agents N [--data-dir DIR] [--port PORT]`: a whole cluster on this machine, in the
foreground; and `ketch local down [--data-dir DIR]`, which asks a running `local up` to stop.

`up` starts a control plane (`python -m controlplane`) and N agents (`python -m nodeagent`,
nodes `node-1..N`) as separate processes, each in its own process group with its own data dir
and log file under DIR, waits until the API answers and every node is Ready, prints how to
point the CLI at it, and then stays until Ctrl-C or SIGTERM. Then it stops the agents first
(SIGTERM; by default they leave cleanly with --drain-on-exit, stopping their pods and deleting
their Nodes), then the control plane, each with SIGKILL after --stop-timeout, and exits 0.
If a process dies on its own, everything is stopped and `up` exits 1 naming it. The CLI never
imports the control plane or the agent: they are only ever processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ketch.api import durations, errors
from ketch.client.clientset import Client, connect

from .factory import Factory
from .main import CLIError
from .watching import states

DEFAULT_DIR = "./.ketch/local"
STATE_FILE = "local.json"
# The agent's and the control plane's defaults, and heartbeats per grace period (the kubelet's 25 %).
DEFAULT_HEARTBEAT, DEFAULT_GRACE, HEARTBEATS_PER_GRACE = "10s", "40s", 4


def pairing_warning(heartbeat: str, grace: str) -> str:
    """What to say when the agents' heartbeats are too far apart for the control plane's grace
    period (fewer than four per period: one late heartbeat makes a node NotReady); "" if fine."""
    heartbeat, grace = heartbeat or DEFAULT_HEARTBEAT, grace or DEFAULT_GRACE
    beat, limit = durations.parse(heartbeat), durations.parse(grace)
    if HEARTBEATS_PER_GRACE * beat <= limit:
        return ""
    return (f"--heartbeat-interval {heartbeat} is more than a quarter of --node-monitor-grace-period {grace}: a late "
            f"heartbeat will turn a node NotReady; keep the interval at most {limit / HEARTBEATS_PER_GRACE:g}s")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("local", help="run a local cluster: control plane and agents on this machine")
    lsub = p.add_subparsers(dest="local_verb", metavar="up|down", required=True)
    up = lsub.add_parser("up", help="start a control plane and N agents in the foreground")
    up.add_argument("--agents", type=int, default=1, help="how many agents (nodes node-1..N)")
    up.add_argument("--data-dir", default=DEFAULT_DIR, help=f"where data and logs go (default {DEFAULT_DIR})")
    up.add_argument("--port", type=int, default=6443, help="the API server's port on 127.0.0.1 (default 6443)")
    up.add_argument("--store", default="", help="control plane store: sqlite (default) or memory")
    for flag in ("--job-backoff-base", "--job-backoff-max", "--node-monitor-grace-period",
                 "--pod-eviction-timeout"):
        up.add_argument(flag, default="", metavar="DURATION", help="passed to the control plane")
    for flag in ("--heartbeat-interval", "--crash-loop-backoff-base", "--crash-loop-backoff-max"):
        up.add_argument(flag, default="", metavar="DURATION", help="passed to every agent")
    up.add_argument("--controlplane-arg", "--controlplane-flag", dest="controlplane_arg", action="append", default=[],
                    metavar="ARG", help="an extra control plane argument (repeatable): "
                    "--controlplane-arg=--node-startup-grace-period=5s")
    up.add_argument("--agent-arg", "--agent-flag", dest="agent_arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for every agent (repeatable): --agent-arg=--log-level=debug")
    up.add_argument("--keep-pods", action="store_true",
                    help="on stop, leave pods running (agents without --drain-on-exit)")
    up.add_argument("--ready-timeout", default="60s", help="how long to wait for the API and the nodes")
    up.add_argument("--stop-timeout", default="30s", help="how long each process may take to stop")
    up.set_defaults(run=run_up)
    down = lsub.add_parser("down", help="stop a running `ketch local up`")
    down.add_argument("--data-dir", default=DEFAULT_DIR)
    down.add_argument("--timeout", default="60s")
    down.set_defaults(run=run_down)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    exited: asyncio.Future[int] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the process runs
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=True)
        self.exited = asyncio.ensure_future(asyncio.to_thread(self.proc.wait))

    def signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    async def stop(self, timeout: float) -> None:
        """SIGTERM the group, then SIGKILL after timeout."""
        if self.proc is None or self.exited is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), 10)
        self.close()

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def tail(self, lines: int = 1) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def controlplane_argv(args: argparse.Namespace, data: Path, address: str) -> list[str]:
    argv = [sys.executable, "-m", "controlplane", "--listen", address, "--data-dir", str(data / "controlplane")]
    if args.store:
        argv += ["--store", args.store]
    for flag in ("job_backoff_base", "job_backoff_max", "node_monitor_grace_period", "pod_eviction_timeout"):
        value = getattr(args, flag)
        if value:
            durations.parse(value)
            argv += ["--" + flag.replace("_", "-"), value]
    return argv + list(args.controlplane_arg)


def agent_argv(args: argparse.Namespace, data: Path, address: str, node: str) -> list[str]:
    argv = [sys.executable, "-m", "nodeagent", "--server", address, "--node-name", node,
            "--data-dir", str(data / node)]
    for flag in ("heartbeat_interval", "crash_loop_backoff_base", "crash_loop_backoff_max"):
        value = getattr(args, flag)
        if value:
            durations.parse(value)
            argv += ["--" + flag.replace("_", "-"), value]
    if not args.keep_pods:
        argv.append("--drain-on-exit")
    return argv + list(args.agent_arg)


async def wait_api(client: Client, cp: Child, deadline: float) -> None:
    """The API answers Version. (It is not listening yet, so there is nothing to watch: retry.)"""
    while True:
        if cp.exited is not None and cp.exited.done():
            raise CLIError(f"the control plane exited with code {cp.exited.result()} during start-up: "
                           f"{cp.tail() or 'no output'} (log: {cp.log_path})")
        try:
            await client.version()
            return
        except (errors.Unavailable, errors.Timeout):
            pass
        if time.monotonic() > deadline:
            raise CLIError(f"the API server did not answer in time (log: {cp.log_path})")
        await asyncio.sleep(0.2)


def node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


async def wait_nodes(client: Client, names: list[str]) -> None:
    """Every named node exists and is Ready (by watch)."""
    watch = states(client, "Node")
    async with contextlib.aclosing(watch):
        async for current in watch:
            if all((n := current.get(("", name))) is not None and node_ready(n) for name in names):
                return


async def _first_exit(children: list[Child]) -> Child:
    waits = {asyncio.shield(c.exited): c for c in children if c.exited is not None}
    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    return waits[next(iter(done))]


async def run_up(args: argparse.Namespace, factory: Factory) -> int:
    if args.agents < 0:
        raise CLIError("--agents must be 0 or more")
    ready_timeout = durations.parse(args.ready_timeout)
    stop_timeout = durations.parse(args.stop_timeout)
    warning = pairing_warning(args.heartbeat_interval, args.node_monitor_grace_period)
    if warning:
        factory.warn(warning)
    data = Path(args.data_dir).expanduser().resolve()
    data.mkdir(parents=True, exist_ok=True)
    (data / "controlplane").mkdir(exist_ok=True)
    address = f"127.0.0.1:{args.port}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", KETCH_SERVER=address)
    cp = Child("controlplane", controlplane_argv(args, data, address), data / "controlplane.log")
    nodes = [f"node-{i}" for i in range(1, args.agents + 1)]
    agents = []
    for node in nodes:
        (data / node).mkdir(exist_ok=True)
        agents.append(Child(f"agent {node}", agent_argv(args, data, address, node), data / f"{node}.log"))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()
        if signals > 1:  # a second Ctrl-C: no more patience
            for c in [*agents, cp]:
                c.kill()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    client = connect(address)
    state_file = data / STATE_FILE
    code = 0
    try:
        cp.start(env, data)
        state_file.write_text(json.dumps({"pid": os.getpid(), "server": address}))
        startup = asyncio.ensure_future(_start(client, cp, agents, nodes, env, data, ready_timeout))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await startup
            factory.print("Interrupted during start-up; stopping.")
        else:
            stopper.cancel()
            startup.result()  # raises start-up failures
            names = ", ".join(nodes) if nodes else "no nodes"
            factory.print(f"Ketch local cluster is up: API server {address}, {names} Ready.")
            factory.print(f"Data and logs: {data}")
            factory.print("Point the CLI at it:")
            factory.print(f"  export KETCH_SERVER={address}")
            factory.print("Press Ctrl-C to stop it.")
            factory.out.flush()
            died = asyncio.ensure_future(_first_exit([cp, *agents]))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({died, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if died.done() and not stop.is_set():
                child = died.result()
                assert child.exited is not None
                factory.error_line(f"error: {child.name} exited with code {child.exited.result()}: "
                                   f"{child.tail() or 'no output'} (log: {child.log_path}); stopping the cluster")
                code = 1
            died.cancel()
            stopper.cancel()
    except CLIError as err:
        factory.error_line(f"error: {err}")
        code = 1
    finally:
        factory.print("Stopping the local cluster...")
        factory.out.flush()
        await asyncio.gather(*(a.stop(stop_timeout) for a in agents))
        await cp.stop(stop_timeout)
        await client.close()
        with contextlib.suppress(OSError):
            state_file.unlink()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        factory.print("Stopped.")
    return code


async def _start(client: Client, cp: Child, agents: list[Child], nodes: list[str], env: dict[str, str],
                 data: Path, ready_timeout: float) -> None:
    deadline = time.monotonic() + ready_timeout
    await wait_api(client, cp, deadline)
    for a in agents:
        a.start(env, data)
    if not nodes:
        return
    waiting = asyncio.ensure_future(wait_nodes(client, nodes))
    died = asyncio.ensure_future(_first_exit([cp, *agents]))
    try:
        done, _ = await asyncio.wait({waiting, died}, timeout=max(1.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            waiting.result()
            return
        if died in done:
            child = died.result()
            assert child.exited is not None
            raise CLIError(f"{child.name} exited with code {child.exited.result()} during start-up: "
                           f"{child.tail() or 'no output'} (log: {child.log_path})")
        raise CLIError(f"the nodes were not Ready within {ready_timeout:.0f}s (logs in {data})")
    finally:
        waiting.cancel()
        died.cancel()


async def run_down(args: argparse.Namespace, factory: Factory) -> int:
    state_file = Path(args.data_dir).expanduser().resolve() / STATE_FILE
    try:
        pid = int(json.loads(state_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        raise CLIError(f"no local cluster is running from {state_file.parent}") from None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        with contextlib.suppress(OSError):
            state_file.unlink()
        raise CLIError(f"no local cluster is running from {state_file.parent} (stale pid {pid})") from None
    deadline = time.monotonic() + durations.parse(args.timeout)
    while state_file.exists() and time.monotonic() < deadline:  # `up` removes it once all is stopped
        await asyncio.sleep(0.2)
    if state_file.exists():
        raise CLIError(f"the local cluster (pid {pid}) did not stop within {args.timeout}")
    factory.print("Stopped the local cluster.")
    return 0
