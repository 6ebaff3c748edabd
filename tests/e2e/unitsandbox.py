"""Run a program as a systemd unit would, sandbox included, on a machine without systemd as init.

Tests use it to learn whether the shipped units' programs still work inside the confinement the
units ask for (a Python program may need a system call, an address family or writable memory a
directive refuses), and whether what a unit confines leaks into the agent's pods. systemd-analyze
can read a unit but cannot run one without a systemd manager, so this applies the directives by
hand, as systemd.exec(5) describes them, and then execs the unit's ExecStart:

    python unitsandbox.py --unit deploy/ketch-controlplane.service \\
        --map /opt/ketch/venv=VENV --map /var/lib/ketch=DATA --map /etc/ketch=ENVDIR [--user nobody]

--map rewrites a path prefix in ExecStart, EnvironmentFile= and StateDirectory=, so that the
unit runs from this checkout with its state in a test's directory; the mapped directories stay
visible (read-only but for the state directories) wherever they are, as the real install paths
would be. VENV's Python must live outside /root and /home when the unit has ProtectHome=, as on
a real install. It needs root, a kernel with
seccomp and mount namespaces, libseccomp, and systemd-analyze (for the system call groups).

Every directive of the unit must be in one of the tables below, so that a directive added to a
unit is either emulated or explicitly listed as not affecting the process (a lifecycle setting)
or not emulated (with the reason); an unknown one stops the run.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import functools
import os
import pwd
import re
import resource
import shlex
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the checkout's root on the path, for tests.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.unit.deploy.unitfile import Unit, environment, exec_start, read_unit

# What the process gets from each directive (done here).
EMULATED = {
    "User", "Group", "UMask", "Environment", "EnvironmentFile", "ExecStart", "StateDirectory",
    "StateDirectoryMode", "LimitNOFILE", "OOMScoreAdjust", "NoNewPrivileges", "CapabilityBoundingSet",
    "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
    "ProtectProc", "ProcSubset", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictNamespaces", "RestrictRealtime",
    "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RestrictAddressFamilies",
    "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
}
# Settings of the service's lifecycle or of its cgroup, not of the process it starts.
LIFECYCLE = {
    "Type", "KillMode", "KillSignal", "TimeoutStopSec", "Restart", "RestartSec", "Delegate", "TasksMax",
}
# Not emulated, and why that is acceptable for what the tests learn.
NOT_EMULATED = {
    "RemoveIPC": "removes the user's IPC objects after it stops; nothing while it runs",
    "KeyringMode": "private is already the default for system services",
    "DevicePolicy": "closed: the device cgroup; PrivateDevices= already leaves only pseudo devices",
}

# PrivateDevices=: the pseudo devices a service keeps (systemd.exec(5)), as (major, minor).
PSEUDO_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                  "tty": (5, 0)}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
CLONE_NEWNS, CLONE_NEWUTS = 0x00020000, 0x04000000
NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                   0x00000080]  # mnt, cgroup, uts, ipc, user, pid, net, time
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38

# libseccomp (seccomp.h)
SCMP_ACT_KILL_PROCESS, SCMP_ACT_ALLOW = 0x80000000, 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ = 1, 4, 7


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class SandboxError(RuntimeError):
    pass


# -- the unit ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What to do, read from the unit before anything is changed."""

    unit: Unit
    maps: list[tuple[str, str]]
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    state_dirs: list[Path] = field(default_factory=list)

    def mapped(self, path: str) -> str:
        for prefix, target in self.maps:
            if path == prefix or path.startswith(prefix + "/"):
                return target + path[len(prefix):]
        return path

    def flag(self, key: str) -> bool:
        value = self.unit.value(key)
        return value is not None and value.lower() in ("yes", "true", "1", "on")


