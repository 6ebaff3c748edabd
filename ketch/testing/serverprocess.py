"""A third-party server a test runs (etcd, Prometheus): its own process group, its output in a log
file in its data dir, stopped by its pid; `with Server(...) as s:` starts and stops it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

from ketch.local.launcher import signal_group, wait_or_kill

# A port free when chosen can be taken before the server binds it (by any process's outgoing
# connection: their ephemeral ports come from the same range), so a start that fails on it is
# tried again on new ports, this many times in all.
PORT_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """The server exited because a port chosen for it was taken before it could bind it."""


class ServerProcess:
    log_name = "server.log"  # in data_dir

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, argv: list[str], cwd: Path | None = None) -> None:
        self._log = open(self.data_dir / self.log_name, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=cwd)

    def _exited(self, what: str) -> RuntimeError:
        """The error for a server that exited while starting (PortTaken when its port was taken)."""
        assert self.proc is not None
        tail = self.tail()
        kind = PortTaken if "address already in use" in tail else RuntimeError
        return kind(f"{what} exited with {self.proc.returncode}: {tail}")

    def _start_on_free_ports(self, start_once: Callable[[], None], new_ports: Callable[[], None]) -> None:
        """start_once (which stops the server when it fails), again on new_ports while a port was
        taken."""
        for attempt in range(PORT_ATTEMPTS):
            try:
                start_once()
                return
            except PortTaken:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                new_ports()

    def tail(self, lines: int = 10) -> str:
        try:
            text = (self.data_dir / self.log_name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's process group (by pid), SIGKILL after timeout."""
        if self.proc is not None:
            signal_group(self.proc, 15)
            wait_or_kill(self.proc, timeout)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
