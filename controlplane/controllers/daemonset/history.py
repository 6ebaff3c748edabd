"""ControllerRevisions of a DaemonSet: the template hash, snapshots, matching and cleanup.

Pure helpers; the controller does the reads and writes. As in Kubernetes, a revision holds
`{"spec": {"template": {..., "$patch": "replace"}}}` (what `rollout undo` applies back), is
named `<ds>-<hash>` and labelled with `controller-revision-hash`. The hash is FNV-32a over the
template (Kubernetes hashes Go's object dump; we hash the canonical JSON form) plus the
collisionCount, encoded with Kubernetes' safe alphabet.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format

from ketch.api import manifest, meta
from ketch.v1 import apps_pb2, core_pb2

from .predicates import REVISION_HASH_LABEL

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv32a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each character mapped into an alphabet with no vowels or lookalikes."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in text)


def canonical_template(template: core_pb2.PodTemplateSpec) -> str:
    return json.dumps(manifest.message_to_dict(template), sort_keys=True, separators=(",", ":"))


def compute_hash(template: core_pb2.PodTemplateSpec, collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-32a of the template, then the collision count (little endian,
    in 8 bytes as Kubernetes writes it), as a decimal string in the safe alphabet."""
    h = fnv32a(canonical_template(template).encode())
    if collision_count is not None:
        h = fnv32a(struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0", h)
    return safe_encode(str(h))


def collision_count(ds: apps_pb2.DaemonSet) -> int | None:
    return ds.status.collision_count if ds.status.HasField("collision_count") else None


def revision_patch(ds: apps_pb2.DaemonSet) -> dict[str, Any]:
    """getPatch: the data a revision stores, which restores ds.spec.template when applied."""
    template = manifest.message_to_dict(ds.spec.template)
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def revision_key(ds: apps_pb2.DaemonSet) -> str:
    """What revision_matches compares; compute once per sync."""
    return _canonical(revision_patch(ds))


def revision_matches(key: str, rev: apps_pb2.ControllerRevision) -> bool:
    """Match: the revision's data equals the DaemonSet's current template patch."""
    return _canonical(manifest.message_to_dict(rev.data)) == key


def revision_template(rev: apps_pb2.ControllerRevision) -> dict[str, Any] | None:
    """The pod template a revision holds, in JSON form (for rollback), or None."""
    data = manifest.message_to_dict(rev.data)
    template = data.get("spec", {}).get("template")
    if not isinstance(template, dict):
        return None
    template.pop("$patch", None)
    return template


def new_revision(ds: apps_pb2.DaemonSet, hash_: str, revision: int) -> apps_pb2.ControllerRevision:
    """snapshot: a ControllerRevision `<ds>-<hash>` owned by ds."""
    rev = apps_pb2.ControllerRevision(api_version="apps/v1", kind="ControllerRevision", revision=revision)
    rev.metadata.name = f"{ds.metadata.name}-{hash_}"
    rev.metadata.namespace = ds.metadata.namespace
    for k, v in ds.spec.template.metadata.labels.items():
        rev.metadata.labels[k] = v
    rev.metadata.labels[REVISION_HASH_LABEL] = hash_
    for k, v in ds.metadata.annotations.items():
        rev.metadata.annotations[k] = v
    rev.metadata.owner_references.append(meta.owner_ref_for(ds))
    json_format.ParseDict(revision_patch(ds), rev.data)
    return rev


def max_revision(revisions: Iterable[apps_pb2.ControllerRevision]) -> int:
    return max((r.revision for r in revisions), default=0)


def split_revisions(key: str, revisions: Iterable[apps_pb2.ControllerRevision],
                    ) -> tuple[list[apps_pb2.ControllerRevision], list[apps_pb2.ControllerRevision]]:
    """(revisions matching the current template, the others)."""
    current: list[apps_pb2.ControllerRevision] = []
    old: list[apps_pb2.ControllerRevision] = []
    for rev in revisions:
        (current if revision_matches(key, rev) else old).append(rev)
    return current, old


def pick_current(current: Sequence[apps_pb2.ControllerRevision],
                 ) -> tuple[apps_pb2.ControllerRevision, list[apps_pb2.ControllerRevision]]:
    """dedupCurHistories: keep the highest revision (the last one on ties); the rest are duplicates."""
    keep = current[0]
    for rev in current:
        if rev.revision >= keep.revision:
            keep = rev
    return keep, [r for r in current if r.metadata.name != keep.metadata.name]


def revisions_to_clean(old: Sequence[apps_pb2.ControllerRevision], limit: int,
                       live_hashes: set[str]) -> list[apps_pb2.ControllerRevision]:
    """cleanupHistory: the oldest revisions beyond the limit, skipping any a live pod carries."""
    to_kill = len(old) - max(limit, 0)
    out: list[apps_pb2.ControllerRevision] = []
    if to_kill <= 0:
        return out
    for rev in sorted(old, key=lambda r: r.revision):
        if to_kill <= 0:
            break
        if rev.metadata.labels.get(REVISION_HASH_LABEL, "") in live_hashes:
            continue
        out.append(rev)
        to_kill -= 1
    return out
