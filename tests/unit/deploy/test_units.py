"""The shipped systemd units: systemd accepts them, the control plane's is sandboxed (exposure
4.0 or under), the agent's confines nothing its pods would inherit, and the command lines they
make from the env files are ones the programs accept."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.main import build_parser as controlplane_parser
from nodeagent.main import build_parser as agent_parser

from .unitfile import (
    AGENT_UNIT,
    CONTROLPLANE_UNIT,
    DEPLOY,
    ENV_DIR,
    INSTALL_BIN,
    environment,
    exec_start,
    read_unit,
)

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here "
                                   "(Debian/Ubuntu: apt-get install systemd)")
VENV_BIN = Path(sys.executable).parent
MAX_EXPOSURE = 4.0

# Directives whose effect a service's children inherit (mount, user and UTS namespaces,
# capability sets, no_new_privs, seccomp filters, umask, the device cgroup): on the agent
# they would confine every pod, whatever its securityContext says.
INHERITED_BY_PODS = [
    "PrivateTmp", "PrivateDevices", "PrivateMounts", "PrivateUsers", "PrivateNetwork", "PrivateIPC",
    "ProtectSystem", "ProtectHome", "ProtectProc", "ProcSubset", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
    "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths",
    "BindReadOnlyPaths", "RootDirectory", "RootImage", "MountAPIVFS",
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "SecureBits",
    "SystemCallFilter", "SystemCallArchitectures", "SystemCallErrorNumber", "MemoryDenyWriteExecute",
    "RestrictNamespaces", "RestrictAddressFamilies", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "IPAddressDeny", "IPAddressAllow", "DevicePolicy", "DeviceAllow",
    "UMask", "User", "Group", "DynamicUser", "SupplementaryGroups",
]


def install_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The units as installed on this machine: ExecStart from this checkout's venv instead of
    /opt/ketch/venv, and the env files (copied as shipped) in tmp_path instead of /etc/ketch."""
    env_dir = tmp_path / "etc-ketch"
    env_dir.mkdir()
    for env in DEPLOY.glob("*.env"):
        shutil.copy(env, env_dir / env.name)
    units = tmp_path / "units"
    units.mkdir()
    for unit in (CONTROLPLANE_UNIT, AGENT_UNIT):
        text = unit.read_text()
        assert INSTALL_BIN + "/" in text, f"{unit.name}: ExecStart is not under {INSTALL_BIN}"
        text = text.replace(INSTALL_BIN + "/", f"{VENV_BIN}/").replace(ENV_DIR + "/", f"{env_dir}/")
        (units / unit.name).write_text(text)
    return units, env_dir


@needs_analyze
def test_systemd_accepts_both_units(tmp_path: Path) -> None:
    units, _ = install_copy(tmp_path)
    paths = [str(units / CONTROLPLANE_UNIT.name), str(units / AGENT_UNIT.name)]
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no", *paths],
                            capture_output=True, text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value (it only warns): any output is a fault.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@needs_analyze
def test_systemd_rejects_what_the_check_is_for(tmp_path: Path) -> None:
    """The check above sees a misspelt directive and a missing program (so it can fail)."""
    units, _ = install_copy(tmp_path)
    bad = units / "bad.service"
    bad.write_text((units / AGENT_UNIT.name).read_text().replace("KillMode=", "KilMode=")
                   .replace(str(VENV_BIN), "/nonexistent"))
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert "KilMode" in result.stderr and "/nonexistent/ketch-agent" in result.stderr


