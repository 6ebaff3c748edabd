"""Read the certificates a TLS server presents, trusting none of them: how a joining agent
learns the CA it then checks against its token's hash, and how `insecure-skip-tls-verify`
learns what to trust. Only the handshake happens (with the public no-identity client
certificate, since the API server asks every client for one); no application data is sent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator

from cryptography import x509

from . import anonymous, certs


@contextlib.contextmanager
def _no_identity_files() -> Iterator[tuple[str, str]]:
    """ssl loads a client certificate only from files: the public one, in a private temp dir."""
    with tempfile.TemporaryDirectory(prefix="ketch-tls-") as tmp:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        for path, data in ((cert, anonymous.CERT), (key, anonymous.KEY)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        yield cert, key


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid server address {target!r}: use HOST:PORT")
    return host.strip("[]"), int(port)


def presented_chain(target: str, timeout: float = 10.0) -> list[x509.Certificate]:
    """The certificates the server at HOST:PORT sends in its handshake, unverified, leaf first."""
    host, port = split_target(target)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with _no_identity_files() as (cert, key):
        ctx.load_cert_chain(cert, key)
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        sslobj = tls._sslobj  # type: ignore[attr-defined]  # get_unverified_chain: public from 3.13
        chain = sslobj.get_unverified_chain() or []
        ders = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    return [x509.load_der_x509_certificate(d) for d in ders]


class PinError(Exception):
    """No address presented the pinned CA; the message says why, in one line."""


def pinned_ca(addresses: list[str], ca_hash: str, token_kind: str, timeout: float = 10.0) -> bytes:
    """The CA whose DER sha256 is ca_hash (PEM), from the first of addresses that answers over TLS.

    Shared by an agent's join and a control plane's --join: both pin the CA by their token's hash
    before they send it anything; an address presenting another CA stops the search."""
    unreachable = []
    for address in addresses:
        try:
            chain = presented_chain(address, timeout)
        except (OSError, ValueError) as err:
            unreachable.append((address, err))
            continue
        for cert in chain:
            if certs.der_sha256(cert) == ca_hash:
                return certs.cert_pem(cert)
        raise PinError(f"the control plane at {address} does not present the CA whose sha256 is {ca_hash} (the "
                       f"{token_kind}'s): refusing to send it the token (a wrong token, or not the server you meant)")
    if len(unreachable) == 1:
        address, why = unreachable[0]
        raise PinError(f"cannot reach the control plane at {address} over TLS: {why}")
    raise PinError("cannot reach the control plane over TLS: " + "; ".join(f"{a}: {e}" for a, e in unreachable))
