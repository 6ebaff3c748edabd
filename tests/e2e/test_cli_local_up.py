"""`ketch local up`: a control plane and agents as processes, usable at once, all gone after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ketch.local.launcher import free_port

from .harness import BIN, wait_until

HELLO = """
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  completions: 2
  template:
    spec:
      containers: [{name: hello, command: ["sh", "-c", "echo hello from $(hostname)"]}]
      restartPolicy: Never
"""


def processes_under(path: Path) -> list[int]:
    """Pids whose command line or working directory is inside path (what local up started)."""
    mine = str(path)
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(pid_dir / "cwd")
        except OSError:
            continue
        if mine in cmdline or cwd.startswith(mine):
            found.append(int(pid_dir.name))
    return found


@pytest.fixture
def local_dir(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "local"
    yield data
    for pid in processes_under(data):  # whatever a failed test left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_local_up_serves_a_cluster_and_stops_it_on_sigterm(local_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    server = f"127.0.0.1:{port}"
    out_path = tmp_path / "up.out"
    env = dict(os.environ, PYTHONUNBUFFERED="1", HOME=str(tmp_path / "home"))  # its record goes to ~/.ketch/local
    env.pop("KETCH_SERVER", None)
    env.pop("KETCH_CONFIG", None)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "ketch"), "local", "up", "--agents", "2", "--port", str(port), "--data-dir", str(local_dir),
             "--heartbeat-interval", "1s", "--job-backoff-base", "1s", "--stop-timeout", "20s"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        admin = local_dir / "admin.conf"
        wait_until(lambda: f"export KETCH_CONFIG={admin}" in out_path.read_text(), 60,
                   "local up to print how to use it")
        assert oct(admin.stat().st_mode & 0o777) == "0o600"
        env["KETCH_CONFIG"] = str(admin)  # secure by default: the admin kubeconfig it wrote

        def ketch(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(BIN / "ketch"), "--server", server, *args], input=stdin, capture_output=True,
                                  text=True, env=env, timeout=60)

        columns = 'custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status'
        nodes = ketch("get", "nodes", "-o", columns, "--no-headers")
        assert nodes.stdout.split() == ["node-1", "True", "node-2", "True"], nodes.stderr
        assert ketch("apply", "-f", "-", stdin=HELLO).returncode == 0
        done = ketch("wait", "--for=condition=Complete", "job/hello", "--timeout", "60s")
        assert done.stdout == "job.batch/hello condition met\n", done.stderr
        logs = ketch("logs", "job/hello")
        assert logs.stdout.startswith("hello from "), logs.stderr
        assert (local_dir / "controlplane.log").exists() and (local_dir / "node-2.log").exists()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        text = out_path.read_text()
        assert "Stopping the local cluster..." in text and text.rstrip().endswith("Stopped.")
        wait_until(lambda: not processes_under(local_dir), 10, "every process of the local cluster to be gone")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_local_up_reports_a_control_plane_that_cannot_start(local_dir: Path, tmp_path: Path) -> None:
    # (A busy port is refused before anything starts: tests/e2e/test_cli_local_names.py.)
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [str(BIN / "ketch"), "local", "up", "--agents", "1", "--port", str(free_port()), "--data-dir", str(local_dir),
         "--controlplane-arg=--no-such-flag", "--ready-timeout", "30s"],
        capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 1
    assert "error: the control plane exited with code 2" in result.stderr
    assert not processes_under(local_dir)
    assert not (tmp_path / "home" / ".ketch" / "local" / "default" / "state.json").exists()
