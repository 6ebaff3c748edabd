"""`ketch logs POD|TYPE/NAME [-c CONTAINER] [-f] [--previous] [--tail N] [--since 10s] [--timestamps]
[--all-containers] [--prefix] [-l SELECTOR]`.

The API server proxies the stream to the agent of the pod's node (which keeps the logs of pods
already deleted for a while, so a name that no longer exists is still asked for). `job/NAME` and
`daemonset/NAME` pick one of their pods as kubectl does: scheduled before unscheduled, running
before pending, ready before not, more restarts first, older first.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from ketch.api import durations, errors, timeutil
from ketch.api.selectors import selector_string
from ketch.v1 import core_pb2

from .factory import Factory
from .main import CLIError, add_common
from .resources import display_name, resolve_kind
from .terminal import escape

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
PHASE_ORDER = {"Running": 0, "Unknown": 1, "Pending": 2}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="print the logs of a pod's container")
    p.add_argument("target", nargs="?", default="", metavar="POD|TYPE/NAME")
    p.add_argument("container_arg", nargs="?", default="", metavar="CONTAINER", help=argparse.SUPPRESS)
    p.add_argument("-c", "--container", default="")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-p", "--previous", action="store_true", help="the previous run of the container")
    p.add_argument("--tail", type=int, default=None,
                   help="lines from the end (-1: all; the default, or 10 with a selector, as kubectl)")
    p.add_argument("--since", default="", help="only newer than this duration, e.g. 10s, 5m")
    p.add_argument("--since-time", default="", help="only newer than this RFC 3339 time")
    p.add_argument("--timestamps", action="store_true")
    p.add_argument("--limit-bytes", type=int, default=0)
    p.add_argument("--all-containers", action="store_true")
    p.add_argument("--prefix", action="store_true", help="prefix each line with [pod/NAME/CONTAINER]")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--max-log-requests", type=int, default=5)
    add_common(p)
    p.set_defaults(run=run)


def logging_order(pod: core_pb2.Pod) -> tuple[Any, ...]:
    """kubectl's podutils.ByLogging as a sort key (smallest first = the pod to show)."""
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    restarts = max((cs.restart_count for cs in pod.status.container_statuses), default=0)
    created = timeutil.parse(pod.metadata.creation_timestamp) if pod.metadata.creation_timestamp else math.inf
    return (0 if pod.spec.node_name else 1, PHASE_ORDER.get(pod.status.phase, 3), 0 if ready else 1,
            -restarts, created, pod.metadata.name)


class _Sink:
    """Writes chunks to the output as bytes where it can, with an optional per-line prefix."""

    def __init__(self, factory: Factory, prefix: str = "") -> None:
        self.out = factory.out
        self.prefix = escape(prefix).encode()  # the header is ours; the log lines stay raw
        self.partial = b""

    def _write(self, data: bytes) -> None:
        buffer = getattr(self.out, "buffer", None)
        if buffer is not None:
            self.out.flush()
            buffer.write(data)
            buffer.flush()
        else:
            self.out.write(data.decode("utf-8", errors="replace"))
            self.out.flush()

    def write(self, data: bytes) -> None:
        if not self.prefix:
            self._write(data)
            return
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if lines:
            self._write(b"".join(self.prefix + line + b"\n" for line in lines))

    def close(self) -> None:
        if self.partial:
            self._write(self.prefix + self.partial + b"\n")
            self.partial = b""


async def _pods_of(factory: Factory, kind: str, name: str, namespace: str) -> list[Any]:
    client = factory.client()
    info = resolve_kind(kind)
    if info.kind == "Pod":
        return [await client.get("Pod", name, namespace)]
    if info.kind not in ("Job", "DaemonSet"):
        raise CLIError(f"cannot get the logs from {info.qualified_plural}: selector for {info.kind} "
                       "is not implemented")
    owner = await client.get(info.kind, name, namespace)
    pods, _ = await client.list("Pod", namespace, selector_string(owner.spec.selector))
    pods = [p for p in pods if any(r.uid == owner.metadata.uid for r in p.metadata.owner_references)] or pods
    if not pods:
        raise CLIError(f"no pods found for {display_name(info, name)}")
    return pods


