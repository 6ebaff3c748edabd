"""The shipped systemd units, run with their sandboxing applied (tests/e2e/unitsandbox.py does what
systemd would, on a machine without systemd as init):

- the control plane serves a whole cluster from inside its unit's confinement (an unprivileged
  user, no capabilities, a read-only system, its own /tmp and /dev, the @system-service system
  calls, no writable+executable memory, only inet and unix sockets);
- the agent's unit confines nothing its pods inherit: a pod sees the host's /tmp, the host's
  /dev and its cgroup in the host's hierarchy, as any process on the host would.

Both start the programs from a venv made as deploy/README.md makes /opt/ketch/venv (from a Python
outside the homes the control plane's unit hides), with their state in the test's directory.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.unitfile import AGENT_UNIT, CONTROLPLANE_UNIT

from .agent_helpers import apply_all, pod_manifest, wait_phase, wait_running
from .harness import Cluster, condition, wait_until

SANDBOX = Path(__file__).with_name("unitsandbox.py")
# The install venv loads this checkout (its .venv's site-packages and the editable source), which
# may itself live where a unit's sandbox hides things (/tmp: PrivateTmp=; /root, /home:
# ProtectHome=): it is kept visible at its own path, as a real install's /opt/ketch would be.
CHECKOUT = Path(__file__).resolve().parents[2]
HOMES = ("/root", "/home", "/run/user")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root: mount namespaces, setuid, "
                       "the capability bounding set and seccomp, as systemd uses them"),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                       reason="systemd-analyze (the system call groups) is not installed here"),
]


def _outside_homes(python: Path) -> bool:
    real = str(python.resolve())
    return not any(real == h or real.startswith(h + "/") for h in HOMES)


def base_python() -> Path:
    """An interpreter of this minor version outside the homes (ProtectHome= hides those), so that
    this checkout's site-packages load in it; the one running the tests if it qualifies."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path(sys.executable), Path("/usr/bin") / version, Path("/usr/local/bin") / version):
        if candidate.exists() and _outside_homes(candidate):
            return candidate.resolve()
    pytest.skip(f"no {version} outside {', '.join(HOMES)} to make the install venv from (ProtectHome=yes "
                "hides the test's own interpreter)")


