"""Authentication, the join token's limits and node certificates, through a real TLS gRPC server:
every refusal a user or an agent relies on (DESIGN.md, security contract)."""

from __future__ import annotations

import time

import pytest

from controlplane.apiserver.authn import read_token_file
from controlplane.apiserver.nodecerts import KEY_ANNOTATION
from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, timeutil
from ketch.client.transport import TLSConfig
from ketch.security import anonymous, certs, jointoken
from ketch.v1 import api_pb2, secret_pb2


def _node_request(node: str) -> tuple[api_pb2.NodeCertificateRequest, certs.PrivateKey]:
    key = certs.new_key()
    csr = certs.make_csr(key, f"system:node:{node}", ["system:nodes"])
    serving = certs.make_csr(certs.new_key(), f"system:node:{node}", ["system:nodes"], ["127.0.0.1"])
    return api_pb2.NodeCertificateRequest(node_name=node, client_csr=csr, serving_csr=serving), key


async def _bootstrap_token(api: TestAPIServer, expiration: str = "") -> str:
    token = jointoken.new("0" * 64)
    assert api.client is not None
    await api.client.create(jointoken.bootstrap_secret(token.id, token.secret, expiration))
    return token.bootstrap


async def test_no_credentials_and_bad_credentials_are_unauthenticated() -> None:
    async with TestAPIServer() as api:
        assert api.pki is not None
        nobody = api.connect(tls=TLSConfig(api.pki.ca_pem))  # the public no-identity certificate only
        bad_token = api.connect(tls=TLSConfig(api.pki.ca_pem), token="abcdef.0123456789abcdef")
        assert certs.user_of(certs.load_cert(anonymous.CERT))[0] == "ketch:no-identity"
        try:
            for client in (nobody, bad_token):
                with pytest.raises(errors.Unauthorized):
                    await client.list("Pod")
                with pytest.raises(errors.Unauthorized):
                    await client.version()
        finally:
            await nobody.close()
            await bad_token.close()


async def test_a_certificate_from_another_ca_names_nobody() -> None:
    async with TestAPIServer() as api, TestAPIServer() as other:
        assert api.pki is not None and other.pki is not None
        # A client certificate that says admin/system:masters but comes from another cluster's CA is
        # refused at the TLS handshake (the server trusts only its client CA and the no-identity CA).
        stranger = other.pki.ca.issue("admin", ["system:masters"], client=True)
        client = api.connect(tls=TLSConfig(api.pki.ca_pem, stranger.cert, stranger.key), timeout=5)
        try:
            with pytest.raises((errors.Unavailable, errors.Unauthorized)):
                await client.list("Pod")
        finally:
            await client.close()


async def test_the_admin_certificate_and_a_token_file_user_are_authenticated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tokens.csv"
    path.write_text('s3cret,alice,1001,"dev,ops"\n')
    users = read_token_file(path)
    assert users["s3cret"].name == "alice" and users["s3cret"].groups == ("dev", "ops", "system:authenticated")
    async with TestAPIServer(token_auth=users) as api:
        assert api.client is not None and api.pki is not None
        await api.client.list("Pod")
        alice = api.connect(tls=TLSConfig(api.pki.ca_pem), token="s3cret")
        try:
            await alice.list("Pod")
        finally:
            await alice.close()


async def test_a_join_token_can_only_ask_for_a_node_certificate() -> None:
    async with TestAPIServer() as api:
        assert api.pki is not None
        bootstrap = api.connect(tls=TLSConfig(api.pki.ca_pem), token=await _bootstrap_token(api))
        try:
            with pytest.raises(errors.Forbidden, match="bootstrap token may only be used to join"):
                await bootstrap.list("Pod")
            with pytest.raises(errors.Forbidden):
                await bootstrap.list("Secret", "kube-system")
            req, _ = _node_request("n1")
            resp = await bootstrap.sign_node_certificate(req)
        finally:
            await bootstrap.close()
        cert = certs.load_cert(resp.client_certificate)
        assert certs.user_of(cert) == ("system:node:n1", ("system:nodes",))
        assert certs.verify_issued_by(cert, [api.pki.ca.cert])
        assert "127.0.0.1" in certs.sans_of(certs.load_cert(resp.serving_certificate))
        assert resp.ca == api.pki.ca_pem


