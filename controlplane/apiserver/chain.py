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
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from ketch.api import errors
from ketch.api.kinds import kind_info
from ketch.v1 import api_pb2

from .authn import Authenticators, Credentials, default_authenticators
from .authz import Authorizers, default_authorizers, forbidden_message
from .impersonation import GROUP, UID, USER, impersonate
from .inflight import MaxInFlight
from .nodecerts import NodeCertificateSigner
from .nodeproxy import NodeProxy
from .request import Attributes, UserInfo, attributes_of, batch_op
from .reviews import Reviews
from .serverpki import METHOD as FETCH_SERVER_PKI
from .serverpki import SERVER_TOKEN_ONLY, ServerPKIServer
from .serverpki import attributes as serverpki_attributes
from .service import APIService
from .watch import WatchLimits

NOT_ALLOWED = "the server does not allow this method on the requested resource"
UNARY_METHODS = ("Create", "Get", "List", "Update", "Patch", "Delete", "Batch", "NodeStats", "Version",
                 "SignNodeCertificate", FETCH_SERVER_PKI)
STREAM_METHODS = ("Watch", "WatchBatched", "PodLogs", "Exec")


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

    def _batch_attributes(self, user: UserInfo, req: api_pb2.BatchRequest) -> list[Attributes | errors.StatusError]:
        out: list[Attributes | errors.StatusError] = []
        for op in req.ops:
            try:
                attrs = batch_op(user, op)
                self.authorizers.check(attrs)
                if _create_only(attrs):
                    raise errors.MethodNotAllowed(f"{attrs.resource} are not answered in a Batch: create them alone")
                out.append(attrs)
            except errors.StatusError as err:
                out.append(err)
        return out

    async def unary(self, method: str, req: Message, credentials: Credentials) -> Any:
        user = self.user_of(credentials)
        if method == FETCH_SERVER_PKI and not credentials.loopback and \
                any(credentials.metadata.get(k) for k in (USER, GROUP, UID)):
            # The CA key goes to the server token itself, never to someone acting as its user.
            raise errors.Forbidden(forbidden_message(serverpki_attributes(user), SERVER_TOKEN_ONLY))
        if self.inflight is None:
            return await self._serve(method, req, user)
        with self.inflight.slot(method):
            return await self._serve(method, req, user)

    async def _serve(self, method: str, req: Any, user: UserInfo) -> Any:
        service = self.service
        if method == "Batch":
            return await service.batch(req, self._batch_attributes(user, req), max_bytes=self.max_batch_bytes)
        attrs = self.authorized(user, method, req)
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
        """Long-running: authenticated and authorized, never counted in flight. inputs: what the
        caller sends after its request (Exec's ExecInput messages: the command's stdin)."""
        user = self.user_of(credentials)
        attrs = self.authorized(user, method, req)
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
        else:
            raise errors.BadRequest(f"{method} is not a streaming method")
        async for item in items:
            yield item


def _create_only(attrs: Attributes) -> bool:
    return bool(attrs.kind) and kind_info(attrs.kind).create_only
