"""`ketch exec POD [-c CONTAINER] -- CMD [ARGS...]`: a command in a running pod's container.

The API server authorizes it as kubectl exec (create on pods/exec) and proxies it to the agent of
the pod's node, which runs the command as the container (its user and groups, working dir,
environment, cgroup). stdout and stderr come back apart, as they are written; the CLI exits with
the command's exit code and, when it is not 0, says so on stderr as kubectl does
(`command terminated with exit code N`). There is no stdin and no tty: -i and -t are refused.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from .factory import Factory
from .main import CLIError, add_common


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("exec", help="run a command in a running pod's container")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", default="", help="the container (default: the pod's only one)")
    p.add_argument("-i", "--stdin", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-t", "--tty", action="store_true", help=argparse.SUPPRESS)
    add_common(p)
    p.set_defaults(run=run, dash_args=[])  # dash_args: CMD ARGS, the words after `--` (see main.parse_args)


def _write(stream: TextIO, data: bytes) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", errors="replace"))
        stream.flush()


async def run(args: argparse.Namespace, factory: Factory) -> int:
    if args.stdin or args.tty:
        raise CLIError("-i and -t are not supported: ketch exec forwards no stdin and has no tty")
    if not args.dash_args:
        raise CLIError("you must specify at least one command for the container: ketch exec POD -- CMD [ARGS...]")
    name = args.pod.removeprefix("pod/").removeprefix("pods/")
    stream = factory.client().exec(name, factory.default_namespace, list(args.dash_args), container=args.container)
    code: int | None = None
    try:
        async for out in stream:
            if out.stdout:
                _write(factory.out, out.stdout)
            if out.stderr:
                _write(factory.err, out.stderr)
            if out.HasField("exit_code"):
                code = out.exit_code
    finally:
        await stream.aclose()
    if code is None:
        raise CLIError("the command's stream ended without its exit code")
    if code != 0:
        factory.error_line(f"command terminated with exit code {code}")
    return code
