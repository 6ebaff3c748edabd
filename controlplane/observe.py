"""--metrics-listen: the control plane's HTTPS side port, kube-apiserver's /metrics, /livez,
/readyz and /healthz.

TLS with the API's own serving certificate; a client certificate is optional and, when given,
must chain to the cluster's client CA. Who is asking is decided by the API's own authenticators
(a client certificate, a bearer token of --token-auth-file or a bootstrap token), and whether
they may by its authorizers, as `get` on the non-resource path: `/metrics` needs a role such as
system:monitoring (401 without credentials, 403 without the right). A request with no
credentials at all is system:anonymous on the health paths only (Kubernetes'
AnonymousAuthConfigurableEndpoints), so system:public-info-viewer lets probes read
/livez, /readyz and /healthz; their per-check paths (/readyz/etcd) need system:monitoring.

Checks, as kube-apiserver and kube-controller-manager name them:
- ping: the event loop answers (on every path);
- etcd: a round trip through the store's writer (etcd's quorum read with --store etcd://),
  with a 2 s deadline: a wedged or failing store fails it (livez, readyz, healthz);
- poststarthook/start-controllers: the controllers started (or, with --leader-elect, the
  campaign) (readyz, healthz);
- shutdown: fails once SIGTERM or SIGINT arrived, so load balancers drain first (readyz);
- leaderElection: a leader that has not renewed its lease for lease-duration + 20 s
  (kube-controller-manager's healthz adaptor) (healthz only).
"""

from __future__ import annotations

import asyncio
import time

from ketch.api import errors
from ketch.serving import http, tls
from ketch.serving.healthz import PING, Check, HealthEndpoints
from ketch.serving.metrics import METRICS_PATH, render

from .apiserver.authn import Credentials
from .apiserver.request import ANONYMOUS_USER, Attributes, UserInfo
from .apiserver.security import APISecurity
from .controllers.leader import LeaderElectedControllers
from .storage import Store

STORE_CHECK_TIMEOUT = 2.0
MAX_TOLERABLE_EXPIRED_LEASE = 20.0


class ControlPlaneHealth:
    """What the checks read; main.py sets the flags as the process starts and stops."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.controllers_started = False
        self.shutting_down = False
        self.elected: LeaderElectedControllers | None = None

    def watch_leader(self, elected: LeaderElectedControllers) -> None:
        self.elected = elected

    async def etcd(self) -> str:
        await self.store.ping()
        return ""

    async def start_controllers(self) -> str:
        return "" if self.controllers_started else "the controllers have not started yet"

    async def shutdown(self) -> str:
        return "process is shutting down" if self.shutting_down else ""

    async def leader_election(self) -> str:
        """client-go's LeaderElector.Check: only a leader can fail it."""
        elector = self.elected.elector if self.elected is not None else None
        if elector is None or not elector.is_leader():
            return ""
        if time.monotonic() - elector.observed_time > elector.lease_duration + MAX_TOLERABLE_EXPIRED_LEASE:
            return f"failed election to renew leadership on lease {elector.lock.namespace}/{elector.lock.name}"
        return ""

    def endpoints(self) -> HealthEndpoints:
        etcd = Check("etcd", self.etcd, STORE_CHECK_TIMEOUT)
        started = Check("poststarthook/start-controllers", self.start_controllers)
        return HealthEndpoints({
            "/livez": [PING, etcd],
            "/readyz": [PING, etcd, started, Check("shutdown", self.shutdown)],
            "/healthz": [PING, etcd, started, Check("leaderElection", self.leader_election)],
        })


class SidePort:
    """The handler of the side port: authenticate, authorize `get` on the path, answer."""

    def __init__(self, security: APISecurity, health: HealthEndpoints) -> None:
        self.security = security
        self.health = health

    def user_of(self, request: http.Request) -> UserInfo:
        """Who sent the request; Unauthorized when nobody can be named (kube-apiserver's 401)."""
        auth = request.headers.get("authorization", "")
        creds = Credentials(metadata={"authorization": auth} if auth else {},
                            peer_certificate=request.peer_certificate)
        if not self.security.tls or creds.peer_certificate or creds.bearer_token():
            return self.security.authenticators.authenticate(creds)
        if not auth and self.health.handles(request.path):
            return ANONYMOUS_USER
        raise errors.Unauthorized("Unauthorized")

    async def __call__(self, request: http.Request) -> http.Response:
        """kube-apiserver's order: authenticate, authorize, then find the path (so an unknown
        path is 401 or 403 before it is 404)."""
        try:
            user = self.user_of(request)
            self.security.authorizers.check(Attributes(user, "get", path=request.path))
        except errors.Unauthorized as err:
            return http.status_error(401, "Unauthorized", err.message)
        except errors.Forbidden as err:
            return http.status_error(403, "Forbidden", err.message)
        if request.path == METRICS_PATH:
            return await render(request)
        if self.health.handles(request.path):
            return await self.health.serve(request)
        return http.text(404, "404 page not found\n")


async def serve(listen: str, security: APISecurity, health: ControlPlaneHealth) -> tuple[http.HTTPServer, int]:
    """Start the side port on listen; returns the server and its port. TLS unless --insecure."""
    context = None
    if security.pki is not None:
        pki = security.pki
        context = await asyncio.to_thread(tls.server_context, pki.served_chain, pki.server_key, pki.client_ca)
    server = http.HTTPServer(SidePort(security, health.endpoints()), context)
    port = await server.start(listen)
    return server, port
