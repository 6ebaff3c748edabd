"""Generic validation helpers, in the words of apimachinery's util/validation and meta/v1/validation.

Every kind's validator builds on these: name formats (DNS-1123 label/subdomain, qualified names,
label values, env var names), labels, annotations, label selectors, non-negative and immutable
fields. Field paths are plain strings built only where an error is reported, and the format
checks are cached, because validation runs on every write (the same label keys and values
appear on thousands of pods).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf import json_format
from google.protobuf.message import Message

from ketch.api.errors import FieldError, forbidden, invalid, required, too_long
from ketch.v1 import meta_pb2

Errors = list[FieldError]

# ---------------------------------------------------------------------------------------------
# Messages and formats (apimachinery/pkg/util/validation).

IS_NEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_ENV_VAR_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_PERCENT_FMT = "[0-9]+%"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QNAME_RE = re.compile(_QNAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_ENV_VAR_RE = re.compile(_ENV_VAR_FMT)
_PERCENT_RE = re.compile(_PERCENT_FMT)


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


_DNS1123_LABEL_MSG = regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character", _DNS1123_LABEL_FMT, "my-name", "123-abc")
_DNS1123_SUBDOMAIN_MSG = regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character", _DNS1123_SUBDOMAIN_FMT, "example.com")
_QNAME_MSG = regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character", _QNAME_FMT, "MyName", "my.name", "123-abc")
_LABEL_VALUE_MSG = regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character", _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
_ENV_VAR_MSG = regex_error(
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
    "'.', and must not start with a digit", _ENV_VAR_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1")
_PERCENT_MSG = regex_error(
    "a valid percent string must be a numeric string followed by an ending '%'", _PERCENT_FMT, "1%", "93%")


@lru_cache(maxsize=4096)
def dns1123_label(value: str) -> tuple[str, ...]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        # IsDNS1123Label (since 1.27): a valid subdomain that is no label can only have dots.
        errs.append("must not contain dots" if _DNS1123_SUBDOMAIN_RE.fullmatch(value) else _DNS1123_LABEL_MSG)
    return tuple(errs)


@lru_cache(maxsize=4096)
def dns1123_subdomain(value: str) -> tuple[str, ...]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_DNS1123_SUBDOMAIN_MSG)
    return tuple(errs)


@lru_cache(maxsize=8192)
def qualified_name(value: str) -> tuple[str, ...]:
    """A label key: an optional DNS subdomain prefix and '/', then a name of at most 63 chars."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return ("a qualified name " + _QNAME_MSG
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",)
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _QNAME_MSG)
    return tuple(errs)


@lru_cache(maxsize=8192)
def label_value(value: str) -> tuple[str, ...]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return tuple(errs)


def _dot_errors(value: str) -> list[str]:
    """Kubernetes' hasChDirPrefix: a name used as a file name must not climb directories."""
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


@lru_cache(maxsize=1024)
def env_var_name(value: str) -> tuple[str, ...]:
    errs = []
    if not _ENV_VAR_RE.fullmatch(value):
        errs.append(_ENV_VAR_MSG)
    errs.extend(_dot_errors(value))
    return tuple(errs)


_CONFIG_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
                   "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


@lru_cache(maxsize=1024)
def config_key(value: str) -> tuple[str, ...]:
    """IsConfigMapKey: a ConfigMap's or Secret's key (a file name in a volume, so never . or ..)."""
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.fullmatch(value):
        errs.append(_CONFIG_KEY_MSG)
    errs.extend(_dot_errors(value))
    return tuple(errs)


def percent(value: str) -> tuple[str, ...]:
    return () if _PERCENT_RE.fullmatch(value) else (_PERCENT_MSG,)


def _mask_trailing_dash(name: str) -> str:
    """A generateName prefix may end in '-' (a suffix follows); apimachinery's maskTrailingDash, quirk and all."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


# An object's own name is checked once, on its create, and is most often unique (a Job's pods):
# caching it would only keep thousands of names of long-deleted objects. A generateName prefix
# repeats on every create from it, and is cached.

def name_is_dns_subdomain(name: str, prefix: bool) -> tuple[str, ...]:
    return dns1123_subdomain(_mask_trailing_dash(name)) if prefix else dns1123_subdomain.__wrapped__(name)


def name_is_dns_label(name: str, prefix: bool) -> tuple[str, ...]:
    return dns1123_label(_mask_trailing_dash(name)) if prefix else dns1123_label.__wrapped__(name)


# ---------------------------------------------------------------------------------------------
# Values as Kubernetes prints them.


@dataclass(frozen=True)
class Shown:
    """A value printed verbatim after `Invalid value:` (Go prints structs and maps with %#v)."""

    text: str

    def __str__(self) -> str:
        return self.text


def go_map(m: Mapping[str, str]) -> Shown:
    body = ", ".join(f'"{k}":"{m[k]}"' for k in sorted(m))
    return Shown("map[string]string{" + body + "}")


def go_list(values: Iterable[object]) -> Shown:
    return Shown("[]" + "{" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values) + "}")


