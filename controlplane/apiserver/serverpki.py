"""The shared PKI a new control-plane replica fetches (k3s's server bootstrap): the cluster CA
and its key and the client certificate control planes dial agents with, which is everything
controlplane.pkifiles keeps the same on every replica (each makes its own serving certificate,
admin.conf and join token from the CA).

Only a server token may ask (`ketch token create --server`: a bootstrap token whose Secret has
`usage-bootstrap-server: "true"`). Who else asks is refused in Kubernetes' words: without
credentials UNAUTHENTICATED (the authenticators), with any others PERMISSION_DENIED: an agent's
join token, a node, an admin, and anyone impersonating a server token's user, since the CA key
is worth more than any permission RBAC can grant. The check is made twice: by the authorizer
below (first in the chain, whatever --authorization-mode says) and by the handler, on the token's
Secret itself.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.pkifiles import ServerPKI
from ketch.api import errors
from ketch.security import certs, jointoken
from ketch.v1 import api_pb2

from .authz import ALLOW, DENY, NO_OPINION, Decision, forbidden_message
from .request import SERVER_PKI_PATH as PATH
from .request import Attributes, UserInfo

METHOD = "FetchServerPKI"
SERVER_TOKEN_ONLY = "only a server token (ketch token create --server) may fetch the cluster's shared PKI"


def attributes(user: UserInfo) -> Attributes:
    return Attributes(user, "get", path=PATH)


def _bootstrap_id(user: UserInfo) -> str:
    """The token id of a bootstrap-token user ("" for anyone else)."""
    if jointoken.BOOTSTRAPPERS not in user.groups or not user.name.startswith(jointoken.BOOTSTRAP_USER_PREFIX):
        return ""
    token_id = user.name.removeprefix(jointoken.BOOTSTRAP_USER_PREFIX)
    return token_id if jointoken.ID_RE.match(token_id) else ""


class ServerPKIRestriction:
    """First in the authorizer chain: the shared PKI's path is for bootstrap tokens only (the
    handler then wants a server token's); no opinion on any other request."""

    def authorize(self, attrs: Attributes) -> Decision:
        if attrs.resource_request or attrs.path != PATH:
            return Decision(NO_OPINION)
        if _bootstrap_id(attrs.user):
            return Decision(ALLOW)
        return Decision(DENY, SERVER_TOKEN_ONLY)


class ServerPKIServer:
    def __init__(self, pki: ServerPKI, secret_lookup: Callable[[str], object | None]) -> None:
        self.pki = pki
        self.lookup = secret_lookup  # namespace/name -> the Secret, or None

    def fetch(self, attrs: Attributes) -> api_pb2.ServerPKIResponse:
        token_id = _bootstrap_id(attrs.user)
        secret = self.lookup(f"{jointoken.SECRET_NAMESPACE}/{jointoken.secret_name(token_id)}") if token_id else None
        if secret is None or not jointoken.is_server_token(secret):  # type: ignore[arg-type]
            raise errors.Forbidden(forbidden_message(attrs, SERVER_TOKEN_ONLY))
        return api_pb2.ServerPKIResponse(
            ca_certificate=self.pki.ca_pem, ca_key=certs.key_pem(self.pki.ca.key),
            kubelet_client_certificate=self.pki.kubelet_client.cert, kubelet_client_key=self.pki.kubelet_client.key)

