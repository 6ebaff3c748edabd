"""The agent's own gRPC server: the NodeAgent service (PodLogs, Exec, Attach, NodeStats) the API server proxies.

Logs are found by pod UID (filled in by the API server) or, for a pod that is gone from the API,
by namespace and name among the pods whose files the agent still keeps; NOT_FOUND tells the API
server to ask the next node. Errors carry Kubernetes' reason in the `ketch-reason` trailer.

Every name in a request becomes part of a path, so a request is checked before anything is
looked up (a pod uid must be a UUID, names DNS-1123: INVALID_ARGUMENT otherwise), the record a
uid finds must be the pod the request names (a uid does not open another namespace's logs), and
the log file, symlinks resolved, must be under the agent's pods dir.

With TLS (a joined agent) the server presents the serving certificate the cluster CA signed at
join and requires a client certificate from that CA whose CN is the control plane's
(kube-apiserver-kubelet-client): a node's certificate, or anyone else, is refused. A renewed
serving certificate is picked up by the next handshake.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import psutil

from ketch.api import errors
from ketch.api.validation.podlogs import check_pod_log_request
from ketch.v1 import api_pb2, api_pb2_grpc

from . import procfs
from .runtime import checkpoint, crilog, crireader, layout, logs
from .runtime.checkpoint import PodRecord

log = logging.getLogger(__name__)

STATS_SAMPLE = 0.25
CONTROL_PLANE_CN = "kube-apiserver-kubelet-client"


class LogSource:
    """What the server needs from the agent: pod records (live or on disk) and run liveness."""

    def __init__(self, pods_root: Path, live_record: Callable[[str], PodRecord | None],
                 run_active: Callable[[str, str, int], bool], log_manager: logs.LogManager,
                 log_dirs: crilog.LogDirs | None = None) -> None:
        self.pods_root = pods_root
        self.log_dirs = log_dirs
        self.live_record = live_record
        self.run_active = run_active
        self.log_manager = log_manager

    def record(self, uid: str) -> PodRecord | None:
        return self.live_record(uid) or checkpoint.load(layout.state_file(self.pods_root, uid))

    def find(self, namespace: str, name: str) -> PodRecord | None:
        """The most recent pod of that name whose files are kept here."""
        best: tuple[float, PodRecord] | None = None
        for rec in checkpoint.load_all(self.pods_root):
            if rec.namespace != namespace or rec.name != name:
                continue
            when = rec.run.start_time or 0.0
            if best is None or when > best[0]:
                best = (when, rec)
        if best is None:
            return None
        return self.live_record(best[1].uid) or best[1]


def pick_container(rec: PodRecord, name: str, container: str) -> str:
    names = rec.container_names or list(rec.run.containers)
    if not container:
        regular = [n for n in names if not rec.run.containers.get(n) or not rec.run.containers[n].init]
        if len(regular) == 1:
            return regular[0]
        raise errors.BadRequest(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(regular)}]")
    if container not in rec.run.containers:
        raise errors.BadRequest(f"container {container} is not valid for pod {name}")
    return container


def _checked(source: LogSource, path: str) -> str:
    roots = [source.pods_root] + ([source.log_dirs.pods] if source.log_dirs is not None else [])
    if not any(layout.inside(root, path) for root in roots):
        log.warning("refused to serve %s: it resolves outside %s", path, " and ".join(map(str, roots)))
        raise errors.BadRequest("the log file is outside the agent's pods directory")
    return path


def _run_log(source: LogSource, rec: PodRecord, container: str, run: int) -> tuple[str, bool]:
    """(the run's log, whether it is a CRI log). The CRI file where it exists; else the flat file
    an agent before it wrote (a pod started before an upgrade keeps its logs readable); else the
    CRI file that a run writing nothing never made (it reads as empty)."""
    if source.log_dirs is not None:
        path = layout.cri_log_file(source.log_dirs.pods, rec.namespace, rec.name, rec.uid, container, run)
        if os.path.lexists(path):
            return path, True
        flat = layout.log_file(source.pods_root, rec.uid, container, run)
        return (flat, False) if os.path.exists(flat) else (path, True)
    return layout.log_file(source.pods_root, rec.uid, container, run), False


def is_cri(source: LogSource, path: str) -> bool:
    return source.log_dirs is not None and not path.startswith(os.fspath(source.pods_root) + "/")


def open_log(source: LogSource, req: api_pb2.PodLogsRequest) -> tuple[str, Callable[[], bool], tuple]:
    """Resolve a request to (log file, is-the-run-still-going, samples); raises StatusError."""
    check_pod_log_request(req)
    namespace = req.namespace or "default"
    rec = source.record(req.pod_uid) if req.pod_uid else source.find(namespace, req.name)
    if rec is not None and (rec.namespace, rec.name) != (namespace, req.name):
        raise errors.NotFound(f'pods "{req.name}" not found')
    if rec is None:
        if req.pod_uid:
            # The pod is bound here but nothing of it has started yet.
            what = f'container "{req.container}"' if req.container else "the container"
            raise errors.BadRequest(f'{what} in pod "{req.name}" is waiting to start: ContainerCreating')
        raise errors.NotFound(f'pods "{req.name}" not found')
    container = pick_container(rec, req.name, req.container)
    cr = rec.run.containers[container]
    run = cr.restart_count
    if req.previous:
        run -= 1
        path, cri = _run_log(source, rec, container, run) if run >= 0 else ("", False)
        if run < 0 or not (cri or os.path.exists(path)):
            raise errors.BadRequest(f'previous terminated container "{container}" in pod "{req.name}" not found')
        return _checked(source, path), lambda: False, source.log_manager.samples(path)
    path, cri = _run_log(source, rec, container, run)
    path = _checked(source, path)
    if not os.path.exists(path) and not (cri and cr.container_id):
        reason = cr.waiting_reason or "ContainerCreating"
        raise errors.BadRequest(f'container "{container}" in pod "{req.name}" is waiting to start: {reason}')
    uid = rec.uid
    return path, lambda: source.run_active(uid, container, run), source.log_manager.samples(path)


async def pod_logs(source: LogSource, req: api_pb2.PodLogsRequest) -> AsyncIterator[api_pb2.LogChunk]:
    path, running, samples = open_log(source, req)
    opts = logs.LogOptions(
        follow=req.follow,
        tail_lines=req.tail_lines if req.HasField("tail_lines") else None,
        since_seconds=req.since_seconds if req.HasField("since_seconds") else None,
        limit_bytes=req.limit_bytes if req.HasField("limit_bytes") else None,
        timestamps=req.timestamps,
    )
    chunks = (crireader.stream_log(path, opts, running) if is_cri(source, path)
              else logs.stream_log(path, samples, opts, running))
    async for data in chunks:
        yield api_pb2.LogChunk(data=data)


# ---------------------------------------------------------------------------------------------
# Stats

def _cpu_busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


async def node_stats(node: str, containers: Callable[[], list[tuple[str, str, str, int]]]) -> api_pb2.NodeStatsResponse:
    """Usage of the node and of each pod's containers, from two samples STATS_SAMPLE apart.

    containers() lists (namespace, pod, container, session id) of the running containers.
    """
    cpus = psutil.cpu_count() or 1
    running = containers()
    sids = {sid for *_, sid in running}
    t0, busy0 = time.monotonic(), _cpu_busy()
    before = procfs.scan_sessions(sids) if sids else {}
    await asyncio.sleep(STATS_SAMPLE)
    t1, busy1 = time.monotonic(), _cpu_busy()
    after = procfs.scan_sessions(sids) if sids else {}
    elapsed = max(t1 - t0, 1e-3)
    vm = psutil.virtual_memory()
    resp = api_pb2.NodeStatsResponse()
    resp.node.name = node
    resp.node.cpu_millicores = int(max(busy1 - busy0, 0.0) / elapsed * 1000)
    resp.node.memory_bytes = int(vm.total - vm.available)
    resp.node.cpu_capacity_millicores = cpus * 1000
    resp.node.memory_capacity_bytes = int(vm.total)
    pods: dict[tuple[str, str], api_pb2.PodUsage] = {}
    for ns, pod, container, sid in running:
        a, b = after.get(sid), before.get(sid)
        usage = api_pb2.ResourceUsage(name=container)
        if a is not None:
            usage.memory_bytes = a.rss_bytes
            if b is not None:
                usage.cpu_millicores = int(max(a.cpu_ticks - b.cpu_ticks, 0) / procfs.CLK_TCK / elapsed * 1000)
        entry = pods.get((ns, pod))
        if entry is None:
            entry = pods[(ns, pod)] = api_pb2.PodUsage(namespace=ns, name=pod)
            entry.usage.name = pod
        entry.containers.append(usage)
        entry.usage.cpu_millicores += usage.cpu_millicores
        entry.usage.memory_bytes += usage.memory_bytes
    resp.pods.extend(pods.values())
    return resp


# ---------------------------------------------------------------------------------------------
# gRPC

_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def peer_common_name(context: grpc.aio.ServicerContext) -> str:
    found = (context.auth_context() or {}).get("x509_common_name") or [b""]
    return bytes(found[0]).decode(errors="replace")


# (the request, its stdin: the caller's later messages' bytes) -> the command's output.
Execute = Callable[[api_pb2.ExecRequest, AsyncIterator[bytes]], AsyncIterator[api_pb2.ExecOutput]]


def _no_exec(request: api_pb2.ExecRequest, stdin: AsyncIterator[bytes]) -> AsyncIterator[api_pb2.ExecOutput]:
    raise errors.BadRequest("this agent runs no commands in pods")


# (the request, the caller's later messages' bytes) -> the attach's answer (see Attach in api.proto).
AttachStdin = Callable[[api_pb2.AttachRequest, AsyncIterator[bytes]], AsyncIterator[api_pb2.AttachOutput]]


def _no_attach(request: api_pb2.AttachRequest, stdin: AsyncIterator[bytes]) -> AsyncIterator[api_pb2.AttachOutput]:
    raise errors.BadRequest("this agent attaches to no containers")


class NodeAgentServicer(api_pb2_grpc.NodeAgentServicer):
    """execute: resolves an exec request to its command's output stream (raises StatusError)."""

    def __init__(self, node: str, source: LogSource,
                 containers: Callable[[], list[tuple[str, str, str, int]]],
                 require_control_plane: bool = False, execute: Execute = _no_exec,
                 attach: AttachStdin = _no_attach) -> None:
        self.node = node
        self.source = source
        self.containers = containers
        self.execute = execute
        self.attach = attach
        # With TLS, only the control plane's client certificate may call (TLS checked the CA).
        self.require_control_plane = require_control_plane

    async def _check_caller(self, context: grpc.aio.ServicerContext) -> None:
        if self.require_control_plane and peer_common_name(context) != CONTROL_PLANE_CN:
            await self._abort(context, errors.Forbidden(
                f'User "{peer_common_name(context) or "unknown"}" cannot reach the agent of node "{self.node}": '
                "only the control plane may"))

    async def _abort(self, context: grpc.aio.ServicerContext, err: errors.StatusError) -> NoReturn:
        await context.abort(_STATUS.get(err.code, grpc.StatusCode.UNKNOWN), err.message,
                            trailing_metadata=(("ketch-reason", err.reason),))
        raise AssertionError("context.abort raises")

    async def PodLogs(self, request: api_pb2.PodLogsRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.LogChunk]:
        await self._check_caller(context)
        try:
            async for chunk in pod_logs(self.source, request):
                yield chunk
        except errors.StatusError as err:
            await self._abort(context, err)
        except Exception as err:
            log.exception("PodLogs failed")
            await self._abort(context, errors.InternalError(f"internal error: {err}"))

    async def Exec(self, requests: AsyncIterator[api_pb2.ExecInput],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.ExecOutput]:
        async for out in self._duplex("Exec", requests, context, self.execute):
            yield out

    async def Attach(self, requests: AsyncIterator[api_pb2.AttachInput],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.AttachOutput]:
        async for out in self._duplex("Attach", requests, context, self.attach):
            yield out

    async def _duplex(self, method: str, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                      handle: Callable[[Any, AsyncIterator[bytes]], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        """A stream whose first message carries the request and the rest the caller's stdin."""
        await self._check_caller(context)

        async def stdin() -> AsyncIterator[bytes]:
            async for message in requests:
                if message.stdin:
                    yield message.stdin

        try:
            first = await anext(aiter(requests), None)
            if first is None:
                raise errors.BadRequest(f"the {method} stream ended before its request")
            async for out in handle(first.request, stdin()):
                yield out
        except errors.StatusError as err:
            await self._abort(context, err)
        except Exception as err:
            log.exception("%s failed", method)
            await self._abort(context, errors.InternalError(f"internal error: {err}"))

    async def NodeStats(self, request: api_pb2.NodeStatsRequest,
                        context: grpc.aio.ServicerContext) -> api_pb2.NodeStatsResponse:
        await self._check_caller(context)
        if request.node and request.node != self.node:
            await self._abort(context, errors.NotFound(f'nodes "{request.node}" not found'))
        try:
            return await node_stats(self.node, self.containers)
        except Exception as err:
            log.exception("NodeStats failed")
            await self._abort(context, errors.InternalError(f"internal error: {err}"))


class ServingCertificate:
    """The serving certificate and key the next handshake uses, replaced on renewal."""

    def __init__(self, ca: bytes, cert: bytes, key: bytes) -> None:
        self.ca = ca
        self._pending: tuple[bytes, bytes] | None = None
        self.initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def replace(self, cert: bytes, key: bytes) -> None:
        self._pending = (cert, key)

    def fetch(self) -> object | None:
        """gRPC asks before each handshake: a new configuration, or None for the same."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        return grpc.ssl_server_certificate_configuration([(pending[1], pending[0])], root_certificates=self.ca)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self.initial, self.fetch, require_client_authentication=True)


async def start_server(servicer: NodeAgentServicer, listen: str,
                       serving: ServingCertificate | None = None) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    api_pb2_grpc.add_NodeAgentServicer_to_server(servicer, server)
    if serving is not None:
        port = server.add_secure_port(listen, serving.credentials())
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, port
