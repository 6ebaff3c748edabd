"""The join token, in k3s's form: `K10<sha256 hex of the CA's DER>::<id>.<secret>`.

`<id>.<secret>` is a kubeadm bootstrap token (id [a-z0-9]{6}, secret [a-z0-9]{16}), kept as the
Secret kube-system/bootstrap-token-<id>; the hash pins the cluster CA, so an agent checks the
server it reached before it sends the secret.

A server token (`ketch token create --server`, k3s's server token) has the same form; its Secret
also says `usage-bootstrap-server: "true"` (Ketch's own usage key), which alone lets it fetch the
cluster's shared PKI, CA key included, for a new control-plane replica (`ketch-controlplane
--join`). An agent's join token never has it.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from ketch.v1 import secret_pb2

ID_RE = re.compile(r"^[a-z0-9]{6}$")
SECRET_RE = re.compile(r"^[a-z0-9]{16}$")
BOOTSTRAP_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_TOKEN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})$")
_ALPHABET = string.ascii_lowercase + string.digits

SECRET_NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
BOOTSTRAPPERS = "system:bootstrappers"
SERVER_USAGE = "usage-bootstrap-server"


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    id: str
    secret: str

    @property
    def bootstrap(self) -> str:
        """`<id>.<secret>`: what the agent presents as its bearer token."""
        return f"{self.id}.{self.secret}"

    def __str__(self) -> str:
        return f"K10{self.ca_hash}::{self.id}.{self.secret}"


def parse(text: str) -> JoinToken:
    """A join token, or ValueError saying what is wrong with it (never echoing the secret)."""
    text = text.strip()
    m = _TOKEN_RE.match(text)
    if m:
        return JoinToken(m.group(1), m.group(2), m.group(3))
    if BOOTSTRAP_RE.match(text):
        raise ValueError("the token has no CA hash: use the whole join token, K10<sha256 of the CA>::<id>.<secret>")
    if not text.startswith("K10"):
        raise ValueError("a join token starts with K10")
    raise ValueError("malformed join token: expected K10<64 hex digits>::<6 of [a-z0-9]>.<16 of [a-z0-9]>")


def random_string(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new(ca_hash: str) -> JoinToken:
    return JoinToken(ca_hash, random_string(6), random_string(16))


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def bootstrap_secret(token_id: str, token_secret: str, expiration: str = "", description: str = "",
                     extra_groups: str = "system:bootstrappers:kubeadm:default-node-token",
                     server: bool = False) -> secret_pb2.Secret:
    """The Secret kube-system/bootstrap-token-<id>, as `kubeadm token create` writes it; server:
    a server token's (the usage that lets it fetch the shared PKI)."""
    s = secret_pb2.Secret(api_version="v1", kind="Secret", type=SECRET_TYPE)
    s.metadata.name = secret_name(token_id)
    s.metadata.namespace = SECRET_NAMESPACE
    s.data["token-id"] = token_id.encode()
    s.data["token-secret"] = token_secret.encode()
    s.data["usage-bootstrap-authentication"] = b"true"
    s.data["usage-bootstrap-signing"] = b"true"
    if server:
        s.data[SERVER_USAGE] = b"true"
    if extra_groups:
        s.data["auth-extra-groups"] = extra_groups.encode()
    if expiration:
        s.data["expiration"] = expiration.encode()
    if description:
        s.data["description"] = description.encode()
    return s


def is_server_token(secret: secret_pb2.Secret) -> bool:
    """Whether a bootstrap-token Secret is a server token's."""
    return secret.type == SECRET_TYPE and secret.data.get(SERVER_USAGE, b"") == b"true"
