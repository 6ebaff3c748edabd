"""/livez, /readyz and /healthz as Kubernetes' healthz package answers them.

`GET /readyz`: "ok" (200) when every check passes; otherwise 500 with one line per check
(`[+]ping ok`, `[-]etcd failed: reason withheld`) and `readyz check failed` (the reason is
withheld from the aggregate, as Kubernetes does, and logged; `GET /readyz/etcd` gives it:
`internal server error: <reason>`). `?verbose` lists the lines on success too, ending
`readyz check passed`; `?exclude=NAME` (repeatable) skips a check (`[+]NAME excluded: ok`) and
warns about names that match none. Each check runs with a deadline, so a check that hangs (a
wedged store) fails the endpoint instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ketch.cancelsafe import wait_for

from .http import Request, Response, text

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0

# A check returns "" when healthy, else why not; it may also raise.
CheckFn = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFn
    timeout: float = CHECK_TIMEOUT


async def ping() -> str:
    return ""


PING = Check("ping", ping)


async def run_check(check: Check) -> str:
    """Why the check fails ("" when it passes), never raising and never past its deadline."""
    try:
        return await wait_for(check.run(), check.timeout)
    except TimeoutError:
        return f"no answer within {check.timeout:g}s"
    except Exception as err:  # a failing check is a failed check, not a 500 of the endpoint
        return f"{type(err).__name__}: {err}"


class HealthEndpoints:
    """paths: "/livez", "/readyz", "/healthz" -> their checks, in the order listed."""

    def __init__(self, paths: dict[str, Sequence[Check]]) -> None:
        self.paths = {p: list(checks) for p, checks in paths.items()}

    def handles(self, path: str) -> bool:
        return self.endpoint_of(path) is not None

    def endpoint_of(self, path: str) -> str | None:
        for root in self.paths:
            if path == root or path.startswith(root + "/"):
                return root
        return None

    async def serve(self, request: Request) -> Response:
        root = self.endpoint_of(request.path)
        if root is None:
            return text(404, "404 page not found\n")
        checks = self.paths[root]
        name = root.lstrip("/")
        if request.path != root:
            return await self._one(checks, request.path[len(root) + 1:])
        return await self._all(name, checks, request)

    @staticmethod
    async def _one(checks: Sequence[Check], wanted: str) -> Response:
        for check in checks:
            if check.name == wanted:
                reason = await run_check(check)
                return text(500, f"internal server error: {reason}\n") if reason else text(200, "ok")
        return text(404, "404 page not found\n")

    @staticmethod
    async def _all(name: str, checks: Sequence[Check], request: Request) -> Response:
        excluded = {x.strip() for value in request.query.get("exclude", []) for x in value.split(",") if x.strip()}
        running = [c for c in checks if c.name not in excluded]
        reasons = dict(zip((c.name for c in running), await asyncio.gather(*(run_check(c) for c in running)),
                           strict=True))
        lines, failed = [], []
        for check in checks:
            if check.name in excluded:
                lines.append(f"[+]{check.name} excluded: ok")
            elif reasons[check.name]:
                lines.append(f"[-]{check.name} failed: reason withheld")
                failed.append(check.name)
            else:
                lines.append(f"[+]{check.name} ok")
        unknown = sorted(excluded - {c.name for c in checks})
        if unknown:
            lines.append("warn: some health checks cannot be excluded: no matches for "
                         + ",".join(f'"{u}"' for u in unknown))
        if failed:
            log.info("%s check failed: %s", name, "; ".join(f"{f}: {reasons[f]}" for f in failed))
            return text(500, "\n".join(lines) + f"\n{name} check failed\n")
        if not request.flag("verbose"):
            return text(200, "ok")
        return text(200, "\n".join(lines) + f"\n{name} check passed\n")
