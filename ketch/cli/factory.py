"""What every verb needs: the client, the IO streams and the clock.

The client comes from the kubeconfig (--kubeconfig, else $KETCH_CONFIG, else ~/.ketch/config):
its context (--context, else current-context) gives the credentials and the CA, always; the
address is --server, else $KETCH_SERVER, else the context's. With no kubeconfig at all the CLI
speaks plaintext to --server/$KETCH_SERVER/127.0.0.1:6443 (a control plane started with
--insecure). --token replaces the user's credentials with a bearer token.

Verbs take a Factory, so tests can hand them a client of their own (which the factory then
does not close), capture the output and fix `now`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from .terminal import escape

if TYPE_CHECKING:  # the client modules load grpc, protobuf and cryptography: only verbs that talk to a server pay
    from ketch.client import kubeconfig as kcfg
    from ketch.client.clientset import Client

DEFAULT_SERVER = "127.0.0.1:6443"


class Factory:
    """What a command uses: its flags' values, its streams, its client (made on first use).
    (Written out rather than a dataclass: a dataclass costs every command ~1 ms to define.)"""

    def __init__(self, server: str = "", namespace: str = "", out: TextIO | None = None, err: TextIO | None = None,
                 stdin: TextIO | None = None, clock: Callable[[], float] = time.time, namespace_given: bool = False,
                 kubeconfig: str = "", context: str = "", token: str = "", impersonate_user: str = "",
                 impersonate_groups: list[str] | None = None) -> None:
        self.server = server
        self.namespace = namespace
        self.out: TextIO = sys.stdout if out is None else out
        self.err: TextIO = sys.stderr if err is None else err
        self.stdin: TextIO = sys.stdin if stdin is None else stdin
        self.clock = clock
        # Set by execute(): whether -n was given (apply refuses a manifest of another namespace then).
        self.namespace_given = namespace_given
        self.kubeconfig = kubeconfig
        self.context = context
        self.token = token
        # Impersonation (--as, --as-group), sent with every request as kubectl's Impersonate-* headers.
        self.impersonate_user = impersonate_user
        self.impersonate_groups: list[str] = [] if impersonate_groups is None else impersonate_groups
        self._client: Client | None = None
        self._owns_client = True
        self._creds: kcfg.Credentials | None = None

    @classmethod
    def with_client(cls, client: Client, **kwargs: object) -> Factory:
        """A factory over an existing client (tests); close() leaves that client open."""
        f = cls(**kwargs)  # type: ignore[arg-type]
        f._client = client
        f._owns_client = False
        return f

    def credentials(self) -> kcfg.Credentials | None:
        """The kubeconfig's credentials for this command (None: no kubeconfig, plaintext)."""
        from ketch.client import kubeconfig as kcfg

        if self._creds is None:
            path = kcfg.find(self.kubeconfig)
            if path is None:
                if self.context:
                    raise kcfg.ConfigError(f'context "{self.context}" does not exist: there is no kubeconfig')
                return None
            override = self.server or os.environ.get("KETCH_SERVER", "")
            self._creds = kcfg.load(path).resolve(self.context, server=override, token=self.token)
        return self._creds

    @property
    def server_address(self) -> str:
        from ketch.client import kubeconfig as kcfg

        if self.server or os.environ.get("KETCH_SERVER"):
            return self.server or os.environ["KETCH_SERVER"]
        try:
            creds = self.credentials()
        except kcfg.ConfigError:
            creds = None
        return creds.server if creds is not None and creds.server else DEFAULT_SERVER

    @property
    def default_namespace(self) -> str:
        from ketch.client import kubeconfig as kcfg

        if self.namespace or os.environ.get("KETCH_NAMESPACE"):
            return self.namespace or os.environ["KETCH_NAMESPACE"]
        try:
            creds = self.credentials()
        except kcfg.ConfigError:
            creds = None
        return (creds.namespace if creds is not None else "") or "default"

    def now(self) -> float:
        return self.clock()

    def impersonate(self, user: str, groups: list[str]) -> None:
        if user:
            self.impersonate_user, self.impersonate_groups = user, list(groups)

    def metadata(self) -> list[tuple[str, str]]:
        if not self.impersonate_user:
            return []
        return [("impersonate-user", self.impersonate_user),
                *(("impersonate-group", g) for g in self.impersonate_groups)]

    def client(self) -> Client:
        if self._client is None:
            from ketch.client.clientset import connect
            from ketch.client.config import tls_of

            creds = self.credentials()
            if creds is None:
                self._client = connect(self.server_address, on_warning=self.warn, metadata=self.metadata())
            else:
                self._client = connect(creds.server, on_warning=self.warn, tls=tls_of(creds), token=creds.token,
                                       metadata=self.metadata())
            self._owns_client = True
        return self._client

    def warn(self, message: str) -> None:
        print(escape(f"Warning: {message}"), file=self.err)

    def print(self, text: str = "") -> None:
        """A human message: object names and server text in it are escaped for the terminal."""
        print(escape(text), file=self.out)

    def error_line(self, text: str) -> None:
        print(escape(" ".join(text.split("\n"))), file=self.err)

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()
            self._client = None
