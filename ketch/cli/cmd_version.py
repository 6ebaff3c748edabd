"""`ketch version [--client] [-o json|yaml]`."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Coroutine
from typing import Any

from ketch import __version__
from ketch.api import errors

from .factory import Factory
from .main import add_common

CLIENT_VERSION = f"v{__version__}"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", help="print the client and server versions")
    p.add_argument("--client", action="store_true", help="the client version only")
    p.add_argument("-o", "--output", default="", choices=["", "json", "yaml"])
    add_common(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, factory: Factory) -> int | Coroutine[Any, Any, int]:
    """`--client` needs no server, hence no event loop: it answers at once (a coroutine otherwise)."""
    return show(args, factory, None) if args.client else with_server(args, factory)


async def with_server(args: argparse.Namespace, factory: Factory) -> int:
    try:
        v = await factory.client().version()
    except errors.StatusError as err:
        show(args, factory, None)
        raise err
    return show(args, factory, {"gitVersion": v.git_version, "platform": v.platform,
                                "pythonVersion": v.python_version, "kubernetesSemantics": v.kubernetes_semantics})


def show(args: argparse.Namespace, factory: Factory, server_info: dict[str, str] | None) -> int:
    client_info = {"gitVersion": CLIENT_VERSION, "platform": f"{sys.platform}/{platform.machine()}",
                   "pythonVersion": platform.python_version()}
    if args.output in ("json", "yaml"):
        doc: dict[str, dict[str, str]] = {"clientVersion": client_info}
        if server_info:
            doc["serverVersion"] = server_info
        print(json.dumps(doc, indent=2), file=factory.out)
    else:
        factory.print(f"Client Version: {CLIENT_VERSION}")
        if server_info:
            semantics = server_info["kubernetesSemantics"]
            factory.print(f"Server Version: {server_info['gitVersion']} (Kubernetes {semantics} semantics)")
    return 0
