"""Replicas share one CA (DESIGN.md, high-availability contract): a second control plane started
with `--join HOST:PORT --token SERVER_TOKEN`, or with a copy of the first one's pki/, ends with
the first one's CA and key, serves a certificate of its own that the CA issued for its
addresses, and accepts the first one's admin certificate. Each kind of failed join is one line,
exit 2, nothing written."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.client.config import connect_with_kubeconfig
from ketch.local.launcher import free_port
from ketch.security import certs, jointoken, tlsfetch

from .harness import Cluster

pytestmark = pytest.mark.e2e


def _namespaces(admin_conf: Path, server: str) -> list[str]:
    async def names() -> list[str]:
        client = connect_with_kubeconfig(admin_conf, server=server, timeout=20)
        try:
            items, _ = await client.list("Namespace")
            return sorted(n.metadata.name for n in items)
        finally:
            await client.close()
    return asyncio.run(names())


def _served_leaf(server: str) -> certs.x509.Certificate:
    return tlsfetch.presented_chain(server)[0]


def _join(tmp: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    data = tmp / f"joiner-{free_port()}"
    result = subprocess.run([sys.executable, "-m", "controlplane", "--listen", f"127.0.0.1:{free_port()}",
                             "--data-dir", str(data), *flags], capture_output=True, text=True, timeout=60)
    assert not data.exists(), "a failed join wrote nothing"
    return result


def test_a_replica_joins_with_a_server_token_and_shares_the_ca(tmp_path: Path) -> None:
    with Cluster(tmp_path / "a", cp_flags=["--tls-san", "a.example"]) as a, \
            Cluster(tmp_path / "b") as b:
        a.start_controlplane()
        server_token = a.ketch("token", "create", "--server").stdout.strip()
        parsed = jointoken.parse(server_token)
        a_pki = a.controlplane_dir / "pki"
        assert parsed.ca_hash == certs.der_sha256(certs.load_cert((a_pki / "ca.crt").read_bytes()))
        listing = a.ketch("token", "list").stdout
        server_row = next(line for line in listing.splitlines() if line.startswith(parsed.id))
        agent_id = jointoken.parse(a.join_token()).id
        agent_row = next(line for line in listing.splitlines() if line.startswith(agent_id))
        assert "server" in server_row.split()[3] and "server" not in agent_row

        b.start_controlplane(["--join", a.server, "--token", server_token, "--tls-san", "b.example"])
        b_pki = b.controlplane_dir / "pki"
        for name in ("ca.crt", "ca.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"):
            assert (b_pki / name).read_bytes() == (a_pki / name).read_bytes(), name
        for name in ("ca.key", "apiserver-kubelet-client.key", "server.key"):
            assert (b_pki / name).stat().st_mode & 0o777 == 0o600, name
        assert b_pki.stat().st_mode & 0o777 == 0o700
        ca = certs.load_cert((a_pki / "ca.crt").read_bytes())
        leaf = _served_leaf(b.server)
        assert leaf.public_bytes(certs.serialization.Encoding.PEM) == (b_pki / "server.crt").read_bytes()
        assert certs.verify_issued_by(leaf, [ca])
        assert certs.covers(leaf, ["b.example", "127.0.0.1", "localhost"])
        assert not certs.covers(leaf, ["a.example"])  # its own certificate, not A's
        # The CA is shared: each one's admin certificate is good on the other.
        assert "kube-system" in _namespaces(a.admin_config, b.server)
        assert "kube-system" in _namespaces(b.admin_config, a.server)

        # A later start needs no --join; given again (even with a bad token) it is ignored.
        b.stop_process("controlplane")
        b.start_controlplane(["--join", "127.0.0.1:1", "--token", "garbage"])
        assert (b_pki / "ca.key").read_bytes() == (a_pki / "ca.key").read_bytes()
        assert "kube-system" in _namespaces(a.admin_config, b.server)


def test_a_replica_with_a_copied_pki_reuses_the_ca_and_makes_its_own_serving_certificate(tmp_path: Path) -> None:
    with Cluster(tmp_path / "a", cp_flags=["--tls-san", "a.example"]) as a, \
            Cluster(tmp_path / "c", cp_flags=["--tls-san", "c.example"]) as c:
        a.start_controlplane()
        a_pki = a.controlplane_dir / "pki"
        shutil.copytree(a_pki, c.controlplane_dir / "pki")
        c.start_controlplane()
        c_pki = c.controlplane_dir / "pki"
        assert (c_pki / "ca.key").read_bytes() == (a_pki / "ca.key").read_bytes()
        assert (c_pki / "server.crt").read_bytes() != (a_pki / "server.crt").read_bytes()
        leaf = _served_leaf(c.server)
        assert certs.verify_issued_by(leaf, [certs.load_cert((a_pki / "ca.crt").read_bytes())])
        assert certs.covers(leaf, ["c.example", "127.0.0.1"])
        assert "kube-system" in _namespaces(a.admin_config, c.server)


def test_a_failed_join_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    with Cluster(tmp_path / "a") as a:
        a.start_controlplane()
        server_token = jointoken.parse(a.ketch("token", "create", "--server").stdout.strip())
        ca_hash = server_token.ca_hash
        cases = {
            "does not present the CA whose sha256": str(jointoken.JoinToken("ab" * 32, server_token.id,
                                                                             server_token.secret)),
            "refused the server token (Unauthorized)": str(jointoken.new(ca_hash)),
            "(Forbidden)": a.join_token(),  # an agent's join token
            "invalid --token: the token has no CA hash": "abcdef.0123456789abcdef",
        }
        for expected, token in cases.items():
            result = _join(tmp_path, "--join", a.server, "--token", token)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], (expected, result.stderr)
            assert token.split(".")[-1] not in result.stderr  # the secret is never echoed
        unreachable = f"127.0.0.1:{free_port()}"
        result = _join(tmp_path, "--join", unreachable, "--token", str(server_token))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and f"cannot reach the control plane at {unreachable}" \
            in lines[0], result.stderr
        result = _join(tmp_path, "--join", a.server)
        assert result.returncode == 2 and "--join needs --token" in result.stderr
