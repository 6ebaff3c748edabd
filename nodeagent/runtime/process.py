"""The process runtime: containers as plain processes, each in its own session.

Spawning is hot, so it is plain `subprocess.Popen` (no shell, vfork where CPython can) and one
reaper for all children: a SIGCHLD handler on the event loop that drains `waitpid(-1, WNOHANG)`
(asyncio's own subprocess support would start a watcher thread per child). Nothing else in the
agent may start child processes behind the runtime's back, or the reaper would take their exit
statuses.

Processes adopted from an earlier agent are not our children: their exit is noticed through a
pidfd (or by polling), and their exit status, which only a parent can wait for, is picked up
from the kernel's process-events connector when the agent may listen to it (root). Without it
the exit code of an adopted process is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time

from ketch.cancelsafe import wait_for
from nodeagent import procfs

from . import confine
from .confine import Confinement
from .interface import ExitInfo, Handle, LaunchSpec, StartError

log = logging.getLogger(__name__)

ADOPT_POLL_INTERVAL = 1.0
# The kernel wakes a pidfd's pollers (exit_notify) before it sends the process-events
# connector's message about the same exit (proc_exit_connector): an adopted process's status can
# come a moment after its pidfd says it is gone. Waited for this long at most.
EXIT_STATUS_WAIT = 1.0


def decode_wait_status(status: int) -> tuple[int, int]:
    """(exit code, signal) from a wait status; a signal death is reported as 128 + signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), 0
    return 128, 0


def start_error_message(argv: list[str], cwd: str, err: BaseException) -> str:
    """The message a user sees for a run that could not start, in the style of runc's."""
    exe = argv[0] if argv else ""
    if isinstance(err, FileNotFoundError):
        if err.filename and str(err.filename) == cwd:
            return f'chdir to cwd ("{cwd}") set in config.json failed: no such file or directory'
        if "/" in exe:
            return f'exec: "{exe}": stat {exe}: no such file or directory'
        return f'exec: "{exe}": executable file not found in $PATH'
    if isinstance(err, PermissionError):
        return f'exec: "{exe}": permission denied'
    if isinstance(err, NotADirectoryError):
        return f'exec: "{exe}": not a directory'
    return f'exec: "{exe}": {err}'


def resolve_executable(argv0: str, cwd: str, env: dict[str, str]) -> str | None:
    """Where exec would find argv0 (PATH from env, relative paths from cwd), or None."""
    if "/" in argv0:
        path = argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(argv0, path=env.get("PATH", os.defpath))


def cgroup_joins(cgroup_procs: list[str]) -> list[str]:
    """Shell commands that move the shell into the cgroups (before exec: every byte and every child
    is inside the limits)."""
    return [f"echo $$ > {shlex.quote(p)}" for p in cgroup_procs]


def shell_wrapper(argv: list[str], commands: list[str]) -> list[str]:
    """argv run by a shell that first runs commands, then execs argv (same pid).

    Doing it in a shell rather than in a preexec_fn keeps the spawn a vfork (a fork of the agent
    costs milliseconds) and avoids running Python in a forked child of a threaded process.
    """
    return ["/bin/sh", "-c", " && ".join([*commands, 'exec "$@"']), argv[0], *argv]


