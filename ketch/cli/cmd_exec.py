"""`ketch exec POD [-c CONTAINER] -- CMD [ARGS...]`: a command in a running pod's container.

The API server authorizes it as kubectl exec (create on pods/exec) and proxies it to the agent of
the pod's node, which runs the command as the container (its user and groups, working dir,
environment, cgroup). stdout and stderr come back apart, as they are written; the CLI exits with
the command's exit code and, when it is not 0, says so on stderr as kubectl does
(`command terminated with exit code N`). With -i (--stdin) the CLI's standard input is streamed
to the command as it is read, and its end closes the command's stdin (`echo hi | ketch exec -i
POD -- cat`). There is no tty: -t is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from collections.abc import AsyncIterator
from typing import TextIO

from .factory import Factory
from .main import CLIError, add_common


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("exec", help="run a command in a running pod's container")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", default="", help="the container (default: the pod's only one)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command (its end closes it)")
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


CHUNK = 64 * 1024


async def read_input(stdin: TextIO) -> AsyncIterator[bytes]:
    """stdin's bytes as they come, read by a daemon thread: a pipe, a file or a terminal alike,
    and a read still blocked when the command has exited does not keep the CLI from exiting."""
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (tests hand in a StringIO)
        if data := stdin.read().encode():
            yield data
        return
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    more = threading.Semaphore(4)  # at most a few chunks read ahead of the server

    def pump() -> None:
        while True:
            more.acquire()
            try:
                data = os.read(fd, CHUNK)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(chunks.put_nowait, data)
            if not data:
                return

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    while data := await chunks.get():
        more.release()
        yield data


async def run(args: argparse.Namespace, factory: Factory) -> int:
    if args.tty:
        raise CLIError("-t is not supported: ketch exec has no tty (use -i for stdin)")
    if not args.dash_args:
        raise CLIError("you must specify at least one command for the container: ketch exec POD -- CMD [ARGS...]")
    name = args.pod.removeprefix("pod/").removeprefix("pods/")
    stream = factory.client().exec(name, factory.default_namespace, list(args.dash_args), container=args.container,
                                   stdin=read_input(factory.stdin) if args.stdin else None)
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
