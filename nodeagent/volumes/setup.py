"""A pod's volumes on the node: made once, before its first container starts, and bound into
each container's private mount namespace at its volumeMounts.

    pods/<uid>.volumes/<name>/    one directory per volume (hostPath: the host's path itself)

- emptyDir: a directory (0777, as the kubelet makes it) shared by the pod's containers, removed
  with the pod; `medium: Memory` is a tmpfs mounted there (sizeLimit as its size).
- configMap, secret, downwardAPI, projected: the files written once (writer.py), read-only in
  every container; a secret's directory is a tmpfs, as the kubelet's, so its values never reach
  the disk. The ConfigMaps and Secrets are read through the API (the Node authorizer lets a node
  get those its pods reference) when the volumes are made; a missing one that is not optional
  keeps the container waiting, tried again as env references are. Later changes to the objects
  are not written into a running pod's volume.
- hostPath: the host's path, checked as the kubelet checks its type.

With an fsGroup, emptyDir and the written files belong to that group (setgid directories,
group-readable files), as the kubelet's SetVolumeOwnership.

Mounting needs CAP_SYS_ADMIN: an agent without it refuses a pod with volumes (the container waits
with the reason), it never runs one with its volumes missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import stat
from collections.abc import Mapping
from typing import Any

from ketch.api import configrefs, errors
from ketch.client.clientset import Client
from ketch.v1 import core_pb2

from ..runtime.confine import Bind, mount_flags, parse_mountinfo
from . import hostpath, spec, writer
from .mountpoints import MountPoints
from .spec import VolumeError

SUFFIX = ".volumes"
MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 0x2, 0x4


def volumes_dir(pods_root: str, uid: str) -> str:
    return f"{pods_root}/{uid}{SUFFIX}"


def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return lib


def mount_tmpfs(path: str, size: int | None, mode: int) -> None:
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise VolumeError(f"cannot mount a tmpfs at {path}: {os.strerror(err)}")


def remove(pods_root: str, uid: str) -> None:
    """The pod's volume directories, tmpfs mounts first (a gone pod's: nothing runs in them)."""
    root = volumes_dir(pods_root, uid)
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if os.path.ismount(entry.path):
                _libc().umount2(os.fsencode(entry.path), MNT_DETACH)
    shutil.rmtree(root, ignore_errors=True)


def cleanup_under(data_dir: str, registry: MountPoints) -> None:
    """Everything volumes left mounted or held under data_dir, whose agent is gone: its tmpfs
    mounts detached, its mount points released (a test harness, or a node's data dir removed)."""
    prefix = os.path.realpath(data_dir).rstrip("/") + "/"
    with open("/proc/self/mountinfo", "rb") as f:
        table = parse_mountinfo(f.read())
    for m in sorted(table, key=lambda m: len(m.path), reverse=True):
        path = os.fsdecode(m.path)
        if path.startswith(prefix):
            _libc().umount2(m.path, MNT_DETACH)
    with contextlib.suppress(OSError):
        registry.release(prefix, prefix=True)


def refusal(host_uid: int, can_mount: bool, pod: core_pb2.Pod) -> str | None:
    """Why an agent without CAP_SYS_ADMIN cannot run a pod with volumes (None: it can)."""
    if can_mount or not pod.spec.volumes:
        return None
    name = pod.spec.volumes[0].fields["name"].string_value if "name" in pod.spec.volumes[0].fields else ""
    return (f'volume "{name}": the agent runs as uid {host_uid} without CAP_SYS_ADMIN and cannot mount volumes '
            "in a private mount namespace")


async def _fetch(client: Client, kind: str, name: str, namespace: str) -> Mapping[str, bytes] | None:
    try:
        obj: Any = await client.get(kind, name, namespace)
    except errors.NotFound:
        return None
    except errors.StatusError as err:
        raise VolumeError(f"couldn't get {kind.lower()} {namespace}/{name}: {err}") from None
    if kind == configrefs.SECRET:
        return dict(obj.data)
    out = {k: v.encode() for k, v in obj.data.items()}
    out.update(obj.binary_data)
    return out


class PodVolumes:
    """One pod's volumes: `prepare` makes them (once), `binds` says how a container sees them."""

    def __init__(self, pods_root: str, pod: core_pb2.Pod, registry: MountPoints) -> None:
        self.root = volumes_dir(pods_root, pod.metadata.uid)
        self.uid = pod.metadata.uid
        self.registry = registry
        self.volumes = spec.volumes(pod.spec)
        self.sources: dict[str, str] = {}  # volume name -> its directory (or the host's path)
        self.ready = False

    async def prepare(self, client: Client, pod: core_pb2.Pod, allocatable: Mapping[str, str],
                      fs_group: int | None) -> None:
        """Make every volume of the pod; VolumeError naming the volume when one cannot be made."""
        if self.ready:
            return
        needed = spec.needed_objects(list(self.volumes.values()))
        ns = pod.metadata.namespace
        found = await asyncio.gather(*(_fetch(client, kind, name, ns) for kind, name in needed))
        objects = dict(zip(needed, found, strict=True))

        def lookup(kind: str, name: str) -> Mapping[str, bytes] | None:
            return objects.get((kind, name))

        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root, 0o750)
        for vol in self.volumes.values():
            try:
                self.sources[vol.name] = self._make(pod, vol, lookup, allocatable, fs_group)
            except VolumeError as err:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{vol.name}" : {err}') from None
            except OSError as err:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{vol.name}" : {err}') from None
        self.ready = True

    def adopt(self) -> None:
        """The volumes an earlier agent made for the pod's running containers, as they are on
        disk (for the probes, hooks and exec of a container adopted after a restart)."""
        if self.ready:
            return
        for vol in self.volumes.values():
            path = str(vol.source.get("path", "")) if vol.kind == spec.HOST_PATH else f"{self.root}/{vol.name}"
            if not os.path.lexists(path):
                raise VolumeError(f'volume "{vol.name}": {path} is gone')
            self.sources[vol.name] = path
        self.ready = True

    def _make(self, pod: core_pb2.Pod, vol: spec.Volume, lookup: spec.ObjectLookup,
              allocatable: Mapping[str, str], fs_group: int | None) -> str:
        src = vol.source
        if vol.kind == spec.HOST_PATH:
            path = str(src.get("path", ""))
            hostpath.check(path, str(src.get("type", "")))
            return path
        path = f"{self.root}/{vol.name}"
        fresh = False
        try:
            os.mkdir(path, 0o755)
            fresh = True
        except FileExistsError:
            pass
        if vol.kind == spec.EMPTY_DIR:
            if src.get("medium") == "Memory" and not os.path.ismount(path):
                mount_tmpfs(path, spec.memory_size(src), 0o777)
            elif src.get("medium") not in (None, "", "Memory"):
                raise VolumeError(f'emptyDir.medium: Unsupported value: "{src.get("medium")}"')
            if fresh or os.path.ismount(path):
                os.chmod(path, 0o777)
                if fs_group is not None:
                    os.chown(path, -1, fs_group)
                    os.chmod(path, 0o777 | stat.S_ISGID)
            return path
        files = spec.api_files(pod, vol, lookup, allocatable)
        if writer.written(path):
            return path  # an agent restarted under the running pod: keep what its containers see
        if vol.kind == spec.SECRET and not os.path.ismount(path):
            mount_tmpfs(path, None, 0o755)
        writer.write(path, files, fs_group)
        return path

    def binds(self, c: core_pb2.Container) -> tuple[Bind, ...]:
        """How container c sees the volumes: a bind per volumeMount, parents first. Creates
        mount points that do not exist (on the host, held in the registry; below another of the
        container's mounts, in that volume)."""
        if not c.volume_mounts:
            return ()
        with open("/proc/self/mountinfo", "rb") as f:
            table = parse_mountinfo(f.read())
        mounts = sorted(spec.mounts(c), key=lambda m: m.path.count("/"))
        out: list[Bind] = []
        host_targets: list[tuple[str, bool]] = []
        placed: list[tuple[str, str]] = []  # (target, source) of the binds before this one
        for m in mounts:
            vol = self.volumes.get(m.volume)
            base = self.sources.get(m.volume)
            if vol is None or base is None:
                raise VolumeError(f'container {c.name}: volumeMount "{m.volume}": no such volume in the pod')
            source, expect = self._sub_path(vol, base, m.sub_path, c.name)
            is_dir = os.path.isdir(source)
            parent = next(((t, s) for t, s in reversed(placed) if m.path.startswith(t.rstrip("/") + "/")), None)
            if parent is None:
                host_targets.append((m.path, is_dir))
            else:
                inside = os.path.join(parent[1], os.path.relpath(m.path, parent[0]))
                if not os.path.lexists(inside):
                    if is_dir:
                        os.makedirs(inside, 0o755, exist_ok=True)
                    else:
                        os.makedirs(os.path.dirname(inside), 0o755, exist_ok=True)
                        os.close(os.open(inside, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            read_only = m.read_only or vol.kind in spec.API_DATA
            out.append(Bind(source, m.path, read_only, mount_flags(table, source) if read_only else 0,
                            f'volume "{m.volume}"', expect))
            placed.append((m.path, source))
        if host_targets:
            try:
                self.registry.acquire(self.root, host_targets)
            except OSError as err:
                raise VolumeError(f"container {c.name}: cannot create the mount point {err.filename}: "
                                  f"{err.strerror}") from None
        return tuple(out)

    def _sub_path(self, vol: spec.Volume, base: str, sub: str,
                  container: str) -> tuple[str, tuple[int, int] | None]:
        """base/sub and the (device, inode) it is, which must stay inside the volume once every
        symlink is resolved: a symlink a container made in an emptyDir must not lead a second
        mount out of it. What is checked is what was opened (its /proc/self/fd link), and the
        child checks that what it mounted is that same inode (a swap in between fails the start)."""
        if not sub:
            return base, None
        path = os.path.join(base, sub)
        if not os.path.lexists(path) and vol.kind in (spec.EMPTY_DIR, spec.HOST_PATH):
            os.makedirs(path, 0o755 if vol.kind == spec.HOST_PATH else 0o777, exist_ok=True)
        root = os.path.realpath(base)
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            raise VolumeError(f'container {container}: subPath "{sub}" does not exist in volume "{vol.name}"') from None
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if os.path.commonpath([root, real]) != root:
            raise VolumeError(f'container {container}: subPath "{sub}" of volume "{vol.name}" leads outside '
                              "the volume")
        return real, (st.st_dev, st.st_ino)

    def release(self) -> None:
        """The pod's containers are all gone: its mount points may go (when no one else holds them)."""
        with contextlib.suppress(OSError):
            self.registry.release(self.root)
