"""Running `ketch` verbs in-process against the test API server, capturing what they print.

Not a test module of its own: the CLI integration tests import `CLI` from here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from ketch.cli.factory import Factory
from ketch.cli.main import execute
from ketch.client.clientset import Client


@dataclass
class Result:
    code: int
    out: str
    err: str


class CLI:
    """`await cli("get", "jobs")` runs the verb on the given client, as the `ketch` command would."""

    def __init__(self, client: Client, now: float | None = None) -> None:
        self.client = client
        self.now = now

    async def __call__(self, *argv: str, stdin: str = "", server: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        factory = Factory.with_client(self.client, out=out, err=err, stdin=io.StringIO(stdin))
        if self.now is not None:
            factory.clock = lambda: self.now  # type: ignore[assignment,return-value]
        previous = self.client.on_warning
        self.client.on_warning = factory.warn
        try:
            code = await execute(list(argv), factory)
        finally:
            self.client.on_warning = previous
        return Result(code, out.getvalue(), err.getvalue())
