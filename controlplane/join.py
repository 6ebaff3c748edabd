"""`ketch-controlplane --join HOST:PORT --token SERVER_TOKEN`: a new replica's first start takes
the cluster's shared PKI from a running one (k3s's `server --server URL --token`, kubeadm's
`join --control-plane`), then makes the rest itself (pkifiles.ensure: its own serving
certificate for its addresses, admin.conf, join token).

As an agent joins: the token's hash pins the CA the server presents before the token is sent;
the answer is checked (the CA is the pinned one, the keys match their certificates, the client
certificate is the CA's) before anything is written. On any failure nothing is written. Once
DIR/pki holds a CA, --join is not needed and is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ketch.api import errors
from ketch.client.clientset import connect
from ketch.client.failover import split_servers
from ketch.client.transport import TLSConfig
from ketch.security import certs, jointoken, tlsfetch
from ketch.v1 import api_pb2

from .pkifiles import KUBELET_CLIENT_CN

log = logging.getLogger(__name__)
SHARED_FILES = ("ca.crt", "ca.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key")
MAKE_ONE = "make one with `ketch token create --server` against a running replica"


class JoinError(Exception):
    """Why the join failed, in one line."""


def has_ca(data_dir: Path) -> bool:
    pki = data_dir / "pki"
    return (pki / "ca.crt").is_file() and (pki / "ca.key").is_file()


def pinned_ca(server: str, ca_hash: str, timeout: float) -> bytes:
    """The CA the server presents whose DER sha256 is ca_hash (PEM)."""
    try:
        return tlsfetch.pinned_ca(split_servers(server), ca_hash, "server token", timeout)
    except tlsfetch.PinError as err:
        raise JoinError(str(err)) from None


def _check(resp: api_pb2.ServerPKIResponse, ca_hash: str) -> None:
    """The answer is the pinned cluster's PKI, whole."""
    try:
        ca = certs.Authority.load(resp.ca_certificate, resp.ca_key)
        client = certs.load_cert(resp.kubelet_client_certificate)
        client_key = certs.load_key(resp.kubelet_client_key)
    except ValueError as err:
        raise JoinError(f"the control plane sent an unreadable PKI: {err}") from None
    if certs.der_sha256(ca.cert) != ca_hash:
        raise JoinError("the control plane sent a CA other than the one the server token pins")
    if certs.public_key_sha256(ca.cert) != certs.public_key_sha256(ca.key.public_key()):
        raise JoinError("the control plane sent a CA key that is not the CA certificate's")
    if not ca.issued(client) or certs.user_of(client)[0] != KUBELET_CLIENT_CN or \
            certs.public_key_sha256(client) != certs.public_key_sha256(client_key.public_key()):
        raise JoinError("the control plane sent an apiserver-kubelet-client pair its CA did not issue")


async def fetch(server: str, token_text: str, timeout: float = 30.0) -> api_pb2.ServerPKIResponse:
    """The shared PKI from the replica at server, asked with the server token."""
    try:
        token = jointoken.parse(token_text)
    except ValueError as err:
        raise JoinError(f"invalid --token: {err}") from None
    try:
        tlsfetch.split_target(server)
    except ValueError as err:
        raise JoinError(f"invalid --join: {err}") from None
    ca = await asyncio.to_thread(pinned_ca, server, token.ca_hash, min(timeout, 10.0))
    client = connect(server, tls=TLSConfig(ca), token=token.bootstrap, timeout=timeout)
    try:
        resp = await client.fetch_server_pki()
    except errors.Unauthorized:
        raise JoinError(f"the control plane at {server} refused the server token (Unauthorized): it is unknown, "
                        f"expired or deleted; {MAKE_ONE}") from None
    except errors.Forbidden as err:
        raise JoinError(f"the control plane at {server} refused to share its PKI (Forbidden): {err.message}; an "
                        f"agent's join token cannot join a control plane: {MAKE_ONE}") from None
    except errors.StatusError as err:
        raise JoinError(f"the control plane at {server} did not share its PKI: {err.message}") from None
    finally:
        await client.close()
    _check(resp, token.ca_hash)
    return resp


def write(data_dir: Path, resp: api_pb2.ServerPKIResponse) -> None:
    """DIR/pki's shared files; keys 0600. The CA certificate last: a start cut short before it
    joins again."""
    pki = data_dir / "pki"
    data_dir.mkdir(parents=True, exist_ok=True)
    pki.mkdir(exist_ok=True, mode=0o700)
    contents = (resp.ca_key, resp.kubelet_client_key, resp.kubelet_client_certificate, resp.ca_certificate)
    for name, data in zip(("ca.key", "apiserver-kubelet-client.key", "apiserver-kubelet-client.crt", "ca.crt"),
                          contents, strict=True):
        certs.write_private(pki / name, data, 0o600 if name.endswith(".key") else 0o644)


async def first_start(data_dir: Path, server: str, token_text: str, timeout: float = 30.0) -> bool:
    """Join when DIR has no CA yet; False (and nothing done) when it has one."""
    if has_ca(data_dir):
        log.info("%s/pki has the cluster CA: --join %s is not needed and is ignored", data_dir, server)
        return False
    write(data_dir, await fetch(server, token_text, timeout))
    log.info("joined the cluster at %s: wrote its CA and kubelet-client certificate to %s/pki", server, data_dir)
    return True
