"""Where a pod's files live under the agent's `<data-dir>/pods` (pods_root), in one place.

    pods/<uid>/                         the sandbox: default working dir of the pod's containers
    pods/<uid>.state.json               the checkpoint (runtime/checkpoint.py)
    pods/<uid>.<container>.<run>.log    a run's stdout and stderr (runtime/logs.py), with
        .log.1  .log.idx  .log.1.idx    its rotated part and their write-time samples

The directory is flat because on ext4 every new inode, and a mkdir most of all, costs system
CPU (a scan of block-group descriptors): a pod allocates at most its sandbox (only when a
container uses it), its checkpoint (once, then rewritten in place) and one log file per run.
Pod uids and container names (DNS labels) have no dots, so `<uid>.` prefixes only that pod's
files and the names cannot collide. Paths are plain strings: pathlib showed up in the agent's
per-pod profile.
"""

from __future__ import annotations

import os

STATE_SUFFIX = ".state.json"
LOG_COMPANIONS = (".1", ".idx", ".1.idx")


def sandbox_dir(pods_root: str | os.PathLike[str], uid: str) -> str:
    return f"{os.fspath(pods_root)}/{uid}"


def state_file(pods_root: str | os.PathLike[str], uid: str) -> str:
    return f"{os.fspath(pods_root)}/{uid}{STATE_SUFFIX}"


def log_file(pods_root: str | os.PathLike[str], uid: str, container: str, run: int) -> str:
    return f"{os.fspath(pods_root)}/{uid}.{container}.{run}.log"


def log_files(path: str) -> list[str]:
    """A run's log file and its companions (which may not exist)."""
    return [path, *(path + suffix for suffix in LOG_COMPANIONS)]


def pod_files_prefix(uid: str) -> str:
    """The name prefix of the pod's files (not of its sandbox, which is named just `<uid>`)."""
    return uid + "."

