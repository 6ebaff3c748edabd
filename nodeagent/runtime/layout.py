"""Where a pod's files live under the agent's `<data-dir>/pods` (pods_root), in one place.

    pods/<uid>/                         the sandbox: default working dir of the pod's containers
    pods/<uid>.state.json               the checkpoint (runtime/checkpoint.py)
    pods/<uid>.<container>.<run>.log    a run's output as agents before the CRI logs wrote it
        .log.1  .log.idx  .log.1.idx    (runtime/logs.py; still read, and written by runs
                                        adopted from such an agent)
    pods/<uid>.volumes/<name>/          a pod's volumes, only for a pod that has some
                                        (nodeagent/volumes/setup.py)

Container logs now live in the kubelet's layout under --pod-logs-dir (see the end of this file
and runtime/crilog.py), made only when a run writes something.

The directory is flat because on ext4 every new inode, and a mkdir most of all, costs system
CPU (a scan of block-group descriptors): a pod allocates at most its sandbox (only when a
container uses it), its checkpoint (once, then rewritten in place) and one log file per run.
Pod uids and container names (DNS labels) have no dots, so `<uid>.` prefixes only that pod's
files and the names cannot collide. Paths are plain strings: pathlib showed up in the agent's
per-pod profile.

Every uid and container name is checked to be one plain file-name part (no `/`, no dot, not
empty) before it becomes a path, whatever checked it before (the API server, the agent's gRPC
server, the checkpoint reader), so no value can name a file outside pods_root; `inside()` is the
resolved-path check for paths built from what a request names.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re

log = logging.getLogger(__name__)

STATE_SUFFIX = ".state.json"
LOG_COMPANIONS = (".1", ".idx", ".1.idx")
# The layout before this one: pods/<uid>/{state.json, sandbox/, <container>.<run>.log*}.
NESTED_STATE = "state.json"
NESTED_SANDBOX = "sandbox"
MIGRATING = ".nested-"  # pods/.nested-<uid>: a nested pod dir being flattened


def is_part(name: str) -> bool:
    """Whether name can be one part of a file name here: no separator, no dot, no NUL."""
    return bool(name) and "/" not in name and "." not in name and "\0" not in name


def _part(name: str, what: str) -> str:
    if not is_part(name):
        raise ValueError(f"{what} {name[:100]!r} cannot name a file")
    return name


def sandbox_dir(pods_root: str | os.PathLike[str], uid: str) -> str:
    return f"{os.fspath(pods_root)}/{_part(uid, 'pod uid')}"


def state_file(pods_root: str | os.PathLike[str], uid: str) -> str:
    return f"{os.fspath(pods_root)}/{_part(uid, 'pod uid')}{STATE_SUFFIX}"


def log_file(pods_root: str | os.PathLike[str], uid: str, container: str, run: int) -> str:
    return f"{os.fspath(pods_root)}/{_part(uid, 'pod uid')}.{_part(container, 'container name')}.{run}.log"


def inside(pods_root: str | os.PathLike[str], path: str) -> bool:
    """Whether path, with every symlink resolved, is under pods_root (defence in depth)."""
    root = os.path.realpath(pods_root)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def log_files(path: str) -> list[str]:
    """A run's log file and its companions (which may not exist)."""
    return [path, *(path + suffix for suffix in LOG_COMPANIONS)]


def pod_files_prefix(uid: str) -> str:
    """The name prefix of the pod's files (not of its sandbox, which is named just `<uid>`)."""
    return _part(uid, "pod uid") + "."


def migrate_nested(pods_root: str | os.PathLike[str]) -> list[str]:
    """Flatten the pods an agent of the nested layout left, so that an agent upgraded under
    running pods re-adopts them (without their checkpoints it would start them a second time).

    Only renames: running containers keep their working dir and log file (both follow the
    inode). The nested dir first moves aside to `.nested-<uid>`, so that its sandbox can take
    the name `<uid>`, and its checkpoint moves last: a pass cut short is finished by the next.
    Returns the uids flattened.
    """
    root = os.fspath(pods_root)
    done: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return done
    for name in names:
        uid = name[len(MIGRATING):] if name.startswith(MIGRATING) else name
        if not is_part(uid):
            continue
        try:
            if uid == name:
                if "." in name or not _is_nested(root, name):
                    continue
                os.rename(f"{root}/{name}", f"{root}/{MIGRATING}{uid}")
            _flatten(root, uid)
        except OSError as err:
            log.warning("pod %s: cannot move its files to the flat layout: %s", uid, err)
            continue
        done.append(uid)
    return done


def _is_nested(root: str, uid: str) -> bool:
    return os.path.isfile(f"{root}/{uid}/{NESTED_STATE}") and not os.path.exists(state_file(root, uid))


def _flatten(root: str, uid: str) -> None:
    old = f"{root}/{MIGRATING}{uid}"
    if os.path.isdir(f"{old}/{NESTED_SANDBOX}"):
        os.rename(f"{old}/{NESTED_SANDBOX}", sandbox_dir(root, uid))
    for name in sorted(os.listdir(old), key=lambda n: n == NESTED_STATE):
        if name == NESTED_STATE:
            os.rename(f"{old}/{name}", state_file(root, uid))
        elif name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(f"{old}/{name}")
        else:
            os.rename(f"{old}/{name}", f"{root}/{pod_files_prefix(uid)}{name}")
    os.rmdir(old)


# ---------------------------------------------------------------------------------------------
# Container logs as the kubelet lays them out (runtime/crilog.py writes them):
#
#     <pod-logs-dir>/<namespace>_<pod>_<uid>/<container>/<restart>.log   (+ .<YYYYMMDD-HHMMSS>[.gz])
#     <container-logs-dir>/<pod>_<namespace>_<container>-<id>.log -> the file above
#
# <id> is 64 hex digits as a CRI container id is (what shippers' file-name patterns expect):
# sha256 of `<uid>/<container>/<restart>`, so that it is known from the pod's record alone.

_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _dns(name: str, what: str) -> str:
    """Namespaces and pod names are DNS names (no `_`, `/`, NUL), so `_` separates the parts."""
    if not _DNS.match(name) or name in (".", "..") or len(name) > 253:
        raise ValueError(f"{what} {name[:100]!r} cannot name a file")
    return name


def pod_log_dir(pod_logs_dir: str, namespace: str, pod: str, uid: str) -> str:
    return f"{pod_logs_dir}/{_dns(namespace, 'namespace')}_{_dns(pod, 'pod name')}_{_part(uid, 'pod uid')}"


def container_log_dir(pod_logs_dir: str, namespace: str, pod: str, uid: str, container: str) -> str:
    return f"{pod_log_dir(pod_logs_dir, namespace, pod, uid)}/{_part(container, 'container name')}"


def cri_log_file(pod_logs_dir: str, namespace: str, pod: str, uid: str, container: str, restart: int) -> str:
    return f"{container_log_dir(pod_logs_dir, namespace, pod, uid, container)}/{int(restart)}.log"


def log_id(uid: str, container: str, restart: int) -> str:
    return hashlib.sha256(f"{uid}/{container}/{int(restart)}".encode()).hexdigest()


def container_log_link(container_logs_dir: str, namespace: str, pod: str, uid: str, container: str,
                       restart: int) -> str:
    return (f"{container_logs_dir}/{_dns(pod, 'pod name')}_{_dns(namespace, 'namespace')}_"
            f"{_part(container, 'container name')}-{log_id(uid, container, restart)}.log")
