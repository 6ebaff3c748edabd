"""The process runtime with real (tiny) processes: one reaper, exit codes, start errors,
graceful stop, and adoption of a process that is not our child."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nodeagent import procfs
from nodeagent.runtime import process as process_runtime
from nodeagent.runtime.interface import LaunchSpec, StartError
from nodeagent.runtime.process import ProcConnector, ProcessRuntime


def _spec(tmp_path: Path, *argv: str) -> LaunchSpec:
    return LaunchSpec(list(argv), {"PATH": os.environ.get("PATH", "/bin")}, str(tmp_path), str(tmp_path / "out.log"))


async def test_exit_codes_and_signals(runtime: ProcessRuntime, tmp_path: Path) -> None:
    ok = runtime.start(_spec(tmp_path, "sh", "-c", "echo hi; exit 0"))
    bad = runtime.start(_spec(tmp_path, "sh", "-c", "exit 7"))
    killed = runtime.start(_spec(tmp_path, "sh", "-c", "kill -9 $$"))
    results = await asyncio.wait_for(asyncio.gather(ok.exited, bad.exited, killed.exited), 10)
    assert [(r.exit_code, r.signal) for r in results] == [(0, 0), (7, 0), (137, 9)]
    assert (tmp_path / "out.log").read_text() == "hi\n"


async def test_each_run_gets_its_own_session_and_cwd(runtime: ProcessRuntime, tmp_path: Path) -> None:
    h = runtime.start(_spec(tmp_path, "sh", "-c", "ps -o sid= -p $$; pwd"))
    await asyncio.wait_for(h.exited, 10)
    sid, cwd = (tmp_path / "out.log").read_text().split()
    assert int(sid) == h.pid
    assert cwd == str(tmp_path)


@pytest.mark.parametrize(("argv", "message"), [
    (["no-such-command-xyz"], 'exec: "no-such-command-xyz": executable file not found in $PATH'),
    (["/nonexistent/bin/tool"], 'exec: "/nonexistent/bin/tool": stat /nonexistent/bin/tool: no such file or directory'),
    ([], "no command given"),
])
async def test_start_errors_are_reported_not_raised_up(runtime: ProcessRuntime, tmp_path: Path,
                                                       argv: list[str], message: str) -> None:
    with pytest.raises(StartError, match=message.replace("$", r"\$").replace("(", r"\(")):
        runtime.start(_spec(tmp_path, *argv))


async def test_a_missing_working_dir_fails_the_start_once(runtime: ProcessRuntime, tmp_path: Path) -> None:
    """A command found on PATH in a working dir that is not there: one clear error, not an
    endless retry of the 'moved binary' path (it recursed until the stack ran out)."""
    spec = LaunchSpec(["true"], {"PATH": os.environ.get("PATH", "/bin")}, str(tmp_path / "gone"),
                      str(tmp_path / "out.log"))
    with pytest.raises(StartError, match=r"chdir to cwd \("):
        runtime.start(spec)


async def test_a_script_whose_interpreter_is_missing_fails_the_start(runtime: ProcessRuntime,
                                                                    tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "tool-xyz"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    spec = LaunchSpec(["tool-xyz"], {"PATH": str(bindir)}, str(tmp_path), str(tmp_path / "out.log"))
    with pytest.raises(StartError, match="tool-xyz"):
        runtime.start(spec)


async def test_stop_gives_a_trapping_process_its_grace(runtime: ProcessRuntime, tmp_path: Path) -> None:
    h = runtime.start(_spec(tmp_path, "sh", "-c", "trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done"))
    await _until(lambda: (tmp_path / "out.log").exists() and (tmp_path / "out.log").read_text() == "up\n")
    info = await asyncio.wait_for(runtime.stop(h, 5), 10)
    assert info.exit_code == 0


async def test_stop_kills_a_process_that_ignores_sigterm(runtime: ProcessRuntime, tmp_path: Path) -> None:
    h = runtime.start(_spec(tmp_path, "sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"))
    await _until(lambda: (tmp_path / "out.log").exists() and (tmp_path / "out.log").read_text() == "up\n")
    loop = asyncio.get_running_loop()
    start = loop.time()
    info = await asyncio.wait_for(runtime.stop(h, 0.5), 10)
    assert info.signal == signal.SIGKILL
    assert loop.time() - start >= 0.5


async def test_leftovers_in_the_process_group_die_with_the_run(runtime: ProcessRuntime, tmp_path: Path) -> None:
    h = runtime.start(_spec(tmp_path, "sh", "-c", "sleep 30 & echo $! > bg.pid"))
    await asyncio.wait_for(h.exited, 10)
    bg = int((tmp_path / "bg.pid").read_text())
    await _until(lambda: procfs.start_ticks(bg) is None or procfs.is_zombie(bg))


def _start_foreign(tmp_path: Path) -> int:
    """A process whose parent is another (short-lived) process: like a pod left by a dead agent."""
    script = ("import subprocess, sys; p = subprocess.Popen(['sh', '-c', 'read x < fifo; exit 5'], "
              "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    os.mkfifo(tmp_path / "fifo")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    return int(out.stdout)


def _release(tmp_path: Path) -> None:
    with open(tmp_path / "fifo", "w") as f:
        f.write("go\n")


async def test_adopt_a_process_started_elsewhere(runtime: ProcessRuntime, tmp_path: Path) -> None:
    pid = _start_foreign(tmp_path)
    ticks = procfs.start_ticks(pid)
    assert ticks is not None
    assert runtime.adopt(pid, ticks + 1, 0.0) is None, "a different start time must not be adopted"
    h = runtime.adopt(pid, ticks, 0.0)
    assert h is not None and h.adopted and h.running
    # The exit code of a process that is not our child is known only through the kernel's proc
    # connector (netlink, root): where this host offers one, the runtime uses it.
    probe = ProcConnector.open()
    known = probe is not None
    if probe is not None:
        probe.close()
    _release(tmp_path)
    info = await asyncio.wait_for(h.exited, 10)
    if known:
        # The connector hears every process on the machine; when its buffer overflows (the
        # whole suite running beside this test) the runtime says so and reports no exit code.
        assert info.exit_code == 5 or (info.exit_code is None and runtime.lost_exit_statuses == 1)
    else:
        assert info.exit_code is None


class LateConnector:
    """A process-events connector whose message about an exit comes after the pidfd said so, as
    the kernel sends it (exit_notify wakes the pidfd, proc_exit_connector follows)."""

    def __init__(self) -> None:
        self.sock, self._peer = socket.socketpair()
        self.sock.setblocking(False)
        self.watched: set[int] = set()
        self.statuses: dict[int, int] = {}
        self.lossy = False

    def deliver(self, pid: int, status: int) -> None:
        self.statuses[pid] = status
        self._peer.send(b"x")  # the socket turns readable, as the netlink one does

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(4096):
                pass

    def close(self) -> None:
        self.sock.close()
        self._peer.close()


async def test_an_adopted_exit_status_that_comes_after_the_pidfd_is_reported(
        runtime: ProcessRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_runtime, "EXIT_STATUS_WAIT", 30.0)  # however slow this machine is
    connector = LateConnector()
    monkeypatch.setattr(ProcConnector, "open", classmethod(lambda cls: connector))
    pid = _start_foreign(tmp_path)
    ticks = procfs.start_ticks(pid)
    assert ticks is not None
    h = runtime.adopt(pid, ticks, 0.0)
    assert h is not None and pid in connector.watched
    _release(tmp_path)
    await _until(lambda: procfs.start_ticks(pid) != ticks or procfs.is_zombie(pid))
    await asyncio.sleep(0.1)  # the pidfd has fired by now; the connector's message comes after
    assert not h.exited.done()
    connector.deliver(pid, 5 << 8)  # a wait status: exited with 5
    info = await asyncio.wait_for(h.exited, 10)
    assert info.exit_code == 5 and runtime.lost_exit_statuses == 0
    assert runtime._connector is None  # the last adopted process is gone: it stops listening


async def _until(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_status_that_comes_as_its_wait_times_out_is_not_given_to_the_finished_wait(
        runtime: ProcessRuntime) -> None:
    # The wait's timeout cancels its future a loop turn before the collector resumes and lets it
    # go; the connector's reader may run in between.
    connector = LateConnector()
    runtime._connector = connector  # type: ignore[assignment]
    timed_out = asyncio.get_running_loop().create_future()
    timed_out.cancel()
    runtime._status_waiters[4242] = timed_out
    connector.deliver(4242, 0)
    try:
        runtime._connector_readable()  # raised InvalidStateError (set_result on a cancelled future)
        assert timed_out.cancelled()
    finally:
        runtime._status_waiters.clear()
        runtime._connector = None
        connector.close()
