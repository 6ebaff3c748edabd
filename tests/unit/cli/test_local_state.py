"""`ketch local`'s record and checks: a process is ours only while pid and start time match, a busy
port is seen whatever socket options its listener set, and a refused `up` writes nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ketch.cli.cmd_local import refusal
from ketch.local import state as local_state
from ketch.local.procs import ProcessRef, port_in_use, start_time

BIN = Path(sys.executable).parent


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(10)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_a_recorded_process_is_ours_only_while_its_start_time_matches(sleeper: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None and ref.alive
    stranger = ProcessRef(sleeper.pid, ref.start + 1)  # the pid, reused by another process
    assert not stranger.alive
    assert not stranger.signal(signal.SIGKILL)
    assert sleeper.poll() is None
    sleeper.kill()
    sleeper.wait(10)
    assert not ref.alive and start_time(sleeper.pid) is None


def test_down_never_signals_a_process_that_reused_a_recorded_pid(home: Path,
                                                                 sleeper: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None
    stale = local_state.ClusterState("default", ProcessRef(sleeper.pid, ref.start - 1), "127.0.0.1:1",
                                     home / "data", None, ["node-1"],
                                     {"controlplane": ProcessRef(sleeper.pid, ref.start - 1)})
    stale.path.parent.mkdir(parents=True)
    stale.save()
    env = dict(os.environ, HOME=str(home))
    down = subprocess.run([str(BIN / "ketch"), "local", "down"], capture_output=True, text=True, env=env, timeout=60)
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith('Local cluster "default" was not running; removed its stale state')
    assert sleeper.poll() is None
    assert not stale.path.exists()


def test_a_listener_is_a_busy_port_even_with_so_reuseport() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a server that shares its port
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert port_in_use("127.0.0.1", listener.getsockname()[1])


def test_a_port_whose_old_server_left_time_wait_connections_is_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # the server closes first: its side waits in TIME_WAIT on the port
        client.close()
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.parametrize("name", ["", "Dev", "a_b", "-a", "a-", "x" * 64, "../etc"])
def test_a_bad_name_is_refused_naming_the_flag(name: str) -> None:
    with pytest.raises(ValueError, match=r'^--name ".*": must be a DNS label'):
        local_state.check_name(name)


def test_a_refused_up_writes_nothing(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        why = refusal("new", home / "data", port)
    assert why == f"--port {port}: 127.0.0.1:{port} is already in use; choose another --port"
    assert list(home.iterdir()) == []


def test_a_name_whose_record_is_unreadable_is_refused_with_its_path(home: Path) -> None:
    path = home / ".ketch" / "local" / "default" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert refusal("default", home / "data", 0).startswith(f'local cluster "default": {path}: not JSON')
    assert path.read_text() == "{not json"
    assert local_state.load_all() == []  # status and the port's owner skip it
