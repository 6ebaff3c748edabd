"""A real API server in-process for tests: memory store, real watch hub, gRPC on a free port.

`async with TestAPIServer() as api:` gives `api.client` (over real gRPC on 127.0.0.1),
`api.local` (the in-process transport the control plane's controllers use) and `api.service`.

Authorization is AlwaysAllow unless `authorization=("Node", "RBAC")` (or other modes) is given:
then the server is the control plane's (the bootstrap policy reconciled, NodeRestriction and
escalation prevention in admission) and `authenticators` says who gRPC clients are.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.client.clientset import Client, connect

from .admission import default_admission
from .authn import Authenticators
from .bootstrap import ensure_default_namespaces
from .local import LocalTransport
from .nodeproxy import NodeProxy
from .rbac import Authorization
from .rbac.bootstrap import reconcile_bootstrap_policy
from .server import start_grpc_server
from .service import APIService
from .watch import WatchHub


class TestAPIServer:
    __test__ = False  # not a pytest test class

    def __init__(self, grpc: bool = True, server_limits: Any = None, authorization: tuple[str, ...] = (),
                 authenticators: Authenticators | None = None, **service_kwargs: Any) -> None:
        self.use_grpc = grpc
        self.server_limits = server_limits  # controlplane.apiserver.server.ServerLimits
        self.modes = authorization
        self.authenticators = authenticators
        self.authorization: Authorization | None = None
        self.service_kwargs = service_kwargs
        self.address = ""
        self.client: Client | None = None
        self.local: Client | None = None

    async def __aenter__(self) -> TestAPIServer:
        kwargs = dict(self.service_kwargs)
        registry = Registry(**{k: kwargs.pop(k) for k in ("default_toleration_seconds", "event_ttl") if k in kwargs})
        self.store = Store(MemoryBackend(), registry.field_values, parsed_on_read=registry.parsed_on_read(),
                           expiry_of=registry.expiry_of)
        await self.store.start()
        self.hub = WatchHub(self.store)
        if self.modes:
            self.authorization = Authorization(self.store, self.modes)
            kwargs.setdefault("admission", self.authorization.admission(default_admission(self.store, registry)))
        self.service = APIService(self.store, self.hub, registry=registry, **kwargs)
        self.proxy = NodeProxy(self.store)
        transport = LocalTransport(self.service, self.proxy)
        await ensure_default_namespaces(transport.chain)
        self.local = Client(transport)
        if self.authorization is not None and "RBAC" in self.modes:
            await reconcile_bootstrap_policy(self.local)
        self.server = None
        authorizers = self.authorization.authorizers if self.authorization is not None else None
        if self.use_grpc:
            self.server, port = await start_grpc_server(self.service, "127.0.0.1:0", self.server_limits, self.proxy,
                                                        authenticators=self.authenticators, authorizers=authorizers)
            self.address = f"127.0.0.1:{port}"
            self.client = connect(self.address)
        else:
            self.client = self.local
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.client is not None and self.client is not self.local:
            await self.client.close()
        self.hub.close_all()
        if self.server is not None:
            await self.server.stop(grace=0.2)
        await self.proxy.close()
        await self.store.stop()
