"""From a kubeconfig to a connected Client: `connect_with_kubeconfig(path)` for programs and
tests, `client_settings` for the CLI (which also takes --server, --context and --token)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import kubeconfig
from .clientset import Client, connect
from .failover import split_servers
from .transport import CONNECT_TIMEOUT, TLSConfig


def _first_chain(servers: str) -> list[Any]:
    """The certificates the first answering address of `A,B,...` presents."""
    from ketch.security import tlsfetch  # cryptography: only for a server whose CA is not known yet

    failures = []
    for address in split_servers(servers):
        try:
            chain = tlsfetch.presented_chain(address, CONNECT_TIMEOUT)
        except (OSError, ValueError) as err:
            failures.append(f"{address}: {err}")
            continue
        if chain:
            return chain
        failures.append(f"{address}: no certificate")
    raise kubeconfig.ConfigError(f"no server presented a certificate ({'; '.join(failures)})")


def tls_of(creds: kubeconfig.Credentials) -> TLSConfig | None:
    """TLS settings for resolved credentials; None for plaintext (see kubeconfig's module doc)."""
    if creds.plaintext:
        return None
    ca = creds.ca
    if ca is None and creds.insecure_skip_verify:
        # Trust whatever CA the server presents (kubectl's insecure-skip-tls-verify).
        from ketch.security.certs import cert_pem

        chain = _first_chain(creds.server)
        ca = b"".join(cert_pem(c) for c in chain[1:] or chain)
    if ca is None:
        return None
    return TLSConfig(ca, creds.client_cert, creds.client_key)


def connect_with_kubeconfig(path: str | Path | None = None, *, server: str = "", context: str = "",
                            token: str = "", wait_for_ready: bool = False, timeout: float = 30.0,
                            on_warning: Callable[[str], None] | None = None) -> Client:
    """A Client as the kubeconfig at path (default: $KETCH_CONFIG, ~/.ketch/config) says; server
    replaces the context's address (the credentials and CA still come from the file)."""
    found = kubeconfig.find(str(path) if path else "")
    if found is None:
        if not server:
            raise kubeconfig.ConfigError("no kubeconfig: give --kubeconfig, set KETCH_CONFIG, or write ~/.ketch/config")
        return connect(server, wait_for_ready=wait_for_ready, timeout=timeout, on_warning=on_warning)
    creds = kubeconfig.load(found).resolve(context, server=server, token=token)
    return connect(creds.server, wait_for_ready=wait_for_ready, timeout=timeout, on_warning=on_warning,
                   tls=tls_of(creds), token=creds.token)
