"""--metrics-listen: the agent's HTTPS side port, the kubelet's /metrics and health paths.

Authentication and authorization are the kubelet's webhook modes (--authentication-token-webhook,
--authorization-mode=Webhook), since the agent holds no user database:
- a client certificate must chain to the cluster CA (the TLS handshake checks it, as the
  kubelet's --client-ca-file); its CN is the user and its O the groups;
- a bearer token is put to the control plane: a SelfSubjectReview sent with that token answers
  who it is (the TokenReview the kubelet sends, which Ketch does not serve), cached 2 minutes;
- the user may read /metrics when the control plane's SubjectAccessReview allows `get` on
  `nodes/metrics` of this node (the kubelet's path-to-subresource mapping), cached 5 minutes
  when allowed and 30 seconds when not, as the kubelet's defaults.
No credentials: 401; not allowed: 403 (metav1.Status JSON). /livez, /readyz and /healthz are
public, as the kubelet's healthz port is. Against a --insecure control plane (no credentials at
all) the port is plain HTTP and open, as the agent's gRPC port then is.

Checks: ping; registered (the Node was registered with the control plane; readyz, healthz);
syncloop (the heartbeat loop ran an iteration recently: a wedged loop fails it; every path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ketch.api import errors
from ketch.client.clientset import Client, connect
from ketch.client.transport import TLSConfig
from ketch.security import certs
from ketch.serving import http, tls
from ketch.serving.healthz import PING, Check, HealthEndpoints
from ketch.serving.metrics import METRICS_PATH, render
from ketch.v1 import authorization_pb2

log = logging.getLogger(__name__)

AUTHN_TTL = 120.0
AUTHZ_ALLOWED_TTL = 300.0
AUTHZ_DENIED_TTL = 30.0
MAX_CACHED = 1024
REVIEW_TIMEOUT = 5.0


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


class _TTLCache:
    def __init__(self) -> None:
        self._items: dict[object, tuple[float, object]] = {}

    def get(self, key: object) -> object | None:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: object, value: object, ttl: float) -> None:
        if len(self._items) >= MAX_CACHED:
            self._items.clear()
        self._items[key] = (time.monotonic() + ttl, value)


class Webhook:
    """The control plane's answers, as the kubelet's webhook authenticator and authorizer."""

    def __init__(self, client: Client, server: str, ca: Callable[[], bytes], node: str) -> None:
        self.client = client
        self.server = server
        self.ca = ca
        self.node = node
        self._tokens = _TTLCache()
        self._decisions = _TTLCache()

    async def user_of_token(self, token: str) -> User | None:
        cached = self._tokens.get(token)
        if cached is not None:
            return cached if isinstance(cached, User) else None
        asker = connect(self.server, tls=TLSConfig(self.ca()), token=token, timeout=REVIEW_TIMEOUT)
        try:
            review = authorization_pb2.SelfSubjectReview(api_version="authentication.k8s.io/v1",
                                                         kind="SelfSubjectReview")
            answer = await asker.create(review)
            info = answer.status.user_info
            user: User | None = User(info.username, tuple(info.groups), info.uid)
        except errors.Unauthorized:
            user = None
        finally:
            await asker.close()
        self._tokens.put(token, user if user is not None else False, AUTHN_TTL)
        return user

    async def allowed(self, user: User, subresource: str) -> tuple[bool, str]:
        key = (user, subresource)
        cached = self._decisions.get(key)
        if isinstance(cached, tuple):
            return cached[0], cached[1]
        sar = authorization_pb2.SubjectAccessReview(api_version="authorization.k8s.io/v1", kind="SubjectAccessReview")
        sar.spec.user, sar.spec.uid = user.name, user.uid
        sar.spec.groups.extend(user.groups)
        ra = sar.spec.resource_attributes
        ra.verb, ra.resource, ra.subresource, ra.name = "get", "nodes", subresource, self.node
        answer = await self.client.create(sar)
        decision = (bool(answer.status.allowed), answer.status.reason)
        self._decisions.put(key, decision, AUTHZ_ALLOWED_TTL if decision[0] else AUTHZ_DENIED_TTL)
        return decision


class AgentHealth:
    """What the checks read: the registrar's Node uid, and when the heartbeat loop last ran."""

    def __init__(self, registered: Callable[[], bool], heartbeat_interval: float) -> None:
        self.registered = registered
        self.last_loop = time.monotonic()
        self.last_renewal = 0.0  # monotonic; 0: never
        # A loop iteration waits at most one interval, and a renewal that hangs is cut at the
        # client's timeout (30 s): past both, the loop is wedged.
        self.max_gap = 2 * heartbeat_interval + 30.0

    def loop_ran(self, renewed: bool) -> None:
        self.last_loop = time.monotonic()
        if renewed:
            self.last_renewal = self.last_loop

    async def check_registered(self) -> str:
        return "" if self.registered() else "the node is not registered with the control plane yet"

    async def check_syncloop(self) -> str:
        gap = time.monotonic() - self.last_loop
        if gap > self.max_gap:
            renewed = (f"{time.monotonic() - self.last_renewal:.0f}s ago" if self.last_renewal else "never")
            return f"sync loop took longer than expected: no heartbeat for {gap:.0f}s (last renewal {renewed})"
        return ""

    def endpoints(self) -> HealthEndpoints:
        registered = Check("registered", self.check_registered)
        syncloop = Check("syncloop", self.check_syncloop)
        return HealthEndpoints({"/livez": [PING, syncloop], "/readyz": [PING, registered, syncloop],
                                "/healthz": [PING, registered, syncloop]})