@pytest.fixture(scope="module")
def install_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/ketch/venv for these tests: a venv of base_python() whose site-packages are this
    checkout's, with the two console scripts the units run."""
    venv = tmp_path_factory.mktemp("opt-ketch") / "venv"
    subprocess.run([str(base_python()), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    theirs = next((venv / "lib").glob("python3*/site-packages"))
    (theirs / "ketch-checkout.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    for script, module in (("ketch-controlplane", "controlplane.main"), ("ketch-agent", "nodeagent.main")):
        path = venv / "bin" / script
        path.write_text(f"#!{venv}/bin/python\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        path.chmod(0o755)
    return venv


def service_user() -> str:
    """The unit's User= (ketch) where the install steps made it, else nobody: either way an
    unprivileged user that owns nothing but the state directory."""
    try:
        pwd.getpwnam("ketch")
        return "ketch"
    except KeyError:
        return "nobody"


def sandboxed(member_argv: list[str], unit: Path, maps: dict[str, Path], *extra: str) -> list[str]:
    argv = [sys.executable, str(SANDBOX), "--unit", str(unit), "--setenv", "PYTHONUNBUFFERED=1", *extra]
    for prefix, path in {**maps, str(CHECKOUT): CHECKOUT}.items():
        argv += ["--map", f"{prefix}={path}"]
    return argv


def start_controlplane_unit(cluster: Cluster, venv: Path, etc: Path) -> int:
    """The control plane as its unit runs it; --listen from the env file wins over the unit's."""
    (etc / "controlplane.env").write_text(f"KETCH_CONTROLPLANE_ARGS=--listen {cluster.server}\n")
    member = cluster.controlplane()
    member.argv = sandboxed(member.argv, CONTROLPLANE_UNIT, {
        "/opt/ketch/venv": venv, "/var/lib/ketch": cluster.dir / "controlplane", "/etc/ketch": etc},
        "--user", service_user())
    member.start(cluster.env, cluster.dir)
    wait_until(lambda: cluster.ketch("get", "ns", check=False).returncode == 0, 60,
               f"the sandboxed control plane (log: {member.log_path}: {member.tail(3)})")
    assert member.proc is not None
    return member.proc.pid


def start_agent_unit(cluster: Cluster, node: str, venv: Path, etc: Path) -> int:
    """The agent as its unit runs it; the env file gives the server, the node and a free port on
    127.0.0.1 (the unit's 0.0.0.0:10250 is for a real machine)."""
    flags = f"--server {cluster.server} --node-name {node} --listen 127.0.0.1:0 --heartbeat-interval 1s"
    token = cluster.join_token()
    (etc / "agent.env").write_text(f"KETCH_AGENT_ARGS={flags}\nKETCH_TOKEN={token or ''}\n")
    member = cluster.agent(node)
    member.late_args = None  # the token is in the env file, as the unit reads it
    member.argv = sandboxed(member.argv, AGENT_UNIT, {
        "/opt/ketch/venv": venv, "/var/lib/ketch-agent": cluster.dir / f"agent-{node}", "/etc/ketch": etc})
    member.start(cluster.env, cluster.dir)
    wait_until(lambda: cluster.node_ready(node), 60, f"node {node} to be Ready (log: {member.log_path})")
    assert member.proc is not None
    return member.proc.pid


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    d = tmp_path / "etc-ketch"
    d.mkdir()
    return d


# What the control plane's unit forbids, tried from inside the emulated sandbox with the unit's
# ExecStart swapped for this probe: each line must fail (or be hidden) as systemd would make it.
PROBE = r"""
import ctypes, errno, json, mmap, os, socket, sys
state, hidden_tmp, device = sys.argv[1], sys.argv[2], sys.argv[3]
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as err:
        return errno.errorcode.get(err.errno, str(err.errno))
def write(path):
    with open(path, "w") as f:
        f.write("x")
libc = ctypes.CDLL(None, use_errno=True)
def c_call(result):
    if result != 0:
        raise OSError(ctypes.get_errno(), "")
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print(json.dumps({
    "uid": os.getuid(), "capbnd": status["CapBnd"].strip(), "nnp": status["NoNewPrivs"].strip(),
    "write_state": attempt(lambda: write(os.path.join(state, "probe"))),
    "state_mode": oct(os.stat(os.path.join(state, "probe")).st_mode & 0o777),
    "write_etc": attempt(lambda: write("/etc/ketch-probe")),
    "write_tmp": attempt(lambda: write("/tmp/ketch-probe")),
    "host_tmp_file": attempt(lambda: os.stat(hidden_tmp)),
    "list_root": attempt(lambda: os.listdir("/root")),
    "dev_null": attempt(lambda: os.stat("/dev/null")),
    "host_device": attempt(lambda: os.stat(device)),
    "netlink": attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()),
    "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
    "wx_mmap": attempt(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)),
    "setaffinity": attempt(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))),
    "unshare_uts": attempt(lambda: c_call(libc.unshare(0x04000000))),
    "pid1_visible": os.path.exists("/proc/1"),
    "meminfo": attempt(lambda: open("/proc/meminfo").close()),
}))
"""


def test_the_sandbox_is_in_force(install_venv: Path, etc: Path, tmp_path: Path) -> None:
    """The emulation is real (else the test below would prove nothing): each directive of the
    control plane's unit refuses what it should."""
    probe_dir, state = tmp_path / "opt-ketch", tmp_path / "state"
    probe_dir.mkdir()
    (probe_dir / "probe.py").write_text(PROBE)
    unit = tmp_path / "probe.service"
    text = CONTROLPLANE_UNIT.read_text()
    start = text.index("ExecStart=")
    end = text.index("$KETCH_CONTROLPLANE_ARGS", start) + len("$KETCH_CONTROLPLANE_ARGS")
    unit.write_text(text[:start] + "ExecStart=/opt/ketch/venv/bin/python /opt/ketch/probe.py /var/lib/ketch "
                    "${HIDDEN} ${DEVICE}" + text[end:])
    hidden = Path(tempfile.mkstemp(prefix="ketch-unit-", dir="/tmp")[1])
    device = host_only_device()
    try:
        result = subprocess.run(
            [sys.executable, str(SANDBOX), "--unit", str(unit), "--user", service_user(),
             "--map", f"/opt/ketch/venv={install_venv}", "--map", f"/opt/ketch={probe_dir}",
             "--map", f"/var/lib/ketch={state}", "--map", f"/etc/ketch={etc}",
             "--setenv", f"HIDDEN={hidden}", "--setenv", f"DEVICE={device}"],
            capture_output=True, text=True, timeout=60)
    finally:
        hidden.unlink()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {
        "uid": pwd.getpwnam(service_user()).pw_uid, "capbnd": "0000000000000000", "nnp": "1",
        "write_state": "ok", "state_mode": "0o600",      # StateDirectory=, UMask=0077
        "write_etc": "EROFS",                           # ProtectSystem=strict
        "write_tmp": "ok", "host_tmp_file": "ENOENT",   # PrivateTmp=
        "list_root": "EACCES",                          # ProtectHome=
        "dev_null": "ok", "host_device": "ENOENT",      # PrivateDevices=
        "netlink": "EAFNOSUPPORT", "inet": "ok",        # RestrictAddressFamilies=
        "wx_mmap": "EPERM",                             # MemoryDenyWriteExecute=
        "setaffinity": "EPERM",                         # SystemCallFilter=~@resources
        "unshare_uts": "EPERM",                         # RestrictNamespaces=
        "pid1_visible": False, "meminfo": "ENOENT",     # ProtectProc=invisible, ProcSubset=pid
    }
    assert (state / "probe").stat().st_uid == pwd.getpwnam(service_user()).pw_uid


def test_controlplane_serves_a_cluster_from_inside_its_units_sandbox(
        cluster_factory: Any, install_venv: Path, etc: Path) -> None:
    cluster: Cluster = cluster_factory()
    pid = start_controlplane_unit(cluster, install_venv, etc)

    # It is confined (else this test would prove nothing): not root, no capabilities at all,
    # no_new_privs, seccomp filters, its own mount namespace with the system read-only.
    status = proc_status(pid)
    assert status["Uid"].split()[0] != "0"
    assert (status["CapEff"], status["CapBnd"]) == ("0000000000000000", "0000000000000000")
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")
    assert int(status["Seccomp_filters"]) >= 3
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root

    # And it does its whole job: store, scheduler, Job controller, the agent's logs fetched
    # through it (it dials the agent), a clean stop.
    cluster.start_agent("node-a")
    apply_all(cluster, pod_manifest("hello", "node-a", [sys.executable, "-c", "print('hello from a pod')"]))
    wait_phase(cluster, "hello", "Succeeded", timeout=60)
    assert cluster.ketch("logs", "hello").stdout == "hello from a pod\n"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "two"},
           "spec": {"completions": 2, "parallelism": 2, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "c", "image": "busybox", "command": [sys.executable, "-c", "pass"]}]}}}}
    cluster.apply(json.dumps(job))
    wait_until(lambda: condition(cluster.get("job", "two"), "Complete"), 60, "Job two to complete")
    assert cluster.get("job", "two")["status"]["succeeded"] == 2

    cluster.stop_process("agent-node-a")
    assert cluster.stop_process("controlplane") == 0, cluster.logs("controlplane")[-2000:]
    owner = (cluster.dir / "controlplane" / "ketch.db").stat()
    assert owner.st_uid == pwd.getpwnam(service_user()).pw_uid
    assert owner.st_mode & 0o077 == 0  # UMask=0077: nothing readable by others


