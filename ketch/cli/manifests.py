"""Reading `-f FILE|-|DIR|URL-less` arguments into objects, as kubectl's resource builder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from ketch.api import manifest


def read_documents(paths: list[str], stdin: TextIO | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(source, document) for every document in every file (directories: *.yaml, *.yml, *.json)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        if path == "-":
            text = (stdin or sys.stdin).read()
            out.extend(("STDIN", d) for d in manifest.load_documents(text))
            continue
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
        elif p.exists():
            files = [p]
        else:
            raise ValueError(f'the path "{path}" does not exist')
        for f in files:
            out.extend((str(f), d) for d in manifest.load_documents(f.read_text()))
    if not out:
        raise ValueError("no objects passed to apply")
    return out
