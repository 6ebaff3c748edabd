"""`ketch local up|status|down` by name (issue 14): a second `up` never harms a running cluster, the
record lives in ~/.ketch/local/NAME whatever the working directory, and `down` copes with what a
killed `up` left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ketch.local.launcher import free_port

from .harness import BIN, wait_until
from .test_cli_local_up import processes_under

SLEEPER = """
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers: [{name: sleeper, command: ["sleep", "3600"]}]
  restartPolicy: Never
"""


@dataclass
class Local:
    """A HOME and two working directories for `ketch local` runs, and the `up`s started."""

    home: Path
    a: Path
    b: Path
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]]

    def run(self, *args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ketch"), *args], capture_output=True, text=True, env=self.env, cwd=cwd,
                              timeout=timeout)

    def up(self, *args: str, cwd: Path, out: Path) -> subprocess.Popen[bytes]:
        with open(out, "wb") as f:
            proc = subprocess.Popen([str(BIN / "ketch"), "local", "up", *args], stdout=f, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=cwd, start_new_session=True)
        self.started.append(proc)
        return proc

    def state_path(self, name: str = "default") -> Path:
        return self.home / ".ketch" / "local" / name / "state.json"


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    home, a, b = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for d in (home, a, b):
        d.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", HOME=str(home))
    env.pop("KETCH_SERVER", None)
    env.pop("KETCH_CONFIG", None)
    made = Local(home, a, b, env, [])
    yield made
    for proc in made.started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for pid in processes_under(tmp_path):  # members a killed `up` left behind
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass


def wait_up(out: Path, proc: subprocess.Popen[bytes]) -> str:
    """Wait for `up` to say it is up; the admin config it printed."""
    def printed() -> str:
        assert proc.poll() is None, out.read_text()
        for line in out.read_text().splitlines():
            if line.strip().startswith("export KETCH_CONFIG="):
                return line.strip().split("=", 1)[1]
        return ""
    return wait_until(printed, 90, "local up to be up")


def get(local: Local, config: str, server: str, *args: str) -> dict[str, Any]:
    env = dict(local.env, KETCH_CONFIG=config)
    result = subprocess.run([str(BIN / "ketch"), "--server", server, "get", *args, "-o", "json"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_second_up_is_refused_and_the_running_cluster_keeps_its_pod_node_and_state(local: Local) -> None:
    port = free_port()
    server = f"127.0.0.1:{port}"
    first = local.up("--agents", "1", "--port", str(port), "--heartbeat-interval", "1s", cwd=local.a,
                     out=local.a / "up.out")
    config = wait_up(local.a / "up.out", first)
    env = dict(local.env, KETCH_CONFIG=config)
    applied = subprocess.run([str(BIN / "ketch"), "--server", server, "apply", "-f", "-"], input=SLEEPER,
                             capture_output=True, text=True, env=env, timeout=60)
    assert applied.returncode == 0, applied.stderr
    wait_until(lambda: get(local, config, server, "pod", "sleeper")["status"].get("phase") == "Running", 60,
               "the pod to run")
    pod = get(local, config, server, "pod", "sleeper")
    node = get(local, config, server, "node", "node-1")
    # (Before issue 14 the record was ./.ketch/local/local.json: read whichever exists, so the test
    # shows what the second `up` did rather than where the record lives.)
    state_path = next(p for p in (local.state_path(), local.a / ".ketch" / "local" / "local.json") if p.exists())
    state = state_path.read_bytes()

    # The scenario: the same command again, same working directory, same (busy) port.
    second = local.up("--agents", "1", "--port", str(port), "--heartbeat-interval", "1s", cwd=local.a,
                      out=local.a / "second.out")
    try:
        second.wait(60)
    except subprocess.TimeoutExpired:  # it started: stop it as a user would, and see what that did
        second.send_signal(signal.SIGTERM)
        second.wait(90)
    # The first cluster is untouched: the same pod still running, the same node, the same record.
    after = get(local, config, server, "pod", "sleeper")
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert after["status"]["phase"] == "Running"
    assert after["status"]["containerStatuses"][0].get("restartCount", 0) == 0
    assert "running" in after["status"]["containerStatuses"][0]["state"]
    assert get(local, config, server, "node", "node-1")["metadata"]["uid"] == node["metadata"]["uid"]
    assert state_path.read_bytes() == state
    assert first.poll() is None
    # And the second `up` said why, on one line, and failed.
    text = (local.a / "second.out").read_text()
    assert second.returncode == 1, text
    assert text == (f'error: local cluster "default" is already running (API server {server}, pid {first.pid}); '
                    "stop it with `ketch local down` or choose another --name\n")
    # Another name on the same port, from another directory: refused before anything is written.
    other = local.run("local", "up", "--name", "other", "--agents", "1", "--port", str(port), cwd=local.b)
    assert other.returncode == 1
    assert other.stderr == (f"error: --port {port}: {server} is already in use by the local cluster "
                            '"default"; choose another --port\n')
    assert not (local.home / ".ketch" / "local" / "other").exists()
    assert not (local.b / ".ketch").exists()


    down = local.run("local", "down", cwd=local.b)
    assert down.returncode == 0, down.stderr
    assert first.wait(60) == 0
    assert not local.state_path().exists()


def test_up_status_and_down_from_different_working_directories(local: Local) -> None:
    port = free_port()
    up = local.up("--name", "dev", "--agents", "0", "--port", str(port), cwd=local.a, out=local.a / "up.out")
    config = wait_up(local.a / "up.out", up)
    home_dir = local.home / ".ketch" / "local" / "dev"
    assert config == str(home_dir / "admin.conf")
    assert not (local.a / ".ketch").exists()  # nothing in the working directory

    status = local.run("local", "status", "--name", "dev", cwd=local.b)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[:4] == [
        'Local cluster "dev": Running',
        f"  API server:     127.0.0.1:{port}",
        f"  Admin config:   {home_dir / 'admin.conf'}",
        f"  Data and logs:  {home_dir}",
    ]
    record = json.loads((home_dir / "state.json").read_text())
    assert record["up"]["pid"] == up.pid
    # The default name is another cluster: not running.
    assert local.run("local", "status", cwd=local.b).returncode == 1

    down = local.run("local", "down", "--name", "dev", cwd=local.b)
    assert down.returncode == 0, down.stderr
    assert down.stdout == 'Stopped local cluster "dev".\n'
    assert up.wait(60) == 0
    wait_until(lambda: not processes_under(home_dir), 10, "every process of the cluster to be gone")
    status = local.run("local", "status", "--name", "dev", cwd=local.a)
    assert status.returncode == 1
    assert status.stdout.startswith('Local cluster "dev": not running')


def test_down_stops_what_a_killed_up_left_running_and_clears_a_stale_record(local: Local) -> None:
    port = free_port()
    up = local.up("--agents", "1", "--port", str(port), "--heartbeat-interval", "1s", cwd=local.a,
                  out=local.a / "up.out")
    wait_up(local.a / "up.out", up)
    record = json.loads(local.state_path().read_text())
    members = [record["members"][m]["pid"] for m in ("controlplane", "node-1")]
    os.kill(up.pid, signal.SIGKILL)  # only `up`: its members, in their own sessions, keep running
    up.wait(10)
    assert all(Path(f"/proc/{pid}").exists() for pid in members)

    status = local.run("local", "status", cwd=local.b)
    assert status.returncode == 1
    assert status.stdout.startswith('Local cluster "default": Degraded')
    refused = local.run("local", "up", "--port", str(free_port()), cwd=local.b)  # its members still run
    assert refused.returncode == 1 and 'local cluster "default" is already running' in refused.stderr

    down = local.run("local", "down", cwd=local.b)
    assert down.returncode == 0, down.stderr
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in members), 10,
               "the members to be gone and reaped")
    assert not local.state_path().exists()

    # A record whose processes are all gone (the machine rebooted): down says so and removes it.
    local.state_path().write_text(json.dumps(record))
    stale = local.run("local", "down", cwd=local.b)
    assert stale.returncode == 0, stale.stderr
    assert stale.stdout == (f'Local cluster "default" was not running; removed its stale state '
                            f"({local.state_path()}).\n")
    assert not local.state_path().exists()
    nothing = local.run("local", "down", cwd=local.b)
    assert nothing.returncode == 1
    assert nothing.stderr.startswith('error: no local cluster named "default"')
