"""ketch-agent: flags to wiring. See `ketch-agent --help`."""

from __future__ import annotations

import os

# Before gRPC loads: the agent forks (a container run as another user) while gRPC threads run,
# and gRPC's fork handlers must not run in those children (they can crash them).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

from ketch import gctuning, logformat
from ketch.api import durations, quantity
from ketch.serving.http import listen_address

from . import credentials
from .agent import Agent, AgentConfig
from .heartbeat import interval_warning
from .registration import node_ip_for
from .runtime.crilog import LogDirs

DEFAULT_POD_LOGS_DIR = "/var/log/pods"
DEFAULT_CONTAINER_LOGS_DIR = "/var/log/containers"

log = logging.getLogger("nodeagent")


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"invalid label {part!r}: use k=v,k2=v2")
        out[key.strip()] = value.strip()
    return out


def _size(text: str) -> int:
    try:
        return quantity.to_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ketch-agent", description="The Ketch node agent: runs the pods bound "
                                "to its node as processes.")
    p.add_argument("--server", default=os.environ.get("KETCH_SERVER", "127.0.0.1:6443"),
                   help="API server HOST:PORT[,HOST:PORT] (default $KETCH_SERVER or 127.0.0.1:6443)")
    p.add_argument("--node-name", default=socket.gethostname().lower(), help="the Node's name (default: hostname)")
    p.add_argument("--data-dir", default="./ketch-agent-data", help="checkpoints, logs and pod working dirs")
    p.add_argument("--labels", type=_labels, default={}, metavar="k=v,k2=v2", help="extra Node labels")
    p.add_argument("--heartbeat-interval", type=durations.argument, default=10.0, metavar="DURATION",
                   help="Lease renewal period (default 10s)")
    p.add_argument("--crash-loop-backoff-base", type=durations.argument, default=10.0, metavar="DURATION",
                   help="first crash-loop back-off, doubling (default 10s)")
    p.add_argument("--crash-loop-backoff-max", type=durations.argument, default=300.0, metavar="DURATION",
                   help="crash-loop back-off cap (default 5m); reset after 2x this of running")
    p.add_argument("--drain-on-exit", action="store_true",
                   help="on SIGTERM: cordon, stop pods gracefully and delete the Node (default: leave pods running)")
    p.add_argument("--listen", default="", metavar="HOST:PORT",
                   help="the agent's gRPC server for logs and stats (default: any free port, on 127.0.0.1 "
                        "when the API server is on loopback, else on all interfaces)")
    p.add_argument("--log-retention", type=durations.argument, default=3600.0, metavar="DURATION",
                   help="keep logs of pods gone from the API this long (default 1h)")
    p.add_argument("--log-max-size", type=_size, default=10 * 1024 * 1024, metavar="SIZE",
                   help="rotate a container log file above this size (default 10Mi)")
    p.add_argument("--container-log-max-files", type=int, default=5, metavar="N",
                   help="the kubelet's containerLogMaxFiles: log files kept per container, the current one "
                        "included (default 5; at least 2)")
    p.add_argument("--pod-logs-dir", default=None, metavar="DIR",
                   help=f"container logs as the kubelet keeps them, DIR/<namespace>_<pod>_<uid>/<container>/"
                        f"<restart>.log (default {DEFAULT_POD_LOGS_DIR}, or DATA/logs/pods where the agent "
                        f"cannot write that)")
    p.add_argument("--container-logs-dir", default=None, metavar="DIR",
                   help=f"links DIR/<pod>_<namespace>_<container>-<id>.log to those files (default "
                        f"{DEFAULT_CONTAINER_LOGS_DIR}, or DATA/logs/containers where the agent cannot write that)")
    p.add_argument("--node-status-report-frequency", type=durations.argument, default=None, metavar="DURATION",
                   help="write node status at least this often (default min(5m, 6 heartbeats))")
    p.add_argument("--no-cgroups", action="store_true", help="enforce memory limits with the watchdog only")
    p.add_argument("--token", default=os.environ.get("KETCH_TOKEN", ""), metavar="TOKEN",
                   help="the join token (K10<CA hash>::<id>.<secret>; default $KETCH_TOKEN): the CA is pinned by its "
                        "hash and the token exchanged once for the node's certificates, kept in DATA/pki; a restart "
                        "needs no token")
    p.add_argument("--kubeconfig", default="", metavar="FILE",
                   help="with --hollow: the API credentials of the simulated nodes (e.g. an admin.conf)")
    p.add_argument("--hollow", type=int, default=0, metavar="N",
                   help="simulate N nodes named NODE_NAME-0000.. in this process (kubemark-style, for "
                        "benchmarks): real Nodes and Leases, pods marked running without processes")
    p.add_argument("--metrics-listen", type=listen_address, default="", metavar="HOST:PORT",
                   help="serve /metrics and /livez, /readyz, /healthz over HTTPS with the node's serving "
                        "certificate on this address (off unless given; see nodeagent/observe.py)")
    p.add_argument("--log-level", default=os.environ.get("KETCH_LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", choices=logformat.FORMATS, default="text",
                   help="text (default) or json: one klog-style JSON object per line (ts, caller, msg, v, err)")
    return p


def log_dirs(args: argparse.Namespace, data_dir: Path) -> LogDirs:
    """The container log dirs; a default the agent may not create (not root) falls back under
    data_dir with a warning, a dir given explicitly must work (OSError otherwise)."""
    chosen = []
    for given, default, fallback in ((args.pod_logs_dir, DEFAULT_POD_LOGS_DIR, "pods"),
                                     (args.container_logs_dir, DEFAULT_CONTAINER_LOGS_DIR, "containers")):
        path = os.path.abspath(given or default)
        try:
            os.makedirs(path, 0o755, exist_ok=True)
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", path)
        except PermissionError:
            if given:
                raise
            path = str(data_dir / "logs" / fallback)
            log.warning("cannot write %s (not root?): container logs go to %s instead", default, path)
        chosen.append(path)
    return LogDirs(chosen[0], chosen[1])


async def run(args: argparse.Namespace) -> int:
    warning = interval_warning(args.heartbeat_interval)
    if warning:
        log.warning("%s", warning)
    if args.hollow > 0:
        if args.metrics_listen:
            log.warning("--metrics-listen is not served by --hollow nodes; ignored")
        return await run_hollow(args)
    data_dir = Path(args.data_dir).absolute()
    host_ip = node_ip_for(args.server)
    sans = list(dict.fromkeys([host_ip, "127.0.0.1", "localhost", socket.gethostname().lower(), args.node_name]))
    try:
        creds = await credentials.obtain(data_dir, args.server, args.token, args.node_name, sans)
    except credentials.JoinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.container_log_max_files < 2:
        print(f"error: --container-log-max-files: invalid value {args.container_log_max_files}: must be at least 2",
              file=sys.stderr)
        return 1
    try:
        dirs = log_dirs(args, data_dir)
    except OSError as err:
        print(f"error: container log directory: {err}", file=sys.stderr)
        return 1
    cfg = AgentConfig(
        log_dirs=dirs, log_max_files=args.container_log_max_files,
        server=args.server, node_name=args.node_name, data_dir=Path(args.data_dir).absolute(),
        labels=args.labels, heartbeat_interval=args.heartbeat_interval,
        backoff_base=args.crash_loop_backoff_base, backoff_max=args.crash_loop_backoff_max,
        drain_on_exit=args.drain_on_exit, listen=args.listen, log_retention=args.log_retention,
        log_max_size=args.log_max_size, node_status_report=args.node_status_report_frequency,
        use_cgroups=not args.no_cgroups, credentials=creds, serving_sans=sans, metrics_listen=args.metrics_listen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gctuning.tune_for_server()
    try:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)  # before the agent measures its disk
        return await Agent(cfg).run(stop)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


async def run_hollow(args: argparse.Namespace) -> int:
    from .hollow import HollowNodes, hollow_names

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hollow = HollowNodes(args.server, hollow_names(args.node_name, args.hollow), labels=args.labels,
                         heartbeat_interval=args.heartbeat_interval, drain_on_exit=args.drain_on_exit,
                         kubeconfig=args.kubeconfig)
    return await hollow.run(stop)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logformat.configure(args.log_level, args.log_format)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
