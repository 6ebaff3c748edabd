"""The control plane's PKI, made at first start and reused after (kubeadm's `init` phases certs
and kubeconfig, k3s's token), all under DIR/pki and DIR:

    pki/ca.crt, ca.key                  the cluster CA (10 years): signs everything below
    pki/server.crt, server.key          the API's serving certificate (1 year); SANs: the listen
                                        host, 127.0.0.1, localhost, the hostname, each --tls-san.
                                        Re-made from the CA when it no longer covers them or is
                                        past 80 % of its life.
    pki/apiserver-kubelet-client.crt/.key
                                        the client certificate the control plane dials agents with
    admin.conf                          a kubeconfig for user `admin` in `system:masters`
    join-token                          K10<sha256 of ca.crt>::<id>.<secret>; its bootstrap-token
                                        Secret has no expiry (k3s's server token has none either)

Keys are written 0600 and atomically. Certificates are EC P-256 (see ketch.security.certs).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from ketch.client import kubeconfig
from ketch.security import anonymous, certs, jointoken

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
MASTERS = "system:masters"
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_ORG = "kubeadm:cluster-admins"
SERVER_CN = "kube-apiserver"


@dataclass
class ServerPKI:
    """What the API server and its dialer need, in memory."""

    ca: certs.Authority
    server_cert: bytes
    server_key: bytes
    client_ca: bytes  # PEM bundle the API verifies client certificates against
    kubelet_client: certs.Issued
    join_token: jointoken.JoinToken | None = None
    admin: certs.Issued | None = None
    client_ca_certs: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.client_ca_certs:
            self.client_ca_certs = certs.load_certs(self.client_ca)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    @property
    def served_chain(self) -> bytes:
        """The serving certificate followed by the CA: an agent reads the CA from the handshake
        and checks it against its token's hash before trusting it."""
        chain = self.server_cert
        if self.ca_pem not in chain:
            chain = chain.rstrip(b"\n") + b"\n" + self.ca_pem
        return chain

    @property
    def trusted_client_roots(self) -> bytes:
        """What TLS accepts: the client CA and the public no-identity CA (see
        ketch.security.anonymous; the x509 authenticator checks the client CA alone)."""
        return self.client_ca.rstrip(b"\n") + b"\n" + anonymous.CA_CERT

    def admin_kubeconfig(self, server: str, user: str = ADMIN_USER) -> kubeconfig.Config:
        assert self.admin is not None
        return kubeconfig.single("ketch", server, self.ca_pem, user, client_cert=self.admin.cert,
                                 client_key=self.admin.key)


def required_sans(listen_host: str, extra: list[str]) -> list[str]:
    names = ["127.0.0.1", "localhost", socket.gethostname().lower()]
    if listen_host and listen_host not in ("0.0.0.0", "::", ""):
        names.insert(0, listen_host)
    return list(dict.fromkeys([*names, *extra]))


def in_memory(sans: list[str] | None = None) -> ServerPKI:
    """A whole PKI in memory, for in-process test servers."""
    ca = certs.Authority.create()
    server = ca.issue(SERVER_CN, server=True, sans=required_sans("127.0.0.1", sans or []))
    return ServerPKI(ca, server.cert, server.key, ca.cert_pem,
                     ca.issue(KUBELET_CLIENT_CN, [KUBELET_CLIENT_ORG], client=True),
                     jointoken.new(certs.der_sha256(ca.cert)),
                     ca.issue(ADMIN_USER, [MASTERS], client=True))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _usable(ca: certs.Authority, cert_pem: bytes | None, key_pem: bytes | None, sans: list[str] | None = None) -> bool:
    """Issued by this CA, not due for renewal, the key matches, and (for a server) its SANs cover
    the addresses it serves."""
    if cert_pem is None or key_pem is None:
        return False
    try:
        cert = certs.load_cert(cert_pem)
        key = certs.load_key(key_pem)
    except ValueError:
        return False
    if certs.public_key_sha256(cert) != certs.public_key_sha256(key.public_key()):
        return False
    if not ca.issued(cert) or not certs.fresh(cert, time.time()):
        return False
    return sans is None or certs.covers(cert, sans)


