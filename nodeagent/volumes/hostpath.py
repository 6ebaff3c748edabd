"""hostPath volumes: the kubelet's type checks and creations (pkg/volume/hostpath), word for word.

"" checks nothing (the bind mount fails if the path does not exist); DirectoryOrCreate and
FileOrCreate make what is missing (0755 directories, an empty 0644 file) as the agent's user;
the other types must already be what they name.
"""

from __future__ import annotations

import os
import stat

from .spec import HOST_PATH_TYPES, VolumeError


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as err:
        raise VolumeError(f"hostPath type check failed: {path}: {err.strerror}") from None


def check(path: str, kind: str) -> None:
    """Make path what type `kind` says, or raise VolumeError with the kubelet's message."""
    if not path.startswith("/"):
        raise VolumeError(f'hostPath.path: "{path}": must be an absolute path')
    if kind not in HOST_PATH_TYPES:
        raise VolumeError(f"{kind} is an invalid volume type")
    if not kind:
        return
    mode = _mode(path)
    if kind == "DirectoryOrCreate" and mode is None:
        try:
            os.makedirs(path, 0o755, exist_ok=True)
        except OSError as err:
            raise VolumeError(f"hostPath: cannot create directory {path}: {err.strerror}") from None
        return
    if kind == "FileOrCreate" and mode is None:
        try:
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        except OSError as err:
            raise VolumeError(f"hostPath: cannot create file {path}: {err.strerror}") from None
        return
    ok, what = {
        "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
        "Directory": (stat.S_ISDIR, "a directory"),
        "FileOrCreate": (stat.S_ISREG, "a file"),
        "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"),
        "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }[kind]
    if mode is None or not ok(mode):
        raise VolumeError(f"hostPath type check failed: {path} is not {what}")
