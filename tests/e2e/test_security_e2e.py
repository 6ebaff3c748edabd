"""Security with real processes: --insecure only on loopback, CA pinning before anything is
sent, one agent per node name, the agent's server answering only the control plane, restarts
without the token, and certificate rotation (DESIGN.md, security contract)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from ketch.security import anonymous, certs, jointoken
from ketch.v1 import api_pb2, api_pb2_grpc
from nodeagent import credentials

from .harness import Cluster, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("listen", [["--listen", "0.0.0.0:0"],
                                    ["--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"]])
def test_insecure_is_refused_on_a_non_loopback_address(tmp_path: Path, listen: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "controlplane", *listen, "--insecure",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--insecure" in lines[0] and "0.0.0.0:0" in lines[0]
    assert not (tmp_path / "pki").exists()


class _RecordingTLSServer(threading.Thread):
    """A TLS server with a certificate of its own CA: records what a client sends after the handshake."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(daemon=True)
        ca = certs.Authority.create()
        leaf = ca.issue("impostor", server=True, sans=["127.0.0.1"])
        (tmp / "c.pem").write_bytes(leaf.cert + ca.cert_pem)
        (tmp / "k.pem").write_bytes(leaf.key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
        self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ctx.load_verify_locations(cadata=anonymous.CA_CERT.decode())
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.handshakes = 0

    def run(self) -> None:
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, self.ctx.wrap_socket(conn, server_side=True) as tls:
            self.handshakes += 1
            tls.settimeout(2)
            try:
                while chunk := tls.recv(4096):
                    self.received += chunk
            except OSError:
                pass


def test_a_token_with_a_wrong_ca_hash_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    impostor = _RecordingTLSServer(tmp_path)
    impostor.start()
    token = str(jointoken.new("ab" * 32))
    with pytest.raises(credentials.JoinError, match="does not present the CA whose sha256 is abab"):
        asyncio.run(credentials.join(f"127.0.0.1:{impostor.port}", token, "n1", ["127.0.0.1"]))
    impostor.join(10)
    assert impostor.handshakes == 1
    assert impostor.received == b""  # not the token, not even an HTTP/2 preface


def _agent_call(port: int, creds: grpc.ChannelCredentials | None) -> tuple[grpc.StatusCode, str]:
    async def call() -> tuple[grpc.StatusCode, str]:
        target = f"127.0.0.1:{port}"
        channel = grpc.aio.secure_channel(target, creds) if creds else grpc.aio.insecure_channel(target)
        async with channel:
            try:
                await api_pb2_grpc.NodeAgentStub(channel).NodeStats(api_pb2.NodeStatsRequest(), timeout=5)
            except grpc.aio.AioRpcError as err:
                return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""
    return asyncio.run(call())


def test_agents_join_once_hold_their_name_and_serve_only_the_control_plane(tmp_path: Path) -> None:
    with Cluster(tmp_path, cp_flags=["--cluster-signing-duration", "12s"]) as c:
        c.start_controlplane()
        c.start_agent("node-a")
        agent_pki = tmp_path / "agent-node-a" / "pki"
        node_cert = (agent_pki / "node.crt").read_bytes()
        assert certs.user_of(certs.load_cert(node_cert)) == ("system:node:node-a", ("system:nodes",))
        assert oct((agent_pki / "node.key").stat().st_mode & 0o777) == "0o600"

        # The agent's own server: the control plane gets stats (`ketch top`), nobody else does.
        wait_until(lambda: c.ketch("top", "nodes", check=False).returncode == 0, 30, "ketch top nodes")
        port = c.get("node", "node-a")["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        ca = (agent_pki / "ca.crt").read_bytes()
        as_node = grpc.ssl_channel_credentials(ca, (agent_pki / "node.key").read_bytes(), node_cert)
        code, details = _agent_call(port, as_node)
        # Forbidden (its gRPC code is the RBAC work's: PERMISSION_DENIED there)
        assert code != grpc.StatusCode.OK and "only the control plane may" in details
        assert _agent_call(port, grpc.ssl_channel_credentials(ca))[0] == grpc.StatusCode.UNAVAILABLE  # no cert
        assert _agent_call(port, None)[0] == grpc.StatusCode.UNAVAILABLE  # plaintext

        # A second agent under the same name with another key is refused while node-a exists.
        second = c.agent("node-a-again")
        second.argv[second.argv.index("--node-name") + 1] = "node-a"
        second.start(c.env, c.dir)
        assert second.proc is not None and second.proc.wait(60) == 1
        assert "held by another agent's key" in c.logs("agent-node-a-again")

        # Rotation at 80 % of a 12 s certificate, with the node Ready throughout.
        wait_until(lambda: (agent_pki / "node.crt").read_bytes() != node_cert, 40, "a renewed node certificate")
        renewed = certs.load_cert((agent_pki / "node.crt").read_bytes())
        assert certs.user_of(renewed)[0] == "system:node:node-a"
        old_end = certs.lifetime(certs.load_cert(node_cert))[1]
        wait_until(lambda: time.time() > old_end + 2 and c.node_ready("node-a"), 40,
                   "node-a Ready after its first certificate expired")

        # A restart needs no token.
        c.stop_process("agent-node-a")
        member = c.agent("node-a")
        member.late_args = None
        member.start(c.env, c.dir)
        wait_until(lambda: c.node_ready("node-a"), 30, "node-a Ready again without a token")
        assert "--token" not in member.argv
