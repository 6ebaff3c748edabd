"""Small places where `ketch` must answer as kubectl 1.31 does, run in-process against a real API server."""

from __future__ import annotations

from controlplane.apiserver.testing import TestAPIServer

from .test_cli_support import CLI

NS = """
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels:
    tier: gold
    app.kubernetes.io/name: web
"""


async def test_label_columns_come_before_the_labels_column(api: TestAPIServer) -> None:
    # kubectl's decorateTable: the kind's columns, then one per -L label, then LABELS.
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=NS)
    r = await cli("get", "ns", "team-a", "--show-labels", "-L", "tier,app.kubernetes.io/name")
    header, row = (line.split() for line in r.out.splitlines())
    assert header == ["NAME", "STATUS", "AGE", "TIER", "NAME", "LABELS"]
    assert row[3:5] == ["gold", "web"] and row[5].startswith("app.kubernetes.io/name=web,")
