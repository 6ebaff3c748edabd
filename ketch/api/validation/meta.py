"""ObjectMeta validation (apimachinery's ValidateObjectMeta and ValidateObjectMetaUpdate).

Names per kind, generateName, namespace scoping, labels, annotations, ownerReferences and
finalizers. Called first by every kind's validator with the `metadata` path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ketch.api.errors import forbidden, invalid, required
from ketch.v1 import meta_pb2

from . import field
from .field import Errors, Shown

NameFn = Callable[[str, bool], tuple[str, ...]]

STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})
_BANNED_OWNERS = {("v1", "Event"): "/v1, Kind=Event"}


def object_meta(errs: Errors, md: meta_pb2.ObjectMeta, namespaced: bool, name_fn: NameFn,
                path: str = "metadata") -> None:
    """ValidateObjectMeta on create (the server has already assigned name and namespace)."""
    if md.generate_name:
        errs.extend(invalid(path + ".generateName", md.generate_name, m) for m in name_fn(md.generate_name, True))
    if not md.name:
        errs.append(required(path + ".name", "name or generateName is required"))
    else:
        errs.extend(invalid(path + ".name", md.name, m) for m in name_fn(md.name, False))
    if namespaced:
        if not md.namespace:
            errs.append(required(path + ".namespace"))
        else:
            errs.extend(invalid(path + ".namespace", md.namespace, m) for m in field.dns1123_label(md.namespace))
    elif md.namespace:
        errs.append(forbidden(path + ".namespace", "not allowed on this type"))
    field.nonnegative(errs, md.generation, path + ".generation")
    if md.labels:
        field.labels(errs, md.labels, path + ".labels")
    if md.annotations:
        field.annotation_map(errs, md.annotations, path + ".annotations")
    if md.owner_references:
        owner_references(errs, md.owner_references, path + ".ownerReferences")
    if md.finalizers:
        finalizers(errs, md.finalizers, path + ".finalizers")


def owner_references(errs: Errors, refs: Sequence[meta_pb2.OwnerReference], path: str) -> None:
    first_controller = ""
    for ref in refs:
        group, _, version = ref.api_version.rpartition("/")
        if not version:
            errs.append(invalid(path + ".apiVersion", ref.api_version, "version must not be empty"))
        if not ref.kind:
            errs.append(invalid(path + ".kind", ref.kind, "kind must not be empty"))
        if not ref.name:
            errs.append(invalid(path + ".name", ref.name, "name must not be empty"))
        if not ref.uid:
            errs.append(invalid(path + ".uid", ref.uid, "uid must not be empty"))
        banned = _BANNED_OWNERS.get((ref.api_version, ref.kind)) if not group else None
        if banned:
            errs.append(invalid(path, Shown(f"{ref.kind}/{ref.name}"), f"{banned} is disallowed from being an owner"))
        if ref.HasField("controller") and ref.controller:
            name = f"{ref.kind}/{ref.name}"
            if first_controller:
                errs.append(invalid(path, Shown(f"[{first_controller} {name}]"),
                                    'Only one reference can have Controller set to true. Found "true" in '
                                    f"references for {first_controller} and {name}"))
            else:
                first_controller = name


def finalizers(errs: Errors, names: Sequence[str], path: str) -> None:
    for i, name in enumerate(names):
        field.qualified_name_field(errs, name, path)
        if "/" not in name and name not in STANDARD_FINALIZERS:
            errs.append(invalid(field.idx(path, i), name,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    if "orphan" in names and "foregroundDeletion" in names:
        errs.append(invalid(path, field.go_list(names),
                            "finalizer orphan and foregroundDeletion cannot be both set"))


def object_meta_update(errs: Errors, new: meta_pb2.ObjectMeta, old: meta_pb2.ObjectMeta,
                       path: str = "metadata") -> None:
    """The server-owned metadata an update may not change (labels etc. are checked as on create)."""
    if new.generation < old.generation:
        errs.append(invalid(path + ".generation", new.generation, "must not be decremented"))
    field.immutable_scalar(errs, new.name, old.name, path + ".name")
    field.immutable_scalar(errs, new.namespace, old.namespace, path + ".namespace")
    field.immutable_scalar(errs, new.uid, old.uid, path + ".uid")
    field.immutable_scalar(errs, new.creation_timestamp, old.creation_timestamp, path + ".creationTimestamp")
