"""A real API server in-process for tests: memory store, real watch hub, gRPC on a free port.

`async with TestAPIServer() as api:` gives `api.client` (over real gRPC on 127.0.0.1),
`api.local` (the in-process transport the control plane's controllers use) and `api.service`.

Secure as the real one: TLS with a PKI made in memory (`api.pki`), `api.client` connected as the
admin (user admin, group system:masters), `api.connect()` for more clients (any credentials),
`api.channel()` for a raw gRPC channel as the admin. `TestAPIServer(insecure=True)` serves
plaintext with everyone allowed, as --insecure. The node proxy dials agents in plaintext (tests
run in-process agent servers without certificates).

Authorization is AlwaysAllow unless `authorization=("Node", "RBAC")` (or other modes) is given:
then the server is the control plane's (the bootstrap policy reconciled, NodeRestriction and
escalation prevention in admission) and `authenticators`, if given, replace the
secure authenticators (tests of authorization alone).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc

from controlplane import pkifiles as pki_files
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.client.clientset import Client, connect
from ketch.client.transport import TLSConfig

from . import security as api_security
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

    def __init__(self, grpc: bool = True, server_limits: Any = None, insecure: bool = False,
                 token_auth: dict[str, Any] | None = None, signing_duration: float | None = None,
                 authorization: tuple[str, ...] = (), authenticators: Authenticators | None = None,
                 **service_kwargs: Any) -> None:
        self.use_grpc = grpc
        self.insecure = insecure
        self.token_auth = token_auth  # token -> UserInfo, as --token-auth-file
        self.signing_duration = signing_duration
        self.pki = None if insecure else pki_files.in_memory()
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
                           packed=registry.packed(),
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
        self.security: api_security.APISecurity | None = None
        authorizers = self.authorization.authorizers if self.authorization is not None else None
        if self.use_grpc:
            if self.pki is None:
                security = api_security.insecure()
            else:
                def secret_of(key: str) -> object | None:
                    entry = self.store.get("Secret", key)
                    return entry.obj if entry is not None else None

                kwargs = {"signing_duration": self.signing_duration} if self.signing_duration else {}
                security = api_security.secure(self.pki, secret_of, self.local, self.token_auth,
                                               authorizers=authorizers, **kwargs)
            if self.authenticators is not None:
                security.authenticators = self.authenticators
            self.security = security
            self.server, port = await start_grpc_server(self.service, "127.0.0.1:0", self.server_limits, self.proxy,
                                                        security)
            self.address = f"127.0.0.1:{port}"
            self.client = self.connect()
        else:
            self.client = self.local
        return self

    @property
    def admin_tls(self) -> TLSConfig | None:
        if self.pki is None or self.pki.admin is None:
            return None
        return TLSConfig(self.pki.ca_pem, self.pki.admin.cert, self.pki.admin.key)

    def connect(self, tls: TLSConfig | str | None = "admin", token: str = "", **kwargs: Any) -> Client:
        """A client over gRPC: as the admin by default; tls=TLSConfig(...) for other credentials,
        TLSConfig(api.pki.ca_pem) for none but a token."""
        chosen = self.admin_tls if tls == "admin" else tls
        assert not isinstance(chosen, str)
        return connect(self.address, tls=chosen, token=token, **kwargs)

    def channel(self, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        """A raw gRPC channel to the API as the admin (plaintext when insecure)."""
        tls = self.admin_tls
        if tls is None:
            return grpc.aio.insecure_channel(self.address, options=options)
        return grpc.aio.secure_channel(self.address, tls.channel_credentials(), options=options)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.client is not None and self.client is not self.local:
            await self.client.close()
        self.hub.close_all()
        if self.server is not None:
            await self.server.stop(grace=0.2)
        await self.proxy.close()
        await self.store.stop()
