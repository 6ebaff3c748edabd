"""What every verb needs: the client (from --server / KETCH_SERVER), the IO streams and the clock.

Verbs take a Factory, so tests can hand them a client of their own (which the factory then
does not close), capture the output and fix `now`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from ketch.client.clientset import Client, connect

from .terminal import escape

DEFAULT_SERVER = "127.0.0.1:6443"


@dataclass
class Factory:
    server: str = ""
    namespace: str = ""
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    clock: Callable[[], float] = time.time
    # Set by execute(): whether -n was given (apply refuses a manifest of another namespace then).
    namespace_given: bool = False
    # Impersonation (--as, --as-group), sent with every request as kubectl's Impersonate-* headers.
    impersonate_user: str = ""
    impersonate_groups: list[str] = field(default_factory=list)
    _client: Client | None = None
    _owns_client: bool = True

    @classmethod
    def with_client(cls, client: Client, **kwargs: object) -> Factory:
        """A factory over an existing client (tests); close() leaves that client open."""
        f = cls(**kwargs)  # type: ignore[arg-type]
        f._client = client
        f._owns_client = False
        return f

    @property
    def server_address(self) -> str:
        return self.server or os.environ.get("KETCH_SERVER") or DEFAULT_SERVER

    @property
    def default_namespace(self) -> str:
        return self.namespace or os.environ.get("KETCH_NAMESPACE") or "default"

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
            self._client = connect(self.server_address, on_warning=self.warn, metadata=self.metadata())
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
