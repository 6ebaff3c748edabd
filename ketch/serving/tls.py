"""The side port's TLS context, from the PEM bytes the components already hold in memory.

A client certificate is asked for but optional (kube-apiserver's way: a scraper may present a
bearer token instead); one that is presented must chain to the cluster CA, else the handshake
fails. `replace` loads a renewed serving certificate into the same context: later handshakes
use it.
"""

from __future__ import annotations

import os
import ssl
import tempfile


def server_context(cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    replace(ctx, cert_pem, key_pem)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=client_ca_pem.decode())
    return ctx


def replace(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """load_cert_chain reads files only: the pair goes through a private temporary directory,
    removed at once."""
    with tempfile.TemporaryDirectory(prefix="ketch-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)