def exposure(unit: Path) -> float:
    result = subprocess.run([str(SYSTEMD_ANALYZE), "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, f"no overall exposure in the output of systemd-analyze security:\n{result.stdout}{result.stderr}"
    return float(found.group(1))


@needs_analyze
def test_controlplane_unit_exposure_is_ok(tmp_path: Path) -> None:
    units, _ = install_copy(tmp_path)
    score = exposure(units / CONTROLPLANE_UNIT.name)
    assert score <= MAX_EXPOSURE, f"systemd-analyze security rates the control plane's unit {score} (> {MAX_EXPOSURE})"


def test_agent_unit_confines_nothing_pods_inherit() -> None:
    unit = read_unit(AGENT_UNIT)
    found = sorted(set(unit.keys()) & set(INHERITED_BY_PODS))
    assert not found, f"{AGENT_UNIT.name} sets {found}: every pod the agent starts would inherit it"
    # What it needs instead: cgroups to delegate, and pods that outlive an agent restart.
    assert unit.value("Delegate") == "yes"
    assert unit.value("KillMode") == "process"


def test_controlplane_unit_runs_unprivileged_and_writes_only_its_state_dir() -> None:
    unit = read_unit(CONTROLPLANE_UNIT)
    assert unit.value("User") not in (None, "root", "0") or unit.value("DynamicUser") == "yes"
    assert unit.value("CapabilityBoundingSet") == ""
    assert unit.value("ProtectSystem") == "strict"
    # ProtectSystem=strict leaves only StateDirectory= writable: the data dir must be in it.
    args = controlplane_parser().parse_args(exec_start(unit, environment(unit, DEPLOY))[1:])
    state = Path("/var/lib") / str(unit.value("StateDirectory"))
    assert Path(args.data_dir) == state or state in Path(args.data_dir).parents


def test_controlplane_command_line_from_the_env_file(tmp_path: Path) -> None:
    """The shipped env file and the unit make a command line ketch-controlplane accepts, with the
    contract's defaults, and a flag in the env file wins over the unit's."""
    unit = read_unit(CONTROLPLANE_UNIT)
    _, env_dir = install_copy(tmp_path)
    argv = exec_start(unit, environment(unit, env_dir))
    assert argv[0] == f"{INSTALL_BIN}/ketch-controlplane"
    args = controlplane_parser().parse_args(argv[1:])
    assert (args.listen, args.data_dir) == ("0.0.0.0:6443", "/var/lib/ketch")

    (env_dir / "controlplane.env").write_text("KETCH_CONTROLPLANE_ARGS=--listen 10.0.0.5:6443 --event-ttl 2h\n")
    args = controlplane_parser().parse_args(exec_start(unit, environment(unit, env_dir))[1:])
    assert (args.listen, args.event_ttl) == ("10.0.0.5:6443", 7200.0)
    # Without the env file (it is optional) the unit's defaults stand alone.
    (env_dir / "controlplane.env").unlink()
    args = controlplane_parser().parse_args(exec_start(unit, environment(unit, env_dir))[1:])
    assert args.listen == "0.0.0.0:6443"


def test_agent_command_line_from_the_env_file(tmp_path: Path) -> None:
    unit = read_unit(AGENT_UNIT)
    assert unit.value("EnvironmentFile") == f"{ENV_DIR}/agent.env", "the agent cannot run without --server"
    _, env_dir = install_copy(tmp_path)
    (env_dir / "agent.env").write_text("KETCH_AGENT_ARGS=--server 10.0.0.5:6443 --labels zone=a\n")
    argv = exec_start(unit, environment(unit, env_dir))
    assert argv[0] == f"{INSTALL_BIN}/ketch-agent"
    args = agent_parser().parse_args(argv[1:])
    assert (args.server, args.listen, args.data_dir) == ("10.0.0.5:6443", "0.0.0.0:10250", "/var/lib/ketch-agent")
    assert args.labels == {"zone": "a"}
    state = Path("/var/lib") / str(unit.value("StateDirectory"))
    assert Path(args.data_dir) == state


def test_agent_env_file_as_shipped_names_the_contract_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """agent.env as shipped: --server and the join token (DESIGN.md, security contract) to fill
    in, the token as KETCH_TOKEN so that it stays off the command line `ps` shows."""
    unit = read_unit(AGENT_UNIT)
    _, env_dir = install_copy(tmp_path)
    env = environment(unit, env_dir)
    argv = exec_start(unit, env)
    assert "--server" in argv and "--token" not in argv
    assert env["KETCH_TOKEN"] == "K10CHANGE-ME"
    monkeypatch.setenv("KETCH_TOKEN", env["KETCH_TOKEN"])
    args = agent_parser().parse_args(argv[1:])
    assert args.token == "K10CHANGE-ME"
    assert args.server == "CONTROL_PLANE:6443"
