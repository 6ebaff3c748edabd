"""The root of `ketch`: global flags, one subcommand per verb module, one-line errors.

Each verb module (cmd_*.py) has `register(subparsers)`, which adds its parser and sets
`run=<async function(args, factory) -> int>`. Failures print one line on stderr, as kubectl
does (`Error from server (NotFound): jobs.batch "pi" not found`), and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

from ketch.api import errors
from ketch.api.kinds import UnknownKindError

from .factory import Factory

VERBS = (
    "apply", "create", "get", "describe", "delete", "patch", "wait", "logs", "rollout", "nodes",
    "top", "events", "version", "local", "label",
)


class CLIError(Exception):
    """A user error the CLI reports as `error: <message>`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ketch", description="Run Kubernetes-style workloads as processes.")
    parser.add_argument("--server", "-s", default="",
                        help="API server HOST:PORT (default $KETCH_SERVER or 127.0.0.1:6443)")
    parser.add_argument("--namespace", "-n", default="", help="namespace (default: default)")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"ketch.cli.cmd_{verb}")
        except ModuleNotFoundError as err:
            if err.name == f"ketch.cli.cmd_{verb}":
                continue
            raise
        module.register(sub)
    return parser


def _format_error(err: BaseException) -> str:
    if isinstance(err, errors.Unavailable):
        return f"error: {err.message}"
    if isinstance(err, errors.StatusError):
        return f"Error from server ({err.reason}): {err.message}"
    if isinstance(err, UnknownKindError):
        return f"error: {err}"
    return f"error: {err}"


async def _run(args: argparse.Namespace, factory: Factory) -> int:
    try:
        return int(await args.run(args, factory) or 0)
    finally:
        await factory.close()


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    # Global flags may come after the verb too (`ketch get pods -n x`): parse them anywhere.
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        sys.exit(2)
    factory = Factory(server=args.server, namespace=args.namespace)
    try:
        code = asyncio.run(_run(args, factory))
    except KeyboardInterrupt:
        code = 130
    except (errors.StatusError, UnknownKindError, CLIError, ValueError, OSError) as err:
        print(_format_error(err).replace("\n", " "), file=sys.stderr)
        code = 1
    sys.exit(code)


def add_common(p: argparse.ArgumentParser) -> None:
    """Global flags accepted after the verb as well."""
    p.add_argument("--server", "-s", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--namespace", "-n", default=argparse.SUPPRESS, help="namespace")


if __name__ == "__main__":
    main()
