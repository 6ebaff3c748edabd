"""Users for authorization tests: a test-only authenticator that maps the metadata
`authorization: Bearer TOKEN` to a user (unknown tokens are Unauthorized), and clients that send
a token over TLS. The users are shaped as authentication makes them: x509 CN/O, system:authenticated on
all, nodes system:node:NAME in system:nodes, the admin in system:masters."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from controlplane.apiserver.authn import (
    AnonymousAuthenticator,
    Authenticators,
    Credentials,
    LoopbackAuthenticator,
)
from controlplane.apiserver.request import UserInfo
from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors
from ketch.client.clientset import Client
from ketch.client.transport import TLSConfig

AUTHENTICATED = "system:authenticated"
USERS = {
    "admin": UserInfo("admin", ("system:masters", AUTHENTICATED)),
    "alice": UserInfo("alice", ("dev", AUTHENTICATED)),
    "bob": UserInfo("bob", (AUTHENTICATED,)),
    "n1": UserInfo("system:node:n1", ("system:nodes", AUTHENTICATED)),
    "n2": UserInfo("system:node:n2", ("system:nodes", AUTHENTICATED)),
}


class TokenAuthenticator:
    def __init__(self, users: dict[str, UserInfo]) -> None:
        self.users = users

    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        header = credentials.metadata.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        user = self.users.get(header.removeprefix("Bearer "))
        if user is None:
            raise errors.Unauthorized("Unauthorized")
        return user


def test_authenticators(users: dict[str, UserInfo] = USERS) -> Authenticators:
    return Authenticators([LoopbackAuthenticator(), TokenAuthenticator(users), AnonymousAuthenticator()])


test_authenticators.__test__ = False  # type: ignore[attr-defined]


def as_user(api: TestAPIServer, token: str, extra: Sequence[tuple[str, str]] = ()) -> Client:
    """A client over TLS that authenticates with a bearer token (no certificate of its own)."""
    assert api.pki is not None
    return api.connect(tls=TLSConfig(api.pki.ca_pem), token=token, metadata=list(extra))


@asynccontextmanager
async def secured(modes: tuple[str, ...] = ("Node", "RBAC")) -> AsyncIterator[TestAPIServer]:
    """A real API server over gRPC with the control plane's authorization and the test users."""
    with tempfile.TemporaryDirectory(prefix="ketch-kubeconfigs-") as tmp:
        async with TestAPIServer(authorization=modes, authenticators=test_authenticators()) as api:
            api.kubeconfig_dir = Path(tmp)  # type: ignore[attr-defined]
            yield api


@asynccontextmanager
async def clients(api: TestAPIServer, *tokens: str) -> AsyncIterator[list[Client]]:
    made = [as_user(api, t) for t in tokens]
    try:
        yield made
    finally:
        for c in made:
            await c.close()
