"""Authentication: who sent a request, from what came with it (kube-apiserver's authenticator
union: the first authenticator that recognises the request names its user).

Today's entries: the control plane's own in-process clients are the loopback user (as
kube-apiserver's loopback client), everyone else is anonymous. Client certificates and bearer
tokens come as further entries, ahead of the anonymous one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ketch.api import errors

from .request import ANONYMOUS_USER, LOOPBACK_USER, UserInfo


class Credentials:
    """What a request carries that may say who sent it. The gRPC metadata is read only when an
    authenticator asks for it (building it costs every request otherwise)."""

    __slots__ = ("_metadata", "_read_metadata", "loopback", "peer_certificate")

    def __init__(self, loopback: bool = False, metadata: Mapping[str, str] | None = None,
                 read_metadata: Callable[[], Mapping[str, str]] | None = None,
                 peer_certificate: bytes = b"") -> None:
        self.loopback = loopback  # an in-process call from the control plane itself
        self._metadata = metadata
        self._read_metadata = read_metadata
        self.peer_certificate = peer_certificate  # the TLS client certificate, PEM

    @property
    def metadata(self) -> Mapping[str, str]:
        """gRPC metadata (authorization: Bearer …)."""
        if self._metadata is None:
            self._metadata = self._read_metadata() if self._read_metadata is not None else {}
        return self._metadata


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
