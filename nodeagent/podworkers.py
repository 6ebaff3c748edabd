"""Pod workers: one sequential worker per pod UID, as the kubelet's pod workers.

The informer's handlers only hand the latest pod to its worker (`podmanager.PodWorkers.update`); the worker
loop wakes on that, on a container exit, on a probe result or on a timer (crash-loop back-off,
activeDeadlineSeconds), and each pass (`_step`) starts what should run: init containers in
order, then the containers, restarting them per restartPolicy. Status goes out through the
StatusManager (batched), every start and exit is checkpointed on disk, and a worker whose pod
is finished (terminal, or deleted and stopped) drops everything but its files: finished pods
cost the agent no memory beyond the informer's copy and a uid in `finished`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import pwd
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.api import durations, lifecycle, quantity
from ketch.cancelsafe import wait_for
from ketch.client.clientset import Client
from ketch.client.flowcontrol import Backoff
from ketch.v1 import core_pb2

from . import configrefs, envvars, metrics, security, stdins
from .execs import ExecTarget
from .hooks import hooks_of, run_hook
from .limits.cgroups import Cgroup, CgroupManager
from .limits.watchdog import MemoryWatchdog
from .probes import ExecContext, ProbeWorker, has_handler
from .runtime import checkpoint, crilog, layout, logs
from .runtime.checkpoint import PodRecord, Proc
from .runtime.confine import Confinement
from .runtime.interface import ExitInfo, Handle, LaunchSpec, StartError
from .runtime.process import ProcessRuntime
from .runtime.restarts import init_should_restart, should_restart
from .security import ConfigError, Host
from .status import TERMINAL_PHASES, ContainerRun, PodRun, Terminated, compute_status, container_id, restart_policy
from .statusmanager import StatusManager
from .volumes.mountpoints import MountPoints
from .volumes.setup import PodVolumes, refusal
from .volumes.spec import VolumeError

log = logging.getLogger(__name__)

MIN_GRACE = 2.0  # the kubelet's minimumGracePeriodInSeconds
# A postStart hook that has not answered by then counts as failed (the kubelet waits without
# bound, which leaves a container stuck; exec and httpGet hooks are expected to be quick).
POST_START_TIMEOUT = 120.0
DEFAULT_GRACE = 30
UNKNOWN_EXIT = 137
CONFIG_RETRY = 10.0
CONFIG_ERROR = "CreateContainerConfigError"
ORPHAN_GRACE = 10.0
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
SHUTDOWN_REASON = "Terminated"
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."


@dataclass
class WorkerDeps:
    """What every pod worker shares: the node's identity and the agent's services."""

    node_name: str
    host_ip: str
    pods_root: Path
    client: Client
    runtime: ProcessRuntime
    status: StatusManager
    logs: logs.LogManager
    backoff: Backoff
    watchdog: MemoryWatchdog
    cgroups: CgroupManager | None = None
    recorder: Any = None
    # Container output as CRI-format files in the kubelet's layout (runtime/crilog.py); None:
    # the flat files of earlier agents (only tests of that layout use it).
    copier: crilog.LogCopier | None = None
    log_dirs: crilog.LogDirs | None = None
    allocatable: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    # The agent's identity, capabilities and limits: what containers are confined against.
    host: Host = field(default_factory=Host.current)
    # Slow housekeeping (garbage collection of gone pods' files) runs here. A pod's own small writes and
    # its spawn (vfork + exec: well under a millisecond) run on the event loop: handing each to a
    # thread cost more in GIL hand-offs than the work itself (measured: a third of the agent's CPU).
    # Mount points made on the host for volumes, and which pods use them (host-wide).
    mountpoints: MountPoints = field(default_factory=MountPoints)
    io: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="agent-io"))

    async def run_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def event(self, pod: core_pb2.Pod, etype: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(pod, etype, reason, message)


def exit_reason(exit_code: int, oom: bool) -> str:
    if oom:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def _grace_of_pod(pod: core_pb2.Pod) -> float:
    spec = pod.spec
    if spec.HasField("termination_grace_period_seconds"):
        return float(max(spec.termination_grace_period_seconds, 0))
    return float(DEFAULT_GRACE)


def deletion_grace(pod: core_pb2.Pod) -> float:
    md = pod.metadata
    if md.HasField("deletion_grace_period_seconds"):
        return float(max(md.deletion_grace_period_seconds, 0))
    return _grace_of_pod(pod)


def _home_of(uid: int) -> str:
    """HOME for a container run as uid: its passwd entry, else / (as runc does)."""
    try:
        return pwd.getpwuid(uid).pw_dir or "/"
    except KeyError:
        return "/"


def _in_volume(path: str, c: Confinement) -> str:
    """Where path is on the host: inside the volume the container mounts over it, if any (a
    working dir below a mount path is made in the volume, as runc makes it in the container)."""
    for b in sorted(c.binds, key=lambda b: len(b.target), reverse=True):
        if path.startswith(b.target.rstrip("/") + "/") and os.path.isdir(b.source):
            return os.path.join(b.source, os.path.relpath(path, b.target))
    return path


def _limits(c: core_pb2.Container) -> tuple[int | None, int | None]:
    """(memory bytes, cpu millicores) from resources.limits."""
    mem = cpu = None
    lim = c.resources.limits
    with contextlib.suppress(ValueError):
        if "memory" in lim:
            mem = quantity.to_bytes(lim["memory"])
    with contextlib.suppress(ValueError):
        if "cpu" in lim:
            cpu = quantity.millicores(lim["cpu"])
    return mem, cpu


class PodWorker:
    def __init__(self, deps: WorkerDeps, pod: core_pb2.Pod, record: PodRecord | None,
                 on_done: Callable[[PodWorker], None]) -> None:
        self.deps = deps
        self.pod = pod
        self.uid = pod.metadata.uid
        # Plain strings: the per-pod hot path (_start, _launch, checkpoints) avoids pathlib.
        self.pods_root = os.fspath(deps.pods_root)
        self.sandbox = layout.sandbox_dir(self.pods_root, self.uid)
        self.state_file = layout.state_file(self.pods_root, self.uid)
        self.record = record or PodRecord(self.uid, pod.metadata.namespace, pod.metadata.name, PodRun())
        self.recovered = record is not None
        self.handles: dict[str, Handle] = {}
        self.cgroups: dict[str, Cgroup] = {}
        self.probes: dict[str, list[ProbeWorker]] = {}
        self.exec_ctx: dict[str, ExecContext] = {}
        # The agent's end of each running container's stdin pipe (containers with stdin: true).
        self.stdins: dict[str, stdins.ContainerStdin] = {}
        self.gone = False  # removed from the API
        self.shutdown = False  # the node is leaving (drain)
        self.killing: dict[str, str] = {}
        self._sandbox_made = False  # known to exist (the first run in it makes it, or finds it)
        self.volumes: PodVolumes | None = None  # made at the first start of a pod that has volumes
        self._ckpt_gen = 0  # bumped on every change to the record
        self._ckpt_written = 0  # the generation on disk
        self._ended_logs: list[Any] = []
        self._wake = asyncio.Event()
        self._on_done = on_done
        self.task: asyncio.Task[None] | None = None
        # kubelet_pod_start_duration_seconds: from first sight to running (a re-adopted pod was
        # already seen by an earlier agent, and is not measured).
        self.seen_at = time.monotonic()
        self._start_measured = self.recovered

    # -- inputs (called from informer handlers: quick, no I/O) ---------------------------------

    def start(self) -> None:
        self.deps.status.register(self.uid, self.compute_status)
        self.task = asyncio.get_running_loop().create_task(self._main(), name=f"pod-{self.uid}")

    def update(self, pod: core_pb2.Pod) -> None:
        self.pod = pod
        self._wake.set()
        self.deps.status.mark(self.uid)

    def removed(self) -> None:
        self.gone = True
        self._wake.set()

    def stop_for_shutdown(self) -> None:
        self.shutdown = True
        self._wake.set()

    def compute_status(self) -> core_pb2.PodStatus | None:
        return compute_status(self.pod, self.record.run, self.deps.host_ip)

    def run_active(self, container: str, run: int) -> bool:
        cr = self.record.run.containers.get(container)
        return cr is not None and cr.state == "running" and cr.restart_count == run and container in self.handles

    # -- the loop ------------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            self._prepare()
            retry = 0.5
            first = True
            while True:
                try:
                    started = time.monotonic()
                    timer = await self._sync()
                    await self._flush_files()
                    metrics.pod_worker_pass(first, time.monotonic() - started)
                    first = False
                    retry = 0.5
                except Exception:
                    # A bug or an unexpected OS error: never give the pod up, try again later.
                    log.exception("pod %s/%s: sync failed; retrying in %.1fs", self.record.namespace,
                                  self.record.name, retry)
                    timer, retry = retry, min(retry * 2, 30.0)
                if timer is None:
                    break
                self._publish()
                try:
                    await wait_for(self._wake.wait(), timer if timer < float("inf") else None)
                except TimeoutError:
                    pass
                self._wake.clear()
            await self._finish()
        except asyncio.CancelledError:
            # The agent is exiting and leaves its pods running: just stop watching.
            self._detach()
            raise
        except Exception:
            log.exception("pod %s/%s: worker failed", self.record.namespace, self.record.name)
            self._detach()
            self._on_done(self)

    def _prepare(self) -> None:
        rec = self.record
        run = rec.run
        pod = self.pod
        rec.namespace, rec.name = pod.metadata.namespace, pod.metadata.name
        rec.container_names = [c.name for c in [*pod.spec.init_containers, *pod.spec.containers]]
        if run.start_time is None:
            run.start_time = self.deps.clock()
        for c in pod.spec.init_containers:
            run.containers.setdefault(c.name, ContainerRun(
                c.name, c.image, init=True, sidecar=c.HasField("restart_policy") and c.restart_policy == "Always",
                waiting_reason="PodInitializing"))
        for c in pod.spec.containers:
            run.containers.setdefault(c.name, ContainerRun(
                c.name, c.image, waiting_reason="PodInitializing" if pod.spec.init_containers else "ContainerCreating"))
        for name, (backoff, since) in rec.backoff.items():
            self.deps.backoff.restore(f"{self.uid}/{name}", backoff, since)
        if self.recovered:
            self._readopt()
            self._save()

    async def _sync(self) -> float | None:
        """One pass. Returns seconds until the next timed check (inf: none), or None when done."""
        pod, run = self.pod, self.record.run
        if self.gone:
            await self._terminate(deletion_grace(pod) if pod.metadata.deletion_timestamp else _grace_of_pod(pod))
            return None
        if self.record.finished and not self.handles:
            return None
        if self.shutdown:
            run.reason, run.message = SHUTDOWN_REASON, SHUTDOWN_MESSAGE
            run.phase_override = "Failed"
            run.disruption = ("TerminationByKubelet", SHUTDOWN_MESSAGE)
            await self._terminate(_grace_of_pod(pod))
            return None
        if pod.metadata.deletion_timestamp:
            await self._terminate(deletion_grace(pod))
            return None
        if pod.status.phase in TERMINAL_PHASES and not run.terminal:
            # Someone else made it terminal: nothing may run any more.
            await self._terminate(_grace_of_pod(pod))
            return None
        now = self.deps.clock()
        deadline = self._deadline()
        if deadline is not None and now >= deadline:
            run.reason, run.message, run.phase_override = DEADLINE_REASON, DEADLINE_MESSAGE, "Failed"
            self.deps.event(pod, "Normal", DEADLINE_REASON, DEADLINE_MESSAGE)
            await self._terminate(_grace_of_pod(pod))
            return None
        timer = await self._step(now)
        if timer is None:
            # Every container is done and none will restart: stop sidecars, the pod is finished.
            await self._terminate(_grace_of_pod(pod))
            return None
        if deadline is not None:
            timer = min(timer, max(deadline - now, 0.0))
        return timer

    def _deadline(self) -> float | None:
        spec = self.pod.spec
        if not spec.HasField("active_deadline_seconds") or self.record.run.start_time is None:
            return None
        return self.record.run.start_time + spec.active_deadline_seconds

    # -- starting containers -------------------------------------------------------------------

    async def _step(self, now: float) -> float | None:
        """Start or restart what should run; inf/seconds until a timer, None when the pod is done."""
        spec, run = self.pod.spec, self.record.run
        policy = restart_policy(spec)
        timer = float("inf")
        for c in spec.init_containers:
            cr = run.containers[c.name]
            if cr.sidecar:
                if cr.state != "running":
                    timer = min(timer, await self._start_or_back_off(c, cr, now))
                if cr.state != "running" or not cr.started:
                    return timer
                continue
            if cr.state == "terminated" and cr.terminated is not None and cr.terminated.exit_code == 0:
                continue
            if cr.state == "running":
                return timer
            code = self._last_exit(cr)
            if code is not None and not init_should_restart(policy, code):
                return None  # an init container failed under restartPolicy Never: the pod failed
            return min(timer, await self._start_or_back_off(c, cr, now))
        done = True
        for c in spec.containers:
            cr = run.containers[c.name]
            if cr.state == "running":
                done = False
                continue
            code = self._last_exit(cr)
            if code is None or should_restart(policy, code):
                done = False
                timer = min(timer, await self._start_or_back_off(c, cr, now))
        if done and spec.containers:
            return None
        return timer

    @staticmethod
    def _last_exit(cr: ContainerRun) -> int | None:
        """The exit code of the run that ended last (None: never ran)."""
        if cr.state == "terminated" and cr.terminated is not None:
            return cr.terminated.exit_code
        if cr.state == "waiting" and cr.last is not None and cr.waiting_reason == "CrashLoopBackOff":
            return cr.last.exit_code
        return None

    async def _start_or_back_off(self, c: core_pb2.Container, cr: ContainerRun, now: float) -> float:
        """Start c now, or put it in CrashLoopBackOff; seconds until it should be looked at again."""
        key = f"{self.uid}/{c.name}"
        ended = cr.terminated if cr.state == "terminated" else (
            cr.last if cr.waiting_reason == "CrashLoopBackOff" else None)
        if ended is not None:
            finished = ended.finished_at or now
            delay = self.deps.backoff.remaining(key, finished, now)
            if delay > 0:
                if cr.state != "waiting":
                    cr.last, cr.terminated, cr.state = ended, None, "waiting"
                    cr.waiting_reason = "CrashLoopBackOff"
                    back = durations.format(self.deps.backoff.get(key))
                    cr.waiting_message = (f"back-off {back} restarting failed container={c.name} "
                                          f"pod={self.pod.metadata.name}_{self.pod.metadata.namespace}({self.uid})")
                    self.deps.event(self.pod, "Warning", "BackOff",
                                    f"Back-off restarting failed container {c.name} in pod {self.pod.metadata.name}")
                    self._save()
                return delay
            backoff = self.deps.backoff.next(key, finished, now)
            self.record.backoff[c.name] = (backoff, finished)
            cr.last, cr.terminated = ended, None
            cr.restart_count += 1
        return await self._start(c, cr, now)

    async def _start(self, c: core_pb2.Container, cr: ContainerRun, now: float) -> float:
        pod = self.pod
        try:
            confinement = security.confinement(pod, c, self.deps.host, self.sandbox)
            objects = await configrefs.fetch(self.deps.client, pod, c)
            env = self._container_env(c, confinement, objects)
            if pod.spec.volumes or c.volume_mounts:  # pods without volumes pay nothing here
                confinement = dataclasses.replace(confinement, binds=await self._volume_binds(c))
        except VolumeError as err:
            return self._config_error(cr, str(err), "FailedMount")
        except (ValueError, ConfigError) as err:
            return self._config_error(cr, str(err))
        argv = envvars.container_argv(c, env)
        run_no = cr.restart_count
        cri_path = self._cri_path(c.name, run_no)
        spec = LaunchSpec(argv, env, c.working_dir or self.sandbox,
                          cri_path or layout.log_file(self.pods_root, self.uid, c.name, run_no), confinement)
        limits = _limits(c)
        # The checkpoint written right after the spawn (same thread job): the window in which a
        # crash could leave a process the next agent does not know about stays as small as it can.
        record = checkpoint.to_dict(self.record)
        gen = self._ckpt_gen
        pipes: tuple[int, int] | None = None
        stdin = self._open_stdin(c, spec)
        try:
            if cri_path is not None:
                pipes = self._prepare_cri_log(spec)
            pid, ticks, started_at, cg = self._launch(c.name, spec, run_no, limits, record)
        except StartError as err:
            self._close_fds(pipes)
            if stdin is not None:
                stdin.close()
            self.deps.event(pod, "Warning", "Failed", f"Error: {err}")
            return self._start_failed(c, cr, now, str(err))
        finally:
            self._close_fds(spec.output)
            spec.output = None
            if spec.stdin is not None:
                os.close(spec.stdin)  # the container's end: only the container holds it now
        handle = self.deps.runtime.register(pid, ticks, started_at)
        if stdin is not None:
            self.stdins[c.name] = stdin
            handle.exited.add_done_callback(lambda _: stdin.close())
        self._ckpt_written = max(self._ckpt_written, gen)
        if cg is not None:
            self.cgroups[c.name] = cg
        elif limits[0]:
            self.deps.watchdog.watch(handle.pid, limits[0])
        self.exec_ctx[c.name] = ExecContext(env, spec.cwd, confinement)
        self._attach(c, cr, handle, pipes)
        post_start = hooks_of(pod, c).get("postStart")
        if post_start is not None:
            asyncio.get_running_loop().create_task(self._post_start(c, handle, post_start))
        return float("inf")

    def _cri_path(self, name: str, run_no: int) -> str | None:
        dirs = self.deps.log_dirs
        if dirs is None or self.deps.copier is None:
            return None
        md = self.pod.metadata
        return layout.cri_log_file(dirs.pods, md.namespace, md.name, self.uid, name, run_no)

    def _prepare_cri_log(self, spec: LaunchSpec) -> tuple[int, int]:
        """The run's pipes: the child's ends go into spec.output, the read ends are returned (the
        copier makes the file, its dirs and its link on the first output)."""
        try:
            (out, out_r), (err, err_r) = crilog.make_pipes()
        except OSError as e:
            raise StartError(f"cannot make the container's output pipes: {e}") from e
        spec.output = (out, err)
        return out_r, err_r

    @staticmethod
    def _close_fds(fds: tuple[int, int] | None) -> None:
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open_stdin(self, c: core_pb2.Container, spec: LaunchSpec) -> stdins.ContainerStdin | None:
        """A container with stdin: true reads a pipe the agent holds open (Attach feeds it); the
        previous run's pipe, if any, is closed."""
        previous = self.stdins.pop(c.name, None)
        if previous is not None:
            previous.close()
        if not c.stdin:
            return None
        spec.stdin, stdin = stdins.open_pipe(c.stdin_once)
        return stdin

    def _launch(self, name: str, spec: LaunchSpec, run_no: int, limits: tuple[int | None, int | None],
                record: dict[str, Any]) -> tuple[int, int, float, Cgroup | None]:
        """Prepare the files, spawn, checkpoint the new pid (in one step, so the window in which a
        crash could leave a process the next agent does not know about stays as small as it can).
        limits: (memory bytes, cpu millicores) for the run's cgroup, where cgroups are used."""
        logs.prune_runs(self.pods_root, self.uid, name, run_no)
        if self.deps.log_dirs is not None and run_no >= 2:
            md = self.pod.metadata
            crilog.prune_run(self.deps.log_dirs, md.namespace, md.name, self.uid, name, run_no - 2)
        try:
            self._prepare_cwd(spec.cwd, spec.confinement, security.fs_group(self.pod))
        except OSError as err:
            raise StartError(f"cannot prepare the container's directories: {err}") from err
        mem, cpu = limits
        cg: Cgroup | None = None
        if self.deps.cgroups is not None and (mem or cpu):
            cg = self.deps.cgroups.create(f"{self.uid}_{name}_{run_no}", mem, cpu)
            if cg is not None:
                spec.cgroup_procs = list(cg.procs_files)
        try:
            pid, ticks, started_at = self.deps.runtime.launch_spec(spec)
        except StartError:
            if cg is not None:
                cg.remove()
            raise
        record["procs"][name] = {"pid": pid, "start_ticks": ticks, "started_at": started_at}
        if cg is not None:
            record["cgroups"][name] = [str(cg.memory_dir or ""), str(cg.cpu_dir or "")]
        try:
            checkpoint.write(self.state_file, record)
        except OSError as err:
            log.warning("pod %s: cannot write its checkpoint: %s", self.uid, err)
        return pid, ticks, started_at, cg

    def _prepare_cwd(self, cwd: str, confinement: Confinement | None, fs_group: int | None) -> None:
        """The sandbox is made only when a container runs in it (a mkdir is the dearest inode) or
        must stay writable under its read-only root. It belongs to the container's user and, with
        an fsGroup, to that group (setgid, group-writable), as an emptyDir volume does."""
        c = confinement or Confinement()
        if cwd != self.sandbox:
            os.makedirs(_in_volume(cwd, c), exist_ok=True)
            if not c.read_only_root:
                return
        if not self._sandbox_made:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.sandbox)
            self._sandbox_made = True
        if fs_group is not None:
            os.chown(self.sandbox, c.uid if c.uid is not None else -1, fs_group)
            os.chmod(self.sandbox, stat.S_IMODE(os.stat(self.sandbox).st_mode) | stat.S_ISGID | 0o070)
        elif c.uid is not None:
            os.chown(self.sandbox, c.uid, c.gid if c.gid is not None else -1)

    def _container_env(self, c: core_pb2.Container, confinement: Confinement | None,
                       objects: envvars.ConfigLookup | None) -> dict[str, str]:
        """The container's environment, with HOME of the user it runs as (unless it sets HOME).
        objects None: the ConfigMaps and Secrets are not at hand (a container adopted after an
        agent restart, for its probes and hooks) and the variables they give are left out."""
        skipped: list[str] = []
        env = envvars.container_env(self.pod, c, self.deps.host_ip, self.deps.allocatable,
                                    objects=objects or envvars.no_objects, skipped=skipped,
                                    missing_ok=objects is None)
        for message in skipped if objects is not None else ():
            self.deps.event(self.pod, "Warning", "InvalidEnvironmentVariableNames", message)
        if confinement is not None and confinement.uid is not None and not any(v.name == "HOME" for v in c.env):
            env["HOME"] = _home_of(confinement.uid)
        return env

    async def _volume_binds(self, c: core_pb2.Container) -> tuple[Any, ...]:
        """The pod's volumes, made at its first container start, bound at c's mount paths;
        VolumeError (the container waits) when a volume cannot be made or mounted."""
        host = self.deps.host
        why = refusal(host.uid, host.can(security.CAP_SYS_ADMIN), self.pod)
        if why is not None:
            raise VolumeError(why)
        if self.volumes is None:
            self.volumes = PodVolumes(self.pods_root, self.pod, self.deps.mountpoints)
        try:
            await self.volumes.prepare(self.deps.client, self.pod, self.deps.allocatable,
                                       security.fs_group(self.pod))
            return self.volumes.binds(c)
        except OSError as err:
            raise VolumeError(f"container {c.name}: cannot prepare its volumes: {err}") from None

    def _config_error(self, cr: ContainerRun, message: str, event_reason: str = "") -> float:
        """The container cannot be created as its spec says: it waits (CreateContainerConfigError)
        and is tried again; the first time, a Warning event says why (FailedMount: a volume)."""
        if cr.state != "waiting" or cr.waiting_reason != CONFIG_ERROR or cr.waiting_message != message:
            if event_reason:
                self.deps.event(self.pod, "Warning", event_reason, message)
            else:
                self.deps.event(self.pod, "Warning", "Failed", f"Error: {message}")
        cr.state, cr.waiting_reason, cr.waiting_message = "waiting", CONFIG_ERROR, message
        return CONFIG_RETRY

    def _start_failed(self, c: core_pb2.Container, cr: ContainerRun, now: float, message: str) -> float:
        cr.state = "terminated"
        cr.terminated = Terminated(128, 0, "ContainerCannotRun", message, now, now, "")
        cr.ready = cr.started = False
        self._save()
        self._wake.set()
        return 0.0

    def _attach(self, c: core_pb2.Container, cr: ContainerRun, handle: Handle,
                pipes: tuple[int, int] | None = None) -> None:
        """Track a running process: state, checkpoint entry, probes, its output, exit callback.
        pipes: the read ends of a new run's output; an adopted run's are opened again here."""
        cr.state = "running"
        cr.started_at = handle.started_at
        cr.container_id = container_id(self.deps.node_name, handle.pid)
        cr.terminated = None
        cr.waiting_reason = cr.waiting_message = ""
        has_startup = c.HasField("startup_probe") and has_handler(c.startup_probe)
        has_readiness = c.HasField("readiness_probe") and has_handler(c.readiness_probe)
        cr.started = not has_startup
        cr.ready = cr.started and not has_readiness
        self.handles[c.name] = handle
        if not cr.init and not self._start_measured:
            # A regular container runs only once the init containers are done: the pod is Running.
            self._start_measured = True
            metrics.pod_started(time.monotonic() - self.seen_at)
        self.record.procs[c.name] = Proc(handle.pid, handle.start_ticks, handle.started_at)
        cg = self.cgroups.get(c.name)
        if cg is not None:
            self.record.cgroups[c.name] = [str(cg.memory_dir or ""), str(cg.cpu_dir or "")]
        self._follow_output(c.name, handle, cr.restart_count, pipes)
        handle.exited.add_done_callback(functools.partial(self._exited, c.name, handle))
        if has_startup:
            self._start_probe(c, "startup")
        else:
            self._start_probe(c, "liveness")
            self._start_probe(c, "readiness")

    def _follow_output(self, name: str, handle: Handle, run_no: int, pipes: tuple[int, int] | None) -> None:
        copier, path = self.deps.copier, self._cri_path(name, run_no)
        if pipes is None and handle.adopted and copier is not None and path is not None:
            pipes = crilog.reopen_pipes(handle.pid)
        if pipes is not None and copier is not None and path is not None and self.deps.log_dirs is not None:
            md = self.pod.metadata
            link = layout.container_log_link(self.deps.log_dirs.containers, md.namespace, md.name, self.uid, name,
                                             run_no)
            copier.start((self.uid, name), path, link, pipes)
            return
        self._close_fds(pipes)
        # A run of an earlier agent that writes its flat log file itself: sampled and rotated there.
        self.deps.logs.begin(self.uid, name, layout.log_file(self.pods_root, self.uid, name, run_no))

    # -- probes ---------------------------------------------------------------------------------

    def _start_probe(self, c: core_pb2.Container, kind: str) -> None:
        probe = getattr(c, f"{kind}_probe")
        if not c.HasField(f"{kind}_probe") or not has_handler(probe):
            return
        ctx = self._hook_context(c)
        handle = self.handles[c.name]

        def on_result(k: str, ok: bool, message: str, name: str = c.name, h: Handle = handle) -> None:
            self._probe_result(name, h, k, ok, message)

        worker = ProbeWorker(kind, probe, c, ctx, self.deps.runtime, on_result)
        self.probes.setdefault(c.name, []).append(worker)
        worker.start()

    def _stop_probes(self, name: str) -> None:
        for worker in self.probes.pop(name, []):
            worker.stop()

    def _container_spec(self, name: str) -> core_pb2.Container | None:
        for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]:
            if c.name == name:
                return c
        return None

    def _probe_result(self, name: str, handle: Handle, kind: str, ok: bool, message: str) -> None:
        cr = self.record.run.containers.get(name)
        c = self._container_spec(name)
        if cr is None or c is None or self.handles.get(name) is not handle or not handle.running:
            return
        if kind == "readiness":
            cr.ready = ok and cr.started
            if not ok:
                self.deps.event(self.pod, "Warning", "Unhealthy", f"Readiness probe failed: {message}")
        elif kind == "startup" and ok:
            cr.started = True
            cr.ready = not (c.HasField("readiness_probe") and has_handler(c.readiness_probe))
            self._start_probe(c, "liveness")
            self._start_probe(c, "readiness")
            self._wake.set()  # a sidecar that started lets the next init container go
        elif not ok:  # liveness or startup failed: kill it, restartPolicy decides what follows
            what = "Liveness" if kind == "liveness" else "Startup"
            self.deps.event(self.pod, "Warning", "Unhealthy", f"{what} probe failed: {message}")
            self.deps.event(self.pod, "Normal", "Killing",
                            f"Container {name} failed {kind} probe, will be restarted")
            probe = getattr(c, f"{kind}_probe")
            grace = (float(probe.termination_grace_period_seconds)
                     if probe.HasField("termination_grace_period_seconds") else _grace_of_pod(self.pod))
            self._stop_probes(name)
            self.killing[name] = kind
            asyncio.get_running_loop().create_task(self._kill(name, handle, grace))
        self.deps.status.mark(self.uid, urgent=True)

    def exec_target(self, name: str) -> ExecTarget | None:
        """Where `ketch exec` runs in container name, as the container and in its cgroup; None
        unless the container is running."""
        cr = self.record.run.containers.get(name)
        c = self._container_spec(name)
        if c is None or cr is None or cr.state != "running" or name not in self.handles:
            return None
        cg = self.cgroups.get(name)
        return ExecTarget(self._hook_context(c), list(cg.procs_files) if cg is not None else [])

    # -- lifecycle hooks -------------------------------------------------------------------------

    def _hook_context(self, c: core_pb2.Container) -> ExecContext:
        """Where the container's exec probes and hooks run: as the container, confined as it is
        (computed again for a container adopted after an agent restart)."""
        ctx = self.exec_ctx.get(c.name)
        if ctx is not None:
            return ctx
        cwd = c.working_dir or self.sandbox
        try:
            confinement = security.confinement(self.pod, c, self.deps.host, self.sandbox)
            if c.volume_mounts:  # the volumes its running process has, as they are on disk
                if self.volumes is None:
                    self.volumes = PodVolumes(self.pods_root, self.pod, self.deps.mountpoints)
                self.volumes.adopt()
                confinement = dataclasses.replace(confinement, binds=self.volumes.binds(c))
            ctx = ExecContext(self._container_env(c, confinement, None), cwd, confinement)
        except (ValueError, ConfigError, VolumeError, OSError) as err:
            ctx = ExecContext({}, cwd, refused=str(err))
        self.exec_ctx[c.name] = ctx
        return ctx

    async def _pre_stop(self, name: str, handle: Handle, budget: float) -> None:
        """Run the container's preStop hook, if any, within budget seconds of the grace period."""
        c = self._container_spec(name)
        hook = hooks_of(self.pod, c).get("preStop") if c is not None else None
        if hook is None or c is None or not handle.running:
            return
        ok, message = await run_hook(self.deps.runtime, hook, c, self._hook_context(c), budget)
        if not ok:
            self.deps.event(self.pod, "Warning", "FailedPreStopHook", f"PreStopHook failed: {message}")

    async def _kill(self, name: str, handle: Handle, grace: float) -> None:
        """Stop one container (a failed liveness/startup probe or postStart hook): preStop, then
        SIGTERM with what is left of the grace period (at least the minimum), then SIGKILL."""
        start = self.deps.clock()
        await self._pre_stop(name, handle, grace)
        await self.deps.runtime.stop(handle, max(grace - (self.deps.clock() - start), MIN_GRACE))

    async def _post_start(self, c: core_pb2.Container, handle: Handle, hook: lifecycle.Handler) -> None:
        """Run postStart beside the new process; if it fails, the container is killed and its
        restartPolicy decides what follows, as in Kubernetes."""
        ok, message = await run_hook(self.deps.runtime, hook, c, self._hook_context(c), POST_START_TIMEOUT)
        if ok or self.handles.get(c.name) is not handle or not handle.running:
            return
        self.deps.event(self.pod, "Warning", "FailedPostStartHook", f"PostStartHook failed: {message}")
        self._stop_probes(c.name)
        await self._kill(c.name, handle, _grace_of_pod(self.pod))

    # -- exits ---------------------------------------------------------------------------------

    def _exited(self, name: str, handle: Handle, fut: asyncio.Future[ExitInfo]) -> None:
        if fut.cancelled() or self.handles.get(name) is not handle:
            return
        info = fut.result()
        del self.handles[name]
        self._stop_probes(name)
        self.killing.pop(name, None)
        cr = self.record.run.containers[name]
        oom = self.deps.watchdog.unwatch(handle.pid)
        cg = self.cgroups.pop(name, None)
        if cg is not None:
            oom = oom or cg.oom_kills() > 0
            cg.kill_all()
            if not cg.remove():
                asyncio.get_running_loop().call_later(1.0, cg.remove)
        self.record.cgroups.pop(name, None)
        self.record.procs.pop(name, None)
        if info.exit_code is None:
            t = Terminated(UNKNOWN_EXIT, 0, "ContainerStatusUnknown",
                           "The container's exit code is unknown: it was adopted after an agent restart and "
                           "the agent could not wait for it", handle.started_at, info.finished_at, cr.container_id)
        else:
            t = Terminated(info.exit_code, info.signal, exit_reason(info.exit_code, oom), "",
                           handle.started_at, info.finished_at, cr.container_id)
        cr.state, cr.terminated = "terminated", t
        cr.started = False
        cr.ready = cr.init and not cr.sidecar and t.exit_code == 0
        if self.deps.copier is not None:
            self.deps.copier.finish((self.uid, name))
        ended = self.deps.logs.end(self.uid, name)
        if ended is not None:
            self._ended_logs.append(ended)
        self._save()
        self._wake.set()
        # Not urgent: when this ends the pod, the worker's sync finishes it and _finish writes the
        # final status at once, in one write with the sandbox's teardown.
        self.deps.status.mark(self.uid)

    # -- stopping --------------------------------------------------------------------------------

    async def _terminate(self, grace: float) -> None:
        """Stop every running container (regular ones first, then sidecars), then mark terminal."""
        run = self.record.run
        run.terminal = True
        regular = [n for n in self.handles if not run.containers[n].sidecar]
        sidecars = [n for n in self.handles if run.containers[n].sidecar]
        if regular or sidecars:
            self.deps.event(self.pod, "Normal", "Killing", "Stopping container " + ", ".join(regular + sidecars))
        start = self.deps.clock()
        for group in (regular, list(reversed(sidecars))):
            if not group:
                continue
            left = max(grace - (self.deps.clock() - start), 0.0)
            for name in group:
                self._stop_probes(name)
            await asyncio.gather(*(self._stop_one(name, max(left, MIN_GRACE), start, grace)
                                   for name in group if name in self.handles))
        for cr in run.containers.values():
            if cr.state != "terminated":
                # Never ran, or waiting to restart: the kubelet reports these as unknown (TerminatePod).
                cr.state = "terminated"
                cr.terminated = Terminated(UNKNOWN_EXIT, 0, "ContainerStatusUnknown",
                                           "The container could not be located when the pod was terminated")
                cr.ready = cr.started = False
        run.sandbox_ready = False
        self.record.finished = True
        self._save()

    async def _stop_one(self, name: str, grace: float, start: float, requested: float) -> None:
        handle = self.handles.get(name)
        if handle is None:
            return
        runtime = self.deps.runtime
        deadline = start + max(requested, MIN_GRACE)
        if grace > 0:
            await self._pre_stop(name, handle, deadline - self.deps.clock())
            # As the kubelet: whatever the hook took, the process still gets the minimum grace.
            deadline = max(deadline, self.deps.clock() + MIN_GRACE)
            runtime.signal(handle, 15)
        while handle.running:
            # A shorter grace period may arrive (a second delete): honour it.
            if self.pod.metadata.deletion_timestamp and not self.shutdown:
                deadline = min(deadline, start + max(deletion_grace(self.pod), MIN_GRACE))
            left = deadline - self.deps.clock()
            if left <= 0:
                runtime.signal(handle, 9)
                break
            with contextlib.suppress(TimeoutError):
                await wait_for(asyncio.shield(handle.exited), min(left, 1.0))
        with contextlib.suppress(Exception):
            await handle.exited

    async def _finish(self) -> None:
        """Report the final status, hand a deleted pod back to the API server, and let go."""
        await self._flush_files()
        if self.volumes is not None:
            self.volumes.release()  # every container is gone: so are its mount namespaces
        if not self.gone:
            await self.deps.status.flushed(self.uid)
            pod = self.pod
            if pod.metadata.deletion_timestamp or self.shutdown:
                await self._delete_from_api(pod)
        self._detach()
        self._on_done(self)

    async def _delete_from_api(self, pod: core_pb2.Pod) -> None:
        """The final grace-0 delete, batched with status writes; returns once done or the pod is gone
        (PodWorkers.delete tells the status manager to forget it)."""
        if not self.gone:
            await self.deps.status.delete(pod)

    def _detach(self) -> None:
        for name in list(self.probes):
            self._stop_probes(name)
        self.deps.status.unregister(self.uid)
        self.deps.backoff.forget_prefix(self.uid + "/")

    # -- persistence and recovery ------------------------------------------------------------

    def _save(self) -> None:
        """The checkpoint changed: written by the worker loop before it next waits (_flush_files)."""
        self._ckpt_gen += 1

    async def _flush_files(self) -> None:
        ended, self._ended_logs = self._ended_logs, []
        dirty = self._ckpt_gen > self._ckpt_written
        if not dirty and not ended:
            return
        record = checkpoint.to_dict(self.record) if dirty else None
        self._ckpt_written = self._ckpt_gen
        self._write_files(record, ended)

    def _write_files(self, record: dict[str, Any] | None, ended: list[Any]) -> None:
        for act in ended:
            self.deps.logs.finalize(act)
        if record is None:
            return
        try:
            checkpoint.write(self.state_file, record)
        except OSError as err:
            log.warning("pod %s: cannot write its checkpoint: %s", self.uid, err)

    def _publish(self) -> None:
        self.deps.status.mark(self.uid)

    def _readopt(self) -> None:
        """Take back the processes an earlier agent started, or record that they died meanwhile."""
        rec, now = self.record, self.deps.clock()
        for name, proc in list(rec.procs.items()):
            cr = rec.run.containers.get(name)
            c = self._container_spec(name)
            dirs = rec.cgroups.get(name, ["", ""])
            cg = None
            if self.deps.cgroups is not None and any(dirs):
                cg = Cgroup(self.deps.cgroups.version, Path(dirs[0]) if dirs[0] else None,
                            Path(dirs[1]) if dirs[1] else None)
            handle = self.deps.runtime.adopt(proc.pid, proc.start_ticks, proc.started_at)
            if cr is None or c is None:
                del rec.procs[name]
                continue
            if handle is None:
                del rec.procs[name]
                oom = cg is not None and cg.oom_kills() > 0
                if cg is not None:
                    cg.kill_all()
                    cg.remove()
                rec.cgroups.pop(name, None)
                cr.state = "terminated"
                cr.terminated = Terminated(
                    UNKNOWN_EXIT, 0, "OOMKilled" if oom else "ContainerStatusUnknown",
                    "The container could not be located when the agent restarted: it exited while the agent "
                    "was down", proc.started_at, now, container_id(self.deps.node_name, proc.pid))
                cr.ready = False
                cr.started = False
                continue
            log.info("pod %s/%s: adopted container %s (pid %d)", rec.namespace, rec.name, name, proc.pid)
            if cg is not None:
                self.cgroups[name] = cg
            else:
                mem, _ = _limits(c)
                if mem:
                    self.deps.watchdog.watch(proc.pid, mem)
            self._attach(c, cr, handle)

