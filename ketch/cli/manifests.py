"""Reading `-f FILE|-|DIR|URL-less` arguments into objects, as kubectl's resource builder.

Input is hostile until parsed: each file (or stdin) is read only up to MAX_MANIFEST_BYTES, so
`-f /dev/zero` or a runaway pipe fails at once instead of filling memory, and YAML is loaded
with go-yaml's alias limits (ketch.api.safeyaml). A parse error names its source, as kubectl's
`error parsing FILE: ...` does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from ketch.api import manifest
from ketch.api.kinds import KindInfo

from .main import CLIError

# One object may be at most 3 MiB on the API server (kube-apiserver's request limit); a file of
# many objects gets room for a few, and stays far below what parsing it would cost in memory.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def _too_large(source: str) -> CLIError:
    return CLIError(f"{source} is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB, the most a manifest may be")


def read_text(path: Path) -> str:
    """A file's text, refusing files above MAX_MANIFEST_BYTES without reading them whole."""
    with path.open("rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise _too_large(f'the file "{path}"')
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CLIError(f"error parsing {path}: not UTF-8 text: {err.reason} at byte {err.start}") from None


def read_stdin(stdin: TextIO) -> str:
    text = stdin.read(MAX_MANIFEST_BYTES + 1)
    if len(text) > MAX_MANIFEST_BYTES:
        raise _too_large("the standard input")
    return text


# Each source's text, kept so that a document's decoding error can be placed in it by line.
_TEXTS: dict[str, str] = {}


def parse(source: str, text: str) -> list[dict[str, Any]]:
    _TEXTS[source] = text
    try:
        return manifest.load_documents(text)
    except manifest.DecodeError as err:
        detail = err.message
        for fmt in ("YAML", "JSON"):
            detail = detail.replace(f"error parsing {fmt}: ", f"{fmt.lower()}: ", 1)
        raise CLIError(f"error parsing {source}: {detail}") from None


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _directory_files(directory: Path, recursive: bool) -> list[Path]:
    """A directory's manifests in name order; with recursive, its subdirectories' too, each where
    its name sorts (the order of kubectl's filepath.Walk)."""
    out: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            if recursive:
                out.extend(_directory_files(entry, recursive))
        elif entry.suffix in MANIFEST_SUFFIXES:
            out.append(entry)
    return out


def read_documents(paths: list[str], stdin: TextIO | None = None,
                   recursive: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(source, document) for every document in every file (directories: *.yaml, *.yml, *.json;
    with recursive, as kubectl's -R, in their subdirectories too)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        if path == "-":
            out.extend(("STDIN", d) for d in parse("STDIN", read_stdin(stdin or sys.stdin)))
            continue
        p = Path(path)
        if p.is_dir():
            files = _directory_files(p, recursive)
        elif p.exists():
            files = [p]
        else:
            raise ValueError(f'the path "{path}" does not exist')
        for f in files:
            out.extend((str(f), d) for d in parse(str(f), read_text(f)))
    if not out:
        raise ValueError("no objects passed to apply")
    return out


def kind_of(source: str, doc: dict[str, Any]) -> KindInfo:
    """The document's kind; a missing or unknown one is the client's error, as kubectl's builder
    reports it (`error: unable to decode "FILE": ...`), never "from server"."""
    try:
        return manifest.kind_of_document(doc)
    except manifest.DecodeError as err:
        if err.message.startswith("no matches for kind"):
            found = doc.get("metadata")
            meta: dict[str, Any] = found if isinstance(found, dict) else {}
            raise CLIError(f'resource mapping not found for name: "{meta.get("name", "")}" namespace: '
                           f'"{meta.get("namespace", "")}" from "{source}": {err.message}') from None
        raise CLIError(f'unable to decode "{source}": {err.message}') from None


def _path_words(path: str) -> list[str | int]:
    """`spec.containers[0].env` -> ["spec", "containers", 0, "env"]."""
    out: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            out.append(name)
        for index in rest.split("[") if rest else ():
            out.append(int(index.rstrip("]")) if index.rstrip("]").isdigit() else index)
    return out


def _scalar(node: Any, key: str) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _node_at(node: Any, words: list[str | int]) -> Any:
    """The node at a field path; a map key with dots (`app.kubernetes.io/name`) spans words."""
    import yaml

    i = 0
    while i < len(words):
        word = words[i]
        if isinstance(word, int):
            if not isinstance(node, yaml.SequenceNode) or word >= len(node.value):
                return node
            node, i = node.value[word], i + 1
            continue
        for j in range(len(words), i, -1):  # the longest key first
            if all(isinstance(w, str) for w in words[i:j]):
                found = _scalar(node, ".".join(str(w) for w in words[i:j]))
                if found is not None:
                    node, i = found, j
                    break
        else:
            return node  # an unknown field: where its parent is
    return node


def _document_node(text: str, doc: dict[str, Any]) -> Any:
    """The YAML node of the document in text with doc's kind and name (Lists' items included)."""
    import yaml

    # Composing builds nodes with their marks and expands no alias; the text passed
    # safeyaml's limits when it was read.
    found = doc.get("metadata")
    wanted_meta: dict[str, Any] = found if isinstance(found, dict) else {}
    wanted = (doc.get("kind"), wanted_meta.get("name"), wanted_meta.get("generateName"))
    for top in yaml.compose_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        items = _scalar(top, "items")
        candidates = items.value if isinstance(items, yaml.SequenceNode) else [top]
        for node in candidates:
            meta = _scalar(node, "metadata")
            got = tuple(getattr(n, "value", None) for n in (_scalar(node, "kind"), _scalar(meta, "name"),
                                                             _scalar(meta, "generateName")))
            if got == wanted:
                return node
    return None


def with_lines(err: Exception, source: str, doc: dict[str, Any]) -> Exception:
    """A decoding error with each bad field's line in its source (`line 9: spec.replicas: ...`),
    as a YAML syntax error names its line; the error itself when no line can be found."""
    from ketch.api.manifest import DecodeError

    text = _TEXTS.get(source)
    if not isinstance(err, DecodeError) or not err.fields or text is None:
        return err
    try:
        node = _document_node(text, doc)
    except Exception:  # the text parsed before; anything odd here just means no line
        node = None
    if node is None:
        return err
    parts = [f"line {_node_at(node, _path_words(path)).start_mark.line + 1}: {complaint}"
             for path, complaint in err.fields]
    placed = DecodeError(err.what + ", ".join(parts))
    placed.what, placed.fields = err.what, err.fields
    return placed
