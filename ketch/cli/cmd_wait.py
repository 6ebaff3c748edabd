"""`ketch wait --for=condition=COND[=VALUE] | --for=delete | --for=create |
--for=jsonpath='{.status.phase}'=Running  KIND/NAME... | KIND [NAME...] [-l SEL|--all] [--timeout 30s]`.

Each object is followed by a watch (no polling) until its condition holds; prints
`job.batch/pi condition met`. On timeout: `error: timed out waiting for the condition on jobs/pi`.
Conditions match as kubectl matches them: type and status case-insensitively, and a condition
that carries an observedGeneration older than the object's generation does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ketch.api import durations, errors, manifest
from ketch.api.kinds import KindInfo
from ketch.client.watching import object_states, states

from . import jsonpath
from .factory import Factory
from .main import CLIError, add_common
from .resources import display_name, parse_targets, refuse_names_across_namespaces


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wait", help="wait for a condition on objects")
    p.add_argument("targets", nargs="*", metavar="KIND/NAME")
    p.add_argument("--for", dest="for_", required=True,
                   help="condition=COND[=VALUE], delete, create or jsonpath='{PATH}'=VALUE")
    p.add_argument("--timeout", default="30s", help="give up after this long (default 30s; 0: check once)")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--all", action="store_true")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    add_common(p)
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Waiter:
    """What to wait for: a predicate over the object (None: it does not exist)."""

    kind: str  # condition, delete, create, jsonpath
    check: Callable[[Any], bool]


def condition_met(doc: dict[str, Any], ctype: str, value: str) -> bool:
    """kubectl's isConditionMet over the object's JSON form."""
    md = doc.get("metadata") or {}
    status = doc.get("status") or {}
    for c in status.get("conditions") or []:
        if str(c.get("type", "")).lower() != ctype.lower():
            continue
        observed = c.get("observedGeneration")
        if observed is not None and md.get("generation") is not None and observed < md["generation"]:
            continue
        return str(c.get("status", "")).lower() == value.lower()
    return False


def parse_jsonpath_for(text: str) -> tuple[str, str | None]:
    """`{.status.phase}=Running` into (path, value); no `=VALUE` means "the path has a value"."""
    text = text.strip()
    if text[:1] in ("'", '"'):  # quotes no shell removed: `'{.status.phase}'=Running`
        end = text.find(text[0], 1)
        if end > 0:
            text = text[1:end] + text[end + 1:]
    if text.startswith("{"):
        end = text.find("}")
        if end < 0:
            raise CLIError(f"unable to parse jsonpath expression {text!r}: missing }}")
        path, rest = text[:end + 1], text[end + 1:]
        if rest and not rest.startswith("="):
            raise CLIError(f"unable to parse jsonpath expression {text!r}")
        value = rest[1:] if rest else None
    else:
        path, sep, value_text = text.partition("=")
        value = value_text if sep else None
        path = "{" + path + "}"
    if value is not None and len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    jsonpath.parse_template(path)
    return path, value


def parse_for(text: str) -> Waiter:
    kind, _, arg = text.partition("=")
    kind = kind.lower()
    if kind == "delete":
        return Waiter("delete", lambda obj: obj is None)
    if kind == "create":
        return Waiter("create", lambda obj: obj is not None)
    if kind == "condition":
        if not arg:
            raise CLIError("--for=condition requires a condition name, e.g. --for=condition=Complete")
        ctype, sep, value = arg.partition("=")
        value = value if sep else "true"
        return Waiter("condition", lambda obj: obj is not None and condition_met(manifest.to_dict(obj), ctype, value))
    if kind == "jsonpath":
        path, want = parse_jsonpath_for(arg)

        def check(obj: Any) -> bool:
            if obj is None:
                return False
            found = jsonpath.values(path, manifest.to_dict(obj))
            if want is None:
                return bool(found)
            return any(jsonpath.format_value(v) == want for v in found)

        return Waiter("jsonpath", check)
    raise CLIError(f"unrecognized condition: {text!r} (use condition=COND, delete, create or jsonpath=...)")


async def wait_for(factory: Factory, info: KindInfo, name: str, namespace: str, waiter: Waiter,
                   uid: str = "") -> bool:
    """Follow one object until the waiter's check holds; False if it vanished for good first."""
    states = object_states(factory.client(), info.kind, name, namespace)
    async with contextlib.aclosing(states):
        async for obj in states:
            if waiter.kind == "delete" and obj is not None and uid and obj.metadata.uid != uid:
                return True  # the object we waited for is gone; a new one took its name
            if waiter.check(obj):
                return True
            if obj is None and waiter.kind not in ("delete", "create"):
                raise errors.NotFound(f'{info.qualified_plural} "{name}" not found')
    return False