class ProcConnector:
    """Exit statuses of any process, from the kernel's netlink process-events connector.

    Only statuses of pids in `watched` are kept. Needs CAP_NET_ADMIN; `open()` returns None where
    the connector is not available (not Linux, not root, a network namespace without it).
    """

    NETLINK_CONNECTOR = 11
    CN_IDX_PROC = 1
    CN_VAL_PROC = 1
    PROC_CN_MCAST_LISTEN = 1
    PROC_CN_MCAST_IGNORE = 2
    PROC_EVENT_EXIT = 0x80000000

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.watched: set[int] = set()
        self.statuses: dict[int, int] = {}
        self.lossy = False

    @classmethod
    def open(cls) -> ProcConnector | None:
        if not hasattr(socket, "AF_NETLINK"):
            return None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, cls.NETLINK_CONNECTOR)
        except OSError:
            return None
        try:
            sock.bind((0, cls.CN_IDX_PROC))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, 33, 8 * 1024 * 1024)  # SO_RCVBUFFORCE
            sock.setblocking(False)
            cls._send_op(sock, cls.PROC_CN_MCAST_LISTEN)
        except OSError:
            sock.close()
            return None
        return cls(sock)

    @classmethod
    def _send_op(cls, sock: socket.socket, op: int) -> None:
        payload = struct.pack("I", op)
        cn = struct.pack("IIIIHH", cls.CN_IDX_PROC, cls.CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        header = struct.pack("IHHII", 16 + len(cn), 3, 0, 0, 0)  # NLMSG_DONE
        sock.send(header + cn)

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    self.lossy = True
                    continue
                return
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        off = 0
        while off + 16 <= len(data):
            length = struct.unpack_from("I", data, off)[0]
            if length < 16:
                return
            ev = off + 16 + 20
            if ev + 32 <= len(data):
                what = struct.unpack_from("I", data, ev)[0]
                if what == self.PROC_EVENT_EXIT:
                    pid, tgid, code = struct.unpack_from("III", data, ev + 16)
                    if pid == tgid and pid in self.watched:
                        self.statuses[pid] = code
            off += (length + 3) & ~3

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_op(self.sock, self.PROC_CN_MCAST_IGNORE)
        self.sock.close()


class ProcessRuntime:
    """Starts, watches, signals and stops container processes. Call install() in the loop first."""

    def __init__(self) -> None:
        self._children: dict[int, Handle] = {}
        # Statuses reaped before their pid was registered (cannot happen in one loop; kept safe).
        self._early: dict[int, int] = {}
        self._adopted: dict[int, tuple[Handle, int | None]] = {}
        self._connector: ProcConnector | None = None
        self._connector_tried = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._devnull = -1
        self._which: dict[tuple[str, str], str] = {}
        self._own_oom_score_adj = procfs.own_oom_score_adj()
        # Adopted exits whose status the connector dropped (its buffer overflowed under a storm
        # of process events machine-wide): reported as unknown rather than guessed.
        self.lost_exit_statuses = 0
        self._collectors: set[asyncio.Task[None]] = set()  # adopted exits awaiting their status
        # What those wait on: the connector's reader resolves them as the statuses come in.
        self._status_waiters: dict[int, asyncio.Future[int | None]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._loop.add_signal_handler(signal.SIGCHLD, self._reap)
        self._reap()

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGCHLD)
            for pid, (_, fd) in list(self._adopted.items()):
                self._forget_adopted(pid, fd)
        if self._poll_task is not None:
            self._poll_task.cancel()
        for task in list(self._collectors):
            task.cancel()
        self._close_connector()
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1

    # -- starting ------------------------------------------------------------------------------

    def launch(self, argv: list[str], cwd: str, env: dict[str, str], stdout: int,
               confinement: Confinement | None = None, cgroup_procs: list[str] | None = None,
               stderr: int | None = None, stdin: int | None = None) -> tuple[int, int, float]:
        """Start argv in a new session with stdout and stderr on the fd stdout (stderr on its own fd
        when given: `ketch exec` keeps them apart), stdin /dev/null unless given (`ketch exec -i`),
        confined as asked.

        Thread-safe (the agent launches from a small thread pool, since a spawn blocks for as
        long as the exec takes); returns (pid, start ticks, start time) for register().
        """
        if not argv:
            raise StartError("no command given: set command (there is no image entrypoint on a process runtime)")
        c = confinement or confine.NONE
        run = argv
        executable = None
        if "/" not in argv[0]:
            # Resolved here, once per (name, PATH): the child would otherwise try every PATH entry
            # with a failing execve while the agent waits for the vfork to exec.
            executable = self._resolve_cached(argv[0], env.get("PATH", os.defpath))
        setup: confine.ChildSetup | None = None
        kwargs: dict[str, object] = {}
        popen_cwd = cwd
        if c.needs_preexec(self._own_oom_score_adj):
            setup = confine.ChildSetup(c, cwd, cgroup_procs or ())
            kwargs["preexec_fn"] = setup
            if c.binds:
                # The working dir may be inside a volume, which exists only once the child has
                # mounted it: the child enters it then (ChildSetup's last mount step).
                popen_cwd = "/"
        else:
            if c.switches_user:
                kwargs.update(user=c.uid, group=c.gid, extra_groups=None if c.groups is None else list(c.groups))
                for path in cgroup_procs or []:  # the shell joins them as the container's user
                    with contextlib.suppress(OSError):
                        os.chown(path, -1 if c.uid is None else c.uid, -1 if c.gid is None else c.gid)
            commands = cgroup_joins(cgroup_procs or []) + confine.shell_commands(c)
            if commands:
                if resolve_executable(argv[0], cwd, env) is None:
                    raise StartError(start_error_message(argv, cwd, FileNotFoundError(2, "not found", argv[0])))
                run = shell_wrapper(argv, commands)
                executable = None
        started_at = time.time()
        try:
            proc = subprocess.Popen(run, executable=executable, stdin=self._devnull if stdin is None else stdin,
                                    stdout=stdout,
                                    stderr=stdout if stderr is None else stderr,
                                    cwd=popen_cwd, env=env, start_new_session=True, close_fds=True,
                                    **kwargs)  # type: ignore[call-overload]
        except FileNotFoundError as err:
            search = env.get("PATH", os.defpath)
            self._which.pop((argv[0], search), None)
            if executable is None or shutil.which(argv[0], path=search) in (None, executable):
                # Not a cached binary that moved (a missing working dir or script interpreter):
                # a retry would fail the same way, forever.
                raise StartError(start_error_message(argv, cwd, err)) from err
            return self.launch(argv, cwd, env, stdout, confinement, cgroup_procs, stderr, stdin)
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            why = setup.failure() if setup is not None and isinstance(err, subprocess.SubprocessError) else None
            raise StartError(why or start_error_message(argv, cwd, err)) from err
        finally:
            if setup is not None:
                setup.close()
        # The reaper owns the exit status; keep Popen's own bookkeeping from ever waiting on it.
        proc.returncode = 0
        return proc.pid, procfs.start_ticks(proc.pid) or 0, started_at

    def _resolve_cached(self, name: str, path: str) -> str | None:
        key = (name, path)
        found = self._which.get(key)
        if found is None:
            found = shutil.which(name, path=path)
            if found is not None:
                if len(self._which) > 1024:
                    self._which.clear()
                self._which[key] = found
        return found

    def register(self, pid: int, ticks: int, started_at: float) -> Handle:
        """Track a launched child (event-loop thread); its exit resolves handle.exited."""
        assert self._loop is not None, "install() first"
        handle = Handle(pid, ticks, started_at, self._loop.create_future())
        early = self._early.pop(pid, None)
        if early is not None:
            self._finish(handle, early)
        else:
            self._children[pid] = handle
        return handle

    def spawn(self, argv: list[str], cwd: str, env: dict[str, str], stdout: int,
              confinement: Confinement | None = None, cgroup_procs: list[str] | None = None,
              stderr: int | None = None, stdin: int | None = None) -> Handle:
        """launch() and register() in one go, on the event-loop thread."""
        return self.register(*self.launch(argv, cwd, env, stdout, confinement, cgroup_procs, stderr, stdin))

    def launch_spec(self, spec: LaunchSpec) -> tuple[int, int, float]:
        """launch() with spec's output descriptors, or its log file opened for stdout and stderr
        (thread-safe)."""
        if spec.output is not None:
            out, err = spec.output
            return self.launch(spec.argv, spec.cwd, spec.env, out, spec.confinement, spec.cgroup_procs, err,
                               spec.stdin)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(spec.log_path, flags, 0o640)
        except OSError as err:
            raise StartError(f"cannot open the log file {spec.log_path}: {err.strerror}") from err
        c = spec.confinement
        try:
            if c is not None and c.uid is not None:
                with contextlib.suppress(OSError):
                    os.fchown(fd, c.uid, c.gid if c.gid is not None else -1)
            return self.launch(spec.argv, spec.cwd, spec.env, fd, c, spec.cgroup_procs, stdin=spec.stdin)
        finally:
            os.close(fd)

    def start(self, spec: LaunchSpec) -> Handle:
        return self.register(*self.launch_spec(spec))

    # -- reaping -------------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            handle = self._children.pop(pid, None)
            if handle is None:
                if len(self._early) < 10000:
                    self._early[pid] = status
                continue
            self._finish(handle, status)

    def _finish(self, handle: Handle, status: int) -> None:
        code, sig = decode_wait_status(status)
        # Whatever the run left behind in its process group goes with it, as in a container.
        with contextlib.suppress(OSError):
            os.killpg(handle.pid, signal.SIGKILL)
        if not handle.exited.done():
            handle.exited.set_result(ExitInfo(code, sig, time.time()))

    # -- adoption ------------------------------------------------------------------------------

    def adopt(self, pid: int, start_ticks: int, started_at: float) -> Handle | None:
        """Re-attach to a run started by an earlier agent, if pid is still that process."""
        assert self._loop is not None, "install() first"
        if procfs.start_ticks(pid) != start_ticks or procfs.is_zombie(pid):
            return None
        if not self._connector_tried:
            self._connector_tried = True
            self._connector = ProcConnector.open()
            if self._connector is not None:
                self._loop.add_reader(self._connector.sock.fileno(), self._connector_readable)
            else:
                log.info("process-events connector unavailable: exit codes of adopted processes are unknown")
        if self._connector is not None:
            self._connector.watched.add(pid)
        fd: int | None = None
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = None
        # Check again now that the pidfd pins the process: the pid must not have been recycled.
        if procfs.start_ticks(pid) != start_ticks:
            if fd is not None:
                os.close(fd)
            if self._connector is not None:
                self._connector.watched.discard(pid)
            return None
        handle = Handle(pid, start_ticks, started_at, self._loop.create_future(), adopted=True)
        self._adopted[pid] = (handle, fd)
        if fd is not None:
            self._loop.add_reader(fd, self._adopted_exited, pid)
        elif self._poll_task is None:
            self._poll_task = self._loop.create_task(self._poll_adopted())
        return handle

    def _adopted_exited(self, pid: int) -> None:
        entry = self._adopted.pop(pid, None)
        if entry is None:
            return
        handle, fd = entry
        self._forget_adopted(pid, fd)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        if self._connector is None or self._loop is None:
            if not self._adopted:
                self._close_connector()  # the next adoption tries to open one again
            self._report_adopted_exit(handle, None)
            return
        task = self._loop.create_task(self._collect_exit_status(pid, handle, self._connector))
        self._collectors.add(task)
        task.add_done_callback(self._collectors.discard)

    def _connector_readable(self) -> None:
        connector = self._connector
        if connector is None:
            return
        connector.drain()
        for pid, waiter in list(self._status_waiters.items()):
            if waiter.done():
                continue  # its wait timed out; the collector lets it go when it resumes
            if pid in connector.statuses:
                waiter.set_result(connector.statuses.pop(pid))
            elif connector.lossy:
                waiter.set_result(None)  # dropped in the storm: it will not come

    async def _collect_exit_status(self, pid: int, handle: Handle, connector: ProcConnector) -> None:
        connector.drain()
        status = connector.statuses.pop(pid, None)
        try:
            if status is None and not connector.lossy:
                waiter = self._status_waiters[pid] = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    status = await wait_for(waiter, EXIT_STATUS_WAIT)
        finally:
            self._status_waiters.pop(pid, None)
            connector.watched.discard(pid)
            if not self._adopted and len(self._collectors) <= 1:  # this one is the last
                self._close_connector()
        if status is None:
            self.lost_exit_statuses += 1
            log.warning("no exit status of adopted pid %d from the process-events connector (%s): "
                        "its exit code is unknown", pid,
                        "it dropped events in a machine-wide storm" if connector.lossy else "none came")
        self._report_adopted_exit(handle, status)

    @staticmethod
    def _report_adopted_exit(handle: Handle, status: int | None) -> None:
        if handle.exited.done():
            return
        if status is None:
            handle.exited.set_result(ExitInfo(None, 0, time.time()))
        else:
            code, sig = decode_wait_status(status)
            handle.exited.set_result(ExitInfo(code, sig, time.time()))

    def _close_connector(self) -> None:
        """Every adopted process is gone: stop listening to the whole machine's process events."""
        if self._connector is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._connector.sock.fileno())
            self._connector.close()
            self._connector = None
        self._connector_tried = False

    def _forget_adopted(self, pid: int, fd: int | None) -> None:
        self._adopted.pop(pid, None)
        if fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(fd)
            os.close(fd)

    async def _poll_adopted(self) -> None:
        while True:
            await asyncio.sleep(ADOPT_POLL_INTERVAL)
            for pid, (handle, fd) in list(self._adopted.items()):
                if fd is None and (procfs.start_ticks(pid) != handle.start_ticks or procfs.is_zombie(pid)):
                    self._adopted_exited(pid)

    # -- signalling ----------------------------------------------------------------------------

    def signal(self, handle: Handle, sig: int) -> None:
        if not handle.running:
            return
        try:
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.kill(handle.pid, sig)
        except PermissionError:
            log.warning("not permitted to signal process group %d", handle.pid)

    async def stop(self, handle: Handle, grace: float) -> ExitInfo:
        """SIGTERM the run's process group, wait up to grace seconds, then SIGKILL it."""
        if handle.running:
            if grace > 0:
                self.signal(handle, signal.SIGTERM)
                try:
                    await wait_for(asyncio.shield(handle.exited), grace)
                except TimeoutError:
                    pass
            if handle.running:
                self.signal(handle, signal.SIGKILL)
        return await handle.exited
