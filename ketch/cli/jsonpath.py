"""kubectl's JSONPath templates (`-o jsonpath=...`, `custom-columns`, `--sort-by`, `wait --for=jsonpath`).

Supported, as client-go's util/jsonpath: text outside braces is copied; inside braces `$` or `@`,
`.field`, `['field']`, `.field\\.with\\.dots`, `..field` (recursive), `*`, `[n]`, `[-1]`,
`[start:end:step]`, `[*]`, filters `[?(@.type=="Ready")]` with == != < > <= >= (or a bare
path: "exists"), `{range ...}...{end}` and quoted literals such as `{"\\n"}`. Missing keys give
nothing, as kubectl's printer allows. Several results of one action are joined by a space;
strings print raw, other values as compact JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class JSONPathError(ValueError):
    pass


# -- path steps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    names: tuple[str, ...]  # "*" is every value of a map (or every item of a list)


@dataclass(frozen=True)
class Recursive:
    name: str


@dataclass(frozen=True)
class Index:
    start: int | None
    end: int | None
    step: int | None
    single: bool


@dataclass(frozen=True)
class Filter:
    left: tuple[Any, ...]  # a relative path (steps after @)
    op: str  # "" = exists
    right: Any  # literal, or ("path", steps)


Step = Field | Recursive | Index | Filter


def _split_bracket(text: str, i: int) -> int:
    """Index of the `]` closing the `[` at i, skipping quotes and parentheses."""
    depth, quote = 0, ""
    j = i + 1
    while j < len(text):
        c = text[j]
        if quote:
            if c == "\\":
                j += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "]" and depth == 0:
            return j
        j += 1
    raise JSONPathError(f"unclosed [ in {text!r}")


def _read_name(text: str, i: int) -> tuple[str, int]:
    out = []
    while i < len(text) and text[i] not in ".[ )=!<>&|":
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out), i


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith("@"):
        return ("path", parse_path(text[1:]))
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


_FILTER_OPS = ("==", "!=", "<=", ">=", "<", ">")


def _parse_filter(body: str) -> Filter:
    if not (body.startswith("?(") and body.endswith(")")):
        raise JSONPathError(f"invalid filter {body!r}")
    expr = body[2:-1].strip()
    quote = ""
    for i, c in enumerate(expr):
        if quote:
            if c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
            continue
        for op in _FILTER_OPS:
            if expr.startswith(op, i):
                left = expr[:i].strip()
                if not left.startswith("@"):
                    raise JSONPathError(f"a filter must start with @: {body!r}")
                return Filter(tuple(parse_path(left[1:])), op, _literal(expr[i + len(op):]))
    if not expr.startswith("@"):
        raise JSONPathError(f"a filter must start with @: {body!r}")
    return Filter(tuple(parse_path(expr[1:])), "", None)


def _parse_index(body: str) -> Step:
    body = body.strip()
    if body == "*":
        return Index(None, None, None, False)
    if body.startswith("?"):
        return _parse_filter(body)
    if body[:1] in "'\"":
        names = tuple(_literal(part) for part in re.findall(r"'[^']*'|\"[^\"]*\"", body))
        return Field(names)
    if ":" in body:
        parts = [p.strip() for p in body.split(":")]
        if len(parts) > 3:
            raise JSONPathError(f"invalid slice [{body}]")
        nums = [int(p) if p else None for p in parts] + [None] * (3 - len(parts))
        return Index(nums[0], nums[1], nums[2], False)
    try:
        return Index(int(body), None, None, True)
    except ValueError:
        raise JSONPathError(f"invalid array index [{body}]") from None


def parse_path(text: str) -> list[Step]:
    """`.a.b[0]` (with or without a leading `$` or `@`: both are the current object, as in
    client-go's parser) into steps."""
    text = text.strip()
    if text.startswith(("$", "@")):
        text = text[1:]
    steps: list[Step] = []
    i = 0
    while i < len(text):
        c = text[i]
        if text.startswith("..", i):
            name, i = _read_name(text, i + 2)
            steps.append(Recursive(name))
        elif c == ".":
            name, i = _read_name(text, i + 1)
            if name:
                steps.append(Field((name,)))
        elif c == "[":
            j = _split_bracket(text, i)
            steps.append(_parse_index(text[i + 1:j]))
            i = j + 1
        elif c == " ":
            i += 1
        else:
            # kubectl accepts a bare first field (`metadata.name`) in custom columns.
            name, i2 = _read_name(text, i)
            if not name:
                raise JSONPathError(f"unrecognized character {c!r} in {text!r}")
            steps.append(Field((name,)))
            i = i2
    return steps


# -- evaluation -----------------------------------------------------------------------------------


def _descendants(value: Any) -> list[Any]:
    out = [value]
    if isinstance(value, dict):
        for k in sorted(value):
            out.extend(_descendants(value[k]))
    elif isinstance(value, list):
        for v in value:
            out.extend(_descendants(v))
    return out


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return bool(left == right or (isinstance(right, str) and str(left) == right and not isinstance(left, bool)))
    if op == "!=":
        return not _compare(left, "==", right)
    try:
        if op == "<":
            return bool(left < right)
        if op == ">":
            return bool(left > right)
        if op == "<=":
            return bool(left <= right)
        if op == ">=":
            return bool(left >= right)
    except TypeError:
        return False
    return False


def _filter_match(item: Any, f: Filter) -> bool:
    lefts = evaluate(list(f.left), item)
    if not f.op:
        return bool(lefts) and lefts[0] not in (None, False)
    right = f.right
    if isinstance(right, tuple) and right and right[0] == "path":
        rights = evaluate(right[1], item)
        if not rights:
            return False
        right = rights[0]
    return any(_compare(left, f.op, right) for left in lefts)


def _step(values: list[Any], step: Step) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(step, Field):
            for name in step.names:
                if name == "*":
                    if isinstance(v, dict):
                        out.extend(v[k] for k in sorted(v))
                    elif isinstance(v, list):
                        out.extend(v)
                elif isinstance(v, dict) and name in v:
                    out.append(v[name])
        elif isinstance(step, Recursive):
            for d in _descendants(v):
                if isinstance(d, dict):
                    if step.name == "*":
                        out.extend(d[k] for k in sorted(d))
                    elif step.name in d:
                        out.append(d[step.name])
        elif isinstance(step, Index):
            if not isinstance(v, list):
                continue
            if step.single:
                assert step.start is not None
                idx = step.start + len(v) if step.start < 0 else step.start
                if 0 <= idx < len(v):
                    out.append(v[idx])
            else:
                out.extend(v[slice(step.start, step.end, step.step)])
        else:
            items = v if isinstance(v, list) else [v]
            out.extend(item for item in items if _filter_match(item, step))
    return out


def evaluate(steps: list[Step], root: Any) -> list[Any]:
    values = [root]
    for step in steps:
        values = _step(values, step)
    return values


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


# -- templates ------------------------------------------------------------------------------------


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    steps: list[Step] | None  # None: a quoted literal
    literal: str = ""


@dataclass
class _Range:
    steps: list[Step]
    body: list[Any]


def _unquote(text: str) -> str:
    try:
        value = json.loads(text) if text.startswith('"') else text[1:-1]
    except json.JSONDecodeError as err:
        raise JSONPathError(f"invalid literal {text}") from err
    return str(value)


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces; `{` inside quotes does not open an action."""
    out: list[tuple[str, str]] = []
    i, start = 0, 0
    while i < len(template):
        if template[i] == "{":
            if i > start:
                out.append(("text", template[start:i]))
            j, quote = i + 1, ""
            while j < len(template):
                c = template[j]
                if quote:
                    if c == "\\":
                        j += 1
                    elif c == quote:
                        quote = ""
                elif c in "'\"":
                    quote = c
                elif c == "}":
                    break
                j += 1
            if j >= len(template):
                raise JSONPathError(f"unclosed action in {template!r}")
            out.append(("action", template[i + 1:j].strip()))
            i = start = j + 1
        else:
            i += 1
    if start < len(template):
        out.append(("text", template[start:]))
    return out


def parse_template(template: str) -> list[Any]:
    stack: list[list[Any]] = [[]]
    ranges: list[_Range] = []
    for kind, text in _tokens(template):
        if kind == "text":
            stack[-1].append(_Text(text))
        elif text.startswith("range ") or text == "range":
            r = _Range(parse_path(text[5:]), [])
            stack[-1].append(r)
            ranges.append(r)
            stack.append(r.body)
        elif text == "end":
            if not ranges:
                raise JSONPathError("not in range, nothing to end")
            ranges.pop()
            stack.pop()
        elif text[:1] in "'\"":
            stack[-1].append(_Action(None, _unquote(text)))
        else:
            stack[-1].append(_Action(parse_path(text)))
    if ranges:
        raise JSONPathError("unclosed range")
    return stack[0]


def _render(nodes: list[Any], data: Any, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Action):
            if node.steps is None:
                out.append(node.literal)
            else:
                out.append(" ".join(format_value(v) for v in evaluate(node.steps, data)))
        else:
            for item in evaluate(node.steps, data):
                _render(node.body, item, out)


def render(template: str, data: Any) -> str:
    out: list[str] = []
    _render(parse_template(template), data, out)
    return "".join(out)


def values(expr: str, data: Any) -> list[Any]:
    """The results of a single path expression (with or without braces)."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    return evaluate(parse_path(expr), data)
