"""`ketch api-versions`: the group/versions served, one per line, sorted, as kubectl prints them."""

from __future__ import annotations

import argparse

from ketch.api.kinds import SERVED

from .factory import Factory
from .main import add_common


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api-versions", help="print the group/versions the server serves")
    add_common(p)
    p.set_defaults(run=run)


def versions() -> list[str]:
    return sorted({info.api_version for info in SERVED})


async def run(args: argparse.Namespace, factory: Factory) -> int:
    for version in versions():
        factory.print(version)
    return 0
