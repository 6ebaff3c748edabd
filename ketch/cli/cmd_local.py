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
import time
from pathlib import Path

from ketch.api import durations
from ketch.client.clientset import Client
from ketch.local.launcher import CONTROLPLANE, LocalCluster

from .factory import Factory
from .main import CLIError

DEFAULT_DIR = "./.ketch/local"
ADMIN_CONFIG = "admin.conf"
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
    up.add_argument("--insecure", action="store_true",
                    help="plaintext and no authentication (the control plane's --insecure; loopback only)")
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


def controlplane_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--store", args.store] if args.store else []
    for flag in ("job_backoff_base", "job_backoff_max", "node_monitor_grace_period", "pod_eviction_timeout"):
        value = getattr(args, flag)
        if value:
            durations.parse(value)
            flags += ["--" + flag.replace("_", "-"), value]
    return flags + list(args.controlplane_arg)


def agent_flags(args: argparse.Namespace) -> list[str]:
    flags: list[str] = []
    for flag in ("heartbeat_interval", "crash_loop_backoff_base", "crash_loop_backoff_max"):
        value = getattr(args, flag)
        if value:
            durations.parse(value)
            flags += ["--" + flag.replace("_", "-"), value]
    if not args.keep_pods:
        flags.append("--drain-on-exit")
    return flags + list(args.agent_arg)


async def run_up(args: argparse.Namespace, factory: Factory) -> int:
    if args.agents < 0:
        raise CLIError("--agents must be 0 or more")
    ready_timeout = durations.parse(args.ready_timeout)
    stop_timeout = durations.parse(args.stop_timeout)
    warning = pairing_warning(args.heartbeat_interval, args.node_monitor_grace_period)
    if warning:
        factory.warn(warning)
    data = Path(args.data_dir).expanduser().resolve()
    cluster = LocalCluster(data, port=args.port, insecure=args.insecure)
    nodes = [f"node-{i}" for i in range(1, args.agents + 1)]
    cluster.controlplane(*controlplane_flags(args))
    for node in nodes:
        cluster.agent(node, *agent_flags(args))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()
        if signals > 1:  # a second Ctrl-C: no more patience
            for name in cluster.members:
                cluster.kill(name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    client: Client | None = None
    state_file = data / STATE_FILE
    code = 0
    try:
        cluster.members[CONTROLPLANE].start(cluster.env, data)
        state_file.write_text(json.dumps({"pid": os.getpid(), "server": cluster.server}))
        startup = asyncio.ensure_future(_start(cluster, nodes, ready_timeout))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await startup
            factory.print("Interrupted during start-up; stopping.")
        else:
            stopper.cancel()
            client = startup.result()  # raises start-up failures
            names = ", ".join(nodes) if nodes else "no nodes"
            factory.print(f"Ketch local cluster is up: API server {cluster.server}, {names} Ready.")
            factory.print(f"Data and logs: {data}")
            factory.print("Point the CLI at it:")
            if cluster.insecure:
                factory.print(f"  export KETCH_SERVER={cluster.server}")
            else:
                factory.print(f"  export KETCH_CONFIG={data / ADMIN_CONFIG}")
            factory.print("Press Ctrl-C to stop it.")
            factory.out.flush()
            died = asyncio.ensure_future(cluster.first_exit())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({died, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if died.done() and not stop.is_set():
                member = died.result()
                factory.error_line(f"error: {member.title} exited with code {member.returncode}: "
                                   f"{member.tail() or 'no output'} (log: {member.log_path}); stopping the cluster")
                code = 1
            died.cancel()
            stopper.cancel()
    except CLIError as err:
        factory.error_line(f"error: {err}")
        code = 1
    finally:
        factory.print("Stopping the local cluster...")
        factory.out.flush()
        await asyncio.to_thread(cluster.stop, stop_timeout)
        if client is not None:
            await client.close()
        with contextlib.suppress(OSError):
            state_file.unlink()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        factory.print("Stopped.")
    return code


async def _start(cluster: LocalCluster, nodes: list[str], ready_timeout: float) -> Client:
    """Wait for the API, copy the admin kubeconfig to DATA/admin.conf, start the agents, wait for
    their nodes; returns the admin client."""
    deadline = time.monotonic() + ready_timeout
    try:
        await cluster.wait_for_admin_config(ready_timeout)
        if not cluster.insecure:
            target = cluster.dir / ADMIN_CONFIG
            tmp = target.with_name(f".{ADMIN_CONFIG}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(cluster.admin_config.read_bytes())
            os.replace(tmp, target)
        client = cluster.client()
        await cluster.wait_for_api(client, max(1.0, deadline - time.monotonic()))
        for member in cluster.agents:
            member.start(cluster.env, cluster.dir)
        if nodes:
            await cluster.wait_for_nodes(client, nodes, max(1.0, deadline - time.monotonic()))
        return client
    except (RuntimeError, TimeoutError) as err:
        raise CLIError(str(err)) from None


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
