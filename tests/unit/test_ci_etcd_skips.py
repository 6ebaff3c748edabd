"""Under CI=true a skipped etcd test is a failure (tests/conftest.py), so CI really runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEST = '''
import pytest

@pytest.mark.etcd
def test_needs_etcd():
    pytest.skip("no etcd here")

def test_other_skip():
    pytest.skip("not an etcd test")
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_it.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, "-W", "ignore::pytest.PytestConfigWarning",
                           str(tmp_path / "test_it.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_skipped_etcd_test_fails_under_ci(tmp_path: Path) -> None:
    proc = _run(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 skipped" in proc.stdout
    assert "CI=true: an etcd test may not be skipped" in proc.stdout


def test_outside_ci_it_is_only_skipped(tmp_path: Path) -> None:
    proc = _run(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 skipped" in proc.stdout
