"""A pod's volumes read from its spec, and the files a configMap, secret, downwardAPI or
projected volume holds (pure: no I/O, so every rule here is a unit test).

Volumes and volumeMounts are kept in the API as free-form objects (Kubernetes' JSON shape), so
the API accepts every volume type as Kubernetes does; this module is where the agent decides
what it can give. What it cannot (a persistentVolumeClaim, nfs, csi, ...) or what is malformed
is a `VolumeError`: the container waits with the reason (CreateContainerConfigError), never runs
with a volume missing.

File contents are the kubelet's: every key (data and binaryData) as a file unless `items` picks
some (key -> path, each with its own mode), `defaultMode` 0644; a downwardAPI file holds the
field's value with no newline, labels and annotations as `key="value"` lines sorted by key, the
value quoted as Go's %q (the kubelet's fieldpath.FormatMap).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING
from typing import Any

from google.protobuf import json_format, struct_pb2

from ketch.api import configrefs, quantity
from ketch.v1 import core_pb2

DEFAULT_MODE = 0o644
EMPTY_DIR, CONFIG_MAP, SECRET, DOWNWARD_API, HOST_PATH, PROJECTED = (
    "emptyDir", "configMap", "secret", "downwardAPI", "hostPath", "projected")
SUPPORTED = (EMPTY_DIR, CONFIG_MAP, SECRET, DOWNWARD_API, HOST_PATH, PROJECTED)
# Volumes whose files the agent writes: always mounted read-only, as Kubernetes does since 1.11.
API_DATA = (CONFIG_MAP, SECRET, DOWNWARD_API, PROJECTED)
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_VOLUME_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations")


class VolumeError(Exception):
    """A volume the agent cannot set up as the spec asks (the container waits, with this reason)."""


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: str  # one of SUPPORTED
    source: Mapping[str, Any]  # the volume source's JSON object


@dataclass(frozen=True, slots=True)
class Mount:
    """One volumeMount of a container."""

    volume: str
    path: str  # mountPath, absolute and normalized
    read_only: bool
    sub_path: str  # relative, normalized; "" for the whole volume


@dataclass(frozen=True, slots=True)
class File:
    """One file of an API-data volume: its path inside the volume, contents and mode."""

    path: str
    data: bytes
    mode: int


def _dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise VolumeError(f"{what}: must be an integer, not {value!r}")
    return int(value)


def _mode(value: Any, what: str) -> int:
    mode = _int(value, what)
    if not 0 <= mode <= 0o777:
        raise VolumeError(f"{what}: must be a number between 0 and 0777 (octal), both inclusive, not {mode}")
    return mode


def volumes(spec: core_pb2.PodSpec) -> dict[str, Volume]:
    """The pod's volumes by name; VolumeError for a type the agent cannot give (named as
    Kubernetes names it) or a volume with no or several sources."""
    out: dict[str, Volume] = {}
    for raw in spec.volumes:
        d = _dict(raw)
        name = str(d.pop("name", ""))
        kinds = [k for k in d if isinstance(d[k], dict)]
        if len(kinds) != 1:
            raise VolumeError(f'volume "{name}": must have exactly one volume source, not {len(kinds)}')
        kind = kinds[0]
        if kind not in SUPPORTED:
            raise VolumeError(f'volume "{name}": {kind} volumes are not supported on this node (a host-process '
                              f"runtime mounts only {', '.join(SUPPORTED)})")
        out[name] = Volume(name, kind, d[kind])
    return out


def relative_path(path: str, what: str) -> str:
    """A path inside a volume (items[].path, subPath): relative, no '..' element."""
    if not path:
        return ""
    if path.startswith("/"):
        raise VolumeError(f'{what}: "{path}": must be a relative path')
    if ".." in path.split("/"):
        raise VolumeError(f"{what}: \"{path}\": must not contain '..'")
    return posixpath.normpath(path)


def mounts(c: core_pb2.Container) -> list[Mount]:
    """The container's volumeMounts (subPathExpr is not supported: refused, with the reason)."""
    out = []
    for raw in c.volume_mounts:
        d = _dict(raw)
        name = str(d.get("name", ""))
        what = f'container {c.name}: volumeMount "{name}"'
        if d.get("subPathExpr"):
            raise VolumeError(f"{what}: subPathExpr is not supported on this node; use subPath")
        path = str(d.get("mountPath", ""))
        if not path:
            raise VolumeError(f"{what}: mountPath is required")
        if ".." in path.split("/"):
            raise VolumeError(f"{what}: mountPath \"{path}\" must not contain '..'")
        path = posixpath.normpath("/" + path.lstrip("/"))
        if path == "/":
            raise VolumeError(f'{what}: cannot mount a volume at "/"')
        out.append(Mount(name, path, bool(d.get("readOnly", False)),
                         relative_path(str(d.get("subPath", "")), what + ": subPath")))
    return out