class SidePort:
    def __init__(self, health: HealthEndpoints, webhook: Webhook | None) -> None:
        self.health = health
        self.webhook = webhook  # None: no security (an --insecure control plane)

    async def _user(self, request: http.Request) -> User | None:
        if request.peer_certificate:
            name, groups = certs.user_of(certs.load_cert(request.peer_certificate))
            if name:
                return User(name, (*groups, "system:authenticated"))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() and self.webhook is not None:
            return await self.webhook.user_of_token(token.strip())
        return None

    async def __call__(self, request: http.Request) -> http.Response:
        if self.health.handles(request.path):
            return await self.health.serve(request)
        if request.path != METRICS_PATH:
            return http.text(404, "404 page not found\n")
        if self.webhook is not None:
            denied = await self._authorize(request, self.webhook)
            if denied is not None:
                return denied
        return await render(request)

    async def _authorize(self, request: http.Request, webhook: Webhook) -> http.Response | None:
        """None when allowed; else the kubelet's words, in a metav1.Status."""
        try:
            user = await self._user(request)
        except (errors.StatusError, OSError) as err:
            log.warning("cannot authenticate a request for %s: %s", request.path, err)
            return http.status_error(401, "Unauthorized", "Unauthorized")
        if user is None:
            return http.status_error(401, "Unauthorized", "Unauthorized")
        what = f"user={user.name}, verb=get, resource=nodes, subresource=metrics"
        try:
            allowed, reason = await webhook.allowed(user, "metrics")
        except (errors.StatusError, OSError) as err:
            log.error("Authorization error (%s): %s", what, err)
            return http.status_error(500, "InternalError", f"Authorization error ({what})")
        if not allowed:
            log.info("Forbidden (%s). Reason: %r.", what, reason)
            return http.status_error(403, "Forbidden", f"Forbidden ({what})")
        return None


@dataclass
class Serving:
    cert: bytes
    key: bytes
    ca: bytes


async def serve(listen: str, health: AgentHealth, serving: Serving | None, webhook: Webhook | None,
                ) -> tuple[http.HTTPServer, int, Callable[[bytes, bytes], Awaitable[None]]]:
    """Start the side port; returns the server, its port, and what loads a renewed certificate."""
    context = None
    if serving is not None:
        context = await asyncio.to_thread(tls.server_context, serving.cert, serving.key, serving.ca)
    server = http.HTTPServer(SidePort(health.endpoints(), webhook), context)
    port = await server.start(listen)

    async def renewed(cert: bytes, key: bytes) -> None:
        if context is not None:
            await asyncio.to_thread(tls.replace, context, cert, key)

    return server, port, renewed
