"""The ConfigMaps and Secrets a pod names, read from its spec (pure).

`env[].valueFrom.configMapKeyRef/secretKeyRef` and `envFrom[].configMapRef/secretRef` are kept in
the API as free-form objects (google.protobuf.Struct: Kubernetes' JSON shape, nothing lost); this
module reads them one way for the validation that checks them, the agent that resolves them and
the Node authorizer that lets a node read only what its pods reference (Kubernetes' graph edges
pod -> secret/configmap: env, envFrom, volumes, projected volumes, imagePullSecrets).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf import json_format, struct_pb2

from ketch.v1 import core_pb2

CONFIGMAP = "ConfigMap"
SECRET = "Secret"


@dataclass(frozen=True)
class KeyRef:
    """configMapKeyRef / secretKeyRef: one key of one object."""

    kind: str
    name: str
    key: str
    optional: bool


@dataclass(frozen=True)
class EnvFrom:
    """envFrom[]: every key of one object as a variable, with an optional prefix."""

    kind: str  # "" when the entry names neither configMapRef nor secretRef
    name: str
    prefix: str
    optional: bool
    sources: int  # how many of configMapRef and secretRef are set (1 is valid)


def _str(s: struct_pb2.Struct, key: str) -> str:
    v = s.fields.get(key)
    return v.string_value if v is not None and v.WhichOneof("kind") == "string_value" else ""


def _bool(s: struct_pb2.Struct, key: str) -> bool:
    v = s.fields.get(key)
    return v is not None and v.WhichOneof("kind") == "bool_value" and v.bool_value


def key_ref(source: core_pb2.EnvVarSource) -> KeyRef | None:
    """The key reference of an env var's valueFrom, if it has one."""
    if source.HasField("config_map_key_ref"):
        s, kind = source.config_map_key_ref, CONFIGMAP
    elif source.HasField("secret_key_ref"):
        s, kind = source.secret_key_ref, SECRET
    else:
        return None
    return KeyRef(kind, _str(s, "name"), _str(s, "key"), _bool(s, "optional"))


def env_from(entry: struct_pb2.Struct) -> EnvFrom:
    prefix = _str(entry, "prefix")
    found = [(kind, entry.fields[key].struct_value) for key, kind in (("configMapRef", CONFIGMAP),
                                                                      ("secretRef", SECRET))
             if key in entry.fields and entry.fields[key].WhichOneof("kind") == "struct_value"]
    if not found:
        return EnvFrom("", "", prefix, False, 0)
    kind, ref = found[0]
    return EnvFrom(kind, _str(ref, "name"), prefix, _bool(ref, "optional"), len(found))


def container_refs(c: core_pb2.Container) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a container's environment reads, envFrom first (kubelet order)."""
    for entry in c.env_from:
        ef = env_from(entry)
        if ef.kind and ef.name:
            yield ef.kind, ef.name
    for var in c.env:
        if var.HasField("value_from"):
            ref = key_ref(var.value_from)
            if ref is not None and ref.name:
                yield ref.kind, ref.name


def _volume_refs(volume: struct_pb2.Struct) -> Iterator[tuple[str, str]]:
    fields = volume.fields
    if "secret" in fields:
        name = _str(fields["secret"].struct_value, "secretName")
        if name:
            yield SECRET, name
    if "configMap" in fields:
        name = _str(fields["configMap"].struct_value, "name")
        if name:
            yield CONFIGMAP, name
    if "projected" in fields:
        sources = fields["projected"].struct_value.fields.get("sources")
        for item in sources.list_value.values if sources is not None else ():
            src = item.struct_value.fields
            for key, kind in (("secret", SECRET), ("configMap", CONFIGMAP)):
                if key in src:
                    name = _str(src[key].struct_value, "name")
                    if name:
                        yield kind, name
    for driver in ("azureFile", "cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "storageos", "iscsi", "csi"):
        if driver in fields:
            d = fields[driver].struct_value
            name = _str(d, "secretName")
            if not name and "secretRef" in d.fields:
                name = _str(d.fields["secretRef"].struct_value, "name")
            if name:
                yield SECRET, name


def pod_refs(spec: core_pb2.PodSpec) -> set[tuple[str, str]]:
    """Every (kind, name) a pod references: what its node may read (the graph's pod edges)."""
    out: set[tuple[str, str]] = set()
    for c in [*spec.init_containers, *spec.containers]:
        out.update(container_refs(c))
    for eph in spec.ephemeral_containers:
        # Kept free-form in the API; read as a Container for its env and envFrom alone.
        c = core_pb2.Container()
        with contextlib.suppress(json_format.ParseError):
            json_format.ParseDict({k: v for k, v in json_format.MessageToDict(eph).items() if k in ("env", "envFrom")},
                                  c, ignore_unknown_fields=True)
        out.update(container_refs(c))
    for volume in spec.volumes:
        out.update(_volume_refs(volume))
    for ref in spec.image_pull_secrets:
        name = _str(ref, "name")
        if name:
            out.add((SECRET, name))
    return out
