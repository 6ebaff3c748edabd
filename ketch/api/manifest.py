"""Manifests (YAML or JSON, one or many documents) to API objects and back.

The JSON form is Kubernetes' own: camelCase keys, RFC 3339 times, numbers as numbers. Decoding
is strict, as the API server's strict field validation: an unknown field or a value of the
wrong type is an error naming the field's path, and nothing is half-decoded.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from . import wellformed
from .errors import BadRequest
from .kinds import KindInfo, info_for_manifest, info_of

if TYPE_CHECKING:
    import yaml

_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
}


class DecodeError(BadRequest):
    """A manifest that is not a valid object of its kind. From decode_into: `what` (the prefix)
    and `fields`, each bad field's (path, complaint), which the CLI places in the file by line."""

    what: str = ""
    fields: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------
# Reading documents


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every object in a YAML or JSON text; `kind: List` documents are expanded."""
    docs: list[Any]
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            value = json.loads(text)
            docs = value if isinstance(value, list) else [value]
        except json.JSONDecodeError:
            docs = _load_yaml(text)
        except RecursionError:
            raise DecodeError("error parsing JSON: document is nested too deeply") from None
    else:
        docs = _load_yaml(text)
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise DecodeError(f"a manifest document must be an object, not {type(doc).__name__}")
        if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
            out.extend(item for item in doc.get("items") or [] if item is not None)
        else:
            out.append(doc)
    return out


def _load_yaml(text: str) -> list[Any]:
    import yaml  # here: reading JSON or printing a table needs no YAML (CLI start-up, issue 14)

    from . import safeyaml

    try:
        return list(safeyaml.safe_load_all(text))
    except yaml.MarkedYAMLError as err:
        raise DecodeError(f"error parsing YAML: {yaml_problem(err)}") from err
    except yaml.YAMLError as err:
        raise DecodeError(f"error parsing YAML: {err}".replace("\n", " ")) from err


def yaml_problem(err: yaml.MarkedYAMLError) -> str:
    """`line 5: could not find expected ':'`, as go-yaml says it (PyYAML's own text quotes the
    whole input line with a caret and names `<unicode string>`)."""
    mark = err.problem_mark or err.context_mark
    problem = err.problem or err.context or "invalid YAML"
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


# ---------------------------------------------------------------------------------------------
# Dict -> message


def _fields_by_json_name(desc: Descriptor) -> dict[str, FieldDescriptor]:
    cached = _JSON_FIELDS.get(desc.full_name)
    if cached is None:
        cached = {f.json_name: f for f in desc.fields}
        _JSON_FIELDS[desc.full_name] = cached
    return cached


_JSON_FIELDS: dict[str, dict[str, FieldDescriptor]] = {}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_scalar(field: FieldDescriptor, value: Any, path: str, errors: list[tuple[str, str]]) -> Any:
    """Type-check one scalar; returns the value to hand to the protobuf parser."""
    t = field.type
    if t in _INT_TYPES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append((path, f'{path}: expected an integer, got {_type_name(value)} {json.dumps(value)}'))
            return None
        if t == FieldDescriptor.TYPE_INT32 and not -(2**31) <= value < 2**31:
            errors.append((path, f"{path}: {value} does not fit in a 32-bit integer"))
            return None
        return value
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            errors.append((path, f"{path}: expected a boolean, got {_type_name(value)} {json.dumps(value)}"))
            return None
        return value
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            # YAML turns unquoted dates and times into datetime objects; take their text form.
            if hasattr(value, "isoformat"):
                return value.isoformat().replace("+00:00", "Z")
            errors.append((path, f"{path}: expected a string, got {_type_name(value)} "
                                 f"{json.dumps(value, default=str)}"))
            return None
        return value
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append((path, f"{path}: expected a number, got {_type_name(value)}"))
            return None
        return value
    if t == FieldDescriptor.TYPE_BYTES:
        return value
    return value


def _clean(desc: Descriptor, data: Any, path: str, errors: list[tuple[str, str]], unknown: list[str]) -> Any:
    """A copy of data with nulls dropped, after checking names and types against desc."""
    if desc.full_name == _STRUCT:
        if not isinstance(data, dict):
            errors.append((path, f"{path}: expected an object, got {_type_name(data)}"))
            return None
        return json.loads(json.dumps(data, default=str))
    if desc.full_name == _VALUE:
        # Every Value field in the API is an IntOrString.
        if isinstance(data, bool) or not isinstance(data, int | str):
            errors.append((path, f"{path}: expected an integer or a string, got {_type_name(data)}"))
            return None
        return data
    if not isinstance(data, dict):
        errors.append((path or '<root>', f"{path or '<root>'}: expected an object, got {_type_name(data)}"))
        return None
    fields = _fields_by_json_name(desc)
    out: dict[str, Any] = {}
    for name, value in data.items():
        field = fields.get(name)
        fpath = _join(path, str(name))
        if field is None:
            unknown.append(fpath)
            continue
        if value is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if not isinstance(value, dict):
                errors.append((fpath, f"{fpath}: expected an object, got {_type_name(value)}"))
                continue
            value_field = field.message_type.fields_by_name["value"]
            entries = {}
            for k, v in value.items():
                if v is None:
                    continue
                if value_field.message_type is not None:
                    entries[str(k)] = _clean(value_field.message_type, v, f"{fpath}.{k}", errors, unknown)
                else:
                    entries[str(k)] = _check_scalar(value_field, v, f"{fpath}.{k}", errors)
            out[name] = entries
        elif field.is_repeated:
            if not isinstance(value, list):
                errors.append((fpath, f"{fpath}: expected an array, got {_type_name(value)}"))
                continue
            items = []
            for i, item in enumerate(value):
                ipath = f"{fpath}[{i}]"
                if item is None:
                    errors.append((ipath, f"{ipath}: null is not allowed in a list"))
                    continue
                if field.message_type is not None:
                    items.append(_clean(field.message_type, item, ipath, errors, unknown))
                else:
                    items.append(_check_scalar(field, item, ipath, errors))
            out[name] = items
        elif field.message_type is not None:
            out[name] = _clean(field.message_type, value, fpath, errors, unknown)
        else:
            out[name] = _check_scalar(field, value, fpath, errors)
    return out


def decode_into(message: Message, data: dict[str, Any], what: str = "") -> Message:
    """Strictly decode data into message (replacing its contents)."""
    errors: list[tuple[str, str]] = []
    unknown: list[str] = []
    cleaned = _clean(cast(Descriptor, message.DESCRIPTOR), data, "", errors, unknown)
    if unknown or errors:
        parts = [f'unknown field "{u}"' for u in unknown] + [text for _, text in errors]
        prefix = f"{what}: " if what else ""
        if unknown and not errors:
            prefix += "strict decoding error: "
        err = DecodeError(prefix + ", ".join(parts))
        err.what = prefix
        err.fields = tuple([(u, f'unknown field "{u}"') for u in unknown] + errors)
        raise err
    from google.protobuf import json_format  # here: it costs the CLI ~25 ms at start (issue 14)

    message.Clear()
    try:
        json_format.ParseDict(cleaned, message)
    except json_format.ParseError as err:
        raise DecodeError(f"{what}: {err}" if what else str(err)) from err
    bad = wellformed.problems(message)  # YAML's .nan and .inf in a free-form field
    if bad:
        prefix = f"{what}: " if what else ""
        unreadable = DecodeError(prefix + wellformed.describe(bad))
        unreadable.what = prefix
        unreadable.fields = tuple((path, f"{path}: {complaint}") for path, complaint in bad)
        raise unreadable
    return message


def kind_of_document(doc: dict[str, Any]) -> KindInfo:
    api_version = doc.get("apiVersion")
    kind = doc.get("kind")
    if not kind or not isinstance(kind, str):
        raise DecodeError("Object 'Kind' is missing in the manifest")
    if not api_version or not isinstance(api_version, str):
        raise DecodeError(f"Object 'apiVersion' is missing in the {kind} manifest")
    try:
        return info_for_manifest(api_version, kind)
    except KeyError:
        raise DecodeError(f'no matches for kind "{kind}" in version "{api_version}"') from None


def from_dict(doc: dict[str, Any]) -> Message:
    """One manifest document to its object, strictly."""
    info = kind_of_document(doc)
    obj = info.new()
    version = info.api_version.rpartition("/")[2]
    decode_into(obj, doc, f'{info.kind} in version "{version}" cannot be handled as a {info.kind}')
    return obj


def parse_objects(text: str) -> list[Message]:
    return [from_dict(doc) for doc in load_documents(text)]


# ---------------------------------------------------------------------------------------------
# Message -> dict


def _ints(value: Any) -> Any:
    """protobuf's JSON mapping gives Struct/Value numbers as floats; Kubernetes has integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def to_dict(obj: Message, sort_keys: bool = True) -> dict[str, Any]:
    """Kubernetes' JSON form of an object, apiVersion and kind filled in."""
    from google.protobuf import json_format

    data = _ints(json_format.MessageToDict(obj))
    try:
        info = info_of(obj)
    except KeyError:
        return _sorted(data) if sort_keys else data
    data["apiVersion"] = info.api_version
    data["kind"] = info.kind
    data.setdefault("metadata", {})
    return _sorted(data) if sort_keys else data


def message_to_dict(msg: Message) -> dict[str, Any]:
    """Any message (not only a top-level object) in its JSON form."""
    from google.protobuf import json_format

    return _ints(json_format.MessageToDict(msg))


def to_json(obj: Message | dict[str, Any], indent: int | None = 4) -> str:
    data = obj if isinstance(obj, dict) else to_dict(obj)
    return json.dumps(data, indent=indent, ensure_ascii=False)


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


def to_yaml(obj: Message | dict[str, Any]) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(str, _str_presenter)
    data = obj if isinstance(obj, dict) else to_dict(obj)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


