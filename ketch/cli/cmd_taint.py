"""`ketch taint nodes NODE... KEY=VALUE:EFFECT... KEY:EFFECT-... KEY-... [--overwrite] [-l SEL|--all]`.

kubectl's rules (pkg/cmd/taint): a taint is matched by key and effect; adding one that a node
already has with the same key and effect is refused without --overwrite; `KEY:EFFECT-` removes
that taint and `KEY-` every taint with the key, and removing one the node lacks is an error;
the node prints `tainted`, `untainted` or `modified`. `ketch taint NODE ...` (no `nodes`) is
accepted too.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ketch.api.kinds import UnknownKindError

from .factory import Factory
from .main import CLIError, add_common
from .resources import resolve_kind

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("taint", help="update the taints on nodes")
    p.add_argument("args", nargs="+", metavar="nodes NODE KEY=VAL:EFFECT|KEY:EFFECT-|KEY-")
    p.add_argument("--overwrite", action="store_true", help="replace a taint with the same key and effect")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--all", action="store_true", help="every node")
    add_common(p)
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""

    def __str__(self) -> str:
        text = f"{self.key}={self.value}" if self.value else self.key
        return f"{text}:{self.effect}" if self.effect else text

    def matches(self, other: Taint) -> bool:
        return self.key == other.key and self.effect == other.effect


def parse_taint(spec: str) -> Taint:
    """`KEY=VALUE:EFFECT` or `KEY:EFFECT` (kubectl's parseTaint)."""
    head, sep, effect = spec.rpartition(":")
    if not sep:
        raise CLIError(f"invalid taint spec: {spec}, unknown taint spec")
    if effect not in EFFECTS:
        raise CLIError(f"invalid taint spec: {spec}, invalid taint effect: {effect}, unsupported taint effect")
    key, _, value = head.partition("=")
    if not key:
        raise CLIError(f"invalid taint spec: {spec}, the key may not be empty")
    return Taint(key, value, effect)


def parse_changes(specs: list[str]) -> tuple[list[Taint], list[Taint]]:
    """The taints to add and to remove; the same key and effect both ways is refused."""
    add: list[Taint] = []
    remove: list[Taint] = []
    for spec in specs:
        if spec.endswith("-"):
            key, _, effect = spec[:-1].partition(":")
            if effect and effect not in EFFECTS:
                raise CLIError(f"invalid taint spec: {spec}, invalid taint effect: {effect}, unsupported taint effect")
            remove.append(Taint(key, "", effect))
        else:
            taint = parse_taint(spec)
            if any(t.matches(taint) for t in add):
                raise CLIError("duplicated taints with the same key and effect: " + str(taint))
            add.append(taint)
    both = [str(r) for r in remove if any(a.matches(r) for a in add)]
    if both:
        raise CLIError("can not both modify and remove the following taint(s) in the same command: "
                       + ", ".join(both))
    return add, remove


def reorganize(old: list[Taint], add: list[Taint], remove: list[Taint], overwrite: bool) -> tuple[str, list[Taint]]:
    """kubectl's reorganizeTaints: the node's new taints and the word it prints."""
    new = list(add)
    new.extend(t for t in old if not any(t.matches(n) for n in new))
    added = len(new) != len(old)
    deleted = False
    missing = []
    for r in remove:
        keep = [t for t in new if not (t.key == r.key and (not r.effect or t.effect == r.effect))]
        if len(keep) == len(new):
            missing.append(f'taint "{r}" not found')
        else:
            deleted = True
        new = keep
    if missing:
        raise CLIError(", ".join(missing))
    if (added and deleted) or overwrite:
        return "modified", new
    return ("tainted" if added else "untainted"), new


def _split(words: list[str]) -> tuple[list[str], list[str]]:
    """Node words, then the taint changes (words with `=` or `:`, or ending in `-`)."""
    for i, w in enumerate(words):
        if "=" in w or ":" in w or (i > 0 and w.endswith("-")):
            return words[:i], words[i:]
    return words, []


def _node_names(words: list[str]) -> list[str]:
    if not words:
        return []
    first = words[0]
    kind, sep, name = first.partition("/")
    try:
        info = resolve_kind(kind)
    except UnknownKindError:
        if sep:
            raise
        return words  # `ketch taint NODE ...`
    if info.kind != "Node":
        raise CLIError(f"invalid resource type {first}, only nodes are supported")
    if sep:
        return [name] + [w.partition("/")[2] for w in words[1:]]
    return words[1:]


async def run(args: argparse.Namespace, factory: Factory) -> int:
    node_words, changes = _split(args.args)
    names = _node_names(node_words)
    if not changes:
        raise CLIError("at least one taint update is required")
    add, remove = parse_changes(changes)
    client = factory.client()
    if args.all or args.selector:
        if names:
            raise CLIError("cannot specify both node names and --all or --selector")
        nodes, _ = await client.list("Node", "", args.selector)
        nodes = sorted(nodes, key=lambda n: n.metadata.name)
    elif names:
        nodes = [await client.get("Node", n) for n in names]
    else:
        raise CLIError("resource(s) were provided, but no name was specified")
    failed = False
    for node in nodes:
        name = node.metadata.name
        old = [Taint(t.key, t.value, t.effect) for t in node.spec.taints]
        try:
            if not args.overwrite:
                same = [a.key for a in add if any(a.matches(o) for o in old)]
                if same:
                    raise CLIError(f"node {name} already has {','.join(same)} taint(s) with same effect(s) and "
                                   "--overwrite is false")
            word, new = reorganize(old, add, remove, args.overwrite)
        except CLIError as err:  # the other nodes are still done, as kubectl does
            factory.error_line(f"error: {err}")
            failed = True
            continue
        kept = {(t.key, t.effect): t for t in node.spec.taints}
        taints: list[dict[str, Any]] = []
        for t in new:
            entry: dict[str, Any] = {"key": t.key, "effect": t.effect}
            if t.value:
                entry["value"] = t.value
            before = kept.get((t.key, t.effect))
            if before is not None and before.time_added and before.value == t.value:
                entry["timeAdded"] = before.time_added
            taints.append(entry)
        patch = {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}}
        await client.patch("Node", name, patch, patch_type="merge")
        factory.print(f"node/{name} {word}")
    return 1 if failed else 0
