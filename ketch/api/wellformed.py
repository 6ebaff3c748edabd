"""Values protobuf can carry but Kubernetes' JSON cannot, found anywhere in an object.

A manifest's free-form parts (google.protobuf.Struct: volumes, ports, lifecycle, ...) and its
integer-or-string fields (google.protobuf.Value) hold numbers as doubles, and a double may be NaN
or an infinity: YAML writes them as `.nan` and `.inf`, and a gRPC client can send them as they
are. JSON has no such numbers, so Kubernetes refuses them when it decodes the request (`json:
unsupported value: NaN`); here they are refused the same way, by the API server for an object
that comes over gRPC and by manifest decoding for a manifest or a patched object, before any
validation or controller reads them as integers.

Times (metav1.Time, metav1.MicroTime) are strings here, so that their JSON form is Kubernetes'
own; Kubernetes' decoding refuses a time that is not RFC 3339 (`parsing time "soon" as
"2006-01-02T15:04:05Z07:00"`), and so does this: the controllers compute with every time they
read (timeutil.parse), and one they cannot read would fail their every sync of the object.

`problems(obj)` walks only the fields that can lead to such a value (worked out once per message
type), so an object without free-form parts or times costs a few attribute reads.
"""

from __future__ import annotations

import math
import re
from functools import cache, lru_cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from . import limits, timeutil

_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST = "google.protobuf.ListValue"
_FREE_FORM = frozenset({_STRUCT, _VALUE, _LIST})
MAX_REPORTED = 10  # problems named in one error; the rest are counted
# The API's time fields (proto names): Kubernetes' metav1.Time and metav1.MicroTime.
TIME_FIELDS = frozenset({
    "creation_timestamp", "deletion_timestamp", "time",  # ObjectMeta, ManagedFieldsEntry
    "start_time", "completion_time", "last_schedule_time", "last_successful_time",  # Job, CronJob, Pod
    "last_probe_time", "last_transition_time", "last_heartbeat_time",  # conditions
    "started_at", "finished_at",  # container states
    "time_added",  # taints
    "acquire_time", "renew_time",  # Lease
    "first_timestamp", "last_timestamp", "event_time",  # Event
})
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")
TIME_FORMAT = "2006-01-02T15:04:05Z07:00"  # Go's time.RFC3339, as Kubernetes' errors name it


def problems(obj: Message, path: str = "") -> list[tuple[str, str]]:
    """(path, complaint) for every value of obj that JSON cannot carry or time it cannot read,
    in field order."""
    if _clean(obj):  # the common case, without building a path for every field
        return []
    out: list[tuple[str, str]] = []
    _walk(obj, path, out)
    return out


def describe(found: list[tuple[str, str]]) -> str:
    """The problems as one error text (at most MAX_REPORTED of them named)."""
    text = ", ".join(f"{path}: {complaint}" for path, complaint in found[:MAX_REPORTED])
    if len(found) > MAX_REPORTED:
        text += f", and {len(found) - MAX_REPORTED} more"
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _clean(msg: Message) -> bool:
    """Whether msg has no problem at all (as `_walk` finds none, at a fraction of its cost: every
    write's object passes here)."""
    name = msg.DESCRIPTOR.full_name
    if name in _FREE_FORM:
        out: list[tuple[str, str]] = []
        _walk(msg, "", out)
        return not out
    for field, how in _kinds(msg.DESCRIPTOR):
        if how is _TIME:
            text = getattr(msg, field)
            if text and not is_time(text):
                return False
        elif how is _MAP:
            if not all(_clean(item) for item in getattr(msg, field).values()):
                return False
        elif how is _REPEATED:
            if not all(_clean(item) for item in getattr(msg, field)):
                return False
        elif msg.HasField(field) and not _clean(getattr(msg, field)):
            return False
    return True


_TIME, _MAP, _REPEATED, _ONE = "time", "map", "repeated", "one"


