"""Turning what the user typed (`jobs`, `job/pi`, `cj tick`, `jobs.batch`) into kinds and names."""

from __future__ import annotations

from ketch.api.kinds import KindInfo, UnknownKindError, resolve


def resolve_kind(name: str) -> KindInfo:
    """Any kubectl spelling of a kind: plural, singular, short, `Kind`, `jobs.batch`, `job.batch`,
    and RESOURCE.VERSION.GROUP (`jobs.v1.batch`), as kubectl's ParseResourceArg reads them."""
    try:
        return resolve(name)
    except UnknownKindError:
        base, dot, rest = name.partition(".")
        if not dot:
            raise
        try:
            info = resolve(base)
        except UnknownKindError:
            raise UnknownKindError(name) from None
        version = info.api_version.rpartition("/")[2]
        if info.group and rest in (info.group, f"{version}.{info.group}"):
            return info
        raise


def parse_targets(args: list[str]) -> list[tuple[KindInfo, str | None]]:
    """`KIND [NAME...]`, `KIND/NAME [KIND/NAME...]` or `KIND1,KIND2` to (kind, name) pairs."""
    if not args:
        raise ValueError("you must specify the type of resource to get. Use \"ketch api-resources\" for "
                         "a complete list of supported resources")
    first = args[0]
    if "/" in first:
        out: list[tuple[KindInfo, str | None]] = []
        for a in args:
            if "/" not in a:
                raise ValueError("there is no need to specify a resource type as a separate argument when "
                                 "passing arguments in resource/name form (e.g. 'ketch get resource/<name>' "
                                 "instead of 'ketch get resource resource/<name>'")
            kind, _, name = a.partition("/")
            if not name:
                raise ValueError(f"arguments in resource/name form must have a single resource and name: {a}")
            out.append((resolve_kind(kind), name))
        return out
    kinds = [resolve_kind(k) for k in first.split(",") if k]
    names = args[1:]
    if any("/" in n for n in names):
        raise ValueError("there is no need to specify a resource type as a separate argument when passing "
                         "arguments in resource/name form")
    if names:
        if len(kinds) > 1:
            raise ValueError("names may only be given with a single resource type")
        return [(kinds[0], n) for n in names]
    return [(k, None) for k in kinds]


def refuse_names_across_namespaces(targets: list[tuple[KindInfo, str | None]], all_namespaces: bool) -> None:
    """-A with a named object of a namespaced kind is refused, as kubectl's builder refuses it
    (rather than looking in one namespace)."""
    if all_namespaces and any(name is not None and info.namespaced for info, name in targets):
        raise ValueError("a resource cannot be retrieved by name across all namespaces")


def parse_one(text: str, default_kind: str = "") -> tuple[KindInfo, str]:
    """`KIND/NAME` (or a bare NAME of default_kind) for verbs that act on one object."""
    kind, sep, name = text.partition("/")
    if not sep:
        if not default_kind:
            raise ValueError(f'arguments must be given in resource/name form (e.g. "job/pi"), got "{text}"')
        return resolve_kind(default_kind), text
    if not name:
        raise ValueError(f"arguments in resource/name form must have a single resource and name: {text}")
    return resolve_kind(kind), name


def display_name(info: KindInfo, name: str) -> str:
    """`job.batch/pi`, `pod/x`, as kubectl prints what it acted on."""
    prefix = f"{info.singular}.{info.group}" if info.group else info.singular
    return f"{prefix}/{name}"


def quoted_name(info: KindInfo, name: str) -> str:
    """`job.batch "pi"`, as `kubectl delete` prints it."""
    prefix = f"{info.singular}.{info.group}" if info.group else info.singular
    return f'{prefix} "{name}"'


