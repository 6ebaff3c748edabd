"""The control plane's --metrics-listen port through a real TLS listener and the API's own
authenticators and RBAC: /metrics is 401 without credentials and 403 without the right (Kubernetes'
Status bodies), 200 for system:monitoring by bearer token or client certificate; the health paths
are public as system:public-info-viewer allows; a wedged store fails /readyz and /livez with the
check named, and SIGTERM fails /readyz only."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from controlplane import observe
from controlplane.apiserver.request import UserInfo
from controlplane.apiserver.testing import TestAPIServer
from ketch.serving.http import HTTPServer
from ketch.testing.httpsget import context, get

MONITOR_TOKEN = "monitor-token-0123456789"
BOB_TOKEN = "bob-token-0123456789"


@dataclass
class Side:
    api: TestAPIServer
    health: observe.ControlPlaneHealth
    server: HTTPServer
    address: str
    ca: ssl.SSLContext

    async def get(self, path: str, token: str = "", ctx: ssl.SSLContext | None = None,
                  **kwargs: object) -> tuple[int, dict[str, str], bytes]:
        return await asyncio.to_thread(get, self.address, path, ctx or self.ca, token, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def side() -> AsyncIterator[Side]:
    tokens = {MONITOR_TOKEN: UserInfo("prometheus", ("system:monitoring", "system:authenticated")),
              BOB_TOKEN: UserInfo("bob", ("system:authenticated",))}
    async with TestAPIServer(authorization=("Node", "RBAC"), token_auth=tokens) as api:
        assert api.security is not None and api.pki is not None
        health = observe.ControlPlaneHealth(api.store)
        health.controllers_started = True
        server, port = await observe.serve("127.0.0.1:0", api.security, health)
        try:
            yield Side(api, health, server, f"127.0.0.1:{port}", context(api.pki.ca_pem))
        finally:
            await server.stop()


def _status(body: bytes) -> dict[str, object]:
    return dict(json.loads(body))


async def test_metrics_needs_credentials_and_the_right(side: Side) -> None:
    code, headers, body = await side.get("/metrics")
    assert code == 401
    assert headers["content-type"] == "application/json"
    assert _status(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    code, _, body = await side.get("/metrics", token="not-a-known-token")
    assert code == 401 and _status(body)["reason"] == "Unauthorized"
    code, _, body = await side.get("/metrics", token=BOB_TOKEN)
    assert code == 403
    status = _status(body)
    assert status["reason"] == "Forbidden" and status["code"] == 403
    assert status["message"] == 'forbidden: User "bob" cannot get path "/metrics"'


async def test_metrics_for_system_monitoring_by_token_and_by_certificate(side: Side) -> None:
    code, headers, body = await side.get("/metrics", token=MONITOR_TOKEN)
    assert code == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"\nprocess_resident_memory_bytes " in body
    # Prometheus asks for OpenMetrics first.
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    code, headers, body = await side.get("/metrics", token=MONITOR_TOKEN, headers={"Accept": accept})
    assert code == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")

    assert side.api.pki is not None
    issued = side.api.pki.ca.issue("scraper", ["system:monitoring"], client=True)
    code, _, body = await side.get("/metrics", ctx=context(side.api.pki.ca_pem, issued.cert, issued.key))
    assert code == 200 and b"process_resident_memory_bytes" in body
    plain = side.api.pki.ca.issue("carol", [], client=True)
    code, _, body = await side.get("/metrics", ctx=context(side.api.pki.ca_pem, plain.cert, plain.key))
    assert code == 403 and 'User "carol" cannot get path "/metrics"' in _status(body)["message"]  # type: ignore[operator]


async def test_a_certificate_of_another_ca_is_refused_at_the_handshake(side: Side) -> None:
    async with TestAPIServer() as other:
        assert other.pki is not None and side.api.pki is not None
        stranger = other.pki.ca.issue("admin", ["system:masters"], client=True)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await side.get("/metrics", ctx=context(side.api.pki.ca_pem, stranger.cert, stranger.key))


async def test_health_is_public_and_its_checks_are_for_monitoring(side: Side) -> None:
    for path in ("/livez", "/readyz", "/healthz"):
        code, headers, body = await side.get(path)
        assert (code, body) == (200, b"ok")
        assert headers["content-type"] == "text/plain; charset=utf-8"
    code, _, body = await side.get("/readyz?verbose")
    assert code == 200
    assert body.decode().splitlines() == ["[+]ping ok", "[+]etcd ok", "[+]poststarthook/start-controllers ok",
                                          "[+]shutdown ok", "readyz check passed"]
    code, _, body = await side.get("/healthz?verbose")
    assert "[+]leaderElection ok" in body.decode()
    # /readyz/etcd is system:monitoring's (/readyz/*), not public: anonymous is forbidden.
    code, _, body = await side.get("/readyz/etcd")
    assert code == 403
    assert _status(body)["message"] == 'forbidden: User "system:anonymous" cannot get path "/readyz/etcd"'
    assert (await side.get("/readyz/etcd", token=MONITOR_TOKEN))[::2] == (200, b"ok")
    # Anonymous is for the health paths only; anything else without credentials is 401.
    assert (await side.get("/version"))[0] == 401
    assert (await side.get("/nosuch", token=BOB_TOKEN))[0] == 403
    assert (await side.get("/nosuch", token=MONITOR_TOKEN))[0] == 403
    assert side.api.pki is not None and side.api.pki.admin is not None
    admin = context(side.api.pki.ca_pem, side.api.pki.admin.cert, side.api.pki.admin.key)
    assert (await side.get("/nosuch", ctx=admin))[::2] == (404, b"404 page not found\n")
    code, _, _ = await side.get("/readyz", token="not-a-known-token")
    assert code == 401
    code, _, body = await side.get("/livez?verbose&exclude=etcd&exclude=nosuch")
    assert code == 200
    assert body.decode().splitlines() == ["[+]ping ok", "[+]etcd excluded: ok",
                                          'warn: some health checks cannot be excluded: no matches for "nosuch"',
                                          "livez check passed"]
    assert (await side.get("/metrics", method="POST", token=MONITOR_TOKEN))[0] == 405


async def test_a_wedged_store_fails_readyz_and_livez_naming_the_check(side: Side) -> None:
    release = threading.Event()
    # A commit that never returns: the store's writer thread is busy until released.
    wedge = side.api.store._executor.submit(release.wait, 60)
    try:
        code, _, body = await side.get("/readyz")
        assert code == 500
        lines = body.decode().splitlines()
        assert "[-]etcd failed: reason withheld" in lines and lines[-1] == "readyz check failed"
        assert "[+]ping ok" in lines
        assert (await side.get("/livez"))[0] == 500
        code, _, body = await side.get("/readyz/etcd", token=MONITOR_TOKEN)
        assert code == 500 and body.decode() == "internal server error: no answer within 2s\n"
        code, _, body = await side.get("/readyz?exclude=etcd")
        assert (code, body) == (200, b"ok")
    finally:
        release.set()
        wedge.result(timeout=10)
    assert (await side.get("/readyz"))[::2] == (200, b"ok")


async def test_shutdown_fails_readyz_only(side: Side) -> None:
    side.health.shutting_down = True
    code, _, body = await side.get("/readyz")
    assert code == 500 and "[-]shutdown failed: reason withheld" in body.decode().splitlines()
    assert (await side.get("/livez"))[::2] == (200, b"ok")
    assert (await side.get("/healthz"))[::2] == (200, b"ok")


async def test_controllers_not_started_fail_readyz(side: Side) -> None:
    side.health.controllers_started = False
    code, _, body = await side.get("/readyz?verbose")
    assert code == 500 and "[-]poststarthook/start-controllers failed: reason withheld" in body.decode()
    assert (await side.get("/livez"))[0] == 200


def test_the_flag_is_parsed() -> None:
    from controlplane.main import build_parser

    assert build_parser().parse_args([]).metrics_listen == ""
    assert build_parser().parse_args(["--metrics-listen", "127.0.0.1:10257"]).metrics_listen == "127.0.0.1:10257"
    for bad in ("10257", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--metrics-listen", bad])


async def test_a_leader_that_stopped_renewing_fails_healthz_only(side: Side) -> None:
    """kube-controller-manager's leaderElection check: a leader whose last renewal is older than
    the lease duration + 20 s fails /healthz (a process supervisor restarts it); /readyz stays."""
    from types import SimpleNamespace

    from ketch.client.leaderelection import LeaderElectionRecord

    elector = SimpleNamespace(is_leader=lambda: True, lease_duration=15.0, observed_time=time.monotonic(),
                              observed=LeaderElectionRecord(), lock=SimpleNamespace(namespace="kube-system",
                                                                                    name="ketch-controller-manager"))
    side.health.watch_leader(SimpleNamespace(elector=elector))  # type: ignore[arg-type]
    assert (await side.get("/healthz"))[::2] == (200, b"ok")
    elector.observed_time = time.monotonic() - 36.0
    code, _, body = await side.get("/healthz")
    assert code == 500 and "[-]leaderElection failed: reason withheld" in body.decode().splitlines()
    code, _, body = await side.get("/healthz/leaderElection", token=MONITOR_TOKEN)
    assert body.decode() == ("internal server error: failed election to renew leadership on lease "
                             "kube-system/ketch-controller-manager\n")
    assert (await side.get("/readyz"))[::2] == (200, b"ok")
    elector.is_leader = lambda: False  # a replica that does not lead has nothing to renew
    assert (await side.get("/healthz"))[::2] == (200, b"ok")