def _pair(pki_dir: Path, name: str, ca: certs.Authority, make: object, sans: list[str] | None = None) -> certs.Issued:
    crt, key = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
    cert_pem, key_pem = _read(crt), _read(key)
    if cert_pem is not None and key_pem is not None and _usable(ca, cert_pem, key_pem, sans):
        return certs.Issued(cert_pem, key_pem)
    issued: certs.Issued = make()  # type: ignore[operator]
    certs.write_private(key, issued.key)
    certs.write_private(crt, issued.cert, 0o644)
    log.info("wrote %s%s", crt, f" (SANs {', '.join(sans)})" if sans else "")
    return issued


def ensure(data_dir: Path, listen: str, tls_sans: list[str] | None = None, *, tls_cert_file: str = "",
           tls_key_file: str = "", client_ca_file: str = "") -> ServerPKI:
    """Load DIR's PKI, making what is missing or no longer fits (see the module doc)."""
    pki_dir = data_dir / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    ca_cert_pem, ca_key_pem = _read(ca_crt), _read(ca_key)
    if ca_cert_pem is None or ca_key_pem is None:
        ca = certs.Authority.create()
        certs.write_private(ca_key, certs.key_pem(ca.key))
        certs.write_private(ca_crt, ca.cert_pem, 0o644)
        log.info("made the cluster CA %s", ca_crt)
    else:
        ca = certs.Authority.load(ca_cert_pem, ca_key_pem)
    host = listen.rpartition(":")[0].strip("[]")
    sans = required_sans(host, tls_sans or [])
    if tls_cert_file or tls_key_file:
        if not (tls_cert_file and tls_key_file):
            raise ValueError("--tls-cert-file and --tls-private-key-file go together")
        server = certs.Issued(Path(tls_cert_file).read_bytes(), Path(tls_key_file).read_bytes())
    else:
        server = _pair(pki_dir, "server", ca, lambda: ca.issue(SERVER_CN, server=True, sans=sans), sans)
    kubelet_client = _pair(pki_dir, "apiserver-kubelet-client", ca,
                           lambda: ca.issue(KUBELET_CLIENT_CN, [KUBELET_CLIENT_ORG], client=True))
    client_ca = Path(client_ca_file).read_bytes() if client_ca_file else ca.cert_pem
    if client_ca_file:
        certs.load_certs(client_ca)  # refuse a file that holds no certificate, at start
    pki = ServerPKI(ca, server.cert, server.key, client_ca, kubelet_client)
    pki.join_token = _join_token(data_dir / "join-token", ca)
    pki.admin = _admin(data_dir / "admin.conf", pki, kubeconfig_server(listen))
    return pki


def kubeconfig_server(listen: str) -> str:
    """The address clients use: the listen address, 127.0.0.1 for a wildcard host."""
    host, _, port = listen.rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _join_token(path: Path, ca: certs.Authority) -> jointoken.JoinToken:
    want = certs.der_sha256(ca.cert)
    text = _read(path)
    if text is not None:
        try:
            token = jointoken.parse(text.decode())
            if token.ca_hash == want:
                return token
        except (ValueError, UnicodeDecodeError):
            pass
        log.warning("%s does not match the CA: writing a new join token", path)
    token = jointoken.new(want)
    certs.write_private(path, f"{token}\n".encode())
    return token


def _admin(path: Path, pki: ServerPKI, server: str) -> certs.Issued:
    """admin.conf: kept while its certificate is good; its server follows the listen address."""
    existing = _read(path)
    if existing is not None:
        try:
            cfg = kubeconfig.loads(existing.decode())
            creds = cfg.resolve()
            if creds.client_cert and creds.client_key and _usable(pki.ca, creds.client_cert, creds.client_key) \
                    and creds.ca == pki.ca_pem:
                admin = certs.Issued(creds.client_cert, creds.client_key)
                if creds.server != server:
                    pki.admin = admin
                    certs.write_private(path, pki.admin_kubeconfig(server).dumps().encode())
                return admin
        except (ValueError, UnicodeDecodeError, kubeconfig.ConfigError):
            pass
    pki.admin = pki.ca.issue(ADMIN_USER, [MASTERS], client=True)
    certs.write_private(path, pki.admin_kubeconfig(server).dumps().encode())
    log.info("wrote the admin kubeconfig %s", path)
    return pki.admin
