"""Turning what the user typed (`jobs`, `job/pi`, `cj tick`) into kinds and names."""

from __future__ import annotations

from ketch.api.kinds import KindInfo, resolve


def parse_targets(args: list[str]) -> list[tuple[KindInfo, str | None]]:
    """`KIND [NAME...]`, `KIND/NAME [KIND/NAME...]` or `KIND1,KIND2` to (kind, name) pairs."""
    if not args:
        raise ValueError("you must specify the type of resource to get")
    first = args[0]
    if "/" in first:
        out: list[tuple[KindInfo, str | None]] = []
        for a in args:
            kind, _, name = a.partition("/")
            if not name:
                raise ValueError(f"there is no need to specify a resource type as a separate argument when "
                                 f"passing arguments in resource/name form (e.g. 'ketch get {a}')")
            out.append((resolve(kind), name))
        return out
    kinds = [resolve(k) for k in first.split(",") if k]
    names = args[1:]
    if names:
        if len(kinds) > 1:
            raise ValueError("names may only be given with a single resource type")
        return [(kinds[0], n) for n in names]
    return [(k, None) for k in kinds]


def display_name(info: KindInfo, name: str) -> str:
    """`job.batch/pi`, `pod/x`, as kubectl prints what it acted on."""
    prefix = f"{info.singular}.{info.group}" if info.group else info.singular
    return f"{prefix}/{name}"
