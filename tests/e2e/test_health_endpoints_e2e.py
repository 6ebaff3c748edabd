"""The --metrics-listen ports of real processes, read as a load balancer or systemd would: the
control plane's and the agent's /readyz answer without credentials once they are ready (every
check listed with ?verbose), /metrics does not (401), and a frozen control plane (SIGSTOP) does
not answer /livez until it runs again."""

from __future__ import annotations

import signal
from pathlib import Path

from ketch.local.launcher import free_port
from ketch.testing.httpsget import context, get

from .harness import Cluster, wait_until


def test_readyz_of_the_control_plane_and_the_agent(tmp_path: Path) -> None:
    cp_port, agent_port = free_port(), free_port()
    with Cluster(tmp_path / "cluster", cp_flags=["--metrics-listen", f"127.0.0.1:{cp_port}"]) as c:
        c.start_controlplane()
        c.start_agent("n1", ["--metrics-listen", f"127.0.0.1:{agent_port}"])
        ctx = context((c.controlplane_dir / "pki" / "ca.crt").read_bytes())
        cp, agent = f"127.0.0.1:{cp_port}", f"127.0.0.1:{agent_port}"

        _, _, body = wait_until(lambda: (r := get(cp, "/readyz?verbose", ctx))[0] == 200 and r, 30,
                                "the control plane's /readyz")
        assert body.decode().splitlines() == ["[+]ping ok", "[+]etcd ok", "[+]poststarthook/start-controllers ok",
                                              "[+]shutdown ok", "readyz check passed"]
        assert get(cp, "/livez", ctx)[::2] == (200, b"ok")
        assert get(cp, "/metrics", ctx)[0] == 401

        _, _, body = wait_until(lambda: (r := get(agent, "/readyz?verbose", ctx))[0] == 200 and r, 30,
                                "the agent's /readyz")
        assert body.decode().splitlines() == ["[+]ping ok", "[+]registered ok", "[+]syncloop ok",
                                              "readyz check passed"]
        assert get(agent, "/metrics", ctx)[0] == 401

        # SIGSTOP the control plane: its port accepts connections (the kernel does) but nothing
        # answers, which a prober sees as a timeout; SIGCONT and it answers again.
        c.send("controlplane", signal.SIGSTOP)
        try:
            failed = False
            try:
                get(cp, "/livez", ctx, timeout=1.0)
            except TimeoutError:
                failed = True
            assert failed, "a stopped control plane answered /livez"
        finally:
            c.send("controlplane", signal.SIGCONT)
        assert wait_until(lambda: get(cp, "/livez", ctx)[0] == 200, 30, "/livez after SIGCONT")
