"""One blocking HTTPS GET for tests of the side port (--metrics-listen): the CA to trust, an
optional client certificate and bearer token; returns (status, headers, body)."""

from __future__ import annotations

import http.client
import os
import ssl
import tempfile


def context(ca_pem: bytes, cert_pem: bytes = b"", key_pem: bytes = b"") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if cert_pem:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
            with open(cert, "wb") as f:
                f.write(cert_pem)
            with open(key, "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(cert, key)
    return ctx


def get(address: str, path: str, ctx: ssl.SSLContext | None, token: str = "", method: str = "GET",
        headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    host, _, port = address.rpartition(":")
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    try:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        conn.request(method, path, headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()
