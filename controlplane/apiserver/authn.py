"""Authentication: who sent a request, from what came with it (kube-apiserver's authenticator
union: the first authenticator that recognises the request names its user).

The entries, in kube-apiserver's order: the loopback user (the control plane's own in-process
clients), x509 client certificates (CN the user, O its groups), bearer tokens from
--token-auth-file, bootstrap tokens (Secrets kube-system/bootstrap-token-<id>). Every
authenticated user also gets the group system:authenticated. With security on there is no
anonymous entry: a request no entry recognises is Unauthorized (kube-apiserver's 401). With
--insecure everyone is `system:unsecured` in system:masters, as kube-apiserver's old insecure port.
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509

from ketch.api import errors, timeutil
from ketch.security import certs, jointoken

from .request import ANONYMOUS_USER, LOOPBACK_USER, UserInfo

log = logging.getLogger(__name__)

AUTHENTICATED = "system:authenticated"
UNSECURED_USER = UserInfo("system:unsecured", ("system:masters", AUTHENTICATED))


class Credentials:
    """What a request carries that may say who sent it. The gRPC metadata is read only when an
    authenticator asks for it (building it costs every request otherwise)."""

    __slots__ = ("_metadata", "_peer", "_read_metadata", "_read_peer", "loopback")

    def __init__(self, loopback: bool = False, metadata: Mapping[str, str] | None = None,
                 read_metadata: Callable[[], Mapping[str, str]] | None = None,
                 peer_certificate: bytes | None = None, read_peer: Callable[[], bytes] | None = None) -> None:
        self.loopback = loopback  # an in-process call from the control plane itself
        self._metadata = metadata
        self._read_metadata = read_metadata
        self._peer = peer_certificate
        self._read_peer = read_peer

    @property
    def peer_certificate(self) -> bytes:
        """The TLS client certificate, PEM (b"" for none), read from the connection when asked."""
        if self._peer is None:
            self._peer = self._read_peer() if self._read_peer is not None else b""
        return self._peer

    def bearer_token(self) -> str:
        value = self.metadata.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

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


class UnsecuredAuthenticator:
    """--insecure: no authentication, everything allowed (loopback listeners only)."""

    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        return UNSECURED_USER


def _with_authenticated(groups: Sequence[str]) -> tuple[str, ...]:
    return (*groups, AUTHENTICATED) if AUTHENTICATED not in groups else tuple(groups)


class X509Authenticator:
    """A client certificate signed by the client CA: CN the user, O the groups. TLS accepted the
    certificate against the client CA *or* the public no-identity CA, so each certificate is
    checked against the client CA here (once: results are kept by certificate) and one the
    client CA did not sign is no identity. An expired certificate is refused."""

    MAX_CACHED = 4096

    def __init__(self, client_cas: Sequence[x509.Certificate]) -> None:
        self.client_cas = list(client_cas)
        self._known: dict[bytes, tuple[UserInfo | None, float, float]] = {}

    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        pem = credentials.peer_certificate
        if not pem:
            return None
        known = self._known.get(pem)
        if known is None:
            known = self._verify(pem)
            if len(self._known) >= self.MAX_CACHED:
                self._known.clear()
            self._known[pem] = known
        user, not_before, not_after = known
        if user is None:
            return None
        now = time.time()
        if not not_before <= now <= not_after:
            raise errors.Unauthorized("Unauthorized")
        return user

    def _verify(self, pem: bytes) -> tuple[UserInfo | None, float, float]:
        try:
            cert = certs.load_cert(pem)
        except ValueError:
            return None, 0.0, 0.0
        if not certs.verify_issued_by(cert, self.client_cas):
            return None, 0.0, 0.0
        name, orgs = certs.user_of(cert)
        if not name:
            return None, 0.0, 0.0
        start, end = certs.lifetime(cert)
        return UserInfo(name, _with_authenticated(orgs)), start, end


def read_token_file(path: str | Path) -> dict[str, UserInfo]:
    """kube-apiserver's --token-auth-file: CSV `token,user,uid,"group1,group2"` (groups optional)."""
    text = Path(path).read_text()
    out: dict[str, UserInfo] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValueError(f"{path}, line {number}: expected token,user,uid[,\"group1,group2\"]")
        token, user, uid = (c.strip() for c in row[:3])
        if not token or not user:
            raise ValueError(f"{path}, line {number}: the token and the user must not be empty")
        groups = [g.strip() for g in row[3].split(",") if g.strip()] if len(row) > 3 else []
        if token in out:
            log.warning("%s, line %d: a duplicate token; the later one wins", path, number)
        out[token] = UserInfo(user, _with_authenticated(groups), uid)
    return out


