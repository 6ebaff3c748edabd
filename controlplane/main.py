"""ketch-controlplane: flags to wiring. Store, watch hub, API service, gRPC, controllers.

`ketch-controlplane backup|restore ...` are the store's maintenance commands (see backup.py)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
import os
import signal
import sys
from pathlib import Path

import grpc

from ketch import gctuning, logformat, memtrim
from ketch.api import durations, errors
from ketch.client.clientset import Client
from ketch.security import certs, jointoken
from ketch.serving.http import listen_address

from . import join, leaderelection, observe
from . import pkifiles as pki_files
from .apiserver import security as api_security
from .apiserver.admission import default_admission
from .apiserver.authn import read_token_file
from .apiserver.bootstrap import ensure_default_namespaces
from .apiserver.inflight import DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT, DEFAULT_MAX_REQUESTS_INFLIGHT
from .apiserver.local import LocalTransport
from .apiserver.nodeproxy import NodeDialer, NodeProxy
from .apiserver.rbac import DEFAULT_MODES, MODES, Authorization, parse_modes
from .apiserver.rbac.bootstrap import reconcile_bootstrap_policy
from .apiserver.server import DEFAULT_MAX_CONNECTION_IDLE, ServerLimits, raise_open_files_limit, start_grpc_server
from .apiserver.service import APIService
from .apiserver.watch import WatchHub
from .controllers.manager import CONTROLLERS
from .controllers.options import (
    ControllerOptions,
    JobOptions,
    NodeLifecycleOptions,
    PodGCOptions,
)
from .registry import Registry
from .storage import Store, open_backend
from .storage.dbfile import StorageError
from .storage.etcd import EtcdTLS
from .storage.store import DEFAULT_QUOTA_BYTES

log = logging.getLogger("ketch.controlplane")


def _quota(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --quota-backend-bytes {text!r}: a number of bytes") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid --quota-backend-bytes {value}: must not be negative")
    return value or DEFAULT_QUOTA_BYTES  # 0 means the default, as in etcd


def _rate(text: str) -> float:
    """A finite rate of at least 0 (nodes per second)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: a number of nodes per second") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"invalid rate {text}: must be a finite number of at least 0")
    return value


