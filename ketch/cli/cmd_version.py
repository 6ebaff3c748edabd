"""`ketch version [--client] [-o json|yaml]`."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from ketch import __version__
from ketch.api import errors

from .factory import Factory
from .main import add_common

CLIENT_VERSION = f"v{__version__}"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the client and server versions")
    p.add_argument("--client", action="store_true", help="the client version only")
    p.add_argument("-o", "--output", default="", choices=["", "json", "yaml"])
    add_common(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    client_info = {"gitVersion": CLIENT_VERSION, "platform": f"{sys.platform}/{platform.machine()}",
                   "pythonVersion": platform.python_version()}
    server_info = None
    error = None
    if not args.client:
        try:
            v = await factory.client().version()
            server_info = {"gitVersion": v.git_version, "platform": v.platform, "pythonVersion": v.python_version,
                           "kubernetesSemantics": v.kubernetes_semantics}
        except errors.StatusError as err:
            error = err
    if args.output in ("json", "yaml"):
        doc = {"clientVersion": client_info}
        if server_info:
            doc["serverVersion"] = server_info
        print(json.dumps(doc, indent=2), file=factory.out)
    else:
        factory.print(f"Client Version: {CLIENT_VERSION}")
        if server_info:
            semantics = server_info["kubernetesSemantics"]
            factory.print(f"Server Version: {server_info['gitVersion']} (Kubernetes {semantics} semantics)")
    if error is not None:
        raise error
    return 0
