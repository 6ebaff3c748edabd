"""The root of `ketch`: global flags, one subcommand per verb module, one-line errors.

Each verb module (cmd_*.py) has `register(subparsers)`, which adds its parser and sets
`run=<async function(args, factory) -> int>`. Failures print one line on stderr, as kubectl
does (`Error from server (NotFound): jobs.batch "pi" not found`, `error: ...` for client-side
errors), and exit 1. `execute()` is the whole command minus the process: tests call it with a
Factory of their own and read what it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import traceback
from typing import Any, NoReturn

from ketch.api import errors
from ketch.api.kinds import UnknownKindError

from .factory import Factory
from .suggestions import near_kinds, suggest
from .terminal import escape

VERBS = (
    "apply", "create", "get", "describe", "delete", "patch", "label", "wait", "logs", "rollout", "nodes",
    "top", "events", "version", "auth", "local", "config", "token", "taint", "apiversions", "completion",
)


class CLIError(Exception):
    """A user error the CLI reports as `error: <message>`."""


class UsageError(CLIError):
    """Bad flags or arguments (argparse's complaints), reported on one line."""


class UnknownCommandError(UsageError):
    """An unknown verb, reported as cobra does: `unknown command "gte" for "ketch"`, then
    `Did you mean this?` and the near verbs on lines of their own."""

    def __init__(self, message: str, suggestions: list[str]) -> None:
        super().__init__(message)
        self.suggestions = suggestions


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise instead of printing usage and exiting 2, and a verb's flags may
    come anywhere among its words (`get lease -n kube-system NAME`), as kubectl's do."""

    _intermixing = False

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def parse_known_args(  # type: ignore[override]  # argparse overloads it on namespace
            self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        # A parser with sub-verbs routes its words to them; only the leaf parsers intermix.
        leaf = not any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._get_positional_actions())
        if not leaf or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls parse_known_args itself
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in (action.choices or {}):
            choices = list(action.choices or {})
            raise UnknownCommandError(f'unknown command "{value}" for "{self.prog}"', suggest(value, choices))
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ketch", description="Run Kubernetes-style workloads as processes.")
    parser.add_argument("--server", "-s", default="",
                        help="API server HOST:PORT[,HOST:PORT] (default $KETCH_SERVER or 127.0.0.1:6443)")
    parser.add_argument("--namespace", "-n", default="", help="namespace (default: the context's, else default)")
    parser.add_argument("--kubeconfig", default="", metavar="FILE",
                        help="the client config (default $KETCH_CONFIG, else ~/.ketch/config)")
    parser.add_argument("--context", default="", help="the kubeconfig context to use (default: current-context)")
    parser.add_argument("--token", default="",
                        help="a bearer token for the API server, instead of the user's credentials")
    parser.add_argument("--as", dest="as_user", default="", metavar="USER",
                        help="act as this user (impersonation; the server checks you may)")
    parser.add_argument("--as-group", dest="as_groups", action="append", default=[], metavar="GROUP",
                        help="act as a member of this group (repeatable; needs --as)")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    for verb in VERBS:
        try:
            module = importlib.import_module(f"ketch.cli.cmd_{verb}")
        except ModuleNotFoundError as err:
            if err.name == f"ketch.cli.cmd_{verb}":
                continue
            raise
        module.register(sub)
    from .examples import attach

    attach(parser)
    return parser


def format_error(err: BaseException, server: str = "") -> str:
    """The one line a failure prints, in kubectl's words."""
    if isinstance(err, errors.Unavailable):
        detail = err.message.removeprefix("the server is not reachable: ")
        # kubectl's two sentences (cmdutil.StandardErrorMessage), without the "error: " prefix.
        if server and "connection refused" in detail.lower():
            return f"The connection to the server {server} was refused - did you specify the right host or port?"
        return f"Unable to connect to the server: {detail}"
    if isinstance(err, errors.Unauthorized):
        return f"error: You must be logged in to the server ({err.reason or 'Unauthorized'})"
    if isinstance(err, errors.Invalid):
        return err.message  # kubectl prints `The Job "x" is invalid: ...` without a prefix
    if isinstance(err, errors.Timeout):
        return f"error: the Ketch API server at {server} did not answer in time: {err.message}"
    if isinstance(err, errors.StatusError):
        return f"Error from server ({err.reason}): {err.message}"
    if isinstance(err, UnknownKindError):
        return f"error: {err}"
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"error: {err.strerror}{where}"
    text = str(err) or type(err).__name__
    return text if text.startswith("error: ") else f"error: {text}"


def suggestions_for(err: BaseException) -> list[str]:
    """The near names for an unknown verb or kind (kubectl has them for verbs; kinds get the same)."""
    if isinstance(err, UnknownCommandError):
        return err.suggestions
    if isinstance(err, UnknownKindError) and isinstance(err.args[0], str):
        return near_kinds(err.args[0])
    return []


def one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


async def execute(argv: list[str], factory: Factory | None = None) -> int:
    """Parse argv, run the verb, print any failure as one line; returns the exit code."""
    factory = factory or Factory()
    try:
        parser = build_parser()
        args = parser.parse_args(normalize_bools(argv))
        if not getattr(args, "run", None):
            parser.print_help(factory.out)
            return 0
        if args.server and not factory.server:
            factory.server = args.server
        if args.namespace and not factory.namespace:
            factory.namespace = args.namespace
        for flag in ("kubeconfig", "context", "token"):
            if getattr(args, flag, "") and not getattr(factory, flag):
                setattr(factory, flag, getattr(args, flag))
        if args.as_groups and not args.as_user:
            raise UsageError("requesting groups to impersonate needs a user to impersonate too: add --as USER")
        factory.impersonate(args.as_user, args.as_groups)
        factory.namespace_given = bool(args.namespace)
        try:
            return int(await args.run(args, factory) or 0)
        finally:
            await factory.close()
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    except BrokenPipeError:
        return 0
    except (errors.StatusError, UnknownKindError, CLIError, ValueError, OSError) as err:  # ConfigError is a ValueError
        print(escape(one_line(format_error(err, factory.server_address))), file=factory.err)
        near = suggestions_for(err)
        if near:
            print(escape("\nDid you mean this?\n" + "".join(f"\t{n}\n" for n in near)), file=factory.err)
        return 1
    except Exception as err:  # a bug: still one line, with the traceback on request
        if os.environ.get("KETCH_DEBUG"):
            traceback.print_exc(file=factory.err)
        print(escape(one_line(f"error: internal error: {type(err).__name__}: {err}")), file=factory.err)
        return 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = asyncio.run(execute(argv))
    except KeyboardInterrupt:
        code = 130
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`ketch get pods | head`): not an error, and no traceback at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(code)