async def test_an_expired_or_deleted_join_token_cannot_join() -> None:
    async with TestAPIServer() as api:
        assert api.pki is not None and api.client is not None
        expired = await _bootstrap_token(api, timeutil.format(time.time() - 1))
        deleted = await _bootstrap_token(api)
        await api.client.delete("Secret", jointoken.secret_name(deleted.split(".")[0]), "kube-system")
        for token in (expired, deleted):
            client = api.connect(tls=TLSConfig(api.pki.ca_pem), token=token)
            try:
                with pytest.raises(errors.Unauthorized):
                    await client.sign_node_certificate(_node_request("n1")[0])
            finally:
                await client.close()


async def test_a_second_key_for_a_node_name_is_refused_until_the_node_is_gone() -> None:
    async with TestAPIServer() as api:
        assert api.pki is not None and api.client is not None
        bootstrap = api.connect(tls=TLSConfig(api.pki.ca_pem), token=await _bootstrap_token(api))
        try:
            first, first_key = _node_request("n1")
            issued = await bootstrap.sign_node_certificate(first)
            node = await api.client.get("Node", "n1")
            assert node.metadata.annotations[KEY_ANNOTATION] == certs.public_key_sha256(first_key.public_key())
            with pytest.raises(errors.Forbidden, match="held by another agent's key"):
                await bootstrap.sign_node_certificate(_node_request("n1")[0])
            # The holder renews with its own certificate and a new key.
            holder = api.connect(tls=TLSConfig(api.pki.ca_pem, issued.client_certificate, certs.key_pem(first_key)))
            try:
                renewed = await holder.sign_node_certificate(_node_request("n1")[0])
                assert certs.user_of(certs.load_cert(renewed.client_certificate))[0] == "system:node:n1"
                with pytest.raises(errors.Forbidden):  # but not another node's
                    await holder.sign_node_certificate(_node_request("n2")[0])
            finally:
                await holder.close()
            await api.client.delete("Node", "n1")
            await bootstrap.sign_node_certificate(_node_request("n1")[0])  # the name is free again
        finally:
            await bootstrap.close()


async def test_a_signing_request_for_another_subject_is_invalid() -> None:
    async with TestAPIServer() as api:
        assert api.pki is not None
        bootstrap = api.connect(tls=TLSConfig(api.pki.ca_pem), token=await _bootstrap_token(api))
        try:
            key = certs.new_key()
            req = api_pb2.NodeCertificateRequest(node_name="n1", client_csr=certs.make_csr(
                key, "admin", ["system:masters"]))
            with pytest.raises(errors.Invalid, match="clientCSR"):
                await bootstrap.sign_node_certificate(req)
        finally:
            await bootstrap.close()


async def test_secret_string_data_is_merged_and_immutable_secrets_stay() -> None:
    async with TestAPIServer() as api:
        assert api.client is not None
        s = secret_pb2.Secret(api_version="v1", kind="Secret", immutable=True)
        s.metadata.name = "db"
        s.string_data["password"] = "hunter2"
        s.data["user"] = b"root"
        made = await api.client.create(s)
        assert dict(made.data) == {"password": b"hunter2", "user": b"root"}
        assert not made.string_data and made.type == "Opaque"
        made.data["password"] = b"other"
        with pytest.raises(errors.Invalid, match="data: Forbidden: field is immutable"):
            await api.client.update(made)
        bad = secret_pb2.Secret(api_version="v1", kind="Secret")
        bad.metadata.name = "bad"
        bad.data["no/slash"] = b"x"
        with pytest.raises(errors.Invalid, match=r"data\[no/slash\]"):
            await api.client.create(bad)
