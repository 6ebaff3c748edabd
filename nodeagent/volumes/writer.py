"""Writing an API-data volume's files atomically, as the kubelet's AtomicWriter lays them out:

    <volume>/..2026_12_06_14_50_00.123456789/<files>   the payload, written in full first
    <volume>/..data -> ..2026_...                        switched by one rename
    <volume>/<key>  -> ..data/<key>                      one symlink per top-level name

so a reader sees the old set or the new one, never half. The agent writes a volume once, before
its pod's first container starts (updates while the pod runs are not made); a volume found
already written (an agent restarted under running pods) is left as it is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from .spec import File

DATA = "..data"


def written(volume_dir: str) -> bool:
    return os.path.islink(os.path.join(volume_dir, DATA))


def write(volume_dir: str, files: Sequence[File], gid: int | None = None) -> None:
    """Write files under volume_dir (which exists). gid: the pod's fsGroup, which then owns every
    file and directory, files readable by the group (the kubelet's SetVolumeOwnership, read-only mask)."""
    now = time.time()
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime(now)) + f".{int(now * 1e9) % 1_000_000_000:09d}"
    payload = os.path.join(volume_dir, stamp)
    os.mkdir(payload, 0o755)
    if gid is not None:
        os.chown(payload, -1, gid)
    for f in files:
        target = os.path.join(payload, f.path)
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755, exist_ok=True)
            if gid is not None:
                d = parent
                while d != payload:
                    os.chown(d, -1, gid)
                    d = os.path.dirname(d)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f.data)
            mode = f.mode
            if gid is not None:
                os.fchown(fd, -1, gid)
                mode |= 0o440
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    tmp = os.path.join(volume_dir, "..data_tmp")
    os.symlink(stamp, tmp)
    os.rename(tmp, os.path.join(volume_dir, DATA))
    for top in sorted({f.path.split("/", 1)[0] for f in files}):
        os.symlink(os.path.join(DATA, top), os.path.join(volume_dir, top))
