"""How the API server is secured, in one object: the TLS credentials of its port, the
authenticators and authorizers of its chain, and the node certificate signer.

secure(): TLS with the serving certificate; every client presents a certificate (its own, or
the public no-identity one: see ketch.security.anonymous), checked against the client CA by the
x509 authenticator; bearer tokens (the token file, bootstrap tokens) for the rest; nobody is
anonymous. insecure(): plaintext, everyone `system:unsecured` in system:masters (--insecure,
loopback only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc

from controlplane.pkifiles import ServerPKI
from ketch.client.clientset import Client
from ketch.security import certs

from .authn import Authenticators, insecure_authenticators, secure_authenticators
from .authz import Authorizers, default_authorizers
from .nodecerts import BootstrapTokenRestriction, NodeCertificateSigner
from .request import UserInfo
from .serverpki import ServerPKIRestriction, ServerPKIServer


@dataclass
class APISecurity:
    pki: ServerPKI | None
    authenticators: Authenticators
    authorizers: Authorizers
    signer: NodeCertificateSigner | None = None
    server_pki: ServerPKIServer | None = None

    @property
    def tls(self) -> bool:
        return self.pki is not None

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if self.pki is None:
            return None
        return grpc.ssl_server_credentials([(self.pki.server_key, self.pki.served_chain)],
                                           root_certificates=self.pki.trusted_client_roots, require_client_auth=True)


def insecure() -> APISecurity:
    return APISecurity(None, insecure_authenticators(), default_authorizers())


def secure(pki: ServerPKI, secret_lookup: Callable[[str], object | None], loopback_client: Client,
           tokens: Mapping[str, UserInfo] | None = None,
           signing_duration: float = certs.CERT_VALIDITY, authorizers: Authorizers | None = None) -> APISecurity:
    """authorizers: as --authorization-mode built them (default: authz.py's); a bootstrap token's
    restriction and the shared PKI's go first whatever they are."""
    chain = (authorizers or default_authorizers()).chain
    authorizers = Authorizers([ServerPKIRestriction(), BootstrapTokenRestriction(), *chain])
    return APISecurity(pki, secure_authenticators(pki.client_ca_certs, secret_lookup, tokens), authorizers,
                       NodeCertificateSigner(pki.ca, loopback_client, signing_duration),
                       ServerPKIServer(pki, secret_lookup))
