"""A real Prometheus for tests: Debian's `prometheus` (2.42) on a free loopback port, its TSDB in a
temporary dir, started in its own process group and stopped by its pid.

`Prometheus(dir, scrape_configs)` writes the configuration (a 1 s scrape interval) and
`query(promql)`, `targets()` and `metric_names()` read its HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from ketch.local.launcher import free_port
from ketch.testing.serverprocess import ServerProcess

START_TIMEOUT = 60.0


def prometheus_binary() -> str | None:
    """$KETCH_PROMETHEUS, else `prometheus` on PATH; None if there is none."""
    chosen = os.environ.get("KETCH_PROMETHEUS") or shutil.which("prometheus")
    return chosen if chosen and os.access(chosen, os.X_OK) else None


class Prometheus(ServerProcess):
    log_name = "prometheus.log"

    def __init__(self, data_dir: Path, scrape_configs: list[dict[str, Any]], binary: str | None = None) -> None:
        found = binary or prometheus_binary()
        if found is None:
            raise FileNotFoundError("no prometheus binary: apt-get install prometheus")
        self.binary = found
        super().__init__(data_dir)
        self.port = free_port()
        self.scrape_configs = scrape_configs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        def new_port() -> None:
            self.port = free_port()

        self._start_on_free_ports(lambda: self._start_once(timeout), new_port)

    def _start_once(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": self.scrape_configs}))
        argv = [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self._spawn(argv, cwd=self.data_dir)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise self._exited("prometheus")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError) as err:
                last = str(err)
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s ({last}): {self.tail()}")

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a /api/v1 answer; raises on an error status."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
            answer = json.loads(resp.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"prometheus /api/v1/{path}: {answer}")
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector."""
        return list(self.api("query", query=promql)["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))