class TokenFileAuthenticator:
    """Bearer tokens from --token-auth-file."""

    def __init__(self, tokens: Mapping[str, UserInfo]) -> None:
        self.tokens = dict(tokens)

    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        token = credentials.bearer_token()
        if not token:
            return None
        for known, user in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None


class BootstrapTokenAuthenticator:
    """Kubernetes' bootstrap tokens: bearer `<id>.<secret>` matching the Secret
    kube-system/bootstrap-token-<id> (type bootstrap.kubernetes.io/token, usage-bootstrap-
    authentication "true", not expired, not being deleted). The user is system:bootstrap:<id> in
    system:bootstrappers and the Secret's auth-extra-groups (those of the system:bootstrappers:
    prefix)."""

    def __init__(self, lookup: Callable[[str], object | None], clock: Callable[[], float] = time.time) -> None:
        self.lookup = lookup  # namespace/name -> the Secret, or None
        self.clock = clock

    def authenticate(self, credentials: Credentials) -> UserInfo | None:
        m = jointoken.BOOTSTRAP_RE.match(credentials.bearer_token())
        if m is None:
            return None
        token_id, token_secret = m.group(1), m.group(2)
        secret = self.lookup(f"{jointoken.SECRET_NAMESPACE}/{jointoken.secret_name(token_id)}")
        if secret is None:
            return None
        data: Mapping[str, bytes] = secret.data  # type: ignore[attr-defined]
        if secret.type != jointoken.SECRET_TYPE or secret.metadata.deletion_timestamp:  # type: ignore[attr-defined]
            return None
        if data.get("token-id", b"").decode(errors="replace") != token_id:
            return None
        if not hmac.compare_digest(data.get("token-secret", b""), token_secret.encode()):
            return None
        if data.get("usage-bootstrap-authentication", b"") != b"true":
            return None
        expiration = data.get("expiration", b"").decode(errors="replace")
        if expiration:
            when = timeutil.parse_or_none(expiration)
            if when is None or when <= self.clock():
                return None
        extra = [g.strip() for g in data.get("auth-extra-groups", b"").decode(errors="replace").split(",")
                 if g.strip().startswith(jointoken.BOOTSTRAPPERS + ":")]
        return UserInfo(jointoken.BOOTSTRAP_USER_PREFIX + token_id,
                        _with_authenticated([jointoken.BOOTSTRAPPERS, *extra]))


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
    """In-process chains (the loopback user) and tests without a network."""
    return Authenticators([LoopbackAuthenticator(), AnonymousAuthenticator()])


def insecure_authenticators() -> Authenticators:
    return Authenticators([LoopbackAuthenticator(), UnsecuredAuthenticator()])


def secure_authenticators(client_cas: Sequence[x509.Certificate], secret_lookup: Callable[[str], object | None],
                          tokens: Mapping[str, UserInfo] | None = None) -> Authenticators:
    """Certificates, then the token file, then bootstrap tokens; nobody else."""
    chain: list[Authenticator] = [LoopbackAuthenticator(), X509Authenticator(client_cas)]
    if tokens:
        chain.append(TokenFileAuthenticator(tokens))
    chain.append(BootstrapTokenAuthenticator(secret_lookup))
    return Authenticators(chain)
