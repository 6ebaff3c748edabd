"""`ketch explain KIND[.field.path] [--recursive]`: a kind's fields, from the API's own schema.

kubectl reads the server's OpenAPI; Ketch's schema is the ketch/v1 protobuf descriptors the
client already has (field names in their JSON form, as manifests spell them), and descriptions
come from the .proto comments, which the generated modules drop: ketch/v1/comments.py keeps
them (scripts/proto_comments.py, run by `make proto`). Output follows kubectl 1.31's plaintext
template: GROUP/KIND/VERSION, FIELD, DESCRIPTION, FIELDS (names only, nested, with --recursive).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, cast

from .factory import Factory
from .main import CLIError, add_bool_flag, add_common

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor, FieldDescriptor

INDENT = "    "
# Kubernetes' own words for the fields every object has, where the .proto says nothing.
COMMON = {
    "ketch.v1.ObjectMeta": "Standard object's metadata.",
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object. Servers should "
                  "convert recognized schemas to the latest internal value, and may reject unrecognized values.",
    "kind": "Kind is a string value representing the REST resource this object represents. Servers may infer "
            "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.",
    "metadata": "Standard object's metadata.",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="the fields of a kind, with their types and descriptions")
    p.add_argument("target", metavar="KIND[.FIELD...]")
    add_bool_flag(p, "--recursive", False, "every field, nested, without descriptions")
    p.add_argument("--api-version", default="", help="the group/version of the kind (only the served one)")
    add_common(p)
    p.set_defaults(run=run)


def _comments() -> dict[str, str]:
    from ketch.v1.comments import COMMENTS

    return COMMENTS


def describe(comments: dict[str, str], field: FieldDescriptor) -> str:
    """A field's comment, else its type's, else Kubernetes' words for the common fields."""
    inner = _object(field)
    return (comments.get(field.full_name) or (comments.get(inner.full_name, "") if inner else "")
            or COMMON.get(field.json_name, ""))


def type_name(field: FieldDescriptor) -> str:
    """kubectl's type words: string, integer, boolean, number, Object names, []T, map[string]T."""
    from google.protobuf.descriptor import FieldDescriptor as FD

    msg = field.message_type
    if msg is not None and msg.GetOptions().map_entry:
        return f"map[string]{type_name(msg.fields_by_name['value'])}"
    if msg is not None:
        base = {"google.protobuf.Value": "IntOrString", "google.protobuf.Struct": "Object",
                "google.protobuf.Timestamp": "string"}.get(msg.full_name, msg.name)
    elif field.type == FD.TYPE_BOOL:
        base = "boolean"
    elif field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        base = "number"
    elif field.type == FD.TYPE_STRING or field.type == FD.TYPE_ENUM:
        base = "string"
    elif field.type == FD.TYPE_BYTES:
        base = "string"  # base64 in JSON, as Kubernetes' []byte
    else:
        base = "integer"
    repeated = field.is_repeated and not (msg is not None and msg.GetOptions().map_entry)
    return f"[]{base}" if repeated else base


def _object(field: FieldDescriptor) -> Descriptor | None:
    """The message a field holds (a list's element; a map's value), if it is one we describe."""
    msg = field.message_type
    if msg is not None and msg.GetOptions().map_entry:
        msg = msg.fields_by_name["value"].message_type
    if msg is None or msg.full_name.startswith("google.protobuf."):
        return None
    return msg


def resolve_path(root: Descriptor, path: list[str]) -> tuple[Descriptor | None, FieldDescriptor | None]:
    """Walk `spec.template.spec` to its field; an unknown name is kubectl's error."""
    msg: Descriptor | None = root
    field: FieldDescriptor | None = None
    for name in path:
        by_json = {f.json_name: f for f in msg.fields} if msg is not None else {}
        if name not in by_json:
            raise CLIError(f'field "{name}" does not exist')
        field = by_json[name]
        msg = _object(field)
    return msg, field


def _wrap(text: str, indent: str, width: int = 80) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width - len(indent), break_on_hyphens=False) or [""]


def explain(kind: str, api_version: str, root: Descriptor, path: list[str], recursive: bool) -> str:
    comments = _comments()
    msg, field = resolve_path(root, path)
    group, _, version = api_version.rpartition("/")
    out = [f"GROUP:      {group}"] if group else []
    out += [f"KIND:       {kind}", f"VERSION:    {version}", ""]
    if field is not None:
        out += [f"FIELD: {path[-1]} <{type_name(field)}>", ""]
        description = describe(comments, field)
    else:
        description = comments.get(root.full_name, "")
    out.append("DESCRIPTION:")
    out += [INDENT + line for line in _wrap(description or "<empty>", INDENT)]
    if msg is not None and msg.fields:
        out += ["", "FIELDS:"]
        if recursive:
            out += _recursive(msg, 1, {msg.full_name})
        else:
            for f in msg.fields:
                out.append(f"  {f.json_name}\t<{type_name(f)}>")
                text = describe(comments, f)
                if text:
                    out += [INDENT + line for line in _wrap(text, INDENT)]
                out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _recursive(msg: Descriptor, depth: int, seen: set[str]) -> list[str]:
    out = []
    for f in msg.fields:
        out.append("  " * depth + f"{f.json_name}\t<{type_name(f)}>")
        inner = _object(f)
        if inner is not None and inner.full_name not in seen:  # a type that holds itself stops here
            out += _recursive(inner, depth + 1, seen | {inner.full_name})
    return out


def run(args: argparse.Namespace, factory: Factory) -> int:
    from .resources import resolve_kind

    kind_word, *path = args.target.split(".")
    info = resolve_kind(kind_word)
    if args.api_version and args.api_version != info.api_version:
        raise CLIError(f'couldn\'t find resource for "{args.api_version}, Kind={info.kind}"')
    root = cast("Descriptor", info.message.DESCRIPTOR)
    factory.out.write(explain(info.kind, info.api_version, root, path, args.recursive))
    return 0
