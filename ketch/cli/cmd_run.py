"""`ketch run NAME [--restart=Never|OnFailure|Always] [--rm] [-i] [--image I] [--env K=V] [-l K=V]
-- CMD ARGS...`.

As `kubectl run`, it creates one Pod NAME (never a Job) with one container NAME that runs
CMD ARGS, labelled run=NAME. Then, as `srun` users expect, it waits for the pod to start,
streams the container's output (`logs -f`) and exits with the container's exit code
(Never/OnFailure; with Always only if -i is given, until interrupted). `--rm` deletes the pod
afterwards, also after a failure or Ctrl-C. With `-i`, as kubectl's, the container gets
`stdin: true, stdinOnce: true` (a pipe its agent holds open) and the CLI's own stdin is fed to it
through Attach (create on pods/attach) once it runs; the end of the CLI's stdin closes it. The
output comes as without -i: the container's log, followed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from . import dryrun
from .factory import Factory
from .main import CLIError, add_common
from .printers import check_output, print_objects

RESTART_POLICIES = ("Always", "OnFailure", "Never")
FINISHED = ("Succeeded", "Failed")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a command in a new pod, stream its output, exit with its exit code")
    p.add_argument("name", metavar="NAME -- CMD [ARGS...]")
    p.add_argument("--restart", default="Always", help="the pod's restartPolicy: Always, OnFailure or Never")
    p.add_argument("--rm", action="store_true", help="delete the pod once it has finished")
    p.add_argument("-i", "--stdin", action="store_true",
                   help="keep stdin open on the container and feed it this command's stdin (stdinOnce)")
    p.add_argument("--attach", action="store_true", help="wait for the pod and stream its output")
    p.add_argument("--image", default="", help="the container's image (recorded; no image is pulled)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable")
    p.add_argument("-l", "--labels", default="", help="labels, KEY=VALUE[,KEY=VALUE] (default run=NAME)")
    p.add_argument("--command", dest="as_command", action="store_true",
                   help="CMD ARGS is the command (always so: there are no image entrypoints)")
    p.add_argument("-o", "--output", default="",
                   help="print the pod (json, yaml, name, jsonpath=...) instead of attaching to it")
    dryrun.add_dry_run_flag(p)
    add_common(p)
    p.set_defaults(run=run, dash_args=[])  # dash_args: CMD ARGS, the words after `--` (see main.parse_args)


def pod_manifest(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    """The Pod `kubectl run` would create, as a manifest."""
    if args.restart not in RESTART_POLICIES:
        raise CLIError(f"invalid restart policy: {args.restart}")
    if not args.dash_args:
        raise CLIError("a command is required: ketch run NAME -- CMD [ARGS...]")
    labels = {"run": args.name}
    if args.labels:
        labels = {}
        for item in args.labels.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CLIError(f"invalid label spec: {item}")
            labels[key] = value
    env = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"invalid env: {item}")
        env.append({"name": key, "value": value})
    container: dict[str, Any] = {"name": args.name, "command": list(args.dash_args)}
    if args.stdin:  # kubectl run -i: stdin, closed after the first attach (no --leave-stdin-open)
        container["stdin"] = True
        container["stdinOnce"] = True
    if args.image:
        container["image"] = args.image
    if env:
        container["env"] = env
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": args.name, "namespace": namespace, "labels": labels},
            "spec": {"restartPolicy": args.restart, "containers": [container]}}


def run(args: argparse.Namespace, factory: Factory) -> Any:
    dry_run = dryrun.strategy(args, factory)
    if dry_run != dryrun.NONE and (args.stdin or args.attach or args.rm):
        raise CLIError("--dry-run can't be used with attached containers options (--attach, --stdin, or --tty)")
    if args.output:
        check_output(args.output)
    # As kubectl: -o (or a dry run) prints the pod instead of attaching to it; else a pod that
    # does not restart forever is followed to its end (the srun habit).
    attach = args.stdin or args.attach or (args.restart != "Always" and not args.output and dry_run == dryrun.NONE)
    if args.rm and not attach:
        raise CLIError("--rm should only be used for attached containers")
    return _run(args, factory, pod_manifest(args, factory.default_namespace), attach, dry_run)


async def _run(args: argparse.Namespace, factory: Factory, manifest: dict[str, Any], attach: bool,
               dry_run: str = dryrun.NONE) -> int:
    from ketch.api.manifest import from_dict

    client = factory.client()
    namespace = manifest["metadata"]["namespace"]
    pod = from_dict(manifest)
    if dry_run != dryrun.CLIENT:
        pod = await client.create(pod, dry_run=dry_run == dryrun.SERVER)
    if not attach:
        if args.output:
            from ketch.api.kinds import resolve

            print_objects(factory.out, [pod], args.output, True, resolve("pod"))
        else:
            factory.print(f"pod/{args.name} created{dryrun.suffix(dry_run)}")
        return 0
    try:
        return await _attach(factory, args.name, namespace, args.restart, args.stdin)
    finally:
        if args.rm:
            await _delete(factory, args.name, namespace)


async def _attach(factory: Factory, name: str, namespace: str, restart: str, stdin: bool) -> int:
    """Wait for the pod to start, stream its output (and with stdin, feed it the CLI's stdin),
    wait for it to finish; the exit code."""
    pod = await _until(factory, name, namespace, lambda p: p.status.phase != "Pending" or _started(p))
    if not stdin or pod.status.phase in FINISHED:
        return await _follow(factory, name, namespace, restart, pod)
    return await _with_stdin(factory, name, namespace, _follow(factory, name, namespace, restart, pod))


async def _with_stdin(factory: Factory, name: str, namespace: str, follow: Awaitable[int]) -> int:
    """follow, while the CLI's stdin goes to the container; a refused attach (no pods/attach)
    ends it, since a stdinOnce container that is never attached waits for its input forever."""
    main = asyncio.ensure_future(follow)
    feeder = asyncio.ensure_future(_feed_stdin(factory, name, namespace))
    try:
        await asyncio.wait({main, feeder}, return_when=asyncio.FIRST_COMPLETED)
        if feeder.done():
            feeder.result()  # a refused attach raises here
        return await main
    finally:
        for task in (feeder, main):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _feed_stdin(factory: Factory, name: str, namespace: str) -> None:
    """The CLI's stdin into the container's (Attach), until it ends. A container that is no
    longer running (it finished before the attach) is no error: its output still comes."""
    from ketch.api import errors

    from .cmd_exec import read_input

    stream = factory.client().attach(name, namespace, read_input(factory.stdin), container=name)
    try:
        async for _ in stream:
            pass
    except errors.BadRequest:
        pod = await factory.client().get("Pod", name, namespace)
        if any(s.name == name and s.state.HasField("running") for s in pod.status.container_statuses):
            raise
    finally:
        await stream.aclose()


async def _follow(factory: Factory, name: str, namespace: str, restart: str, pod: Any) -> int:
    """Stream the started pod's output, wait for it to finish; the exit code."""
    if pod.status.phase not in FINISHED or _ran(pod, name):
        await _stream_logs(factory, name, namespace)
    if restart == "Always":
        return 0
    pod = await _until(factory, name, namespace, lambda p: p.status.phase in FINISHED)
    status = next((s for s in pod.status.container_statuses if s.name == name), None)
    if status is None or not status.state.HasField("terminated"):
        factory.error_line(f"pod {namespace}/{name} {pod.status.phase.lower()} "
                           f"({pod.status.reason or 'no container ran'})")
        if pod.status.message:
            factory.error_line(pod.status.message)
        return 1
    terminated = status.state.terminated
    code = int(terminated.exit_code) or (1 if pod.status.phase == "Failed" else 0)
    if code != 0:  # kubectl's words: `pod NS/NAME terminated (REASON)`, then the container's message
        factory.error_line(f"pod {namespace}/{name} terminated ({terminated.reason or 'Error'})")
        if terminated.message:
            factory.error_line(terminated.message)
    return code


async def _stream_logs(factory: Factory, name: str, namespace: str) -> None:
    """`logs -f` of the container until it exits; nothing if it never ran (it failed to start)."""
    from ketch.api import errors

    from .cmd_logs import _Sink

    sink = _Sink(factory)
    stream = factory.client().pod_logs(name, namespace, container=name, follow=True)
    try:
        async for chunk in stream:
            sink.write(chunk)
    except errors.BadRequest:
        pod = await factory.client().get("Pod", name, namespace)
        if pod.status.phase not in FINISHED:
            raise
    finally:
        sink.close()
        await stream.aclose()


def _ran(pod: Any, name: str) -> bool:
    """Whether the container ran (a process that wrote logs), rather than failing to start."""
    return any(s.name == name and s.state.terminated.reason != "ContainerCannotRun"
               for s in pod.status.container_statuses)


def _started(pod: Any) -> bool:
    return any(s.state.HasField("running") or s.state.HasField("terminated") for s in pod.status.container_statuses)


async def _until(factory: Factory, name: str, namespace: str, done: Any) -> Any:
    from ketch.client.watching import object_states

    states = object_states(factory.client(), "Pod", name, namespace)
    async with contextlib.aclosing(states):
        async for pod in states:
            if pod is None:
                raise CLIError(f'pod "{name}" was deleted before it finished')
            if done(pod):
                return pod
    raise CLIError(f'the watch of pod "{name}" ended')


async def _delete(factory: Factory, name: str, namespace: str) -> None:
    from ketch.api import errors

    with contextlib.suppress(errors.NotFound):
        await factory.client().delete("Pod", name, namespace)
        factory.print(f'pod "{name}" deleted')
