"""ketch-controlplane's --authorization-mode as a user meets it: under Node,RBAC a bearer-token user
with no bindings is refused everything but what every authenticated user is granted (the version
path, questions about itself), in kubectl's words and with a non-zero exit; a wrong token is not
authenticated at all; a mode that does not exist is refused at start with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ketch.local.launcher import free_port

from .harness import Cluster

BIN = Path(sys.executable).parent / "ketch-controlplane"


def test_node_rbac_refuses_an_unbound_user_and_a_wrong_token(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('s3cr3t-bob-token,bob,uid-bob,"team-a"\n')
    c: Cluster = cluster_factory(["--authorization-mode", "Node,RBAC", "--controllers", "none",
                                  "--token-auth-file", str(tokens)])
    c.start_controlplane()
    refused = c.ketch("--token", "s3cr3t-bob-token", "get", "pods", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ('Error from server (Forbidden): pods is forbidden: User "bob" '
                                      'cannot list resource "pods" in API group "" in the namespace "default"')
    can = c.ketch("--token", "s3cr3t-bob-token", "auth", "can-i", "create", "jobs", check=False)
    assert (can.returncode, can.stdout.strip()) == (1, "no")  # system:basic-user: it may ask about itself
    who = c.ketch("--token", "s3cr3t-bob-token", "auth", "whoami", "-o", "json", check=False)
    assert who.returncode == 0 and '"username": "bob"' in who.stdout and '"team-a"' in who.stdout
    version = c.ketch("--token", "s3cr3t-bob-token", "version", check=False)  # system:public-info-viewer
    assert version.returncode == 0 and "Server Version" in version.stdout
    wrong = c.ketch("--token", "not-a-token", "get", "pods", check=False)
    assert (wrong.returncode, wrong.stderr.strip()) == (1, "error: You must be logged in to the server (Unauthorized)")
    assert c.ketch("get", "pods").returncode == 0  # the admin, from the kubeconfig, is still served


def test_an_unknown_mode_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path),
                             "--authorization-mode", "Node,ABAC"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ('error: --authorization-mode: authorization-mode "ABAC" is not a valid mode '
                                     "(valid: AlwaysAllow, AlwaysDeny, Node, RBAC)")
