"""A kubeconfig's parse, kept as JSON beside it, so a CLI command need not import PyYAML.

Importing yaml costs every `ketch` command about 10 ms of CPU, more than parsing a kubeconfig
does; json is loaded by the client anyway. The cache (`.NAME.parsed.json` in the kubeconfig's
directory) holds the kubeconfig's whole text and the document parsed from it, and is used only
when that text is exactly what the kubeconfig holds now, so an edit, however quick or however
small, is never missed. It holds the same keys as the kubeconfig, so it is written 0600 and read
only when it is a regular file of this user that nobody else may read or write (a cache planted
by someone else, or left readable, is ignored and replaced). A document that JSON cannot hold
exactly (dates, binary, non-string keys) is not cached. Every failure means "no cache": the
kubeconfig is parsed as before.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

VERSION = 1


def cache_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.parsed.json")


def read(path: Path, text: str) -> Any | None:
    """The document parsed from text, if the cache beside path was made from exactly text."""
    try:
        fd = os.open(cache_path(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(entry, dict) or entry.get("version") != VERSION or entry.get("source") != text:
        return None
    return entry.get("doc")


def write(path: Path, text: str, doc: Any) -> None:
    """Cache doc as the parse of text (path's contents), if JSON holds it exactly; best effort."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return  # /dev/stdin, a pipe: nothing stable to cache
        data = json.dumps({"version": VERSION, "source": text, "doc": doc}, allow_nan=False)
        if json.loads(data)["doc"] != doc:
            return
    except (OSError, TypeError, ValueError, RecursionError):
        return
    target = cache_path(path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
