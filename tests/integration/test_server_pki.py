"""FetchServerPKI through a real TLS gRPC server: a server token gets the CA, its key and the
kubelet-client pair; everyone else is refused (DESIGN.md, high-availability contract: "an
agent's join token never fetches the CA key")."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from controlplane.apiserver.request import UserInfo
from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, timeutil
from ketch.client.clientset import Client
from ketch.client.transport import TLSConfig
from ketch.security import certs, jointoken
from ketch.v1 import api_pb2


async def _token(api: TestAPIServer, server: bool, expiration: str = "") -> jointoken.JoinToken:
    assert api.client is not None and api.pki is not None
    token = jointoken.new(certs.der_sha256(api.pki.ca.cert))
    await api.client.create(jointoken.bootstrap_secret(token.id, token.secret, expiration, server=server))
    return token


@pytest.fixture
async def api() -> AsyncIterator[TestAPIServer]:
    masters = UserInfo("root-by-token", ("system:masters", "system:authenticated"))
    async with TestAPIServer(token_auth={"masters-token": masters}, authorization=("Node", "RBAC")) as server:
        yield server


async def _fetch(client: Client) -> api_pb2.ServerPKIResponse:
    try:
        return await client.fetch_server_pki()
    finally:
        await client.close()


async def test_a_server_token_fetches_the_shared_pki(api: TestAPIServer) -> None:
    assert api.pki is not None
    token = await _token(api, server=True)
    resp = await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem), token=token.bootstrap))
    assert resp.ca_certificate == api.pki.ca_pem
    assert certs.public_key_sha256(certs.load_key(resp.ca_key).public_key()) == \
        certs.public_key_sha256(api.pki.ca.cert)
    kubelet_client = certs.load_cert(resp.kubelet_client_certificate)
    assert certs.verify_issued_by(kubelet_client, [api.pki.ca.cert])
    assert resp.kubelet_client_certificate == api.pki.kubelet_client.cert
    assert resp.kubelet_client_key == api.pki.kubelet_client.key


async def test_an_agent_join_token_is_forbidden(api: TestAPIServer) -> None:
    assert api.pki is not None
    token = await _token(api, server=False)
    with pytest.raises(errors.Forbidden, match="only a server token"):
        await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem), token=token.bootstrap))


async def test_an_agent_token_claiming_a_server_group_is_forbidden(api: TestAPIServer) -> None:
    """Only the Secret's usage makes a server token: no group a token's Secret can name does."""
    assert api.pki is not None and api.client is not None
    token = jointoken.new("0" * 64)
    await api.client.create(jointoken.bootstrap_secret(
        token.id, token.secret, extra_groups="system:bootstrappers:ketch:server,system:masters"))
    with pytest.raises(errors.Forbidden, match="only a server token"):
        await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem), token=token.bootstrap))


async def test_the_admin_and_a_masters_token_user_are_forbidden(api: TestAPIServer) -> None:
    assert api.pki is not None
    with pytest.raises(errors.Forbidden, match='User "admin" cannot get path "/ketch/server-pki"'):
        await _fetch(api.connect())
    with pytest.raises(errors.Forbidden, match="only a server token"):
        await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem), token="masters-token"))


async def test_a_node_is_forbidden(api: TestAPIServer) -> None:
    assert api.pki is not None
    node = api.pki.ca.issue("system:node:n1", ["system:nodes"], client=True)
    with pytest.raises(errors.Forbidden, match='User "system:node:n1" cannot get path'):
        await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem, node.cert, node.key)))


async def test_impersonating_a_server_token_is_forbidden(api: TestAPIServer) -> None:
    assert api.pki is not None
    token = await _token(api, server=True)
    as_token = (("impersonate-user", jointoken.BOOTSTRAP_USER_PREFIX + token.id),
                ("impersonate-group", jointoken.BOOTSTRAPPERS))
    with pytest.raises(errors.Forbidden, match="only a server token"):
        await _fetch(api.connect(metadata=as_token))


async def test_no_credentials_and_spent_server_tokens_are_unauthenticated(api: TestAPIServer) -> None:
    assert api.pki is not None and api.client is not None
    expired = await _token(api, server=True, expiration=timeutil.format(time.time() - 1))
    deleted = await _token(api, server=True)
    await api.client.delete("Secret", jointoken.secret_name(deleted.id), jointoken.SECRET_NAMESPACE)
    wrong = jointoken.JoinToken(deleted.ca_hash, (await _token(api, server=True)).id, "x" * 16)
    with pytest.raises(errors.Unauthorized):
        await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem)))  # the no-identity certificate alone
    for token in (expired, deleted, wrong):
        with pytest.raises(errors.Unauthorized):
            await _fetch(api.connect(tls=TLSConfig(api.pki.ca_pem), token=token.bootstrap))


async def test_a_server_token_can_do_nothing_else(api: TestAPIServer) -> None:
    assert api.pki is not None
    token = await _token(api, server=True)
    client = api.connect(tls=TLSConfig(api.pki.ca_pem), token=token.bootstrap)
    try:
        with pytest.raises(errors.Forbidden):
            await client.list("Secret", jointoken.SECRET_NAMESPACE)
    finally:
        await client.close()


async def test_an_insecure_control_plane_has_no_pki_to_share() -> None:
    async with TestAPIServer(insecure=True) as api:
        assert api.client is not None
        with pytest.raises(errors.BadRequest, match="no PKI to share"):
            await api.client.fetch_server_pki()