# -- configMap and secret ------------------------------------------------------------------------

def key_files(kind: str, name: str, data: Mapping[str, bytes] | None, source: Mapping[str, Any],
              default_mode: int) -> list[File]:
    """The files of a configMap or secret source: every key, or `items`. data None: the object
    does not exist (an error unless `optional`)."""
    optional = bool(source.get("optional", False))
    if data is None:
        if optional:
            return []
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    items = source.get("items")
    if not items:
        return [File(key, value, default_mode) for key, value in sorted(data.items())]
    out = []
    for i, item in enumerate(items):
        key = str(item.get("key", ""))
        path = relative_path(str(item.get("path", "")), f"items[{i}].path")
        if not path:
            raise VolumeError(f"items[{i}].path: Required value")
        mode = _mode(item["mode"], f"items[{i}].mode") if "mode" in item else default_mode
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{kind.lower()} references non-existent config key: {key}")
        out.append(File(path, data[key], mode))
    return out


def source_default_mode(source: Mapping[str, Any]) -> int:
    return _mode(source["defaultMode"], "defaultMode") if "defaultMode" in source else DEFAULT_MODE


def object_name(kind: str, source: Mapping[str, Any]) -> str:
    return str(source.get("secretName" if kind == SECRET else "name", ""))


# -- downwardAPI ---------------------------------------------------------------------------------

def go_quote(value: str) -> str:
    """Go's %q of a string (strconv.Quote): what the kubelet writes for a label or annotation."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch in "\a\b\f\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_map(m: Mapping[str, str]) -> str:
    """The kubelet's fieldpath.FormatMap: `key="value"` lines sorted by key, no final newline."""
    return "\n".join(f"{k}={go_quote(v)}" for k, v in sorted(m.items()))


def field_value(pod: core_pb2.Pod, path: str) -> str:
    """A downwardAPI volume's fieldRef (only metadata fields, as Kubernetes allows in volumes)."""
    md = pod.metadata
    m = _SUBSCRIPT.match(path)
    if m:
        return (md.labels if m.group(1) == "labels" else md.annotations).get(m.group(2), "")
    if path == "metadata.name":
        return md.name
    if path == "metadata.namespace":
        return md.namespace
    if path == "metadata.uid":
        return md.uid
    if path == "metadata.labels":
        return format_map(md.labels)
    if path == "metadata.annotations":
        return format_map(md.annotations)
    raise VolumeError(f'fieldRef.fieldPath: Unsupported value: "{path}": supported values: '
                      + ", ".join(f'"{p}"' for p in _VOLUME_FIELDS))