# The pod's report: what it sees of /tmp, /dev, its cgroups, namespaces and confinement. Then it
# waits (up to 2 min) for the test to look at it from the host, and exits 0.
POD_SCRIPT = r"""
import json, os, resource, sys, time
marker, device = sys.argv[1], sys.argv[2]
def attempt(f, *a):
    try:
        return f(*a)
    except OSError as err:
        return "error: " + str(err)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({
    "pid": os.getpid(),
    "tmp": attempt(lambda: open(marker).read()),
    "null": attempt(lambda: os.stat("/dev/null").st_rdev),
    "device": attempt(lambda: os.stat(device).st_rdev),
    "cgroup": attempt(lambda: open("/proc/self/cgroup").read()),
    "ns": {n: attempt(os.readlink, "/proc/self/ns/" + n) for n in ("mnt", "cgroup", "uts", "ipc", "net", "pid")},
    "nnp": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "oom_score_adj": int(open("/proc/self/oom_score_adj").read()),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
}), flush=True)
deadline = time.monotonic() + 120
while not os.path.exists(marker + ".done") and time.monotonic() < deadline:
    time.sleep(0.1)
"""
PSEUDO = {"null", "zero", "full", "random", "urandom", "tty", "ptmx"}


def host_only_device() -> Path:
    """A device node of the host's /dev beyond the pseudo devices PrivateDevices= keeps."""
    for name in sorted(os.listdir("/dev")):
        path = Path("/dev") / name
        if name not in PSEUDO and not name.startswith("tty") and path.exists() and (
                path.is_char_device() or path.is_block_device()):
            return path
    pytest.skip("this machine's /dev has no device beyond the pseudo devices")