@cache
def _kinds(desc: Descriptor) -> tuple[tuple[str, str], ...]:
    """`_plan`'s fields by name, each with how it is walked."""
    return tuple((field.name, _TIME if field.message_type is None else _MAP if _is_map(field)
                  else _REPEATED if field.is_repeated else _ONE) for field in _plan(desc))


def _walk(msg: Message, path: str, out: list[tuple[str, str]]) -> None:
    name = msg.DESCRIPTOR.full_name
    if name == _STRUCT:
        _struct(msg, path, out)
        return
    if name == _VALUE:
        _value(msg, path, out)
        return
    if name == _LIST:
        _list(msg, path, out)
        return
    for field in _plan(msg.DESCRIPTOR):
        fpath = _join(path, field.json_name)
        if field.message_type is None:  # a time
            text = getattr(msg, field.name)
            if text and not is_time(text):
                out.append((fpath, f'parsing time "{limits.clip(text)}" as "{TIME_FORMAT}": not an RFC 3339 time'))
        elif _is_map(field):
            for key, item in getattr(msg, field.name).items():
                _walk(item, f"{fpath}[{limits.clip(str(key))}]", out)
        elif field.is_repeated:
            for i, item in enumerate(getattr(msg, field.name)):
                _walk(item, f"{fpath}[{i}]", out)
        elif msg.HasField(field.name):
            _walk(getattr(msg, field.name), fpath, out)


def _struct(s: Message, path: str, out: list[tuple[str, str]]) -> None:
    for key, value in s.fields.items():  # type: ignore[attr-defined]
        _value(value, _join(path, limits.clip(key)), out)


def _list(lv: Message, path: str, out: list[tuple[str, str]]) -> None:
    for i, value in enumerate(lv.values):  # type: ignore[attr-defined]
        _value(value, f"{path}[{i}]", out)


def _value(v: Message, path: str, out: list[tuple[str, str]]) -> None:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        number = v.number_value  # type: ignore[attr-defined]
        if not math.isfinite(number):
            text = "NaN" if math.isnan(number) else ("+Inf" if number > 0 else "-Inf")
            out.append((path, f"unsupported value: {text}"))
    elif kind == "struct_value":
        _struct(v.struct_value, path, out)  # type: ignore[attr-defined]
    elif kind == "list_value":
        _list(v.list_value, path, out)  # type: ignore[attr-defined]


@lru_cache(maxsize=4096)  # a write's times repeat (a status's conditions share a second)
def is_time(text: str) -> bool:
    """Whether text is an RFC 3339 time Kubernetes reads and timeutil.parse can compute with."""
    if not _RFC3339.fullmatch(text):
        return False
    try:
        timeutil.parse(text)
    except (ValueError, OverflowError):
        return False
    return True


def _is_time(field: FieldDescriptor) -> bool:
    return (field.name in TIME_FIELDS and field.type == FieldDescriptor.TYPE_STRING
            and not field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@cache
def _plan(desc: Descriptor) -> tuple[FieldDescriptor, ...]:
    """desc's time fields, and its message fields from which a free-form value or a time can be
    reached."""
    out = []
    for field in desc.fields:
        if _is_time(field):
            out.append(field)
            continue
        if field.message_type is None:
            continue
        target = field.message_type.fields_by_name["value"] if _is_map(field) else field
        if target.message_type is not None and _reaches(target.message_type, frozenset({desc.full_name})):
            out.append(field)
    return tuple(out)


def _reaches(desc: Descriptor, on_path: frozenset[str]) -> bool:
    """Whether a free-form value or a time can be reached from desc (on_path: the types above
    it, so a recursive type ends the search)."""
    if desc.full_name in _FREE_FORM:
        return True
    if desc.full_name in on_path:
        return False
    on_path = on_path | {desc.full_name}
    for field in desc.fields:
        if _is_time(field):
            return True
        if field.message_type is None:
            continue
        target = field.message_type.fields_by_name["value"] if _is_map(field) else field
        if target.message_type is not None and _reaches(target.message_type, on_path):
            return True
    return False
