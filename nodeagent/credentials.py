"""The agent's identity: joining with a token, keeping the certificates, renewing them.

Joining (kubeadm's/k3s's TLS bootstrap): read the certificates the server presents, trusting
none; keep the one whose sha256 is the token's CA hash, or stop right there, before the token or
anything else is sent (CA pinning); then, over TLS verified against that CA, send the bootstrap
token with signing requests for two new keys: the node's client certificate (CN
system:node:NAME, O system:nodes) and the agent's serving certificate (its addresses as SANs).

Kept in DATA/pki: ca.crt, node.crt, node.key, serving.crt, serving.key (keys 0600). A restart
uses them and needs no token (a token given again is ignored while they are good; a token for
another CA joins again). At 80 % of the client certificate's life the agent asks for new ones,
authenticated by its current certificate (the kubelet's client certificate rotation).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ketch.api import errors
from ketch.client.clientset import Client, connect
from ketch.client.failover import split_servers
from ketch.client.transport import TLSConfig
from ketch.security import certs, jointoken, tlsfetch
from ketch.v1 import api_pb2

log = logging.getLogger(__name__)

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
FILES = ("ca.crt", "node.crt", "node.key", "serving.crt", "serving.key")


class JoinError(Exception):
    """Joining failed; the message says why, in one line."""


@dataclass(frozen=True)
class NodeCredentials:
    ca: bytes
    client_cert: bytes
    client_key: bytes
    serving_cert: bytes
    serving_key: bytes

    @property
    def tls(self) -> TLSConfig:
        return TLSConfig(self.ca, self.client_cert, self.client_key)

    @property
    def ca_hash(self) -> str:
        return certs.der_sha256(certs.load_cert(self.ca))

    def renew_at(self) -> float:
        return certs.renew_at(certs.load_cert(self.client_cert))

    def valid(self, now: float) -> bool:
        start, end = certs.lifetime(certs.load_cert(self.client_cert))
        return start <= now < end


def pki_dir(data_dir: Path) -> Path:
    return data_dir / "pki"


def load(data_dir: Path) -> NodeCredentials | None:
    d = pki_dir(data_dir)
    try:
        parts = [(d / name).read_bytes() for name in FILES]
    except FileNotFoundError:
        return None
    return NodeCredentials(*parts)


def save(data_dir: Path, creds: NodeCredentials) -> None:
    d = pki_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data in zip(FILES, (creds.ca, creds.client_cert, creds.client_key, creds.serving_cert,
                                  creds.serving_key), strict=True):
        certs.write_private(d / name, data, 0o600 if name.endswith(".key") else 0o644)


def pinned_ca(server: str, ca_hash: str, timeout: float = 10.0) -> bytes:
    """The CA the server presents whose DER sha256 is ca_hash (PEM), from the first address of
    `A,B,...` that answers over TLS; JoinError if none does, or one presents another CA."""
    try:
        return tlsfetch.pinned_ca(split_servers(server), ca_hash, "join token", timeout)
    except tlsfetch.PinError as err:
        raise JoinError(str(err)) from None


def _request(node: str, client_key: certs.PrivateKey, serving_key: certs.PrivateKey,
             sans: list[str]) -> api_pb2.NodeCertificateRequest:
    cn, orgs = NODE_USER_PREFIX + node, [NODES_GROUP]
    return api_pb2.NodeCertificateRequest(node_name=node, client_csr=certs.make_csr(client_key, cn, orgs),
                                          serving_csr=certs.make_csr(serving_key, cn, orgs, sans))


async def _sign(client: Client, node: str, sans: list[str]) -> NodeCredentials:
    client_key, serving_key = certs.new_key(), certs.new_key()
    resp = await client.sign_node_certificate(_request(node, client_key, serving_key, sans))
    return NodeCredentials(resp.ca, resp.client_certificate, certs.key_pem(client_key), resp.serving_certificate,
                           certs.key_pem(serving_key))


async def join(server: str, token_text: str, node: str, sans: list[str], timeout: float = 30.0) -> NodeCredentials:
    """Exchange the join token for the node's certificates (see the module doc)."""
    try:
        token = jointoken.parse(token_text)
    except ValueError as err:
        raise JoinError(f"invalid --token: {err}") from None
    ca = await asyncio.to_thread(pinned_ca, server, token.ca_hash)
    client = connect(server, tls=TLSConfig(ca), token=token.bootstrap, timeout=timeout)
    try:
        return await _sign(client, node, sans)
    except errors.Unauthorized:
        raise JoinError("the control plane refused the join token (Unauthorized): it is unknown, expired or "
                        "deleted; make one with `ketch token create`") from None
    except errors.StatusError as err:
        raise JoinError(f"the control plane refused to sign the node's certificate: {err.message}") from None
    finally:
        await client.close()


async def renew(client: Client, node: str, sans: list[str]) -> NodeCredentials:
    """New certificates for new keys, asked with the current certificate."""
    return await _sign(client, node, sans)


async def obtain(data_dir: Path, server: str, token: str, node: str, sans: list[str]) -> NodeCredentials | None:
    """The credentials to run with: the kept ones while good, else a join with the token; None
    with neither (a control plane started with --insecure: plaintext)."""
    kept = load(data_dir)
    now = time.time()
    if kept is not None:
        stale = not kept.valid(now)
        other_cluster = False
        if token:
            try:
                other_cluster = jointoken.parse(token).ca_hash != kept.ca_hash
            except ValueError:
                other_cluster = False
        if not stale and not other_cluster:
            return kept
        if not token:
            raise JoinError(f"the node certificate in {pki_dir(data_dir)} has expired: join again with --token")
        log.info("joining again: %s", "the kept certificate expired" if stale else "the token is for another CA")
    elif not token:
        return None
    creds = await join(server, token, node, sans)
    save(data_dir, creds)
    log.info("joined as %s%s; certificates kept in %s", NODE_USER_PREFIX, node, pki_dir(data_dir))
    return creds