def _containers(pod: core_pb2.Pod, args: argparse.Namespace, factory: Factory, announce: bool) -> list[str]:
    names = [c.name for c in pod.spec.containers]
    wanted = args.container or args.container_arg
    if args.all_containers:
        return [c.name for c in pod.spec.init_containers] + names
    if wanted:
        all_names = names + [c.name for c in pod.spec.init_containers]
        if wanted not in all_names:
            raise CLIError(f"container {wanted} is not valid for pod {pod.metadata.name}")
        return [wanted]
    if len(names) > 1:
        chosen = pod.metadata.annotations.get(DEFAULT_CONTAINER, "")
        if chosen not in names:
            chosen = names[0]
        if announce:
            factory.error_line(f'Defaulted container "{chosen}" out of: {", ".join(names)}')
        return [chosen]
    return names[:1]


SELECTOR_TAIL = 10  # kubectl's selectorTail: -l without --tail shows each container's last 10 lines


def _tail(args: argparse.Namespace) -> int | None:
    """The lines to ask for (None: all), as kubectl's ToLogOptions decides."""
    if args.tail is None:
        return SELECTOR_TAIL if args.selector else None
    return args.tail if args.tail >= 0 else None


async def _stream(factory: Factory, args: argparse.Namespace, name: str, namespace: str, container: str,
                  prefix: str) -> None:
    since = math.ceil(durations.parse(args.since)) if args.since else None
    if args.since_time:
        since = max(1, math.ceil(factory.now() - timeutil.parse(args.since_time)))
    sink = _Sink(factory, prefix)
    stream = factory.client().pod_logs(name, namespace, container=container, follow=args.follow,
                                       previous=args.previous, tail_lines=_tail(args),
                                       since_seconds=since, timestamps=args.timestamps)
    written = 0
    try:
        async for chunk in stream:
            if args.limit_bytes > 0:
                chunk = chunk[:max(0, args.limit_bytes - written)]
                written += len(chunk)
            if chunk:
                sink.write(chunk)
            if args.limit_bytes > 0 and written >= args.limit_bytes:
                break
    finally:
        sink.close()
        await stream.aclose()


async def run(args: argparse.Namespace, factory: Factory) -> int:
    namespace = factory.default_namespace
    if args.tail is not None and args.tail < -1:
        raise CLIError("--tail must be greater than or equal to -1")
    if args.selector:
        if args.target:
            raise CLIError("only a selector (-l) or a POD name is allowed")
        pods, _ = await factory.client().list("Pod", namespace, args.selector)
        if not pods:
            factory.error_line(f"No resources found in {namespace} namespace.")
            return 0
        if args.follow and len(pods) > args.max_log_requests:
            raise CLIError(f"you are attempting to follow {len(pods)} log streams, but maximum allowed "
                           f"concurrency is {args.max_log_requests}, use --max-log-requests to increase the limit")
        work = []
        for pod in sorted(pods, key=lambda p: p.metadata.name):
            for c in _containers(pod, args, factory, announce=False):
                work.append((pod.metadata.name, c))
        return await _run_all(factory, args, namespace, work)
    if not args.target:
        raise CLIError("expected POD or TYPE/NAME is a required argument for the logs command")
    kind, sep, name = args.target.partition("/")
    if not sep:
        kind, name = "pod", args.target
    try:
        pods = await _pods_of(factory, kind, name, namespace)
    except errors.NotFound:
        if resolve_kind(kind).kind != "Pod":
            raise
        # The pod object is gone; its node may still hold its logs.
        work = [(name, args.container or args.container_arg)]
        return await _run_all(factory, args, namespace, work)
    pod = sorted(pods, key=logging_order)[0]
    if len(pods) > 1:  # kubectl's words, on stderr so that the logs themselves stay clean
        factory.error_line(f"Found {len(pods)} pods, using pod/{pod.metadata.name}")
    work = [(pod.metadata.name, c) for c in _containers(pod, args, factory, announce=True)]
    return await _run_all(factory, args, namespace, work)


async def _run_all(factory: Factory, args: argparse.Namespace, namespace: str,
                   work: list[tuple[str, str]]) -> int:
    def prefix(pod: str, container: str) -> str:
        return f"[pod/{pod}/{container}] " if args.prefix else ""

    if args.follow and len(work) > 1:
        await asyncio.gather(*(_stream(factory, args, p, namespace, c, prefix(p, c)) for p, c in work))
    else:
        for p, c in work:
            await _stream(factory, args, p, namespace, c, prefix(p, c))
    return 0
