"""Label and field selectors: parsing the string form and matching objects.

A parsed selector is a tuple of Requirements, all of which must hold (comma means AND), as in
apimachinery's labels.Selector. An empty selector matches everything; `NOTHING` matches nothing
(a nil structured selector).

Parsing is linear in the selector's length, and a selector is at most MAX_SELECTOR_LENGTH
characters and MAX_SELECTOR_REQUIREMENTS requirements (ketch.api.limits): a list or watch checks
every requirement against every object it looks at, so a selector's size is the server's work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ketch.v1 import meta_pb2

from .errors import BadRequest
from .goint import parse_int64
from .limits import MAX_SELECTOR_LENGTH, MAX_SELECTOR_REQUIREMENTS, clip


@dataclass(frozen=True)
class Requirement:
    key: str
    # "=", "!=", "in", "notin", "exists", "!"
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "=" or op == "in":  # nearly every selector: one lookup (each one on a parsed map makes strings)
            value = labels.get(self.key)
            return value is not None and value in self.values
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        present = self.key in labels
        if op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if op in ("gt", "lt"):
            if not present:
                return False
            try:
                have = int(labels[self.key])
                want = int(next(iter(self.values)))
            except ValueError:
                return False
            return have > want if op == "gt" else have < want
        return False

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{next(iter(self.values))}"
        if self.op in ("gt", "lt") and len(self.values) == 1:
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{next(iter(self.values))}"
        return f"{self.key} {self.op} ({','.join(sorted(self.values))})"


class Selector(tuple[Requirement, ...]):
    """All requirements must match."""

    matches_nothing = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.matches_nothing:
            return False
        for requirement in self:  # a loop, not all(<generator>): this runs for every object a list or sync looks at
            if not requirement.matches(labels):
                return False
        return True

    def empty(self) -> bool:
        return not self and not self.matches_nothing

    def __str__(self) -> str:
        return ",".join(str(r) for r in self)


class _Nothing(Selector):
    matches_nothing = True


EVERYTHING = Selector(())
# A field indexer's answer for a kind whose selectable fields are read off the object only when a
# field selector asks, as kube-apiserver reads Events from etcd (it keeps no watch cache for
# them): the most numerous objects then carry one shared marker instead of a map each.
FIELDS_ON_READ: Mapping[str, str] = MappingProxyType({})
NOTHING = _Nothing(())

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|>|<|[^\s!=(),<>]+)\s*")


def _check_size(text: str, what: str) -> None:
    if len(text) > MAX_SELECTOR_LENGTH:
        raise BadRequest(f"invalid {what} selector: {len(text)} characters, the limit is {MAX_SELECTOR_LENGTH}")


def _check_count(count: int, what: str) -> None:
    if count > MAX_SELECTOR_REQUIREMENTS:
        raise BadRequest(f"invalid {what} selector: {count} requirements, the limit is {MAX_SELECTOR_REQUIREMENTS}")


def _tokens(text: str) -> list[str]:
    """The selector's tokens, in one pass: each match starts where the last one ended."""
    out: list[str] = []
    pos, end = 0, len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m:
            raise BadRequest(f"unable to parse requirement: {clip(text)!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str) -> Selector:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`."""
    _check_size(text, "label")
    text = text.strip()
    if not text:
        return EVERYTHING
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_values() -> frozenset[str]:
        nonlocal i
        if i >= len(toks) or toks[i] != "(":
            raise BadRequest(f"unable to parse requirement: found '{clip(toks[i]) if i < len(toks) else ''}', "
                             "expected: '('")
        i += 1
        vals: list[str] = []
        while i < len(toks) and toks[i] != ")":
            if toks[i] != ",":
                vals.append(toks[i])
            i += 1
        if i >= len(toks):
            raise BadRequest("unable to parse requirement: found '', expected: ')'")
        i += 1
        return frozenset(vals)

    while i < len(toks):
        tok = toks[i]
        if tok == "!":
            i += 1
            if i >= len(toks):
                raise BadRequest("unable to parse requirement: found '', expected: identifier")
            reqs.append(Requirement(toks[i], "!"))
            i += 1
        else:
            key = tok
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append(Requirement(key, "exists"))
            elif toks[i] in ("=", "=="):
                i += 1
                value = ""
                if i < len(toks) and toks[i] != ",":
                    value = toks[i]
                    i += 1
                reqs.append(Requirement(key, "=", frozenset([value])))
            elif toks[i] == "!=":
                i += 1
                value = ""
                if i < len(toks) and toks[i] != ",":
                    value = toks[i]
                    i += 1
                reqs.append(Requirement(key, "!=", frozenset([value])))
            elif toks[i] in ("in", "notin"):
                op = toks[i]
                i += 1
                reqs.append(Requirement(key, op, expect_values()))
            elif toks[i] in (">", "<"):
                op = "gt" if toks[i] == ">" else "lt"
                i += 1
                if i >= len(toks) or toks[i] in (",", "(", ")", "!", "=", "==", "!=", ">", "<"):
                    raise BadRequest(f"unable to parse requirement: found '{clip(toks[i]) if i < len(toks) else ''}', "
                                     "expected: identifier")
                reqs.append(Requirement(key, op, frozenset([toks[i]])))
                i += 1
            else:
                raise BadRequest(f"unable to parse requirement: unexpected {clip(toks[i])!r} in {clip(text)!r}")
        if i < len(toks):
            if toks[i] != ",":
                raise BadRequest(f"unable to parse requirement: expected ',' in {clip(text)!r}")
            i += 1
    reqs = list(dict.fromkeys(reqs))  # "a,a,a": one requirement
    _check_count(len(reqs), "label")
    for req in reqs:
        _check_requirement(req)
    return Selector(reqs)


class _GoValue:
    """A value as Go's %#v prints it in a field error (unquoted)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def _check_requirement(req: Requirement) -> None:
    """apimachinery's NewRequirement: a label key, label values, an integer for Gt and Lt, and
    a value for in and notin; BadRequest naming the first requirement that is not."""
    from .errors import FieldError, invalid
    from .validation import field  # here: the CLI parses no selector at start (issue 14)

    errs: list[FieldError] = []
    msgs = field.qualified_name(req.key)
    if msgs:
        errs.append(invalid("key", req.key, "; ".join(msgs)))
    if req.op in ("in", "notin") and not req.values:
        errs.append(FieldError("Invalid", "values", "for 'in', 'notin' operators, values set can't be empty",
                               _GoValue("[]string{}"), True))
    values = sorted(req.values)
    if req.op in ("gt", "lt"):
        errs.extend(invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer")
                    for i, v in enumerate(values) if parse_int64(v) is None)
    for i, v in enumerate(values):
        msgs = field.label_value(v)
        if msgs:
            errs.append(invalid(f"values[{i}][{req.key}]", v, "; ".join(msgs)))
    if errs:
        body = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"
        raise BadRequest(f"unable to parse requirement: {body}")


_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", "Gt": "gt", "Lt": "lt"}


def from_label_selector(sel: meta_pb2.LabelSelector | None) -> Selector:
    """A structured selector; None (unset) matches nothing, an empty one everything."""
    if sel is None:
        return NOTHING
    reqs = [Requirement(k, "=", frozenset([v])) for k, v in sorted(sel.match_labels.items())]
    for expr in sel.match_expressions:
        reqs.append(Requirement(expr.key, _OPS.get(expr.operator, expr.operator), frozenset(expr.values)))
    return Selector(reqs)


def selector_matches(sel: meta_pb2.LabelSelector, labels: Mapping[str, str]) -> bool:
    return from_label_selector(sel).matches(labels)


def selector_string(sel: meta_pb2.LabelSelector) -> str:
    return str(from_label_selector(sel))


# ---------------------------------------------------------------------------------------------
# Field selectors



@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        return self.matches_value(fields.get(self.field, ""))

    def matches_value(self, have: str) -> bool:
        return (have != self.value) if self.negate else (have == self.value)


def parse_field_selector(text: str, allowed: frozenset[str]) -> tuple[FieldRequirement, ...]:
    """The requirements of a field selector over the fields a kind answers (its strategy's)."""
    _check_size(text, "field")
    text = text.strip()
    if not text:
        return ()
    out = []
    for part in text.split(","):
        part = part.strip()
        if "!=" in part:
            field, _, value = part.partition("!=")
            negate = True
        elif "==" in part:
            field, _, value = part.partition("==")
            negate = False
        elif "=" in part:
            field, _, value = part.partition("=")
            negate = False
        else:
            raise BadRequest(f"invalid selector: '{clip(text)}'; can't understand '{clip(part)}'")
        field = field.strip()
        if field not in allowed:
            raise BadRequest(f"field label not supported: {clip(field)}")
        out.append(FieldRequirement(field, negate, value.strip()))
    reqs = tuple(dict.fromkeys(out))
    _check_count(len(reqs), "field")
    return reqs
