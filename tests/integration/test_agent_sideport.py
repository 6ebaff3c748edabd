"""The agent's --metrics-listen port as the kubelet's: a client certificate of the cluster CA or a
bearer token the control plane vouches for, and `get nodes/metrics` on this node allowed by the
control plane's SubjectAccessReview; 401/403 as metav1.Status JSON with the kubelet's words; the
health paths public, failing with the check named when the node is not registered or its
heartbeat loop is wedged."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from controlplane.apiserver.request import UserInfo
from controlplane.apiserver.testing import TestAPIServer
from ketch.api import manifest
from ketch.client.transport import TLSConfig
from ketch.serving.http import HTTPServer
from ketch.testing.httpsget import context, get
from nodeagent import observe

NODE = "n1"
MONITOR_TOKEN = "monitor-token-0123456789"
RBAC = "rbac.authorization.k8s.io"


@dataclass
class Side:
    api: TestAPIServer
    health: observe.AgentHealth
    server: HTTPServer
    address: str
    ca: ssl.SSLContext
    registered: list[bool]

    async def get(self, path: str, token: str = "", ctx: ssl.SSLContext | None = None,
                  ) -> tuple[int, dict[str, str], bytes]:
        return await asyncio.to_thread(get, self.address, path, ctx or self.ca, token)

    def as_user(self, name: str, *groups: str) -> ssl.SSLContext:
        assert self.api.pki is not None
        issued = self.api.pki.ca.issue(name, list(groups), client=True)
        return context(self.api.pki.ca_pem, issued.cert, issued.key)


@pytest.fixture
async def side() -> AsyncIterator[Side]:
    tokens = {MONITOR_TOKEN: UserInfo("prometheus", ("system:monitoring", "system:authenticated"))}
    async with TestAPIServer(authorization=("Node", "RBAC"), token_auth=tokens) as api:
        assert api.pki is not None and api.client is not None
        # What kube-prometheus grants its Prometheus to scrape kubelets.
        for obj in ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": "node-metrics"},
                     "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]},
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": "node-metrics"},
                     "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "node-metrics"},
                     "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "system:monitoring"}]}):
            await api.client.create(manifest.from_dict(obj))
        node_client = api.pki.ca.issue(f"system:node:{NODE}", ["system:nodes"], client=True)
        node_serving = api.pki.ca.issue(f"system:node:{NODE}", ["system:nodes"], server=True, sans=["127.0.0.1"])
        client = api.connect(tls=TLSConfig(api.pki.ca_pem, node_client.cert, node_client.key))
        registered = [True]
        health = observe.AgentHealth(lambda: registered[0], heartbeat_interval=10.0)
        webhook = observe.Webhook(client, api.address, lambda: api.pki.ca_pem if api.pki else b"", NODE)
        server, port, _ = await observe.serve(
            "127.0.0.1:0", health, observe.Serving(node_serving.cert, node_serving.key, api.pki.ca_pem), webhook)
        try:
            yield Side(api, health, server, f"127.0.0.1:{port}", context(api.pki.ca_pem), registered)
        finally:
            await server.stop()
            await client.close()


async def test_metrics_needs_credentials_and_the_control_planes_yes(side: Side) -> None:
    code, headers, body = await side.get("/metrics")
    assert code == 401 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    code, _, body = await side.get("/metrics", token="not-a-known-token")
    assert code == 401
    code, _, body = await side.get("/metrics", ctx=side.as_user("carol"))
    assert code == 403
    status = json.loads(body)
    assert (status["reason"], status["code"]) == ("Forbidden", 403)
    assert status["message"] == "Forbidden (user=carol, verb=get, resource=nodes, subresource=metrics)"


async def test_metrics_for_a_monitoring_certificate_or_token(side: Side) -> None:
    code, _, body = await side.get("/metrics", ctx=side.as_user("scraper", "system:monitoring"))
    assert code == 200, body
    assert b"\nprocess_resident_memory_bytes " in body
    code, _, body = await side.get("/metrics", token=MONITOR_TOKEN)
    assert code == 200, body
    assert b"process_resident_memory_bytes" in body


async def test_health_is_public_and_names_the_failing_check(side: Side) -> None:
    for path in ("/livez", "/readyz", "/healthz"):
        code, _, body = await side.get(path)
        assert (code, body) == (200, b"ok")
    code, _, body = await side.get("/readyz?verbose")
    assert body.decode().splitlines() == ["[+]ping ok", "[+]registered ok", "[+]syncloop ok", "readyz check passed"]

    side.registered[0] = False
    code, _, body = await side.get("/readyz")
    assert code == 500 and "[-]registered failed: reason withheld" in body.decode().splitlines()
    assert (await side.get("/livez"))[0] == 200
    side.registered[0] = True

    side.health.last_loop = time.monotonic() - 1000  # the heartbeat loop has not run for 1000 s
    for path in ("/livez", "/readyz", "/healthz"):
        code, _, body = await side.get(path)
        assert code == 500 and "[-]syncloop failed: reason withheld" in body.decode().splitlines(), path
    code, _, body = await side.get("/livez/syncloop")
    assert code == 500
    assert body.decode().startswith("internal server error: sync loop took longer than expected: no heartbeat for")
    side.health.loop_ran(renewed=True)
    assert (await side.get("/livez"))[::2] == (200, b"ok")


def test_the_flag_is_parsed() -> None:
    from nodeagent.main import build_parser

    assert build_parser().parse_args([]).metrics_listen == ""
    assert build_parser().parse_args(["--metrics-listen", "127.0.0.1:10250"]).metrics_listen == "127.0.0.1:10250"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--metrics-listen", "10250"])