def open_files_of(pid: int) -> int:
    """The soft open-files limit of process pid, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit for {pid}")


def cgroup_dirs(cgroup_text: str) -> dict[str, Path]:
    """Each hierarchy line of /proc/PID/cgroup as its directory in this (the host's) mount
    namespace: `4:memory:/a/b` -> /sys/fs/cgroup/memory/a/b, `0::/a` -> the cgroup2 mount."""
    mounts: list[tuple[str, str, set[str]]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = right.split()[:3]
        if fstype in ("cgroup", "cgroup2") and left.split()[3] == "/":
            mounts.append((fstype, left.split()[4], set(options.split(","))))
    out: dict[str, Path] = {}
    for line in cgroup_text.strip().splitlines():
        _, controllers, path = line.split(":", 2)
        for fstype, point, options in mounts:
            if (fstype == "cgroup2" and controllers == "") or (
                    fstype == "cgroup" and controllers and set(controllers.split(",")) <= options):
                out[controllers] = Path(point) / path.lstrip("/")
                break
    return out


def test_pods_of_the_agent_unit_see_the_hosts_tmp_dev_and_cgroups(
        cluster_factory: Any, install_venv: Path, etc: Path) -> None:
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    agent_pid = start_agent_unit(cluster, "node-a", install_venv, etc)
    token = cluster.join_token()
    if token:  # it joined with the env file's KETCH_TOKEN, which `ps` does not show
        assert token.split("::")[1].encode() not in Path(f"/proc/{agent_pid}/cmdline").read_bytes()
    device = host_only_device()
    marker = Path(tempfile.mkstemp(prefix="ketch-unit-", dir="/tmp")[1])
    secret = uuid.uuid4().hex
    marker.write_text(secret)
    try:
        apply_all(cluster, pod_manifest(
            "look", "node-a", [sys.executable, "-c", POD_SCRIPT, str(marker), str(device)],
            container_fields={"resources": {"limits": {"memory": "256Mi"}}}))
        wait_running(cluster, "look", timeout=60)
        report = json.loads(wait_until(lambda: cluster.ketch("logs", "look").stdout.strip(), 30, "the pod's report"))

        # /tmp is the host's: the file this test made there is visible, with its content.
        assert report["tmp"] == secret
        # /dev is the host's: the pseudo devices and a device that only the host's /dev has.
        assert report["null"] == Path("/dev/null").stat().st_rdev
        assert report["device"] == device.stat().st_rdev, f"{device}: {report['device']}"
        # The same namespaces as a process on the host, and no seccomp or no_new_privs.
        assert report["ns"] == {n: os.readlink(f"/proc/self/ns/{n}") for n in report["ns"]}
        assert (report["nnp"], report["seccomp"]) == ("0", "0")
        # Not the unit's OOMScoreAdjust=-999 nor its raised LimitNOFILE, which the agent has: the
        # kubelet's score for a Burstable pod (3..999) and a container's 1024 open files.
        agent_oom = int(Path(f"/proc/{agent_pid}/oom_score_adj").read_text())
        assert 3 <= report["oom_score_adj"] <= 999 and agent_oom != report["oom_score_adj"], agent_oom
        assert report["nofile"] == 1024 < open_files_of(agent_pid)

        # Its cgroups as the host names them (no cgroup namespace), each one a directory of the
        # host's hierarchy that lists the pod; the one for its memory limit is below the agent's
        # (Delegate=yes).
        pod_pid = report["pid"]
        assert report["cgroup"] == Path(f"/proc/{pod_pid}/cgroup").read_text()
        dirs = cgroup_dirs(report["cgroup"])
        assert dirs, report["cgroup"]
        for controllers, d in dirs.items():
            assert str(pod_pid) in (d / "cgroup.procs").read_text().split(), (controllers, d)
        agent_dirs = cgroup_dirs(Path(f"/proc/{agent_pid}/cgroup").read_text())
        if "limits are enforced by the watchdog" in cluster.logs("agent-node-a"):
            pytest.skip("this host gives the agent no cgroup for limits; the rest was checked")
        below = [c for c, d in dirs.items() if c in agent_dirs and agent_dirs[c] in d.parents]
        assert below, f"pod {dirs} not below agent {agent_dirs}"
    finally:
        Path(f"{marker}.done").touch()
    try:
        wait_phase(cluster, "look", "Succeeded", timeout=30)
    finally:
        marker.unlink()
        Path(f"{marker}.done").unlink()
