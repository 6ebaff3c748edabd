"""The request chain, in kube-apiserver's order; every request, over gRPC or in-process, takes it:

    authenticate -> impersonate -> max-in-flight -> read the attributes -> authorize
        -> decode the object or apply the patch -> mutating admission -> validate
        -> validating admission -> store                                       (service.py)

Each step is a small named part: the authenticators (authn.py), the in-flight limiter
(inflight.py), the attributes (request.py), the authorizers (authz.py), then the service with its
admission plugins (admission.py) and strategies (controlplane.registry). Nothing unauthenticated
or unauthorized reaches a decoder: attributes come from the request and an object's metadata
alone. A Batch is authorized operation by operation; a refused one fails alone. Access reviews
and whoami (create-only kinds) are answered by reviews.py instead of being stored.

Every request is counted and timed here once (apiserver_request_total and
apiserver_request_duration_seconds, controlplane/metrics.py), refused ones too, with the code
kube-apiserver would answer; each operation of a Batch counts as the request it stands for, and
a watch or log stream is counted when it ends, as kube-apiserver counts long-running requests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from controlplane import metrics
from ketch.api import errors
from ketch.api.kinds import kind_info
from ketch.v1 import api_pb2

from .authn import Authenticators, Credentials, default_authenticators
from .authz import Authorizers, default_authorizers, forbidden_message
from .impersonation import GROUP, UID, USER, impersonate
from .inflight import MaxInFlight
from .nodecerts import NodeCertificateSigner
from .nodeproxy import NodeProxy
from .request import BATCH_METHODS, Attributes, UserInfo, attributes_of, batch_op
from .reviews import Reviews
from .serverpki import METHOD as FETCH_SERVER_PKI
from .serverpki import SERVER_TOKEN_ONLY, ServerPKIServer
from .serverpki import attributes as serverpki_attributes
from .service import APIService
from .watch import WatchLimits

NOT_ALLOWED = "the server does not allow this method on the requested resource"
UNARY_METHODS = ("Create", "Get", "List", "Update", "Patch", "Delete", "Batch", "NodeStats", "Version",
                 "SignNodeCertificate", FETCH_SERVER_PKI)
STREAM_METHODS = ("Watch", "WatchBatched", "PodLogs", "Exec", "Attach")


class RequestChain:
    def __init__(self, service: APIService, proxy: NodeProxy, *,
                 authenticators: Authenticators | None = None, authorizers: Authorizers | None = None,
                 inflight: MaxInFlight | None = None, max_batch_bytes: int | None = None,
                 watch_limits: WatchLimits | None = None, signer: NodeCertificateSigner | None = None,
                 server_pki: ServerPKIServer | None = None) -> None:
        self.service = service
        self.proxy = proxy
        self.authenticators = authenticators or default_authenticators()
        self.authorizers = authorizers or default_authorizers()
        self.inflight = inflight  # None: no limit (the control plane's own clients)
        self.max_batch_bytes = max_batch_bytes
        self.watch_limits = watch_limits
        self.signer = signer  # None: no PKI (--insecure, in-process chains)
        self.server_pki = server_pki  # likewise
        self.reviews = Reviews(self.authorizers)

    def authorized(self, user: UserInfo, method: str, req: Message) -> Attributes:
        attrs = attributes_of(user, method, req)
        self.authorizers.check(attrs)
        return attrs

    def user_of(self, credentials: Credentials) -> UserInfo:
        """Who sent the request, then whom it acts as."""
        return impersonate(self.authenticators.authenticate(credentials), credentials, self.authorizers)

    def _batch_attributes(self, user: UserInfo, req: api_pb2.BatchRequest,
                          read: list[Attributes | None]) -> list[Attributes | errors.StatusError]:
        """Each op's attributes, or why it is refused; read gets the attributes of every op
        whose attributes could be read, refused or not (for its metrics)."""
        out: list[Attributes | errors.StatusError] = []
        for op in req.ops:
            attrs = None
            try:
                attrs = batch_op(user, op)
                self.authorizers.check(attrs)
                if _create_only(attrs):
                    raise errors.MethodNotAllowed(f"{attrs.resource} are not answered in a Batch: create them alone")
                out.append(attrs)
            except errors.StatusError as err:
                out.append(err)
            read.append(attrs)
        return out

    async def unary(self, method: str, req: Message, credentials: Credentials) -> Any:
        started = time.perf_counter()
        seen = _Seen()
        try:
            user = self.user_of(credentials)
            if method == FETCH_SERVER_PKI and not credentials.loopback and \
                    any(credentials.metadata.get(k) for k in (USER, GROUP, UID)):
                # The CA key goes to the server token itself, never to someone acting as its user.
                raise errors.Forbidden(forbidden_message(serverpki_attributes(user), SERVER_TOKEN_ONLY))
            if self.inflight is None:
                result = await self._serve(method, req, user, seen)
            else:
                with self.inflight.slot(method):
                    result = await self._serve(method, req, user, seen)
        except Exception as err:
            if method == "Batch":
                _record_batch(req, seen.batch, metrics.http_code(err), None, time.perf_counter() - started)
            else:
                metrics.record_request(method, seen.attrs, getattr(req, "dry_run", False), metrics.http_code(err),
                                       time.perf_counter() - started)
            raise
        if method == "Batch":
            _record_batch(req, seen.batch, "", result, time.perf_counter() - started)
        else:
            metrics.record_request(method, seen.attrs, getattr(req, "dry_run", False), metrics.success_code(method),
                                   time.perf_counter() - started)
        return result

    async def _serve(self, method: str, req: Any, user: UserInfo, seen: _Seen) -> Any:
        service = self.service
        if method == "Batch":
            return await service.batch(req, self._batch_attributes(user, req, seen.batch),
                                       max_bytes=self.max_batch_bytes)
        seen.attrs = attrs = attributes_of(user, method, req)
        self.authorizers.check(attrs)
        if _create_only(attrs):
            if method != "Create":
                raise errors.MethodNotAllowed(NOT_ALLOWED)
            return self.reviews.create(req, attrs)
        if method == "Create":
            return await service.create(req, attrs)
        if method == "Get":
            return await service.get(req, attrs)
        if method == "List":
            return await service.list(req, attrs)
        if method == "Update":
            return await service.update(req, attrs)
        if method == "Patch":
            return await service.patch(req, attrs)
        if method == "Delete":
            return await service.delete(req, attrs)
        if method == "NodeStats":
            return await self.proxy.node_stats(req)
        if method == "Version":
            return await service.version(req, attrs)
        if method == "SignNodeCertificate":
            if self.signer is None:
                raise errors.BadRequest("this control plane signs no certificates: it runs without TLS (--insecure)")
            return await self.signer.sign(req, attrs)
        if method == FETCH_SERVER_PKI:
            if self.server_pki is None:
                raise errors.BadRequest("this control plane has no PKI to share: it runs without TLS (--insecure)")
            return self.server_pki.fetch(attrs)
        raise errors.BadRequest(f"{method} is not a unary method")

    async def stream(self, method: str, req: Any, credentials: Credentials,
                     inputs: AsyncIterator[Any] | None = None) -> AsyncIterator[Any]:
        """Long-running: authenticated and authorized, never counted in flight; counted and timed
        when it ends (a stream the client closes counts as answered: 200). inputs: what the
        caller sends after its request (Exec's and Attach's input messages: the stdin they feed)."""
        started = time.perf_counter()
        attrs: Attributes | None = None
        code = "200"
        try:
            user = self.user_of(credentials)
            attrs = attributes_of(user, method, req)
            self.authorizers.check(attrs)
            if _create_only(attrs):
                raise errors.MethodNotAllowed(NOT_ALLOWED)
            if method == "Watch":
                items: AsyncIterator[Any] = self.service.watch(req, attrs, self.watch_limits)
            elif method == "WatchBatched":
                items = self.service.watch_batched(req, attrs, self.watch_limits)
            elif method == "PodLogs":
                items = self.proxy.pod_logs(req)
            elif method == "Exec":
                items = self.proxy.exec(req, inputs)
            elif method == "Attach":
                items = self.proxy.attach(req, inputs)
            else:
                raise errors.BadRequest(f"{method} is not a streaming method")
            async for item in items:
                yield item
                del item  # a stream waiting for its next item holds none it sent
        except Exception as err:
            code = metrics.http_code(err)
            raise
        finally:
            metrics.record_request(method, attrs, False, code, time.perf_counter() - started)


class _Seen:
    """What the chain read of a request before it was answered or refused: its attributes (a
    Batch: each op's, None where they could not be read)."""

    __slots__ = ("attrs", "batch")

    def __init__(self) -> None:
        self.attrs: Attributes | None = None
        self.batch: list[Attributes | None] = []


_BATCH_SUCCESS = {"create": "201", "update": "200", "patch": "200", "delete": "200"}


def _record_batch(req: Any, read: list[Attributes | None], failed: str,
                  resp: api_pb2.BatchResponse | None, seconds: float) -> None:
    """One count per op, as the request it stands for, with its own result's code (failed: the
    whole Batch's); each took the Batch's time."""
    results = resp.results if resp is not None else ()
    for i, op in enumerate(req.ops):
        which = op.WhichOneof("op")
        if which is None:
            continue
        if failed:
            code = failed
        elif i < len(results) and results[i].code:
            code = metrics.HTTP_CODES.get(results[i].reason, "500")
        else:
            code = _BATCH_SUCCESS[which]
        inner = getattr(op, which)
        metrics.record_request(BATCH_METHODS[which], read[i] if i < len(read) else None, inner.dry_run, code, seconds)


def _create_only(attrs: Attributes) -> bool:
    return bool(attrs.kind) and kind_info(attrs.kind).create_only
