"""YAML loading with go-yaml's limits, so a small hostile document cannot take the process down.

PyYAML keeps an alias as a second reference to its anchor's node, so `safe_load` of a "billion
laughs" document is cheap, but anything that walks the result (manifest decoding, JSON) expands
every alias: 600 bytes become hundreds of millions of values and gigabytes. kubectl reads YAML
with sigs.k8s.io/yaml over go-yaml, which refuses such documents (CVE-2019-11253) with
`yaml: document contains excessive aliasing`: past 1000 decoded nodes of which more than 100 come
from aliases, the share of alias-driven nodes may be at most 99 % up to 400,000 nodes, falling
linearly to 10 % at 4,000,000. The same rule is applied here, on the composed node graph before
anything is constructed, in time linear in the document's own nodes: the expanded size of every
node is computed once. An anchor whose value contains itself is refused too (go-yaml: `anchor 'x'
value contains itself`), and so is nesting too deep for the parser (PyYAML recurses).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

# go-yaml's decode.go constants.
ALIAS_RATIO_RANGE_LOW = 400_000
ALIAS_RATIO_RANGE_HIGH = 4_000_000
_MIN_ALIASES = 100
_MIN_DECODES = 1000


class YAMLLimitError(yaml.YAMLError):
    """A document refused for its shape (aliasing, self-reference, depth), not its syntax."""


def allowed_alias_ratio(decodes: int) -> float:
    """The share of a document's decoded nodes that may come from alias expansion (go-yaml)."""
    if decodes <= ALIAS_RATIO_RANGE_LOW:
        return 0.99
    if decodes >= ALIAS_RATIO_RANGE_HIGH:
        return 0.10
    span = ALIAS_RATIO_RANGE_HIGH - ALIAS_RATIO_RANGE_LOW
    return 0.99 - 0.89 * (decodes - ALIAS_RATIO_RANGE_LOW) / span


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def expansion(root: yaml.Node, anchors: dict[str, yaml.Node] | None = None) -> tuple[int, int]:
    """(decoded nodes, of which through aliases) for decoding the document rooted at root, as
    go-yaml counts them: every node once where it is written, an alias once plus its whole
    target each time it is used. Raises YAMLLimitError for an anchor that contains itself
    (named from anchors, the document's anchor names)."""
    expanded: dict[int, int] = {}  # finished nodes: their size with aliases expanded
    open_ids: set[int] = set()
    written = 2  # the document node and the root
    # Frames: [node, children, next child index, expanded size of the children so far]
    stack: list[list[Any]] = [[root, _children(root), 0, 0]]
    open_ids.add(id(root))
    while stack:
        frame = stack[-1]
        node, children, i, total = frame
        if i == len(children):
            stack.pop()
            open_ids.discard(id(node))
            expanded[id(node)] = 1 + total
            if stack:
                stack[-1][3] += 1 + total
            continue
        frame[2] = i + 1
        child = children[i]
        key = id(child)
        if key in expanded:  # an alias of a finished anchor
            written += 1
            frame[3] += 1 + expanded[key]
        elif key in open_ids:
            name = next((a for a, n in (anchors or {}).items() if n is child), None)
            raise YAMLLimitError(f"anchor {name!r} value contains itself" if name else "anchor value contains itself")
        else:
            written += 1
            open_ids.add(key)
            stack.append([child, _children(child), 0, 0])
    decodes = 1 + expanded[id(root)]
    return decodes, decodes - written


def check_aliases(root: yaml.Node, anchors: dict[str, yaml.Node] | None = None) -> None:
    """Refuse the document as go-yaml does when alias expansion is most of it."""
    decodes, aliases = expansion(root, anchors)
    if aliases > _MIN_ALIASES and decodes > _MIN_DECODES and aliases / decodes > allowed_alias_ratio(decodes):
        raise YAMLLimitError("document contains excessive aliasing")


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps the last document's anchors (for the self-reference message)."""

    last_anchors: dict[str, yaml.Node] = {}

    def compose_document(self) -> Any:
        self.get_event()
        node = self.compose_node(None, None)  # type: ignore[arg-type]  # the root has no parent or index
        self.get_event()
        self.last_anchors, self.anchors = self.anchors, {}
        return node


def safe_load_all(text: str) -> Iterator[Any]:
    """yaml.safe_load_all with go-yaml's alias and self-reference limits; raises yaml.YAMLError."""
    loader = _Loader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                if node is None:
                    return
            except RecursionError:
                raise YAMLLimitError("document is nested too deeply") from None
            check_aliases(node, loader.last_anchors)
            try:
                yield loader.construct_document(node)
            except RecursionError:
                raise YAMLLimitError("document is nested too deeply") from None
    finally:
        loader.dispose()


def safe_load(text: str) -> Any:
    """The single document in text (None if there is none), with the same limits."""
    docs = list(safe_load_all(text))
    if len(docs) > 1:
        raise yaml.YAMLError("expected a single document in the stream, but found another document")
    return docs[0] if docs else None