# Boolean flags that take kubectl's `--flag=false` form (see add_bool_flag).
BOOL_FLAGS: set[str] = set()
_FALSE = ("false", "0", "no", "f")
_TRUE = ("true", "1", "yes", "t")


def add_bool_flag(p: argparse.ArgumentParser, name: str, default: bool, help: str, short: str = "") -> None:
    """`--name`, `--name=true|false` (as kubectl writes booleans) and `--no-name`, without ever
    swallowing the next word as a value."""
    dest = name.lstrip("-").replace("-", "_")
    flags = [name, short] if short else [name]
    p.add_argument(*flags, dest=dest, action="store_true", default=default, help=help)
    p.add_argument("--no-" + name.lstrip("-"), dest=dest, action="store_false", help=argparse.SUPPRESS)
    BOOL_FLAGS.add(name)


def normalize_bools(argv: list[str]) -> list[str]:
    """`--wait=false` to `--no-wait`, `--wait=true` to `--wait`, for the flags add_bool_flag made."""
    out = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        if sep and flag in BOOL_FLAGS:
            if value.lower() in _FALSE:
                out.append("--no-" + flag.lstrip("-"))
                continue
            if value.lower() in _TRUE:
                out.append(flag)
                continue
            raise UsageError(f'invalid argument "{value}" for "{flag}" flag: use true or false')
        out.append(arg)
    return out


def add_common(p: argparse.ArgumentParser, server: bool = True) -> None:
    """Global flags accepted after the verb as well (server=False: but --server, which the verb
    uses for itself, as `token create --server`; the address then goes before the verb)."""
    if server:
        p.add_argument("--server", "-s", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--namespace", "-n", default=argparse.SUPPRESS, help="namespace")
    p.add_argument("--kubeconfig", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--context", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--as", dest="as_user", default=argparse.SUPPRESS, metavar="USER", help=argparse.SUPPRESS)
    p.add_argument("--as-group", dest="as_groups", action="append", default=argparse.SUPPRESS, metavar="GROUP",
                   help=argparse.SUPPRESS)


if __name__ == "__main__":
    main()