async def _targets(args: argparse.Namespace, factory: Factory, waiter: Waiter) -> list[tuple[KindInfo, str, str, str]]:
    """(kind, name, namespace, uid) to wait on; named objects that do not exist are errors, except
    for --for=delete (already done) and --for=create (waited for)."""
    client = factory.client()
    out: list[tuple[KindInfo, str, str, str]] = []
    if not args.targets:
        raise CLIError("resource(s) were provided, but no name was specified" if args.selector else
                       "you must provide one or more resources by argument or filename")
    parsed = parse_targets(args.targets)
    refuse_names_across_namespaces(parsed, args.all_namespaces)
    for info, name in parsed:
        ns = factory.default_namespace if info.namespaced else ""
        if name is None:
            if not (args.all or args.selector):
                raise CLIError("resource(s) were provided, but no name was specified")
            if args.all_namespaces and info.namespaced:
                ns = ""
            items, _ = await client.list(info.kind, ns, args.selector)
            if not items:
                raise CLIError("no matching resources found")
            out.extend((info, o.metadata.name, o.metadata.namespace, o.metadata.uid) for o in items)
            continue
        if waiter.kind == "create":
            out.append((info, name, ns, ""))
            continue
        try:
            obj = await client.get(info.kind, name, ns)
        except errors.NotFound:
            if waiter.kind == "delete":
                continue
            raise
        out.append((info, name, ns, obj.metadata.uid))
    return out


async def run(args: argparse.Namespace, factory: Factory) -> int:
    waiter = parse_for(args.for_)
    timeout = durations.parse(args.timeout)
    targets = await _targets(args, factory, waiter)
    failed = False

    async def one(info: KindInfo, name: str, ns: str, uid: str) -> None:
        nonlocal failed
        label = display_name(info, name)
        try:
            if timeout <= 0:  # check once, as kubectl's --timeout=0
                try:
                    obj = await factory.client().get(info.kind, name, ns)
                except errors.NotFound:
                    obj = None
                if not waiter.check(obj):
                    raise TimeoutError
            else:
                async with asyncio.timeout(timeout):
                    await wait_for(factory, info, name, ns, waiter, uid)
        except TimeoutError:
            factory.error_line(f"error: timed out waiting for the condition on {info.plural}/{name}")
            failed = True
            return
        except errors.NotFound as err:
            factory.error_line(f"Error from server (NotFound): {err.message}")
            failed = True
            return
        factory.print(f"{label} condition met")

    async def many(info: KindInfo, ns: str, group: list[tuple[KindInfo, str, str, str]]) -> None:
        """Several objects of one kind and namespace: one watch for all of them."""
        nonlocal failed
        pending = {name: uid for _, name, _, uid in group}
        try:
            async with asyncio.timeout(timeout):
                watch = states(factory.client(), info.kind, ns)
                async with contextlib.aclosing(watch):
                    async for current in watch:
                        for name, uid in list(pending.items()):
                            obj = current.get((ns, name))
                            if waiter.kind == "delete" and obj is not None and uid and obj.metadata.uid != uid:
                                obj = None
                            if waiter.check(obj):
                                del pending[name]
                                factory.print(f"{display_name(info, name)} condition met")
                        if not pending:
                            return
        except TimeoutError:
            for name in sorted(pending):
                factory.error_line(f"error: timed out waiting for the condition on {info.plural}/{name}")
            failed = True

    groups: dict[tuple[str, str], list[tuple[KindInfo, str, str, str]]] = {}
    for t in targets:
        groups.setdefault((t[0].kind, t[2]), []).append(t)
    jobs: list[Coroutine[Any, Any, None]] = []
    for (_kind, ns), group in groups.items():
        if len(group) == 1 or timeout <= 0:
            jobs.extend(one(*t) for t in group)
        else:
            jobs.append(many(group[0][0], ns, group))
    await asyncio.gather(*jobs)
    return 1 if failed else 0
