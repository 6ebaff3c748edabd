"""What every verb needs: the client (from --server / KETCH_SERVER) and the output streams.

Verbs take a Factory, so tests can hand them a client of their own and capture the output.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

from ketch.client.clientset import Client, connect

DEFAULT_SERVER = "127.0.0.1:6443"


@dataclass
class Factory:
    server: str = ""
    namespace: str = ""
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: Client | None = None

    @property
    def server_address(self) -> str:
        return self.server or os.environ.get("KETCH_SERVER") or DEFAULT_SERVER

    @property
    def default_namespace(self) -> str:
        return self.namespace or os.environ.get("KETCH_NAMESPACE") or "default"

    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.server_address, on_warning=self.warn)
        return self._client

    def warn(self, message: str) -> None:
        print(f"Warning: {message}", file=self.err)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
