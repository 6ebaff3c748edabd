"""Authentication: who sent a request, from what came with it (kube-apiserver's authenticator
union: the first authenticator that recognises the request names its user).

Today's entries: the control plane's own in-process clients are the loopback user (as
kube-apiserver's loopback client), everyone else is anonymous. Client certificates and bearer
tokens come as further entries, ahead of the anonymous one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ketch.api import errors

from .request import ANONYMOUS_USER, LOOPBACK_USER, UserInfo


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request carries that may say who sent it."""

    loopback: bool = False  # an in-process call from the control plane itself
    metadata: Mapping[str, str] = field(default_factory=dict)  # gRPC metadata (authorization: Bearer …)
    peer_certificate: bytes = b""  # the TLS client certificate, PEM


LOOPBACK = Credentials(loopback=True)


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        """The user, None if this authenticator does not recognise the request; raise
        Unauthorized for credentials that are recognised but wrong."""
        ...


class LoopbackAuthenticator:
    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        return LOOPBACK_USER if credentials.loopback else None


class AnonymousAuthenticator:
    """Anyone not recognised otherwise (kube-apiserver's --anonymous-auth)."""

    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        return ANONYMOUS_USER


class Authenticators:
    def __init__(self, chain: Sequence[Authenticator]) -> None:
        self.chain = list(chain)

    def authenticate(self, credentials: Credentials) -> UserInfo:
        for authenticator in self.chain:
            user = authenticator.authenticate(credentials)
            if user is not None:
                return user
        raise errors.Unauthorized("Unauthorized")


def default_authenticators() -> Authenticators:
    return Authenticators([LoopbackAuthenticator(), AnonymousAuthenticator()])
