"""deploy/install.sh: one command on the server, one per agent with the token it prints.

Run into a scratch root (ROOT=) with systemctl, useradd and the venv's pip replaced by recorders:
what it writes (env files, units, modes), what it asks systemd for, and what it refuses."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .unitfile import DEPLOY, read_env_file

INSTALL = DEPLOY / "install.sh"
TOKEN = "K10" + "ab" * 32 + "::abcdef.0123456789abcdef"

# systemctl as a recorder; starting the control plane "makes" its join token, as the real one
# does at first start.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$ROOT/calls"
if [ "$1" = restart ] && [ "$2" = ketch-controlplane ]; then
  mkdir -p "$ROOT/var/lib/ketch" && echo "$FAKE_TOKEN" > "$ROOT/var/lib/ketch/join-token"
fi
exit 0
"""
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$ROOT/calls"
"""


def scratch_root(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / name
    bin_dir = root / "fake-bin"
    venv_bin = root / "opt/ketch/venv/bin"
    for d in (bin_dir, venv_bin):
        d.mkdir(parents=True)
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "useradd").write_text(RECORDER)
    (venv_bin / "pip").write_text(RECORDER)
    (venv_bin / "python").symlink_to(sys.executable)  # an existing venv: not made again
    for f in (bin_dir / "systemctl", bin_dir / "useradd", venv_bin / "pip"):
        f.chmod(0o755)
    env = dict(os.environ, ROOT=str(root), SYSTEMCTL=str(bin_dir / "systemctl"),
               USERADD=str(bin_dir / "useradd"), FAKE_TOKEN=TOKEN, WAIT_SECONDS="5")
    return root, env


def install(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=60)


def calls(root: Path) -> list[str]:
    path = root / "calls"
    return path.read_text().splitlines() if path.exists() else []


def has_ketch_user() -> bool:
    try:
        pwd.getpwnam("ketch")
        return True
    except KeyError:
        return False


def test_server_then_agent_with_the_printed_command(tmp_path: Path) -> None:
    root, env = scratch_root(tmp_path, "server")
    result = install(env, "server", "--tls-san", "ketch.example.com", "--tls-san", "203.0.113.10",
                     "--", "--event-ttl", "2h")
    assert result.returncode == 0, result.stderr

    # Programs from the lock, hash-checked; the CLI on PATH.
    done = calls(root)
    lock = str(DEPLOY.parent / "requirements.lock")
    assert any(c.startswith("pip ") and "install --require-hashes --no-deps -r " + lock in c for c in done), done
    assert os.readlink(root / "usr/local/bin/ketch") == "/opt/ketch/venv/bin/ketch"
    # Settings: the shipped file, its flags line filled in, root-only.
    env_file = root / "etc/ketch/controlplane.env"
    assert read_env_file(env_file)["KETCH_CONTROLPLANE_ARGS"] == (
        "--tls-san ketch.example.com --tls-san 203.0.113.10 --event-ttl 2h")
    assert "--tls-san (repeatable)" in env_file.read_text()  # the comments are kept
    assert env_file.stat().st_mode & 0o777 == 0o600
    # The unit as shipped, enabled and started; the service user made.
    unit = root / "etc/systemd/system/ketch-controlplane.service"
    assert unit.read_text() == (DEPLOY / "ketch-controlplane.service").read_text()
    assert [c for c in done if c.startswith("systemctl")][:3] == [
        "systemctl daemon-reload", "systemctl enable ketch-controlplane", "systemctl restart ketch-controlplane"]
    if not has_ketch_user():
        assert any(c.startswith("useradd --system") and c.endswith(" ketch") for c in done), done

    # It prints the agent's one command, with this server's name and the token.
    printed = re.search(r"^\s*sudo (deploy/install\.sh agent .*)$", result.stdout, re.M)
    assert printed, result.stdout
    argv = shlex.split(printed.group(1))
    assert argv[1:] == ["agent", "--server", "ketch.example.com:6443", "--token", TOKEN]

    agent_root, agent_env = scratch_root(tmp_path, "agent")
    result = install(agent_env, *argv[1:], "--", "--labels", "zone=a")
    assert result.returncode == 0, result.stderr
    agent_file = agent_root / "etc/ketch/agent.env"
    settings = read_env_file(agent_file)
    assert settings["KETCH_AGENT_ARGS"] == "--server ketch.example.com:6443 --labels zone=a"
    assert settings["KETCH_TOKEN"] == TOKEN  # from the environment: not on the command line `ps` shows
    assert agent_file.stat().st_mode & 0o777 == 0o600  # it holds the token
    assert (agent_root / "etc/systemd/system/ketch-agent.service").read_text() == (
        DEPLOY / "ketch-agent.service").read_text()
    assert "systemctl restart ketch-agent" in calls(agent_root)
    assert not any(c.startswith("useradd") for c in calls(agent_root))  # the agent runs as root


def test_a_second_server_run_keeps_the_settings(tmp_path: Path) -> None:
    """Running it again (an upgrade) without flags leaves /etc/ketch/controlplane.env alone."""
    root, env = scratch_root(tmp_path, "server")
    assert install(env, "server", "--tls-san", "ketch.example.com").returncode == 0
    again = install(env, "server")
    assert again.returncode == 0, again.stderr
    args = read_env_file(root / "etc/ketch/controlplane.env")["KETCH_CONTROLPLANE_ARGS"]
    assert args == "--tls-san ketch.example.com"


@pytest.mark.parametrize(("args", "message"), [
    (["agent", "--token", TOKEN], "--server HOST:PORT"),
    (["agent", "--server", "ketch.example.com", "--token", TOKEN], "expected HOST:PORT"),
    (["agent", "--server", "h:6443"], "--token is required"),
    (["agent", "--server", "h:6443", "--token", "abcdef.0123456789abcdef"], "not a join token"),
    (["agent", "--server", "h:6443", "--token", TOKEN, "--tls-san", "x"], "--tls-san is a server flag"),
    (["server", "--token", TOKEN], "agent flags"),
    (["server", "--listen", "0.0.0.0:6443"], "unknown argument --listen (flags for the program go after --)"),
    (["worker"], "install.sh server"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path, args: list[str], message: str) -> None:
    root, env = scratch_root(tmp_path, "x")
    result = install(env, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (root / "etc").exists() and calls(root) == []
