"""A third-party server a test runs (etcd, Prometheus): its own process group, its output in a log
file in its data dir, stopped by its pid; `with Server(...) as s:` starts and stops it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Self

from ketch.local.launcher import signal_group, wait_or_kill


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
