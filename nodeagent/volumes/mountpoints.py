"""Mount points the agent had to create on the host, and which pods use each (host-wide).

A container's private mount namespace can only bind a volume over a path that exists, and the
host's filesystem is the container's root: a missing mountPath (/input) is made on the host
first, as an empty directory, or an empty file for a file mount. It is removed again once no
pod uses it, and never before: since Linux 3.18, removing a directory that is a mount point in
another mount namespace succeeds and silently detaches that mount there, so an rmdir while a
running pod's namespace still has a volume at that path would take the volume away from it.

Every pod that mounts at a path holds that path, whether or not it was created for it (the holder
is the pod's volumes directory, `<data-dir>/pods/<uid>.volumes`, unique on the host), in one
registry per host (/run/ketch/mountpoints.json, under flock): several agents on one host (tests,
`ketch local up` with several nodes) share it. A created path is removed (rmdir, or unlink of
a still empty file), deepest first, when no holder is left; one that is not empty stays. A
holder whose release was never recorded (its agent's data dir wiped) leaves an empty directory
behind, the safe side. /run is cleared at boot, when every namespace is gone too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any

DEFAULT_REGISTRY = "/run/ketch/mountpoints.json"


class MountPoints:
    def __init__(self, path: str = DEFAULT_REGISTRY) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        os.makedirs(os.path.dirname(self.path), 0o755, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                with open(self.path) as f:
                    state: dict[str, Any] = json.load(f)
            except (OSError, ValueError):
                state = {}
            state.setdefault("created", [])
            state.setdefault("holders", {})
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                tmp = f"{self.path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    json.dump(state, f)
                os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def acquire(self, holder: str, targets: Sequence[tuple[str, bool]]) -> None:
        """Hold each (path, is_dir), creating what is missing (its parents too, each recorded).
        OSError when a path cannot be made."""
        with self._locked() as state:
            created: list[str] = state["created"]
            holders: dict[str, list[str]] = state["holders"]
            for path, is_dir in targets:
                if holder not in holders.setdefault(path, []):
                    holders[path].append(holder)
                if os.path.lexists(path):
                    continue
                missing = []
                p = path
                while p != "/" and not os.path.lexists(p):
                    missing.append(p)
                    p = os.path.dirname(p)
                for i, p in enumerate(reversed(missing)):
                    if i == len(missing) - 1 and not is_dir:
                        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                    else:
                        os.mkdir(p, 0o755)
                    if p not in created:
                        created.append(p)

    def release(self, holder: str, *, prefix: bool = False) -> list[str]:
        """Drop holder everywhere (prefix: every holder that starts with it, for a data dir that
        goes away whole); remove the created paths no one holds. Returns those removed."""
        removed = []
        with self._locked() as state:
            holders: dict[str, list[str]] = state["holders"]
            for path in list(holders):
                holders[path] = [h for h in holders[path] if not (h.startswith(holder) if prefix else h == holder)]
                if not holders[path]:
                    del holders[path]
            created: list[str] = state["created"]
            for path in sorted(created, key=lambda p: p.count("/"), reverse=True):
                if path in holders:
                    continue
                try:
                    st = os.lstat(path)
                    if stat.S_ISDIR(st.st_mode):
                        os.rmdir(path)
                    elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                        os.unlink(path)
                    else:
                        continue
                except FileNotFoundError:
                    pass
                except OSError:
                    continue  # not empty, or busy: it stays, and is tried again next time
                created.remove(path)
                removed.append(path)
        return removed
