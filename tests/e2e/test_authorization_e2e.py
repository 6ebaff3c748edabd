"""ketch-controlplane's --authorization-mode as a user meets it: Node,RBAC refuses an
unauthenticated client everything but what system:unauthenticated is granted (the version
path), in kubectl's words and with a non-zero exit; a mode that does not exist is refused at start
with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ketch.local.launcher import free_port

from .harness import Cluster, wait_until

BIN = Path(sys.executable).parent / "ketch-controlplane"


def test_node_rbac_refuses_the_anonymous_user(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--authorization-mode", "Node,RBAC", "--controllers", "none"])
    c.start_controlplane(wait=False)
    refused = wait_until(lambda: (r := c.ketch("get", "pods", check=False)).stderr.startswith("Error from server")
                         and r, 30, "the control plane to answer")
    assert refused.returncode == 1
    assert refused.stderr.strip() == ('Error from server (Forbidden): pods is forbidden: User "system:anonymous" '
                                      'cannot list resource "pods" in API group "" in the namespace "default"')
    can = c.ketch("auth", "can-i", "create", "jobs", check=False)
    assert (can.returncode, can.stdout) == (1, "")  # not even the question: anonymous is not authenticated
    assert "selfsubjectaccessreviews.authorization.k8s.io is forbidden" in can.stderr
    version = c.ketch("version", check=False)  # system:public-info-viewer includes the unauthenticated
    assert version.returncode == 0 and "Server Version" in version.stdout


def test_an_unknown_mode_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path),
                             "--authorization-mode", "Node,ABAC"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ('error: --authorization-mode: authorization-mode "ABAC" is not a valid mode '
                                     "(valid: AlwaysAllow, AlwaysDeny, Node, RBAC)")
