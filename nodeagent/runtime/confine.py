"""Confining a container's process between fork and exec: user, groups, capabilities,
no_new_privs, a read-only root, oom_score_adj and the open-files limit.

A `Confinement` says what the process must be (nodeagent/security.py decides it from the pod's
securityContext and QoS); this module makes it so, the cheapest way that is exact:

- nothing to change: plain `Popen` (CPython spawns with vfork, the agent waits only for the exec);
- only oom_score_adj and RLIMIT_NOFILE: a few shell commands run by the child before it execs
  the command (`shell_commands`), in the shell line the runtime already uses to join cgroups. The
  agent still spawns with vfork; the shell's work (under a millisecond) runs in the child;
- another user and groups as well: CPython's own user=, group= and extra_groups= (a fork, but
  its child runs no Python), then the same shell line;
- anything else (capabilities, no_new_privs, a read-only root, volumes, or an oom_score_adj below the
  agent's for another user): a preexec_fn, `ChildSetup` (a fork whose child runs Python: about a
  millisecond more, bench/confine.py). Everything the child needs (ctypes functions and structs,
  paths, the mount list) is built in the parent; the child only calls those in order, allocating
  nothing of note, importing nothing and logging nothing. On a failure it writes which step failed
  and the errno to a pipe, so the agent reports "readOnlyRootFilesystem: cannot make a private
  mount namespace: Operation not permitted" rather than CPython's "Exception occurred in preexec_fn".

Order in the child, each step needing what the earlier ones keep: join the cgroups, set
oom_score_adj (lowering it needs root) and the open-files limit; unshare the mount namespace
(propagation from the host kept one-way: a slave), keep the writable directories writable (bind
mounts), bind the volumes at their mount paths (recursive binds; a readOnly one remounted
read-only, the mount itself, not those below it, as Kubernetes without recursiveReadOnly), and
under a read-only root remount every other mount read-only except /proc, /dev and the volumes;
drop bounding capabilities (needs CAP_SETPCAP); keep capabilities across
the user switch when a non-root user gets added ones; setgroups, setresgid, setresuid; set the
permitted, effective and inheritable sets; raise the ambient ones (so that a non-root user's added
capabilities survive exec); no_new_privs last.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ketch.api import capabilities

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x20, 0x400, 0x800, 0x1000
MS_REC, MS_SLAVE, MS_RELATIME, MS_STRICTATIME = 0x4000, 0x80000, 0x200000, 0x1000000
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Per-mount options (mountinfo's sixth field) that a bind remount must repeat, or it clears them.
_MOUNT_OPTIONS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                  "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
# Left writable under a read-only root, as a container's are: kernel interfaces and devices.
_KEPT_WRITABLE = ("/proc", "/dev")


@dataclass(frozen=True, slots=True)
class Bind:
    """A volume bound at a container's mount path in its private mount namespace."""

    source: str
    target: str
    read_only: bool = False
    flags: int = 0  # the source mount's per-mount MS_* flags, kept by a read-only remount
    what: str = ""  # for messages: 'volume "input"'
    # (st_dev, st_ino) the mounted path must be: a subPath checked in the parent, which a
    # container could otherwise swap for a symlink out of its volume before the child mounts it.
    expect: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Confinement:
    """What a container's process must be; None or empty: as the agent is."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None  # exactly these supplementary groups
    bounding: int | None = None  # the capability bounding set (a bit mask)
    caps: int | None = None  # permitted = effective = inheritable, set after the user switch
    ambient: int = 0  # raised in the ambient set: a non-root user's capabilities across exec
    no_new_privs: bool = False
    read_only_root: bool = False
    writable: tuple[str, ...] = ()  # directories kept writable under a read-only root
    binds: tuple[Bind, ...] = ()  # volumes, in mount order (a path before the paths below it)
    oom_score_adj: int | None = None
    nofile: tuple[int, int] | None = None  # RLIMIT_NOFILE (soft, hard)

    @property
    def switches_user(self) -> bool:
        return self.uid is not None or self.gid is not None or self.groups is not None

    @property
    def trivial(self) -> bool:
        return self == NONE

    def needs_preexec(self, own_oom_score_adj: int) -> bool:
        """Whether only Python code run in the child can do it (a preexec_fn: fork, not vfork).

        A user switch alone is CPython's own (user=, group=, extra_groups=: a fork too, but no
        Python in the child); the shell that then sets oom_score_adj runs as the container's
        user, which may raise it but not lower it below the agent's.
        """
        if (self.bounding is not None or self.caps is not None or self.ambient or self.no_new_privs
                or self.read_only_root or self.binds):
            return True
        return (self.switches_user and self.oom_score_adj is not None
                and self.oom_score_adj < own_oom_score_adj)


NONE = Confinement()


def shell_commands(c: Confinement) -> list[str]:
    """The oom_score_adj and open-files resets as POSIX shell commands (dash, bash and busybox
    all take `ulimit -S`/`-H`), for a child that execs through the shell line anyway."""
    out = []
    if c.nofile is not None:
        soft, hard = c.nofile
        out += [f"ulimit -S -n {soft}", f"ulimit -H -n {hard}"]
    if c.oom_score_adj is not None:
        out.append(f"echo {c.oom_score_adj} > /proc/self/oom_score_adj")
    return out


# -- the mount table -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mount:
    path: bytes
    flags: int  # the per-mount MS_* flags a bind remount keeps
    read_only: bool


_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def parse_mountinfo(text: bytes) -> list[Mount]:
    """Mount points with their per-mount flags, the last mount on a path winning (it hides the others)."""
    by_path: dict[bytes, Mount] = {}
    for line in text.splitlines():
        parts = line.split(b" ")
        if len(parts) < 6:
            continue
        options = parts[5].decode(errors="replace").split(",")
        flags = 0
        for opt in options:
            flags |= _MOUNT_OPTIONS.get(opt, 0)
        path = _unescape(parts[4])
        by_path.pop(path, None)
        by_path[path] = Mount(path, flags, "ro" in options)
    return list(by_path.values())


def _under(path: bytes, roots: Sequence[bytes]) -> bool:
    return any(path == r or path.startswith(r.rstrip(b"/") + b"/") for r in roots)


def to_make_read_only(mounts: Sequence[Mount], writable: Sequence[str]) -> list[Mount]:
    """The mounts a read-only root remounts: all but the read-only ones, /proc, /dev, and the
    writable directories (volume mount paths among them) and what is mounted below them."""
    keep = [os.fsencode(p) for p in (*_KEPT_WRITABLE, *writable)]
    return [m for m in mounts if not m.read_only and not _under(m.path, keep)]


def mount_flags(mounts: Sequence[Mount], path: str) -> int:
    """The per-mount flags of the mount that holds path (the longest mount point above it)."""
    raw = os.fsencode(path)
    best: Mount | None = None
    for m in mounts:
        if _under(raw, [m.path]) and (best is None or len(m.path) > len(best.path)):
            best = m
    return best.flags if best is not None else 0


# -- the child's half --------------------------------------------------------------------------------

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@functools.cache
def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    lib.unshare.argtypes = [ctypes.c_int]
    lib.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
    return lib


@functools.cache
def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(capabilities.NAMES) - 1


def _call(fn: Callable[..., int], *args: object) -> None:
    if fn(*args) != 0:
        raise OSError(ctypes.get_errno(), "")


def _same(path: bytes, dev: int, ino: int) -> None:
    st = os.stat(path)
    if st.st_dev != dev or st.st_ino != ino:
        raise OSError(errno.EXDEV, "")


def _write(path: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class ChildSetup:
    """A preexec_fn that confines the child; `failure()` says why it could not, in the parent."""

    def __init__(self, c: Confinement, cwd: str, cgroup_procs: Sequence[str] = (),
                 mounts: Sequence[Mount] | None = None) -> None:
        lib = _libc()
        steps: list[tuple[str, Callable[[], None]]] = []

        def step(what: str, fn: Callable[..., object], *args: object) -> None:
            steps.append((what, functools.partial(fn, *args)))  # type: ignore[arg-type]

        for path in cgroup_procs:
            step(f"cannot join the cgroup {os.path.dirname(path)}", _write, os.fsencode(path), b"0")
        if c.oom_score_adj is not None:
            step(f"cannot set oom_score_adj to {c.oom_score_adj}", _write, b"/proc/self/oom_score_adj",
                 str(c.oom_score_adj).encode())
        if c.nofile is not None:
            step(f"cannot set RLIMIT_NOFILE to {c.nofile[0]}/{c.nofile[1]}", resource.setrlimit,
                 resource.RLIMIT_NOFILE, c.nofile)
        if c.read_only_root or c.binds:
            ns = "readOnlyRootFilesystem: " if c.read_only_root else "volumes: "
            step(ns + "cannot make a private mount namespace", _call, lib.unshare, CLONE_NEWNS)
            step(ns + "cannot keep its mounts from the host's", _call, lib.mount, None, b"/", None,
                 MS_REC | MS_SLAVE, None)
        ro = "readOnlyRootFilesystem: "
        if c.read_only_root:
            for d in c.writable:
                raw = os.fsencode(d)
                step(f"{ro}cannot keep {d} writable", _call, lib.mount, raw, raw, None, MS_BIND, None)
        # Volumes before the read-only pass: a bind copies its source mount's flags, read-only too.
        for b in c.binds:
            src, dst = os.fsencode(b.source), os.fsencode(b.target)
            step(f"{b.what or 'volume'}: cannot mount {b.source} at {b.target}", _call, lib.mount, src, dst, None,
                 MS_BIND | MS_REC, None)
            if b.expect is not None:
                step(f"{b.what or 'volume'}: {b.source} changed before it was mounted at {b.target}", _same, dst,
                     *b.expect)
            if b.read_only:
                step(f"{b.what or 'volume'}: cannot make {b.target} read-only", _call, lib.mount, None, dst, None,
                     MS_REMOUNT | MS_BIND | MS_RDONLY | b.flags, None)
        if c.read_only_root:
            if mounts is None:
                with open("/proc/self/mountinfo", "rb") as f:
                    mounts = parse_mountinfo(f.read())
            for m in to_make_read_only(mounts, (*c.writable, *(b.target for b in c.binds))):
                step(f"{ro}cannot make {os.fsdecode(m.path)} read-only", _call, lib.mount, None, m.path, None,
                     MS_REMOUNT | MS_BIND | MS_RDONLY | m.flags, None)
        if c.read_only_root or c.binds:
            # The working dir was entered before the mounts changed: enter it again, on them.
            step(f"{ns}cannot enter the working dir {cwd}", os.chdir, cwd)
        if c.caps is not None or c.ambient:
            step("capabilities: cannot clear the ambient set", _call, lib.prctl, PR_CAP_AMBIENT,
                 PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        if c.bounding is not None:
            for cap in range(last_cap() + 1):
                if not c.bounding >> cap & 1:
                    step(f"capabilities: cannot drop {_cap_name(cap)} from the bounding set", _call, lib.prctl,
                         PR_CAPBSET_DROP, cap, 0, 0, 0)
        keep = c.uid not in (None, 0) and (c.caps or c.ambient)
        if keep:
            step("capabilities: cannot keep them across the user switch", _call, lib.prctl, PR_SET_KEEPCAPS,
                 1, 0, 0, 0)
        if c.groups is not None:
            step(f"cannot set the supplementary groups to {list(c.groups)}", os.setgroups, list(c.groups))
        if c.gid is not None:
            step(f"cannot switch to gid {c.gid}", os.setresgid, c.gid, c.gid, c.gid)
        if c.uid is not None:
            step(f"cannot switch to uid {c.uid}", os.setresuid, c.uid, c.uid, c.uid)
        if keep:
            step("capabilities: cannot stop keeping them", _call, lib.prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0)
        if c.caps is not None:
            self._header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
            self._data = (_CapData * 2)()
            for i in (0, 1):
                part = c.caps >> (32 * i) & 0xFFFFFFFF
                self._data[i].effective = self._data[i].permitted = self._data[i].inheritable = part
            step(f"capabilities: cannot set them to {', '.join(capabilities.names_of(c.caps)) or 'none'}",
                 _call, lib.capset, ctypes.byref(self._header), self._data)
        for cap in range(last_cap() + 1):
            if c.ambient >> cap & 1:
                step(f"capabilities: cannot make {_cap_name(cap)} ambient", _call, lib.prctl, PR_CAP_AMBIENT,
                     PR_CAP_AMBIENT_RAISE, cap, 0, 0)
        if c.no_new_privs:
            step("allowPrivilegeEscalation: cannot set no_new_privs", _call, lib.prctl, PR_SET_NO_NEW_PRIVS,
                 1, 0, 0, 0)
        self.steps = steps
        self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def __call__(self) -> None:
        """In the child, between fork and exec."""
        i = 0
        try:
            for i, (_, fn) in enumerate(self.steps):  # noqa: B007 - i names the failing step
                fn()
        except (OSError, ValueError) as err:
            os.write(self._write, b"%d %d" % (i, getattr(err, "errno", None) or errno.EINVAL))
            raise

    def failure(self) -> str | None:
        """In the parent once the spawn failed: which step failed and why, if it was one of ours."""
        self._close_write()
        try:
            data = os.read(self._read, 64)
        except OSError:
            return None
        with contextlib.suppress(ValueError, IndexError):
            i, err = (int(x) for x in data.split())
            return f"{self.steps[i][0]}: {os.strerror(err)}"
        return None

    def _close_write(self) -> None:
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def close(self) -> None:
        self._close_write()
        if self._read >= 0:
            os.close(self._read)
            self._read = -1


def _cap_name(cap: int) -> str:
    return f"CAP_{capabilities.NAMES[cap]}" if cap < len(capabilities.NAMES) else f"capability {cap}"