def plan(unit_path: Path, maps: list[tuple[str, str]], user: str | None, setenv: dict[str, str]) -> Plan:
    unit = read_unit(unit_path)
    unknown = sorted(set(unit.keys()) - EMULATED - LIFECYCLE - set(NOT_EMULATED))
    if unknown:
        raise SandboxError(f"{unit_path.name}: directives unknown to the emulator: {', '.join(unknown)} "
                           f"(add them to a table in {Path(__file__).name})")
    p = Plan(unit, sorted(maps, key=lambda m: -len(m[0])))
    p.user = user or unit.value("User")
    env_dir = Path(p.mapped("/etc/ketch"))
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"}
    if p.user is not None:
        entry = pwd.getpwnam(p.user)
        env.update(USER=entry.pw_name, LOGNAME=entry.pw_name, HOME=entry.pw_dir, SHELL=entry.pw_shell)
    states = [p.mapped(f"/var/lib/{d}") for v in unit.values("StateDirectory") for d in v.split()]
    p.state_dirs = [Path(s) for s in states]
    if states:
        env["STATE_DIRECTORY"] = ":".join(states)
    env.update(environment(unit, env_dir))
    env.update(setenv)
    p.env = env
    p.argv = [p.mapped(word) if word.startswith("/") else word for word in exec_start(unit, env)]
    return p


