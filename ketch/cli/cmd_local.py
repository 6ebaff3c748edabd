"""`ketch local up [--name NAME] [--agents N] [--data-dir DIR] [--port PORT]`: a whole cluster on this
machine, in the foreground; `ketch local down [--name NAME]` stops it and `ketch local status
[--name NAME]` shows what runs, as minikube's, kind's and k3d's verbs do.

`up` starts a control plane (`python -m controlplane`) and N agents (`python -m nodeagent`,
nodes `node-1..N`) as separate processes, each in its own process group with its own data dir
and log file under DIR (default `~/.ketch/local/NAME`, whatever the working directory), waits
until the API answers and every node is Ready, prints how to point the CLI at it, and then stays
until Ctrl-C or SIGTERM. Then it stops the agents first (SIGTERM; by default they leave cleanly
with --drain-on-exit, stopping their pods and deleting their Nodes), then the control plane, each
with SIGKILL after --stop-timeout, and exits 0. If a process dies on its own, everything is
stopped and `up` exits 1 naming it.

`up` never harms a cluster that runs: a name whose cluster runs, a data dir another running
cluster uses, or a busy port is refused before anything is started, written or deleted. What
it started is recorded in `~/.ketch/local/NAME/state.json` (ketch/local/state.py) by pid and
start time, so `down` stops those processes and no others, even after `up` itself was killed.
The CLI never imports the control plane or the agent: they are only ever processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ketch.api import durations
from ketch.client.clientset import Client
from ketch.local import procs
from ketch.local import state as local_state
from ketch.local.launcher import CONTROLPLANE, LocalCluster
from ketch.local.procs import ProcessRef
from ketch.local.state import DEFAULT_NAME, ClusterState, NameLock

from .factory import Factory
from .main import CLIError

ADMIN_CONFIG = "admin.conf"
HOST = "127.0.0.1"
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
    lsub = p.add_subparsers(dest="local_verb", metavar="up|down|status", required=True)
    up = lsub.add_parser("up", help="start a control plane and N agents in the foreground")
    up.add_argument("--name", default=DEFAULT_NAME,
                    help=f"the cluster's name; its state is in ~/.ketch/local/NAME (default {DEFAULT_NAME})")
    up.add_argument("--agents", type=int, default=1, help="how many agents (nodes node-1..N)")
    up.add_argument("--data-dir", default="", help="where data and logs go (default ~/.ketch/local/NAME)")
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
    down = lsub.add_parser("down", help="stop a local cluster (the processes its `up` started)")
    down.add_argument("--name", default="", help=f"which cluster (default {DEFAULT_NAME})")
    down.add_argument("--data-dir", default="", help="which cluster, by the data dir it was started with")
    down.add_argument("--timeout", default="60s", help="how long the cluster may take to stop")
    down.set_defaults(run=run_down)
    status = lsub.add_parser("status", help="show a local cluster: its API server, agents and admin config")
    status.add_argument("--name", default="", help=f"which cluster (default {DEFAULT_NAME})")
    status.add_argument("--data-dir", default="", help="which cluster, by the data dir it was started with")
    status.set_defaults(run=run_status)


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


def refusal(name: str, data: Path, port: int) -> str:
    """Why `up --name NAME --data-dir DATA --port PORT` must not start, or "" if it may. Reads,
    never writes: a refused `up` leaves everything as it was."""
    try:
        current = local_state.load(name)
    except (ValueError, OSError) as err:
        return f'local cluster "{name}": {err}; run `ketch local down --name {name}` or remove it'
    if current is not None and current.running():
        return (f'local cluster "{name}" is already running (API server {current.server}, pid {current.up.pid}); '
                f"stop it with `ketch local down{_name_flag(name)}` or choose another --name")
    others = [s for s in local_state.load_all() if s.name != name and s.running()]
    for other in others:
        if other.data_dir == data:
            return f'--data-dir {data}: in use by the running local cluster "{other.name}"'
    if port:
        try:
            busy = procs.port_in_use(HOST, port)
        except OSError as err:
            return f"--port {port}: cannot listen on {HOST}:{port}: {err.strerror}"
        if busy:
            owner = next((f' by the local cluster "{o.name}"' for o in others if o.server == f"{HOST}:{port}"), "")
            return f"--port {port}: {HOST}:{port} is already in use{owner}; choose another --port"
    return ""


def _name_flag(name: str) -> str:
    return "" if name == DEFAULT_NAME else f" --name {name}"


async def run_up(args: argparse.Namespace, factory: Factory) -> int:
    if args.agents < 0:
        raise CLIError("--agents must be 0 or more")
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port {args.port}: must be between 1 and 65535")
    ready_timeout = durations.parse(args.ready_timeout)
    stop_timeout = durations.parse(args.stop_timeout)
    try:
        name = local_state.check_name(args.name)
    except ValueError as err:
        raise CLIError(str(err)) from None
    data = Path(args.data_dir).expanduser().resolve() if args.data_dir else local_state.cluster_dir(name)
    cp_flags = controlplane_flags(args)
    ag_flags = agent_flags(args)
    why = refusal(name, data, args.port)
    if why:
        raise CLIError(why)
    lock = NameLock(name)
    if not lock.acquire():  # another `up` of this name passed the check at the same time
        raise CLIError(f'local cluster "{name}" is already starting or running (another `ketch local up'
                       f'{_name_flag(name)}` holds {lock.path})')
    try:
        why = refusal(name, data, args.port)  # again, now that no other `up` of this name can start
        if why:
            raise CLIError(why)
        warning = pairing_warning(args.heartbeat_interval, args.node_monitor_grace_period)
        if warning:
            factory.warn(warning)
        return await _run(args, factory, name, data, cp_flags, ag_flags, ready_timeout, stop_timeout)
    finally:
        lock.release()


async def _run(args: argparse.Namespace, factory: Factory, name: str, data: Path, cp_flags: list[str],
               ag_flags: list[str], ready_timeout: float, stop_timeout: float) -> int:
    """Start the cluster, record it, stay until told to stop or a member dies, stop it."""
    cluster = LocalCluster(data, port=args.port, insecure=args.insecure)
    nodes = [f"node-{i}" for i in range(1, args.agents + 1)]
    cluster.controlplane(*cp_flags)
    for node in nodes:
        cluster.agent(node, *ag_flags)
    me = ProcessRef.of(os.getpid())
    assert me is not None
    record = ClusterState(name, me, cluster.server, data, None if args.insecure else data / ADMIN_CONFIG, nodes)

    def save() -> None:
        """Record every member started so far (by pid and start time)."""
        for member_name, member in cluster.members.items():
            ref = ProcessRef.of(member.proc.pid) if member.proc is not None else None
            if ref is not None:
                record.members[member_name] = ref
        record.save()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()
        if signals > 1:  # a second Ctrl-C: no more patience
            for member_name in cluster.members:
                cluster.kill(member_name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    client: Client | None = None
    code = 0
    try:
        cluster.members[CONTROLPLANE].start(cluster.env, data)
        save()
        startup = asyncio.ensure_future(_start(cluster, nodes, ready_timeout, save))
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
            factory.print(f'Ketch local cluster "{name}" is up: API server {cluster.server}, {names} Ready.')
            factory.print(f"Data and logs: {data}")
            factory.print("Point the CLI at it:")
            if cluster.insecure:
                factory.print(f"  export KETCH_SERVER={cluster.server}")
            else:
                factory.print(f"  export KETCH_CONFIG={data / ADMIN_CONFIG}")
            factory.print(f"Press Ctrl-C (or run `ketch local down{_name_flag(name)}`) to stop it.")
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
        with contextlib.suppress(OSError, ValueError):
            record.remove()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        factory.print("Stopped.")
    return code


async def _start(cluster: LocalCluster, nodes: list[str], ready_timeout: float, save: Callable[[], None]) -> Client:
    """Wait for the API, copy the admin kubeconfig to DATA/admin.conf, start the agents (recording
    them with save), wait for their nodes; returns the admin client."""
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
        save()
        if nodes:
            await cluster.wait_for_nodes(client, nodes, max(1.0, deadline - time.monotonic()))
        return client
    except (RuntimeError, TimeoutError) as err:
        raise CLIError(str(err)) from None


def find(args: argparse.Namespace) -> tuple[str, ClusterState | None]:
    """The cluster that down/status mean: --name, else the one started with --data-dir, else default."""
    try:
        if args.name or not args.data_dir:
            name = local_state.check_name(args.name or DEFAULT_NAME)
            return name, local_state.load(name)
        data = Path(args.data_dir).expanduser().resolve()
        for state in local_state.load_all():
            if state.data_dir == data:
                return state.name, state
        raise CLIError(f"no local cluster was started with --data-dir {data}")
    except (ValueError, OSError) as err:
        raise CLIError(str(err)) from None


async def run_down(args: argparse.Namespace, factory: Factory) -> int:
    timeout = durations.parse(args.timeout)
    name, state = find(args)
    if state is None:
        raise CLIError(f'no local cluster named "{name}" ({local_state.cluster_dir(name)} has no '
                       f"{local_state.STATE_FILE}){_others(name)}")
    if not state.running():
        state.remove()
        factory.print(f'Local cluster "{name}" was not running; removed its stale state ({state.path}).')
        return 0
    deadline = time.monotonic() + timeout
    if state.up.signal(signal.SIGTERM):  # `up` stops its members and removes its record
        while state.up.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if state.up.alive:
            raise CLIError(f'local cluster "{name}" (pid {state.up.pid}) did not stop within {args.timeout}')
    # What `up` left running (it was killed, or it died): the agents first, which may still need the
    # API while they drain, then the control plane; only the very processes recorded.
    agents = [p for member, p in state.members.items() if member != CONTROLPLANE and p.alive]
    control = [p for member, p in state.members.items() if member == CONTROLPLANE and p.alive]
    if agents or control:
        left = max(1.0, deadline - time.monotonic())
        await asyncio.to_thread(procs.stop, agents, left)
        await asyncio.to_thread(procs.stop, control, left)
    state.remove()
    factory.print(f'Stopped local cluster "{name}".')
    return 0


def _others(name: str) -> str:
    others = [s.name for s in local_state.load_all() if s.name != name]
    return f"; local clusters: {', '.join(others)}" if others else ""


async def run_status(args: argparse.Namespace, factory: Factory) -> int:
    """What runs, as `minikube status`: exit 0 when every recorded process runs, else 1."""
    name, state = find(args)
    if state is None:
        factory.print(f'Local cluster "{name}": not running (start it with `ketch local up{_name_flag(name)}`)'
                      f"{_others(name)}")
        return 1
    running = state.running()
    procs_all = {"up": state.up, **state.members}
    if not running:
        summary = f"not running (stale state; `ketch local down{_name_flag(name)}` removes it)"
    elif len(running) == len(procs_all) and len(state.members) == len(state.nodes) + 1:
        summary = "Running"
    else:
        summary = "Degraded (some processes are gone; see below)"

    def proc_line(member: str) -> str:
        ref = procs_all.get(member)
        if ref is None:
            return "not started"
        return f"pid {ref.pid}, {'running' if member in running else 'gone'}"

    factory.print(f'Local cluster "{name}": {summary}')
    factory.print(f"  API server:     {state.server}")
    factory.print(f"  Admin config:   {state.admin_config or '(insecure: none)'}")
    factory.print(f"  Data and logs:  {state.data_dir}")
    factory.print(f"  ketch local up: {proc_line('up')}")
    factory.print(f"  Control plane:  {proc_line(CONTROLPLANE)}")
    factory.print(f"  Agents:         {', '.join(f'{n} ({proc_line(n)})' for n in state.nodes) or 'none'}")
    if running and state.admin_config is not None:
        factory.print(f"Point the CLI at it: export KETCH_CONFIG={state.admin_config}")
    elif running:
        factory.print(f"Point the CLI at it: export KETCH_SERVER={state.server}")
    return 0 if summary == "Running" else 1