def resource_value(pod: core_pb2.Pod, ref: Mapping[str, Any], allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef (containerName required in volumes): the limit or request over the
    divisor, rounded up; a limit that is not set is the node's allocatable, as the kubelet does."""
    cname = str(ref.get("containerName", ""))
    c = next((c for c in [*pod.spec.containers, *pod.spec.init_containers] if c.name == cname), None)
    if c is None:
        raise VolumeError(f'resourceFieldRef.containerName: "{cname}": no such container in the pod')
    kind, _, res = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or not res:
        raise VolumeError(f'resourceFieldRef.resource: Unsupported value: "{ref.get("resource", "")}"')
    source = c.resources.limits if kind == "limits" else c.resources.requests
    raw = source.get(res) or (allocatable.get(res, "0") if kind == "limits" else "0")
    try:
        value = quantity.parse(raw)
        divisor = quantity.parse(str(ref.get("divisor", "1")) or "1")
    except ValueError as err:
        raise VolumeError(f"resourceFieldRef: {err}") from None
    if divisor == 0:
        divisor = quantity.parse("1")
    return str(int((value / divisor).to_integral_value(rounding=ROUND_CEILING)))


def downward_files(pod: core_pb2.Pod, source: Mapping[str, Any], default_mode: int,
                   allocatable: Mapping[str, str]) -> list[File]:
    out = []
    for i, item in enumerate(source.get("items") or ()):
        path = relative_path(str(item.get("path", "")), f"items[{i}].path")
        if not path:
            raise VolumeError(f"items[{i}].path: Required value")
        mode = _mode(item["mode"], f"items[{i}].mode") if "mode" in item else default_mode
        if "fieldRef" in item:
            value = field_value(pod, str(item["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in item:
            value = resource_value(pod, item["resourceFieldRef"], allocatable)
        else:
            raise VolumeError(f"items[{i}]: must specify fieldRef or resourceFieldRef")
        out.append(File(path, value.encode(), mode))
    return out


# -- every API-data volume -------------------------------------------------------------------------

# (kind, name) -> the object's keys and values as bytes; None: it does not exist.
ObjectLookup = Callable[[str, str], Mapping[str, bytes] | None]


def api_files(pod: core_pb2.Pod, vol: Volume, objects: ObjectLookup,
              allocatable: Mapping[str, str]) -> list[File]:
    """The files a configMap, secret, downwardAPI or projected volume holds."""
    src = vol.source
    mode = source_default_mode(src)
    if vol.kind in (CONFIG_MAP, SECRET):
        kind = configrefs.SECRET if vol.kind == SECRET else configrefs.CONFIGMAP
        name = object_name(vol.kind, src)
        return key_files(kind, name, objects(kind, name), src, mode)
    if vol.kind == DOWNWARD_API:
        return downward_files(pod, src, mode, allocatable)
    if vol.kind == PROJECTED:
        files: dict[str, File] = {}
        for j, proj in enumerate(src.get("sources") or ()):
            got: list[File]
            if "configMap" in proj or "secret" in proj:
                key = "secret" if "secret" in proj else "configMap"
                kind = configrefs.SECRET if key == "secret" else configrefs.CONFIGMAP
                name = str(proj[key].get("name", ""))
                got = key_files(kind, name, objects(kind, name), proj[key], mode)
            elif "downwardAPI" in proj:
                got = downward_files(pod, proj["downwardAPI"], mode, allocatable)
            else:
                other = next(iter(proj), "")
                raise VolumeError(f"sources[{j}]: {other} projections are not supported on this node")
            for f in got:
                if f.path in files:
                    raise VolumeError(f'sources[{j}]: conflicting path "{f.path}"')
                files[f.path] = f
        return list(files.values())
    raise VolumeError(f"{vol.kind} holds no files")


def needed_objects(vols: Sequence[Volume]) -> list[tuple[str, str]]:
    """(kind, name) of the ConfigMaps and Secrets the volumes read, in order, once each."""
    out: dict[tuple[str, str], None] = {}
    for vol in vols:
        if vol.kind in (CONFIG_MAP, SECRET):
            kind = configrefs.SECRET if vol.kind == SECRET else configrefs.CONFIGMAP
            out[(kind, object_name(vol.kind, vol.source))] = None
        elif vol.kind == PROJECTED:
            for proj in vol.source.get("sources") or ():
                for key, kind in (("configMap", configrefs.CONFIGMAP), ("secret", configrefs.SECRET)):
                    if key in proj:
                        out[(kind, str(proj[key].get("name", "")))] = None
    return list(out)


def memory_size(source: Mapping[str, Any]) -> int | None:
    """An emptyDir's sizeLimit in bytes (None: not set)."""
    limit = source.get("sizeLimit")
    if limit in (None, ""):
        return None
    try:
        return quantity.to_bytes(str(limit))
    except ValueError as err:
        raise VolumeError(f"sizeLimit: {err}") from None
