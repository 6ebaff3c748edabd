#!/usr/bin/env python3
"""The main job: a local cluster (control plane + 2 agents, SQLite store) runs the pi Job.

Starts `ketch local up`, applies examples/pi-job.yaml, waits for it to complete, shows the Job,
its pods and one pod's output, then stops the cluster. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ketch(server: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ketch"), "--server", server, *args], text=True, capture_output=True,
                          check=check)


def show(server: str, *args: str) -> None:
    print(f"\n$ ketch {' '.join(args)}", flush=True)
    result = ketch(server, *args, check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode:
        raise SystemExit(f"`ketch {' '.join(args)}` failed")


def main() -> int:
    port = free_port()
    server = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="ketch-demo-") as data:
        # `local up` is secure by default and writes its admin kubeconfig here once it is up.
        os.environ["KETCH_CONFIG"] = os.path.join(data, "admin.conf")
        # A name of its own, so a `ketch local up` of yours (named "default") is left alone.
        print(f"$ ketch local up --name demo --agents 2 --port {port} --data-dir {data}", flush=True)
        cluster = subprocess.Popen([str(BIN / "ketch"), "local", "up", "--name", "demo", "--agents", "2",
                                    "--port", str(port), "--data-dir", data], start_new_session=True, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while True:
                nodes = ketch(server, "get", "nodes", "-o", "json", check=False)
                if nodes.returncode == 0 and sum(
                        1 for n in json.loads(nodes.stdout)["items"]
                        if any(c["type"] == "Ready" and c["status"] == "True"
                               for c in n.get("status", {}).get("conditions", []))) == 2:
                    break
                if time.monotonic() > deadline or cluster.poll() is not None:
                    raise SystemExit("the local cluster did not come up")
                time.sleep(0.3)
            show(server, "get", "nodes")
            show(server, "apply", "-f", str(ROOT / "examples" / "pi-job.yaml"))
            show(server, "wait", "--for=condition=Complete", "job/pi", "--timeout", "180s")
            show(server, "get", "job", "pi")
            show(server, "get", "pods", "-l", "job-name=pi", "-o", "wide")
            pods = json.loads(ketch(server, "get", "pods", "-l", "job-name=pi", "-o", "json").stdout)["items"]
            show(server, "logs", pods[0]["metadata"]["name"])
        finally:
            os.killpg(cluster.pid, signal.SIGTERM)
            try:
                cluster.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