def as_json(msg: Message) -> Shown:
    """A message in compact JSON (only on the error path: it is not cheap)."""
    return Shown(json_format.MessageToJson(msg, indent=None, sort_keys=True))


def idx(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# ---------------------------------------------------------------------------------------------
# Field checks.


def nonnegative(errs: Errors, value: int, path: str) -> None:
    if value < 0:
        errs.append(invalid(path, value, IS_NEGATIVE))


def immutable_scalar(errs: Errors, new: object, old: object, path: str) -> None:
    if new != old:
        errs.append(invalid(path, new, IMMUTABLE))


def immutable_optional(errs: Errors, new: Message, old: Message, name: str, path: str) -> None:
    """A proto3 `optional` scalar (a Go pointer): unset and set are different values."""
    new_v = getattr(new, name) if new.HasField(name) else None
    old_v = getattr(old, name) if old.HasField(name) else None
    if new_v != old_v:
        errs.append(invalid(path, new_v, IMMUTABLE))


def immutable_message(errs: Errors, new: Message, old: Message, name: str, path: str,
                      show: bool = True) -> None:
    """A message field: unset and empty differ, as a nil and an empty Go struct pointer do."""
    new_set, old_set = new.HasField(name), old.HasField(name)
    new_v, old_v = getattr(new, name), getattr(old, name)
    if new_set != old_set or new_v != old_v:
        if show:
            errs.append(invalid(path, as_json(new_v) if new_set else None, IMMUTABLE))
        else:
            errs.append(FieldError("Invalid", path, IMMUTABLE))


def qualified_name_field(errs: Errors, value: str, path: str) -> None:
    errs.extend(invalid(path, value, m) for m in qualified_name(value))


def dns_label_field(errs: Errors, value: str, path: str) -> None:
    errs.extend(invalid(path, value, m) for m in dns1123_label(value))


def dns_subdomain_field(errs: Errors, value: str, path: str) -> None:
    errs.extend(invalid(path, value, m) for m in dns1123_subdomain(value))


def labels(errs: Errors, values: Mapping[str, str], path: str) -> None:
    """ValidateLabels: every key a qualified name, every value a label value (path not keyed)."""
    for k, v in values.items():
        for m in qualified_name(k):
            errs.append(invalid(path, k, m))
        for m in label_value(v):
            errs.append(invalid(path, v, m))


TOTAL_ANNOTATION_SIZE = 256 * 1024


def annotation_map(errs: Errors, values: Mapping[str, str], path: str) -> None:
    size = 0
    for k, v in values.items():
        for m in qualified_name(k.lower()):
            errs.append(invalid(path, k, m))
        size += len(k) + len(v)
    if size > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))


_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_selector(errs: Errors, sel: meta_pb2.LabelSelector, path: str) -> None:
    """ValidateLabelSelector (the caller checks for a missing selector)."""
    labels(errs, sel.match_labels, path + ".matchLabels")
    for i, expr in enumerate(sel.match_expressions):
        p = idx(path + ".matchExpressions", i)
        if expr.operator in ("In", "NotIn"):
            if not expr.values:
                errs.append(required(p + ".values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif expr.operator in ("Exists", "DoesNotExist"):
            if expr.values:
                errs.append(forbidden(p + ".values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(p + ".operator", expr.operator, "not a valid selector operator"))
        qualified_name_field(errs, expr.key, p + ".key")
        for j, v in enumerate(expr.values):
            errs.extend(invalid(idx(p + ".values", j), v, m) for m in label_value(v))


def selector_is_valid(sel: meta_pb2.LabelSelector) -> bool:
    """Whether LabelSelectorAsSelector would succeed (only then is 'does not match' checked)."""
    for expr in sel.match_expressions:
        if expr.operator in ("In", "NotIn"):
            if not expr.values:
                return False
        elif expr.operator in ("Exists", "DoesNotExist"):
            if expr.values:
                return False
        else:
            return False
    return True


def selector_matches(sel: meta_pb2.LabelSelector, values: Mapping[str, str]) -> bool:
    for k, v in sel.match_labels.items():
        if values.get(k) != v:
            return False
    for expr in sel.match_expressions:
        present = expr.key in values
        op = expr.operator
        if op == "In" and not (present and values[expr.key] in expr.values):
            return False
        if op == "NotIn" and present and values[expr.key] in expr.values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def selector_is_empty(sel: meta_pb2.LabelSelector) -> bool:
    return not sel.match_labels and not sel.match_expressions