# -- process settings ----------------------------------------------------------------------------


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(libc().mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {target}")


def unshare(flags: int) -> None:
    check(libc().unshare(flags), f"unshare {flags:#x}")


def prctl(option: int, arg: int) -> None:
    check(libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def mountinfo() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount, parents first."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040 is a space
        out.append((point, set(fields[5].split(","))))
    return out


def under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def state_directories(p: Plan, uid: int, gid: int) -> None:
    mode = int(p.unit.value("StateDirectoryMode") or "0755", 8)
    for d in p.state_dirs:
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, uid, gid)
        d.chmod(mode)


def rebind(path: Path, fd: int) -> None:
    """Make path (hidden by a new mount above it) visible again at the same place; directories
    made for it in a new tmpfs are world-searchable, as the real install path's would be."""
    missing = [d for d in [path, *path.parents] if not d.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for d in missing:
        d.chmod(0o755)
    mount(f"/proc/self/fd/{fd}", str(path), None, MS_BIND)


def file_system(p: Plan) -> None:
    """The mount namespace: private /tmp and /dev, hidden homes, a read-only system, /proc."""
    private_tmp, private_dev = p.flag("PrivateTmp"), p.flag("PrivateDevices")
    protect_system = (p.unit.value("ProtectSystem") or "no").lower()
    protect_home = (p.unit.value("ProtectHome") or "no").lower()
    tunables, cgroups = p.flag("ProtectKernelTunables"), p.flag("ProtectControlGroups")
    proc_opts = [o for o in (("hidepid=invisible" if p.unit.value("ProtectProc") == "invisible" else ""),
                             ("subset=pid" if p.unit.value("ProcSubset") == "pid" else "")) if o]
    if protect_system not in ("no", "strict"):
        raise SandboxError(f"ProtectSystem={protect_system} is not emulated (only strict)")
    if protect_home not in ("no", "yes"):
        raise SandboxError(f"ProtectHome={protect_home} is not emulated (only yes)")
    wanted = (private_tmp or private_dev or protect_system != "no" or protect_home != "no" or tunables
              or cgroups or proc_opts or p.flag("PrivateMounts"))
    if not wanted:
        return
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The --map targets stand for install paths (/opt/ketch/venv, /var/lib/ketch) that no
    # directive hides; here they may live under /tmp or a home, so they are bound back after
    # the mounts that hide them. Opened in the new namespace: a bind's source must be in it.
    shown = [Path(target) for _, target in p.maps if Path(target).is_dir()]
    keep = [os.open(d, os.O_PATH) for d in shown]
    writable = [str(d) for d in p.state_dirs]
    if private_tmp:
        for tmp in ("/tmp", "/var/tmp"):
            mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
            writable.append(tmp)
    if private_dev:
        mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755")
        for name, (major, minor) in PSEUDO_DEVICES.items():
            os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(f"/dev/{name}", 0o666)
        os.mkdir("/dev/shm")
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        for i, name in enumerate(("stdin", "stdout", "stderr")):
            os.symlink(f"/proc/self/fd/{i}", f"/dev/{name}")
        os.symlink("/proc/self/fd", "/dev/fd")
    if protect_home == "yes":
        for home in ("/home", "/root", "/run/user"):
            if os.path.isdir(home):
                mount("tmpfs", home, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000")
    for d, fd in zip(shown, keep, strict=True):
        rebind(d, fd)
        os.close(fd)
    for point, opts in mountinfo():
        if read_only(point, writable, protect_system == "strict", tunables, cgroups):
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            for opt in opts:
                flags |= MOUNT_FLAGS.get(opt, 0)
            mount(None, point, None, flags)
    if proc_opts:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ",".join(proc_opts))
    if tunables and "subset=pid" not in proc_opts:
        mount("/proc/sys", "/proc/sys", None, MS_BIND)
        mount(None, "/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def read_only(point: str, writable: list[str], strict: bool, tunables: bool, cgroups: bool) -> bool:
    """Whether a mount turns read-only: ProtectSystem=strict takes all but the API file systems
    (/proc, /dev, /sys) and the writable paths; ProtectKernelTunables /sys; ProtectControlGroups
    /sys/fs/cgroup."""
    if under(point, writable):
        return False
    if under(point, ["/sys/fs/cgroup"]):
        return tunables or cgroups
    if under(point, ["/sys"]):
        return tunables
    if under(point, ["/proc", "/dev"]):
        return False
    return strict


# Read now: /proc/sys may be gone once ProcSubset=pid is in force.
LAST_CAP = int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def capability_bounding_set(p: Plan) -> None:
    value = p.unit.value("CapabilityBoundingSet")
    if value is None:
        return
    if value.strip():
        raise SandboxError("only an empty CapabilityBoundingSet= is emulated")
    for cap in range(LAST_CAP + 1):
        prctl(PR_CAPBSET_DROP, cap)


def become(p: Plan) -> tuple[int, int]:
    if p.user is None:
        return 0, 0
    entry = pwd.getpwnam(p.user)
    return entry.pw_uid, entry.pw_gid


def drop_user(uid: int, gid: int, name: str | None) -> None:
    if name is None or uid == 0:
        return
    os.initgroups(name, gid)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


# -- seccomp -------------------------------------------------------------------------------------


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@functools.cache
def libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


class Filter:
    """One seccomp filter (systemd too installs one per directive); loaded by `load`."""

    def __init__(self, default: int) -> None:
        self.lib = libseccomp()
        self.ctx = self.lib.seccomp_init(default)
        if not self.ctx:
            raise SandboxError("seccomp_init failed")

    def rule(self, action: int, name: str, *cmps: tuple[int, int, int, int]) -> bool:
        """Add a rule; False when this architecture has no such call (systemd skips those too)."""
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return False
        array = (ArgCmp * max(1, len(cmps)))(*[ArgCmp(*c) for c in cmps])
        result = self.lib.seccomp_rule_add_array(self.ctx, action, nr, len(cmps), array)
        if result not in (0, -errno.EACCES):  # EACCES: the action is the filter's default
            raise SandboxError(f"seccomp rule for {name}: {os.strerror(-result)}")
        return True

    def load(self) -> None:
        result = self.lib.seccomp_load(self.ctx)
        self.lib.seccomp_release(self.ctx)
        if result != 0:
            raise SandboxError(f"seccomp_load: {os.strerror(-result)}")


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """A systemd system call group (@name), expanded recursively, from systemd-analyze."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True)
    calls: set[str] = set()
    for line in out.stdout.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        calls |= syscall_group(word) if word.startswith("@") else {word}
    return frozenset(calls)


def expand(words: list[str]) -> set[str]:
    calls: set[str] = set()
    for w in words:
        calls |= syscall_group(w) if w.startswith("@") else {w}
    return calls


def syscall_filter(p: Plan) -> Filter | None:
    """SystemCallFilter= lines in order (an allow list, then `~` lines taking calls out of it),
    plus the groups the Protect*= directives deny."""
    allowed: set[str] | None = None
    denied: set[str] = set()
    for value in p.unit.values("SystemCallFilter"):
        invert = value.startswith("~")
        words = value.lstrip("~").split()
        if invert:
            if allowed is not None:
                allowed -= expand(words)
            else:
                denied |= expand(words)
        elif allowed is None:
            allowed = expand(words)
        else:
            allowed |= expand(words)
    implied = {"ProtectClock": ["@clock"], "ProtectKernelModules": ["@module"], "ProtectKernelLogs": ["syslog"],
               "ProtectHostname": ["sethostname", "setdomainname"]}
    for key, words in implied.items():
        if p.flag(key):
            if allowed is not None:
                allowed -= expand(words)
            denied |= expand(words)
    if allowed is None and not denied:
        return None
    code = p.unit.value("SystemCallErrorNumber")
    refuse = scmp_act_errno(getattr(errno, code)) if code else SCMP_ACT_KILL_PROCESS
    if allowed is not None:
        f = Filter(refuse)
        for name in sorted(allowed):
            f.rule(SCMP_ACT_ALLOW, name)
    else:
        f = Filter(SCMP_ACT_ALLOW)
        for name in sorted(denied):
            f.rule(refuse, name)
    return f


def address_families(p: Plan) -> Filter | None:
    value = p.unit.value("RestrictAddressFamilies")
    if value is None:
        return None
    if value.startswith("~"):
        raise SandboxError("only an allow list of RestrictAddressFamilies= is emulated")
    allowed = {int(getattr(socket, name)) for name in value.split()}
    f = Filter(SCMP_ACT_ALLOW)
    for family in range(64):
        if family not in allowed:
            f.rule(scmp_act_errno(errno.EAFNOSUPPORT), "socket", (0, SCMP_CMP_EQ, family, 0))
    return f


def process_restrictions(p: Plan) -> Filter | None:
    """MemoryDenyWriteExecute, RestrictNamespaces, RestrictRealtime, RestrictSUIDSGID and
    LockPersonality, with the rules systemd's seccomp-util.c installs for them."""
    f = Filter(SCMP_ACT_ALLOW)
    used = False
    eperm = scmp_act_errno(errno.EPERM)
    if p.flag("MemoryDenyWriteExecute"):
        prot_exec, prot_write, shm_exec = 0x4, 0x2, 0o100000
        f.rule(eperm, "mmap", (2, SCMP_CMP_MASKED_EQ, prot_exec | prot_write, prot_exec | prot_write))
        f.rule(eperm, "mprotect", (2, SCMP_CMP_MASKED_EQ, prot_exec, prot_exec))
        f.rule(eperm, "pkey_mprotect", (2, SCMP_CMP_MASKED_EQ, prot_exec, prot_exec))
        f.rule(eperm, "shmat", (2, SCMP_CMP_MASKED_EQ, shm_exec, shm_exec))
        used = True
    if p.flag("RestrictNamespaces"):
        for flag in NAMESPACE_FLAGS:
            f.rule(eperm, "unshare", (0, SCMP_CMP_MASKED_EQ, flag, flag))
            f.rule(eperm, "clone", (0, SCMP_CMP_MASKED_EQ, flag, flag))
        f.rule(eperm, "setns")
        f.rule(scmp_act_errno(errno.ENOSYS), "clone3")  # flags in memory: glibc falls back to clone
        used = True
    if p.flag("RestrictRealtime"):
        for policy in (1, 2, 6):  # SCHED_FIFO, SCHED_RR, SCHED_DEADLINE
            f.rule(eperm, "sched_setscheduler", (1, SCMP_CMP_EQ, policy, 0))
        used = True
    if p.flag("RestrictSUIDSGID"):
        for bit in (0o4000, 0o2000):
            f.rule(eperm, "chmod", (1, SCMP_CMP_MASKED_EQ, bit, bit))
            f.rule(eperm, "fchmod", (1, SCMP_CMP_MASKED_EQ, bit, bit))
            f.rule(eperm, "fchmodat", (2, SCMP_CMP_MASKED_EQ, bit, bit))
            f.rule(eperm, "open", (1, SCMP_CMP_MASKED_EQ, os.O_CREAT, os.O_CREAT), (2, SCMP_CMP_MASKED_EQ, bit, bit))
            f.rule(eperm, "openat", (2, SCMP_CMP_MASKED_EQ, os.O_CREAT, os.O_CREAT), (3, SCMP_CMP_MASKED_EQ, bit, bit))
            f.rule(eperm, "creat", (1, SCMP_CMP_MASKED_EQ, bit, bit))
        used = True
    if p.flag("LockPersonality"):
        f.rule(eperm, "personality", (0, SCMP_CMP_NE, 0, 0))  # PER_LINUX only
        used = True
    return f if used else None


# -- putting it together -------------------------------------------------------------------------


def apply(p: Plan) -> None:
    """Everything but the exec, in systemd's order: limits, directories, namespaces, user,
    capabilities, no_new_privs, seccomp last. The filters are built first: building them runs
    systemd-analyze and loads libseccomp, which the sandbox may hide (as it may hide this
    interpreter's own files, so nothing here imports after the mounts)."""
    if p.unit.value("SystemCallArchitectures") not in (None, "native"):
        raise SandboxError("only SystemCallArchitectures=native is emulated")
    if p.unit.value("AmbientCapabilities"):
        raise SandboxError("only an empty AmbientCapabilities= is emulated")
    # The allow list last: it refuses seccomp(2) itself, so no filter could follow it.
    filters = [f for f in (address_families(p), process_restrictions(p), syscall_filter(p)) if f is not None]
    libc()
    nofile = p.unit.value("LimitNOFILE")
    if nofile:
        soft, _, hard = nofile.partition(":")
        want = (int(soft), int(hard or soft))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
        except ValueError:  # this machine will not raise the hard limit: the unit's shape, lower
            cap = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want[0], cap), min(want[1], cap)))
            print(f"unitsandbox: LimitNOFILE={nofile} lowered to this machine's hard limit {cap}", file=sys.stderr)
    oom = p.unit.value("OOMScoreAdjust")
    if oom:
        try:
            Path("/proc/self/oom_score_adj").write_text(oom)
        except PermissionError:  # lowering it needs CAP_SYS_RESOURCE, which this machine withholds
            print(f"unitsandbox: OOMScoreAdjust={oom} refused here; left as it was", file=sys.stderr)
    uid, gid = become(p)
    state_directories(p, uid, gid)
    file_system(p)
    if p.flag("ProtectHostname"):
        unshare(CLONE_NEWUTS)
    capability_bounding_set(p)
    drop_user(uid, gid, p.user)
    if p.flag("NoNewPrivileges") or (filters and uid != 0):
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.umask(int(p.unit.value("UMask") or "0022", 8))
    os.chdir("/")
    for f in filters:
        f.load()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unit", required=True, type=Path)
    ap.add_argument("--map", action="append", default=[], metavar="PREFIX=PATH",
                    help="run with PATH where the unit names PREFIX (ExecStart, EnvironmentFile, StateDirectory)")
    ap.add_argument("--user", help="run as this user instead of the unit's User= (one that exists here)")
    ap.add_argument("--setenv", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--print", action="store_true", help="print the command line and environment, run nothing")
    args = ap.parse_args(argv)
    maps = [tuple(m.split("=", 1)) for m in args.map]
    setenv = dict(s.split("=", 1) for s in args.setenv)
    try:
        p = plan(args.unit, [(a, str(Path(b).resolve())) for a, b in maps], args.user, setenv)
        if args.print:
            print(shlex.join(p.argv))
            for k, v in sorted(p.env.items()):
                print(f"{k}={v}")
            return 0
        apply(p)
    except (SandboxError, OSError, KeyError, subprocess.CalledProcessError) as err:
        print(f"unitsandbox: {err}", file=sys.stderr)
        return 2
    os.execve(p.argv[0], p.argv, p.env)


if __name__ == "__main__":
    sys.exit(main())