def _fraction(text: str) -> float:
    """A fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fraction {text!r}: a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"invalid fraction {text}: must be more than 0 and at most 1")
    return value


def _etcd_tls(args: argparse.Namespace) -> EtcdTLS | None:
    files = (args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)
    if not any(files):
        return None
    if not all(files):
        raise ValueError("--etcd-cafile, --etcd-certfile and --etcd-keyfile go together: give all three")
    return EtcdTLS(*files)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ketch-controlplane", description=__doc__.splitlines()[0],
        epilog="Store maintenance: `ketch-controlplane backup --data-dir DIR --to FILE` (works while "
               "running) and `ketch-controlplane restore --data-dir DIR --from FILE` (while stopped).")
    p.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT for the gRPC API (default 127.0.0.1:6443)")
    p.add_argument("--data-dir", default="./ketch-data", help="where the SQLite store lives")
    p.add_argument("--store", default="sqlite", help="sqlite (default), memory, or etcd://H:P[,H:P]")
    p.add_argument("--etcd-cafile", type=Path, metavar="FILE", help="CA bundle that signed etcd's serving certificate")
    p.add_argument("--etcd-certfile", type=Path, metavar="FILE", help="client certificate for etcd")
    p.add_argument("--etcd-keyfile", type=Path, metavar="FILE", help="client key for etcd (all three are required "
                   "when an etcd address is not on loopback)")
    p.add_argument("--etcd-compaction-interval", type=durations.argument, default=300.0, metavar="DURATION",
                   help="how often etcd's history is compacted, keeping one interval of it (default 5m, 0 never)")
    p.add_argument("--quota-backend-bytes", type=_quota, default=DEFAULT_QUOTA_BYTES, metavar="BYTES",
                   help="past this size of the database in use, writes other than deletions are refused "
                        "(etcd's NOSPACE quota; default 2 GiB, 0 for the default)")
    p.add_argument("--node-monitor-grace-period", type=durations.argument, default=40.0, metavar="DURATION")
    p.add_argument("--node-startup-grace-period", type=durations.argument, default=60.0, metavar="DURATION")
    p.add_argument("--node-monitor-period", type=durations.argument, default=None, metavar="DURATION",
                   help="accepted for kube-controller-manager compatibility and ignored: each node is "
                        "re-checked exactly when its grace period would run out")
    p.add_argument("--node-eviction-rate", type=_rate, default=0.1, metavar="QPS",
                   help="nodes per second, per zone, that get the NoExecute not-ready/unreachable taint")
    p.add_argument("--secondary-node-eviction-rate", type=_rate, default=0.01, metavar="QPS",
                   help="the rate in a partially disrupted zone larger than --large-cluster-size-threshold")
    p.add_argument("--large-cluster-size-threshold", type=int, default=50, metavar="N",
                   help="a partially disrupted zone of at most N nodes gets no new NoExecute taints")
    p.add_argument("--unhealthy-zone-threshold", type=_fraction, default=0.55, metavar="FRACTION",
                   help="a zone with this fraction of its nodes (and more than 2) not Ready is partially disrupted")
    p.add_argument("--pod-eviction-timeout", type=durations.argument, default=300.0, metavar="DURATION",
                   help="tolerationSeconds of the default not-ready/unreachable tolerations")
    p.add_argument("--job-backoff-base", type=durations.argument, default=10.0, metavar="DURATION")
    p.add_argument("--job-backoff-max", type=durations.argument, default=360.0, metavar="DURATION")
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=12500, metavar="N",
                   help="terminated pods kept before the oldest are deleted (0 disables; default 12500)")
    p.add_argument("--event-ttl", type=durations.argument, default=3600.0, metavar="DURATION",
                   help="how long Events are kept after their last update (default 1h)")
    p.add_argument("--controllers", default="*",
                   help=f"comma-separated controllers to run, or * (all: {','.join(CONTROLLERS)}), or none")
    p.add_argument("--max-requests-inflight", type=int, default=DEFAULT_MAX_REQUESTS_INFLIGHT, metavar="N",
                   help="read requests served at once; more are refused with 429 TooManyRequests and retried "
                        f"by clients (0: no limit; default {DEFAULT_MAX_REQUESTS_INFLIGHT})")
    p.add_argument("--max-mutating-requests-inflight", type=int, default=DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
                   metavar="N", help="write requests served at once (0: no limit; default "
                                     f"{DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT})")
    p.add_argument("--max-connection-idle", type=durations.argument, default=DEFAULT_MAX_CONNECTION_IDLE,
                   metavar="DURATION",
                   help="close client connections with no request for this long; clients reconnect on their "
                        "next request (0: never; default 90s)")
    p.add_argument("--max-connection-age", type=durations.argument, default=0.0, metavar="DURATION",
                   help="close client connections this old (after 30s of grace), ending their watches and log "
                        "streams too: reclaims streams whose clients stopped reading (0: never, the default)")
    tls = p.add_argument_group("security (kube-apiserver's flags; TLS and authentication are on by default)")
    tls.add_argument("--tls-cert-file", default="", metavar="FILE",
                     help="serving certificate (default: DIR/pki/server.crt, made and renewed from DIR/pki/ca.crt)")
    tls.add_argument("--tls-private-key-file", default="", metavar="FILE", help="its key (default DIR/pki/server.key)")
    tls.add_argument("--client-ca-file", default="", metavar="FILE",
                     help="CA bundle client certificates are verified against (default DIR/pki/ca.crt)")
    tls.add_argument("--token-auth-file", default="", metavar="FILE",
                     help='bearer tokens, CSV lines token,user,uid,"group1,group2"')
    tls.add_argument("--tls-san", action="append", default=[], metavar="NAME",
                     help="an extra DNS name or IP of the serving certificate (repeatable)")
    tls.add_argument("--cluster-signing-duration", type=durations.argument, default=certs.CERT_VALIDITY,
                     metavar="DURATION", help="validity of the node certificates it signs (default 8760h); agents "
                                              "renew theirs at 80 %% of it")
    tls.add_argument("--insecure", action="store_true",
                     help="plaintext, no authentication, everything allowed to everyone: only on loopback addresses")
    tls.add_argument("--authorization-mode", default=",".join(DEFAULT_MODES), metavar="MODES",
                   help=f"ordered authorizers, comma-separated, from {', '.join(MODES)}; members of "
                        f"system:masters are always allowed (default {','.join(DEFAULT_MODES)})")
    leaderelection.add_flags(p)
    join = p.add_argument_group("joining a cluster as a new replica (first start only; see controlplane/join.py)")
    join.add_argument("--join", default="", metavar="HOST:PORT",
                      help="a running replica: on a first start (no DIR/pki/ca.crt) fetch the cluster's CA and "
                           "kubelet-client certificate from it; ignored once DIR/pki has them")
    join.add_argument("--token", default=os.environ.get("KETCH_TOKEN", ""), metavar="SERVER_TOKEN",
                      help="with --join: a server token from `ketch token create --server` (default $KETCH_TOKEN)")
    p.add_argument("--metrics-listen", type=listen_address, default="", metavar="HOST:PORT",
                   help="serve /metrics, /livez, /readyz and /healthz over HTTPS with the API's serving "
                        "certificate on this address (off unless given; see controlplane/observe.py)")
    p.add_argument("--log-level", default=os.environ.get("KETCH_LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", choices=logformat.FORMATS, default="text",
                   help="text (default) or json: one klog-style JSON object per line (ts, caller, msg, v, err)")
    return p


def non_loopback(listen: str) -> list[str]:
    """The listen addresses that are not loopback (--insecure is refused on them)."""
    out = []
    for address in listen.split(","):
        host = address.strip().rpartition(":")[0].strip("[]")
        if host == "localhost":
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass
        out.append(address.strip())
    return out


async def ensure_join_token_secret(client: Client, token: jointoken.JoinToken) -> None:
    """The Secret of DIR/join-token's bootstrap token, with no expiry (k3s's server token has none);
    made again at start if deleted (delete DIR/join-token too to retire it for good)."""
    secret = jointoken.bootstrap_secret(token.id, token.secret, description="the join token of DIR/join-token")
    try:
        await client.create(secret)
    except errors.AlreadyExists:
        pass


async def _join(args: argparse.Namespace, data_dir: Path) -> str:
    """--join on a first start: the shared PKI from a running replica; the error line, or ""."""
    if args.insecure:
        return "--join fetches the cluster's PKI for TLS: it cannot be used with --insecure"
    if not args.token and not join.has_ca(data_dir):
        return "--join needs --token SERVER_TOKEN (or $KETCH_TOKEN): make one with `ketch token create --server`"
    try:
        await join.first_start(data_dir, args.join, args.token)
    except join.JoinError as err:
        return str(err)
    except OSError as err:
        return f"cannot write {data_dir / 'pki'}: {err}"
    return ""


async def run(args: argparse.Namespace) -> int:
    for flag in ("max_requests_inflight", "max_mutating_requests_inflight"):
        if getattr(args, flag) < 0:
            print(f"error: --{flag.replace('_', '-')} must be 0 or more", file=sys.stderr)
            return 2
    if args.insecure:
        exposed = non_loopback(",".join(filter(None, (args.listen, args.metrics_listen))))
        if exposed:
            print(f"error: --insecure serves everything to everyone without TLS, so it listens only on loopback "
                  f"addresses; refusing {', '.join(exposed)}", file=sys.stderr)
            return 2
    try:
        modes = parse_modes(args.authorization_mode)
    except ValueError as err:
        print(f"error: --authorization-mode: {err}", file=sys.stderr)
        return 2
    try:
        election = leaderelection.settings_of(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    if args.join:
        failed = await _join(args, data_dir)
        if failed:
            print(f"error: {failed}", file=sys.stderr)
            return 2
    open_files = raise_open_files_limit()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        backend = open_backend(args.store, data_dir, etcd_tls=_etcd_tls(args),
                               etcd_compaction_interval=args.etcd_compaction_interval)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (StorageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    registry = Registry(default_toleration_seconds=int(args.pod_eviction_timeout), event_ttl=args.event_ttl)
    store = Store(backend, registry.field_values, parsed_on_read=registry.parsed_on_read(),
                  packed=registry.packed(),
                  expiry_of=registry.expiry_of, quota_bytes=args.quota_backend_bytes)
    try:
        await store.start()
    except StorageError as err:
        print(f"error: {err}", file=sys.stderr)
        await store.stop()
        return 1
    # Give memory back after a burst of deletes: the pages SQLite cached for the load, then the
    # heap (glibc keeps what is freed).
    def release_memory() -> bool:
        store.backend.release_memory()
        return memtrim.trim()

    trimmer = memtrim.Trimmer(trim_fn=release_memory)
    store.add_listener(lambda events: trimmer.freed(sum(1 for e in events if e.type == "DELETED")))
    # The PKI after the store: a data dir the store refuses (damaged, foreign, in use) gets one
    # line and nothing written beside it.
    pki = None
    tokens = None
    if not args.insecure:
        try:
            pki = pki_files.ensure(data_dir, args.listen, args.tls_san, tls_cert_file=args.tls_cert_file,
                                   tls_key_file=args.tls_private_key_file, client_ca_file=args.client_ca_file)
            tokens = read_token_file(args.token_auth_file) if args.token_auth_file else None
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            await store.stop()
            return 2
    hub = WatchHub(store, on_dropped=trimmer.freed)
    authorization = Authorization(store, modes)
    service = APIService(store, hub, registry=registry,
                         admission=authorization.admission(default_admission(store, registry)))
    dial = None
    if pki is not None:
        dial = grpc.ssl_channel_credentials(pki.ca_pem, pki.kubelet_client.key, pki.kubelet_client.cert)
    proxy = NodeProxy(store, NodeDialer(store, dial))
    local = LocalTransport(service, proxy)
    await ensure_default_namespaces(local.chain)
    # Whatever the modes, as kube-apiserver's rbac/bootstrap-roles hook: the roles are there the
    # day RBAC is turned on.
    await reconcile_bootstrap_policy(Client(local))
    if pki is not None:
        def secret_of(key: str) -> object | None:
            entry = store.get("Secret", key)
            return entry.obj if entry is not None else None

        security = api_security.secure(pki, secret_of, Client(local), tokens, args.cluster_signing_duration,
                                       authorization.authorizers)
        if pki.join_token is not None:
            await ensure_join_token_secret(Client(local), pki.join_token)
    else:
        security = api_security.insecure()
        log.warning("--insecure: serving plaintext with no authentication; everyone may do everything")
    health = observe.ControlPlaneHealth(store)
    side = None
    if args.metrics_listen:
        try:
            side, side_port = await observe.serve(args.metrics_listen, security, health)
        except OSError as err:
            print(f"error: cannot listen on --metrics-listen {args.metrics_listen}: {err}", file=sys.stderr)
            await proxy.close()
            await store.stop()
            return 1
        log.info("serving /metrics, /livez, /readyz and /healthz on %s (port %d, %s)", args.metrics_listen,
                 side_port, "HTTPS" if pki is not None else "plain HTTP, --insecure")

    gctuning.tune_for_server()
    try:
        server, _port = await start_grpc_server(service, args.listen, ServerLimits(
            max_requests_inflight=args.max_requests_inflight,
            max_mutating_requests_inflight=args.max_mutating_requests_inflight,
            max_connection_idle=args.max_connection_idle, max_connection_age=args.max_connection_age), proxy,
            security)
    except (OSError, RuntimeError) as err:
        print(f"error: cannot listen on {args.listen}: {err}", file=sys.stderr)
        if side is not None:
            await side.stop()
        await store.stop()
        return 1
    log.info("serving the Ketch API on %s (%s, store %s, revision %d, open files limit %d, authorization %s)",
             args.listen, "TLS" if pki is not None else "PLAINTEXT, --insecure", args.store, store.revision,
             open_files, ",".join(modes) if pki is not None else "everything allowed")

    options = ControllerOptions(
        job=JobOptions(backoff_base=args.job_backoff_base, backoff_max=args.job_backoff_max),
        node_lifecycle=NodeLifecycleOptions(monitor_grace_period=args.node_monitor_grace_period,
                                            startup_grace_period=args.node_startup_grace_period,
                                            node_eviction_rate=args.node_eviction_rate,
                                            secondary_node_eviction_rate=args.secondary_node_eviction_rate,
                                            large_cluster_size_threshold=args.large_cluster_size_threshold,
                                            unhealthy_zone_threshold=args.unhealthy_zone_threshold),
        podgc=PodGCOptions(terminated_pod_gc_threshold=args.terminated_pod_gc_threshold),
    )
    if args.controllers == "*":
        enabled = None
    elif args.controllers in ("", "none"):
        enabled = []
    else:
        enabled = [c.strip() for c in args.controllers.split(",") if c.strip()]
    stop_controllers = await leaderelection.start_controllers(local, options, enabled, election,
                                                              on_elected=health.watch_leader)
    health.controllers_started = True

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    health.shutting_down = True
    await stop_controllers()
    hub.close_all()
    await server.stop(grace=1.0)
    await proxy.close()
    if side is not None:
        await side.stop()
    await store.stop()
    return 0


def build_maintenance_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ketch-controlplane", description="Store maintenance.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("backup", help="copy the store to FILE (consistent; works while the control plane runs)")
    b.add_argument("--data-dir", required=True, help="the control plane's data dir")
    b.add_argument("--to", required=True, metavar="FILE", help="the backup file to write (replaced if it exists)")
    r = sub.add_parser("restore", help="make FILE the store of DIR (the control plane must be stopped)")
    r.add_argument("--data-dir", required=True, help="the control plane's data dir")
    r.add_argument("--from", dest="source", required=True, metavar="FILE", help="a file written by backup")
    r.add_argument("--bump-revision", type=int, default=None, metavar="N",
                   help="raise the revision this far past the old one (default 1000000000)")
    return p


def maintenance(argv: list[str]) -> int:
    """backup / restore: one line on success, one line on stderr and exit 1 on failure."""
    from .storage import backup as bk

    args = build_maintenance_parser().parse_args(argv)
    try:
        if args.command == "backup":
            done = bk.backup(Path(args.data_dir), Path(args.to))
            print(f"saved revision {done.revision} ({done.objects} objects, {done.size} bytes) to {done.path}")
        else:
            bump = bk.BUMP_REVISION if args.bump_revision is None else args.bump_revision
            done, kept = bk.restore(Path(args.data_dir), Path(args.source), bump)
            aside = f"; the replaced database is kept as {kept}" if kept else ""
            print(f"restored {done.objects} objects from {args.source} into {done.path}; revision raised to "
                  f"{done.revision}, older revisions compacted{aside}")
    except (StorageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("backup", "restore"):
        sys.exit(maintenance(argv))
    args = build_parser().parse_args(argv)
    logformat.configure(args.log_level, args.log_format)
    memtrim.limit_arenas(1)  # before any thread: gRPC's, the executor's
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
