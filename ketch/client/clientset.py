"""An async clientset: typed create/get/list/watch/update/patch/delete over any transport.

Objects go in and come out as the generated messages (ketch.v1.*_pb2); kinds are named by
their Kubernetes kind ("Pod") or given as a message class. Warnings the server attaches to a
write go to `on_warning`, as client-go's WarningHandler.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import Message

from ketch.api import errors
from ketch.api.kinds import KindInfo, info_for_type_url, info_of, kind_info
from ketch.v1 import api_pb2, core_pb2

from .transport import GrpcTransport, TLSConfig, Transport

M = TypeVar("M", bound=Message)
KindRef = str | type[Message]


def _info(kind: KindRef) -> KindInfo:
    if isinstance(kind, str):
        return kind_info(kind)
    return info_of(kind())


def pack(obj: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(obj)
    return out


def unpack(obj: any_pb2.Any) -> Message:
    info = info_for_type_url(obj.type_url)
    return info.message.FromString(obj.value)


class WatchEvent:
    """One event of a watch. (Written out: a dataclass costs every CLI command ~1 ms to define.)"""

    __slots__ = ("object", "resource_version", "type")

    def __init__(self, type: str, object: Message | None, resource_version: str) -> None:
        self.type = type
        self.object = object
        self.resource_version = resource_version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatchEvent) and (self.type, self.object, self.resource_version) == (
            other.type, other.object, other.resource_version)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"WatchEvent(type={self.type!r}, object={self.object!r}, resource_version={self.resource_version!r})"


class BatchOutcome:
    """One batch op's result: the object (None if gone) or the error. The object is decoded on
    first use: most batch writers (binds, finalizer removals, status writes) only look at errors."""

    __slots__ = ("_any", "_object", "deleted", "error")

    def __init__(self, obj: Message | None, error: errors.StatusError | None, deleted: bool = False,
                 packed: any_pb2.Any | None = None) -> None:
        self._object = obj
        self._any = packed
        self.error = error
        self.deleted = deleted

    @property
    def object(self) -> Any:
        """The decoded object (its type is the op's kind, known only at run time), or None."""
        if self._any is not None:
            self._object, self._any = unpack(self._any), None
        return self._object

    @property
    def data(self) -> bytes:
        """The object serialized, without decoding it (b"" if none): for callers that keep it."""
        if self._any is not None:
            return self._any.value
        return self._object.SerializeToString() if self._object is not None else b""

    def __repr__(self) -> str:
        return f"BatchOutcome(object={self.object!r}, error={self.error!r}, deleted={self.deleted})"


class Batch:
    """Writes to send in one Batch call (one storage commit); each succeeds or fails alone."""

    def __init__(self) -> None:
        self.ops: list[api_pb2.BatchOp] = []

    def __len__(self) -> int:
        return len(self.ops)

    def create(self, obj: Message) -> Batch:
        self.ops.append(api_pb2.BatchOp(create=api_pb2.CreateRequest(object=pack(obj))))
        return self

    def update(self, obj: Message) -> Batch:
        self.ops.append(api_pb2.BatchOp(update=api_pb2.UpdateRequest(object=pack(obj))))
        return self

    def update_status(self, obj: Message) -> Batch:
        self.ops.append(api_pb2.BatchOp(update=api_pb2.UpdateRequest(object=pack(obj), subresource="status")))
        return self

    def bind(self, pod: core_pb2.Pod, node: str) -> Batch:
        """Assign an unbound pod to a node (pods/binding): a Conflict if it is bound or being
        deleted already, or if the name now belongs to another pod (uid)."""
        self.ops.append(api_pb2.BatchOp(update=api_pb2.UpdateRequest(
            object=pack(binding(pod, node)), subresource="binding")))
        return self

    def patch(self, kind: KindRef, name: str, patch: dict[str, Any] | list[Any] | str, namespace: str = "",
              patch_type: str = "merge", subresource: str = "") -> Batch:
        self.ops.append(api_pb2.BatchOp(patch=_patch_request(kind, name, patch, namespace, patch_type, subresource)))
        return self

    def delete(self, kind: KindRef, name: str, namespace: str = "", propagation_policy: str = "",
               grace_period_seconds: int | None = None, uid: str = "", dry_run: bool = False) -> Batch:
        self.ops.append(api_pb2.BatchOp(delete=_delete_request(
            kind, name, namespace, propagation_policy, grace_period_seconds, uid, dry_run)))
        return self


def binding(pod: core_pb2.Pod, node: str) -> core_pb2.Pod:
    """The request of a binding: the pod's identity and the node. Like Kubernetes' Binding it
    carries no resourceVersion: a pod whose labels or status changed meanwhile is still bound."""
    out = core_pb2.Pod(api_version="v1", kind="Pod")
    md, pmd = out.metadata, pod.metadata
    md.name, md.namespace, md.uid = pmd.name, pmd.namespace, pmd.uid
    out.spec.node_name = node
    return out


def _patch_request(kind: KindRef, name: str, patch: dict[str, Any] | list[Any] | str, namespace: str,
                   patch_type: str, subresource: str, dry_run: bool = False) -> api_pb2.PatchRequest:
    text = patch if isinstance(patch, str) else json.dumps(patch)
    return api_pb2.PatchRequest(kind=_info(kind).kind, namespace=namespace, name=name,
                                patch_type=patch_type, patch=text, subresource=subresource, dry_run=dry_run)


def _delete_request(kind: KindRef, name: str, namespace: str, propagation_policy: str,
                    grace_period_seconds: int | None, uid: str, dry_run: bool = False) -> api_pb2.DeleteRequest:
    req = api_pb2.DeleteRequest(kind=_info(kind).kind, namespace=namespace, name=name,
                                propagation_policy=propagation_policy, dry_run=dry_run)
    if grace_period_seconds is not None:
        req.grace_period_seconds = grace_period_seconds
    if uid:
        req.preconditions.uid = uid
    return req


class Client:
    def __init__(self, transport: Transport, on_warning: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.on_warning = on_warning

    def _warn(self, resp: api_pb2.ObjectResponse) -> None:
        if self.on_warning is not None:
            for w in resp.warnings:
                self.on_warning(w)

    async def create(self, obj: M, dry_run: bool = False) -> M:
        """dry_run: the server decides everything and answers, but stores nothing (--dry-run=server)."""
        resp = await self.transport.unary("Create", api_pb2.CreateRequest(object=pack(obj), dry_run=dry_run))
        self._warn(resp)
        return unpack(resp.object)  # type: ignore[return-value]

    async def get(self, kind: KindRef, name: str, namespace: str = "") -> Any:
        info = _info(kind)
        resp = await self.transport.unary("Get", api_pb2.GetRequest(kind=info.kind, namespace=namespace, name=name))
        return unpack(resp.object)

    async def list(self, kind: KindRef, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> tuple[list[Any], str]:
        info = _info(kind)
        resp = await self.transport.unary("List", api_pb2.ListRequest(
            kind=info.kind, namespace=namespace, label_selector=label_selector, field_selector=field_selector))
        parse = info.message.FromString
        return [parse(item.value) for item in resp.items], resp.resource_version

    async def update(self, obj: M, dry_run: bool = False) -> M:
        resp = await self.transport.unary("Update", api_pb2.UpdateRequest(object=pack(obj), dry_run=dry_run))
        self._warn(resp)
        return unpack(resp.object)  # type: ignore[return-value]

    async def update_status(self, obj: M) -> M:
        resp = await self.transport.unary("Update", api_pb2.UpdateRequest(object=pack(obj), subresource="status"))
        return unpack(resp.object)  # type: ignore[return-value]

    async def patch(self, kind: KindRef, name: str, patch: dict[str, Any] | builtins.list[Any] | str,
                    namespace: str = "", patch_type: str = "merge", subresource: str = "",
                    dry_run: bool = False) -> Any:
        resp = await self.transport.unary(
            "Patch", _patch_request(kind, name, patch, namespace, patch_type, subresource, dry_run))
        self._warn(resp)
        return unpack(resp.object)

    async def delete(self, kind: KindRef, name: str, namespace: str = "", propagation_policy: str = "",
                     grace_period_seconds: int | None = None, uid: str = "",
                     dry_run: bool = False) -> tuple[Any, bool]:
        """Returns (the object's last state, whether it is gone now, or would be for a dry run)."""
        resp = await self.transport.unary("Delete", _delete_request(
            kind, name, namespace, propagation_policy, grace_period_seconds, uid, dry_run))
        self._warn(resp)
        return (unpack(resp.object) if resp.object.type_url else None), resp.deleted

    async def batch(self, batch: Batch | Iterable[api_pb2.BatchOp]) -> builtins.list[BatchOutcome]:
        ops = batch.ops if isinstance(batch, Batch) else list(batch)
        if not ops:
            return []
        resp = await self.transport.unary("Batch", api_pb2.BatchRequest(ops=ops))
        out = []
        for r in resp.results:
            if r.code:
                out.append(BatchOutcome(None, errors.from_code(r.code, r.message, r.reason)))
            else:
                packed = r.response.object if r.response.object.type_url else None
                out.append(BatchOutcome(None, None, r.response.deleted, packed))
        return out

    async def watch(self, kind: KindRef, namespace: str = "", label_selector: str = "",
                    field_selector: str = "", resource_version: str = "",
                    allow_bookmarks: bool = True) -> AsyncGenerator[WatchEvent, None]:
        info = _info(kind)
        req = api_pb2.WatchRequest(kind=info.kind, namespace=namespace, label_selector=label_selector,
                                   field_selector=field_selector, resource_version=resource_version,
                                   allow_bookmarks=allow_bookmarks)
        parse = info.message.FromString
        async for batch in self.transport.stream("WatchBatched", req):
            # Handed out without a name: a loop variable would hold the last event's object (a
            # deleted pod's, after a load) for as long as the watch then stays quiet.
            events = deque(WatchEvent(ev.type, parse(ev.object.value) if ev.object.type_url else None,
                                      ev.resource_version) for ev in batch.events)
            del batch
            while events:
                yield events.popleft()

    async def pod_logs(self, name: str, namespace: str = "", container: str = "", follow: bool = False,
                       previous: bool = False, tail_lines: int | None = None,
                       since_seconds: int | None = None, timestamps: bool = False) -> AsyncGenerator[bytes, None]:
        req = api_pb2.PodLogsRequest(namespace=namespace, name=name, container=container, follow=follow,
                                     previous=previous, timestamps=timestamps)
        if tail_lines is not None:
            req.tail_lines = tail_lines
        if since_seconds is not None:
            req.since_seconds = since_seconds
        async for chunk in self.transport.stream("PodLogs", req):
            yield chunk.data

    async def exec(self, name: str, namespace: str, command: Sequence[str], container: str = "",
                   stdin: AsyncIterator[bytes] | None = None) -> AsyncGenerator[api_pb2.ExecOutput, None]:
        """A command in a running pod's container: its output, then (last) its exit code. With
        stdin, the command reads those bytes, then end of file (kubectl exec -i)."""
        req = api_pb2.ExecRequest(namespace=namespace, name=name, container=container, command=command,
                                  stdin=stdin is not None)

        async def inputs(chunks: AsyncIterator[bytes]) -> AsyncIterator[api_pb2.ExecInput]:
            async for chunk in chunks:
                yield api_pb2.ExecInput(stdin=chunk)

        async for out in self.transport.stream("Exec", req, None if stdin is None else inputs(stdin)):
            yield out

    async def attach(self, name: str, namespace: str, stdin: AsyncIterator[bytes],
                     container: str = "") -> AsyncGenerator[api_pb2.AttachOutput, None]:
        """Feed stdin to a running container's standard input (kubectl attach -i): one message
        once attached, then the stream ends when stdin has been written (or the container's
        stdin closed). The container's output is its log."""
        req = api_pb2.AttachRequest(namespace=namespace, name=name, container=container)
        accepted = asyncio.Event()

        async def inputs() -> AsyncIterator[api_pb2.AttachInput]:
            # Nothing is written before the server accepted the attach: a write that races a
            # refusal makes grpc.aio report INTERNAL "Internal error from Core" instead of the
            # server's status (grpc/grpc#36066), so a Forbidden would read as a crash.
            await accepted.wait()
            async for chunk in stdin:
                yield api_pb2.AttachInput(stdin=chunk)

        async for out in self.transport.stream("Attach", req, inputs()):
            accepted.set()
            yield out

    async def node_stats(self, node: str) -> api_pb2.NodeStatsResponse:
        return await self.transport.unary("NodeStats", api_pb2.NodeStatsRequest(node=node))

    async def sign_node_certificate(self, req: api_pb2.NodeCertificateRequest) -> api_pb2.NodeCertificateResponse:
        """A node's certificates (ketch-agent's join and renewal)."""
        return await self.transport.unary("SignNodeCertificate", req)

    async def fetch_server_pki(self) -> api_pb2.ServerPKIResponse:
        """The PKI control-plane replicas share (ketch-controlplane --join, with a server token)."""
        return await self.transport.unary("FetchServerPKI", api_pb2.ServerPKIRequest())

    async def version(self) -> api_pb2.VersionInfo:
        return await self.transport.unary("Version", api_pb2.VersionRequest(), timeout=10)

    async def close(self) -> None:
        await self.transport.close()


def connect(server: str, wait_for_ready: bool = False, timeout: float = 30.0,
            on_warning: Callable[[str], None] | None = None, tls: TLSConfig | None = None,
            token: str = "", metadata: Sequence[tuple[str, str]] = ()) -> Client:
    """A Client over gRPC to `HOST:PORT[,HOST:PORT]`: plaintext without tls (a control plane
    started with --insecure), else TLS with that CA and client certificate, and a bearer token;
    metadata (impersonation) goes with every call."""
    return Client(GrpcTransport(server, wait_for_ready=wait_for_ready, timeout=timeout, tls=tls, token=token,
                                metadata=metadata),
                  on_warning=on_warning)
