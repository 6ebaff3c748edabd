"""The root of `ketch`: global flags, one subcommand per verb module, one-line errors.

Each verb module (cmd_*.py) has `register(subparsers)`, which adds its parser and sets
`run=<function(args, factory)>` returning the exit code, or (usually: `async def run`) a
coroutine that returns it. Failures print one line on stderr, as kubectl does (`Error from
server (NotFound): jobs.batch "pi" not found`, `error: ...` for client-side errors), and exit 1.
`execute()` is the whole command minus the process: tests call it with a Factory of their own
and read what it wrote.

Start-up cost (issue 14): a command imports only its own verb's module, found in VERBS from
the first word of argv that is not a global flag (`ketch --help`, no verb, or an unknown word
import them all). So, for a new verb:
  - add `"verb": "module"` to VERBS (ketch/cli/cmd_<module>.py; one module may serve several verbs);
  - keep the module's top-level imports light: argparse, `.main`, `.factory`, `ketch.api.errors`
    are free; grpc, protobuf (`ketch.api.kinds`, `ketch.v1`, `ketch.client.*`), yaml,
    `.printers`, `.describe` cost tens of milliseconds each: import them inside `run` (or in
    functions only that verb calls) unless the verb always needs them anyway;
  - a `run` that needs no server may be a plain function: then no event loop (asyncio) is loaded;
  - what every command loads (factory, kubeconfig, kinds, errors, the client) defines no
    dataclasses (each costs ~1 ms to define); a kind's message module is imported when the kind
    is first used (ketch.api.kinds reads the generated ketch/v1/kinds_index.py); the kubeconfig's
    parse is cached as JSON beside it (ketch/client/parsecache.py), so PyYAML is not loaded;
  - a verb that takes a command after `--` sets the default `dash_args` (see parse_args).
`bench/cli.py` measures the result; `python -X importtime -m ketch.cli.main VERB ...` shows what
loads, and tests/unit/cli/test_lazy_imports.py keeps `version --client` and `get` lean.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Awaitable
from typing import Any, NoReturn

from .factory import Factory
from .terminal import escape

# Each verb, and the module (ketch/cli/cmd_<module>.py) that registers it.
VERBS: dict[str, str] = {
    "apply": "apply", "create": "create", "get": "get", "api-resources": "get", "describe": "describe",
    "delete": "delete", "patch": "patch", "label": "label", "annotate": "label", "wait": "wait", "logs": "logs",
    "exec": "exec", "run": "run", "rollout": "rollout", "cordon": "nodes", "uncordon": "nodes", "drain": "nodes",
    "top": "top",
    "events": "events", "version": "version", "auth": "auth", "local": "local", "config": "config", "token": "token",
    "taint": "taint", "api-versions": "apiversions", "completion": "completion",
    "diff": "diff", "edit": "edit", "explain": "explain", "replace": "replace",
}


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


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil: $COLUMNS, else stdout's
    terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


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
        if args is not None:
            args = self._explicit_bools(list(args))
        self._intermixing = True  # parse_known_intermixed_args calls parse_known_args itself
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _explicit_bools(self, args: list[str]) -> list[str]:
        """`--flag=true|false` (and `-f=true`) for every boolean flag, as pflag reads them
        (`--ignore-not-found=true`, `--overwrite=false`): true is the bare flag, false its hidden
        opposite (`--no-flag`, made here when no add_bool_flag made it)."""
        out: list[str] = []
        for n, arg in enumerate(args):
            if arg == "--":
                return out + args[n:]
            flag, sep, value = arg.partition("=")
            action = self._option_string_actions.get(flag) if sep and flag.startswith("-") else None
            if not isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
                out.append(arg)
                continue
            if value.lower() not in _TRUE + _FALSE:
                raise UsageError(f'invalid argument "{value}" for "{flag}" flag: use true or false')
            if (value.lower() in _TRUE) == action.const:
                out.append(flag)
                continue
            opposite = "--no-" + action.dest.replace("_", "-")
            if opposite not in self._option_string_actions:
                self.add_argument(opposite, dest=action.dest, action="store_const", const=not action.const,
                                  help=argparse.SUPPRESS)
            out.append(opposite)
        return out

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter on every add_argument (to check metavars), and one without a
        # width imports shutil (with bz2, lzma: ~3 ms of every command) only to ask for this.
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)  # type: ignore[call-arg]

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in (action.choices or {}):
            from .suggestions import suggest

            choices = list(action.choices or {})
            raise UnknownCommandError(f'unknown command "{value}" for "{self.prog}"', suggest(value, choices))
        super()._check_value(action, value)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for argv's verb only (every verb when argv is None or names none we know)."""
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
    verb = None if argv is None else verb_of(argv, parser)
    modules = [VERBS[verb]] if verb in VERBS else list(dict.fromkeys(VERBS.values()))
    for name in modules:
        try:
            module = importlib.import_module(f"ketch.cli.cmd_{name}")
        except ModuleNotFoundError as err:
            if err.name == f"ketch.cli.cmd_{name}":
                continue
            raise
        module.register(sub)
    words = argv[:argv.index("--")] if argv is not None and "--" in argv else argv
    if words is None or "-h" in words or "--help" in words:  # examples show only in help
        from .examples import attach

        attach(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argv's flags; a verb whose parser sets the default `dash_args` gets the words after `--`
    there, verbatim (argparse's own `--` handling is lost across subparsers)."""
    if "--" in argv:
        cut = argv.index("--")
        args = parser.parse_args(normalize_bools(argv[:cut]))
        if hasattr(args, "dash_args"):
            args.dash_args = argv[cut + 1:]
            return args
    return parser.parse_args(normalize_bools(argv))


def verb_of(argv: list[str], parser: argparse.ArgumentParser) -> str | None:
    """The first word that is neither a global flag nor its value; None at `--help` before it."""
    takes_value = {flag for action in parser._actions if action.nargs != 0 for flag in action.option_strings}
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--"):
            return None
        if word in takes_value:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def format_error(err: BaseException, server: str = "") -> str:
    """The one line a failure prints, in kubectl's words."""
    from ketch.api import errors
    from ketch.api.kinds import UnknownKindError

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
    from ketch.api.kinds import UnknownKindError

    from .suggestions import near_kinds

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
    started = start(argv, factory)
    return started if isinstance(started, int) else await finish(started, factory)


def start(argv: list[str], factory: Factory) -> int | Awaitable[Any]:
    """Parse argv and call the verb: its exit code if it ran to the end without an event loop,
    else the coroutine that finish() awaits."""
    try:
        parser = build_parser(argv)
        args = parse_args(parser, argv)
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
        result = args.run(args, factory)
        return result if hasattr(result, "__await__") else int(result or 0)
    except Exception as err:
        return report(err, factory)
    except KeyboardInterrupt:
        return 130


async def finish(running: Awaitable[Any], factory: Factory) -> int:
    """Await a verb's coroutine, close the factory's client, report a failure as one line."""
    import asyncio

    try:
        try:
            return int(await running or 0)
        finally:
            await factory.close()
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    except Exception as err:
        return report(err, factory)


def report(err: Exception, factory: Factory) -> int:
    """Print a failure as the one line kubectl would (and the near names of an unknown one); the exit code."""
    from ketch.api import errors
    from ketch.api.kinds import UnknownKindError

    if isinstance(err, BrokenPipeError):
        return 0
    if isinstance(err, (errors.StatusError, UnknownKindError, CLIError, ValueError, OSError)):  # ConfigError too
        print(escape(one_line(format_error(err, factory.server_address))), file=factory.err)
        near = suggestions_for(err)
        if near:
            print(escape("\nDid you mean this?\n" + "".join(f"\t{n}\n" for n in near)), file=factory.err)
        return 1
    # A bug: still one line, with the traceback on request.
    if os.environ.get("KETCH_DEBUG"):
        import traceback

        traceback.print_exception(err, file=factory.err)
    print(escape(one_line(f"error: internal error: {type(err).__name__}: {err}")), file=factory.err)
    return 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    factory = Factory()
    started = start(argv, factory)
    if isinstance(started, int):
        code = started
    else:
        import asyncio  # only verbs that wait on something pay for the event loop

        try:
            code = asyncio.run(finish(started, factory))
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
