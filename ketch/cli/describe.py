"""`describe` text per kind, in the layout of kubectl 1.31's describers.

Each describer writes `Title:\\tvalue` lines through a Writer (two spaces per level) that is
aligned with Go's tabwriter at each flush, so the columns line up exactly where kubectl's do.
The object's Events come last (the caller lists them). Pure: the object, related objects and
`now` go in, text comes out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from ketch.api import configrefs, intstr, manifest, meta, quantity, timeutil
from ketch.api.selectors import selector_string
from ketch.v1 import apps_pb2, batch_pb2, core_pb2, rbac_pb2

from .printers import event_time, human_duration, job_status, node_roles, pod_columns, since
from .tabwriter import DESCRIBE_MINWIDTH, DESCRIBE_PADDING, tabwrite
from .terminal import escape

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class Writer:
    """kubectl's PrefixWriter: text at a nesting level, aligned per flushed block."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._done: list[str] = []

    def write(self, level: int, text: str) -> None:
        # As kubectl's PrefixWriter: whatever an object holds reaches the terminal escaped.
        self._pending.append("  " * level + escape(text))

    def line(self, level: int, title: str, value: Any = "") -> None:
        self.write(level, f"{title}:\t{value}\n")

    def flush(self) -> None:
        if self._pending:
            self._done.append(tabwrite("".join(self._pending), DESCRIBE_MINWIDTH, DESCRIBE_PADDING))
            self._pending = []

    def text(self) -> str:
        self.flush()
        return "".join(self._done)


def rfc1123(ts: str) -> str:
    """`Mon, 02 Jan 2006 15:04:05 -0700` in local time, as kubectl prints times in describe."""
    if not ts:
        return "<unset>"
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(timeutil.parse(ts)))


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _opt(msg: Any, field: str, fmt: str = "{}") -> str:
    return fmt.format(getattr(msg, field)) if msg.HasField(field) else "<unset>"


def multiline(w: Writer, level: int, title: str, pairs: Iterable[tuple[str, str]], sep: str = "=") -> None:
    items = sorted(pairs)
    if not items:
        w.line(level, title, "<none>")
        return
    for i, (k, v) in enumerate(items):
        if i == 0:
            w.line(level, title, f"{k}{sep}{v}")
        else:
            w.write(level, f"\t{k}{sep}{v}\n")


def labels(w: Writer, level: int, title: str, mapping: Any) -> None:
    multiline(w, level, title, dict(mapping).items())


def annotations_section(w: Writer, level: int, title: str, mapping: Any) -> None:
    items = {k: v for k, v in dict(mapping).items() if k != LAST_APPLIED}
    multiline(w, level, title, items.items(), sep=": ")


def object_meta(w: Writer, obj: Any, namespaced: bool = True) -> None:
    md = obj.metadata
    w.line(0, "Name", md.name)
    if namespaced:
        w.line(0, "Namespace", md.namespace)


def controlled_by(w: Writer, obj: Any) -> None:
    ref = meta.controller_ref(obj)
    if ref is not None:
        w.line(0, "Controlled By", f"{ref.kind}/{ref.name}")


# -- pod templates and containers -----------------------------------------------------------------


def _env_from(w: Writer, level: int, container: Any) -> None:
    """kubectl's describeContainerEnvFrom (printed only when the container has envFrom)."""
    w.write(level, "Environment Variables from:\n")
    for entry in container.env_from:
        ef = configrefs.env_from(entry)
        source = f"{ef.kind} with prefix '{ef.prefix}'" if ef.prefix else ef.kind
        w.write(level + 1, f"{ef.name}\t{source}\tOptional: {_bool(ef.optional)}\n")


def _env(w: Writer, level: int, container: Any) -> None:
    if len(container.env_from):
        _env_from(w, level, container)
    if not len(container.env):
        w.line(level, "Environment", "<none>")
        return
    w.write(level, "Environment:\n")
    for e in container.env:
        if e.HasField("value_from") and e.value_from.HasField("field_ref"):
            ref = e.value_from.field_ref
            w.line(level + 1, e.name, f" ({ref.api_version or 'v1'}:{ref.field_path})")
        elif e.HasField("value_from") and e.value_from.HasField("resource_field_ref"):
            ref = e.value_from.resource_field_ref
            w.line(level + 1, e.name, f"{ref.resource} ({ref.container_name})")
        elif e.HasField("value_from") and (kref := configrefs.key_ref(e.value_from)) is not None:
            where = (f"in secret '{kref.name}'" if kref.kind == configrefs.SECRET
                     else f"of config map '{kref.name}'")
            w.write(level + 1, f"{e.name}:\t<set to the key '{kref.key}' {where}>\tOptional: {_bool(kref.optional)}\n")
        else:
            w.line(level + 1, e.name, e.value)


def _probe(p: Any) -> str:
    if p.HasField("exec"):
        action = "exec [" + " ".join(p.exec.command) + "]"
    elif p.HasField("http_get"):
        g = p.http_get
        action = f"http-get {(g.scheme or 'HTTP').lower()}://{g.host}:{intstr.get(g.port)}{g.path}"
    elif p.HasField("tcp_socket"):
        action = f"tcp-socket {p.tcp_socket.host}:{intstr.get(p.tcp_socket.port)}"
    elif p.HasField("grpc"):
        action = f"grpc <pod>:{p.grpc.port} {p.grpc.service if p.grpc.HasField('service') else ''}"
    else:
        action = "unknown"
    return (f"{action} delay={p.initial_delay_seconds}s timeout={p.timeout_seconds}s period={p.period_seconds}s "
            f"#success={p.success_threshold} #failure={p.failure_threshold}")


def _resources(w: Writer, level: int, container: Any) -> None:
    res = container.resources
    for title, mapping in (("Limits", res.limits), ("Requests", res.requests)):
        if len(mapping):
            w.write(level, f"{title}:\n")
            for k in sorted(mapping):
                w.line(level + 1, k, mapping[k])


def container_spec(w: Writer, c: Any, level: int) -> None:
    """Image, command, args, resources, probes, environment (shared by pods and templates)."""
    w.line(level, "Image", c.image)
    w.line(level, "Port", "<none>" if not len(c.ports) else ", ".join(
        f"{int(p.fields['containerPort'].number_value)}/{p.fields['protocol'].string_value or 'TCP'}"
        for p in c.ports))
    w.line(level, "Host Port", "<none>")
    if len(c.command):
        w.write(level, "Command:\n")
        for part in c.command:
            for line in part.split("\n"):
                w.write(level + 1, f"{line}\n")
    if len(c.args):
        w.write(level, "Args:\n")
        for part in c.args:
            for line in part.split("\n"):
                w.write(level + 1, f"{line}\n")


def container_tail(w: Writer, c: Any, level: int) -> None:
    _resources(w, level, c)
    for title, field in (("Liveness", "liveness_probe"), ("Readiness", "readiness_probe"),
                         ("Startup", "startup_probe")):
        if c.HasField(field):
            w.line(level, title, _probe(getattr(c, field)))
    _env(w, level, c)
    w.line(level, "Mounts", "<none>" if not len(c.volume_mounts) else ", ".join(
        m.fields["mountPath"].string_value for m in c.volume_mounts))


def pod_template(w: Writer, template: Any, level: int = 0) -> None:
    w.write(level, "Pod Template:\n")
    labels(w, level + 1, "Labels", template.metadata.labels)
    if len(template.metadata.annotations):
        annotations_section(w, level + 1, "Annotations", template.metadata.annotations)
    spec = template.spec
    if spec.service_account_name:
        w.line(level + 1, "Service Account", spec.service_account_name)
    for title, containers in (("Init Containers", spec.init_containers), ("Containers", spec.containers)):
        if not len(containers) and title.startswith("Init"):
            continue
        w.write(level + 1, f"{title}:\n")
        for c in containers:
            w.write(level + 1, f" {c.name}:\n")
            container_spec(w, c, level + 2)
            container_tail(w, c, level + 2)
    volumes(w, level + 1, spec)
    if len(spec.node_selector):
        multiline(w, level + 1, "Node-Selectors", dict(spec.node_selector).items())
    if len(spec.tolerations):
        tolerations(w, level + 1, spec.tolerations)


def volumes(w: Writer, level: int, spec: Any) -> None:
    if not len(spec.volumes):
        w.line(level, "Volumes", "<none>")
        return
    w.write(level, "Volumes:\n")
    for v in spec.volumes:
        d = manifest.message_to_dict(v)
        name = d.pop("name", "")
        kind = next(iter(d), "")
        w.write(level + 1, f"{name}:\n")
        w.line(level + 2, "Type", f"{kind[:1].upper()}{kind[1:]}" if kind else "<unknown>")


def toleration_text(t: Any) -> str:
    text = t.key or ""
    if t.value:
        text += f"={t.value}"
    if t.effect:
        text += f":{t.effect}"
    if t.operator == "Exists" and not t.value:
        text += " op=Exists"
    if t.HasField("toleration_seconds"):
        text += f" for {t.toleration_seconds}s"
    return text


def tolerations(w: Writer, level: int, items: Any) -> None:
    texts = [toleration_text(t) for t in items]
    if not texts:
        w.line(level, "Tolerations", "<none>")
        return
    for i, t in enumerate(texts):
        w.write(level, f"Tolerations:\t{t}\n" if i == 0 else f"\t{t}\n")


# -- Pod ------------------------------------------------------------------------------------------


def _state(w: Writer, level: int, title: str, st: Any) -> None:
    if st.HasField("running"):
        w.line(level, title, "Running")
        w.line(level + 1, "Started", rfc1123(st.running.started_at))
    elif st.HasField("waiting"):
        w.line(level, title, "Waiting")
        if st.waiting.reason:
            w.line(level + 1, "Reason", st.waiting.reason)
        if st.waiting.message:
            w.line(level + 1, "Message", st.waiting.message)
    elif st.HasField("terminated"):
        t = st.terminated
        w.line(level, title, "Terminated")
        if t.reason:
            w.line(level + 1, "Reason", t.reason)
        if t.message:
            w.line(level + 1, "Message", t.message.strip())
        w.line(level + 1, "Exit Code", t.exit_code)
        if t.signal:
            w.line(level + 1, "Signal", t.signal)
        w.line(level + 1, "Started", rfc1123(t.started_at))
        w.line(level + 1, "Finished", rfc1123(t.finished_at))
    else:
        w.line(level, title, "Waiting")


def _pod_containers(w: Writer, title: str, containers: Any, statuses: Any) -> None:
    by_name = {s.name: s for s in statuses}
    w.write(0, f"{title}:\n")
    for c in containers:
        st = by_name.get(c.name)
        w.write(1, f"{c.name}:\n")
        w.line(2, "Container ID", st.container_id if st else "")
        container_spec(w, c, 2)
        if st is not None:
            _state(w, 2, "State", st.state)
            if st.last_state.HasField("terminated") or st.last_state.HasField("running"):
                _state(w, 2, "Last State", st.last_state)
            w.line(2, "Ready", "True" if st.ready else "False")
            w.line(2, "Restart Count", st.restart_count)
        else:
            w.line(2, "State", "Waiting")
            w.line(2, "Ready", "False")
            w.line(2, "Restart Count", 0)
        container_tail(w, c, 2)


def qos_class(pod: core_pb2.Pod) -> str:
    if pod.status.qos_class:
        return str(pod.status.qos_class)
    requests = limits = 0
    guaranteed = True
    for c in pod.spec.containers:
        r, lim = c.resources.requests, c.resources.limits
        requests += len(r)
        limits += len(lim)
        for res in ("cpu", "memory"):
            if res not in lim or (res in r and r[res] != lim[res]):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def describe_pod(pod: core_pb2.Pod, now: float) -> Writer:
    w = Writer()
    spec, status = pod.spec, pod.status
    object_meta(w, pod)
    w.line(0, "Priority", spec.priority if spec.HasField("priority") else 0)
    w.line(0, "Service Account", spec.service_account_name or "default")
    node = spec.node_name or "<none>"
    if spec.node_name and status.host_ip:
        node += f"/{status.host_ip}"
    w.line(0, "Node", node)
    if status.start_time:
        w.line(0, "Start Time", rfc1123(status.start_time))
    labels(w, 0, "Labels", pod.metadata.labels)
    annotations_section(w, 0, "Annotations", pod.metadata.annotations)
    if pod.metadata.deletion_timestamp:
        w.line(0, "Status", f"Terminating (lasts {since(pod.metadata.deletion_timestamp, now)})")
        grace = pod.metadata.deletion_grace_period_seconds
        w.line(0, "Termination Grace Period", f"{grace}s")
    else:
        w.line(0, "Status", status.phase)
    if status.reason:
        w.line(0, "Reason", status.reason)
    if status.message:
        w.line(0, "Message", status.message)
    ip = status.pod_ips[0].ip if len(status.pod_ips) else status.pod_ip
    w.line(0, "IP", ip)
    ips = [p.ip for p in status.pod_ips] or ([status.pod_ip] if status.pod_ip else [])
    if ips:
        w.write(0, "IPs:\n")
        for i in ips:
            w.line(1, "IP", i)
    else:
        w.line(0, "IPs", "<none>")
    controlled_by(w, pod)
    if len(spec.init_containers):
        _pod_containers(w, "Init Containers", spec.init_containers, status.init_container_statuses)
    _pod_containers(w, "Containers", spec.containers, status.container_statuses)
    if len(status.conditions):
        w.write(0, "Conditions:\n")
        w.write(1, "Type\tStatus\n")
        for c in status.conditions:
            w.write(1, f"{c.type} \t{c.status} \n")
    volumes(w, 0, spec)
    w.line(0, "QoS Class", qos_class(pod))
    multiline(w, 0, "Node-Selectors", dict(spec.node_selector).items())
    tolerations(w, 0, spec.tolerations)
    return w


# -- Job, CronJob ---------------------------------------------------------------------------------


def pods_statuses(pods: list[Any]) -> str:
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for p in pods:
        if p.status.phase in counts:
            counts[p.status.phase] += 1
    return (f"{counts['Running']} Running / {counts['Pending']} Waiting / {counts['Succeeded']} Succeeded / "
            f"{counts['Failed']} Failed")


def _job_spec_lines(w: Writer, spec: Any, level: int = 0) -> None:
    w.line(level, "Parallelism", _opt(spec, "parallelism"))
    w.line(level, "Completions", _opt(spec, "completions"))
    w.line(level, "Completion Mode", spec.completion_mode if spec.HasField("completion_mode") else "NonIndexed")
    w.line(level, "Suspend", _bool(spec.suspend) if spec.HasField("suspend") else "false")
    w.line(level, "Backoff Limit", _opt(spec, "backoff_limit"))
    if spec.HasField("backoff_limit_per_index"):
        w.line(level, "Backoff Limit Per Index", spec.backoff_limit_per_index)
    if spec.HasField("max_failed_indexes"):
        w.line(level, "Max Failed Indexes", spec.max_failed_indexes)
    if spec.HasField("ttl_seconds_after_finished"):
        w.line(level, "TTL Seconds After Finished", spec.ttl_seconds_after_finished)
    if spec.HasField("active_deadline_seconds"):
        w.line(level, "Active Deadline Seconds", f"{spec.active_deadline_seconds}s")
    if spec.HasField("pod_replacement_policy"):
        w.line(level, "Pod Replacement Policy", spec.pod_replacement_policy)


def describe_job(job: batch_pb2.Job, now: float) -> Writer:
    w = Writer()
    spec, status = job.spec, job.status
    object_meta(w, job)
    w.line(0, "Selector", selector_string(spec.selector) or "<none>")
    labels(w, 0, "Labels", job.metadata.labels)
    annotations_section(w, 0, "Annotations", job.metadata.annotations)
    controlled_by(w, job)
    _job_spec_lines(w, spec)
    if status.start_time:
        w.line(0, "Start Time", rfc1123(status.start_time))
    if status.completion_time:
        w.line(0, "Completed At", rfc1123(status.completion_time))
    if status.start_time:
        end = timeutil.parse(status.completion_time) if status.completion_time else now
        w.line(0, "Duration", human_duration(end - timeutil.parse(status.start_time)))
    ready = status.ready if status.HasField("ready") else 0
    w.line(0, "Pods Statuses", f"{status.active} Active ({ready} Ready) / {status.succeeded} Succeeded / "
           f"{status.failed} Failed")
    if spec.HasField("completion_mode") and spec.completion_mode == "Indexed":
        w.line(0, "Completed Indexes", status.completed_indexes or "<none>")
        if status.HasField("failed_indexes"):
            w.line(0, "Failed Indexes", status.failed_indexes or "<none>")
    w.line(0, "Status", job_status(job))
    if len(status.conditions):
        w.write(0, "Conditions:\n")
        w.write(1, "Type\tStatus\tReason\tMessage\n")
        w.write(1, "----\t------\t------\t-------\n")
        for c in status.conditions:
            w.write(1, f"{c.type}\t{c.status}\t{c.reason or '<none>'}\t{c.message or '<none>'}\n")
    pod_template(w, spec.template)
    return w


def describe_cronjob(cj: batch_pb2.CronJob, now: float, jobs: list[Any] | None = None) -> Writer:
    w = Writer()
    spec, status = cj.spec, cj.status
    object_meta(w, cj)
    labels(w, 0, "Labels", cj.metadata.labels)
    annotations_section(w, 0, "Annotations", cj.metadata.annotations)
    w.line(0, "Schedule", spec.schedule)
    if spec.HasField("time_zone"):
        w.line(0, "Time Zone", spec.time_zone)
    w.line(0, "Concurrency Policy", spec.concurrency_policy or "Allow")
    w.line(0, "Suspend", "True" if spec.suspend else "False")
    w.line(0, "Successful Job History Limit", _opt(spec, "successful_jobs_history_limit"))
    w.line(0, "Failed Job History Limit", _opt(spec, "failed_jobs_history_limit"))
    w.line(0, "Starting Deadline Seconds", _opt(spec, "starting_deadline_seconds", "{}s"))
    jspec = spec.job_template.spec
    w.line(0, "Selector", selector_string(jspec.selector) if jspec.HasField("selector") else "<unset>")
    w.line(0, "Parallelism", _opt(jspec, "parallelism"))
    w.line(0, "Completions", _opt(jspec, "completions"))
    if jspec.HasField("active_deadline_seconds"):
        w.line(0, "Active Deadline Seconds", f"{jspec.active_deadline_seconds}s")
    pod_template(w, jspec.template)
    w.line(0, "Last Schedule Time", rfc1123(status.last_schedule_time) if status.last_schedule_time else "<unset>")
    if status.last_successful_time:
        w.line(0, "Last Successful Time", rfc1123(status.last_successful_time))
    active = ", ".join(a.name for a in status.active)
    w.line(0, "Active Jobs", active or "<none>")
    return w


# -- DaemonSet, ControllerRevision ----------------------------------------------------------------


def describe_daemonset(ds: apps_pb2.DaemonSet, now: float, pods: list[Any] | None = None) -> Writer:
    w = Writer()
    spec, status = ds.spec, ds.status
    object_meta(w, ds)
    w.line(0, "Selector", selector_string(spec.selector) or "<none>")
    ns_text = ",".join(f"{k}={v}" for k, v in sorted(spec.template.spec.node_selector.items()))
    w.line(0, "Node-Selector", ns_text or "<none>")
    labels(w, 0, "Labels", ds.metadata.labels)
    annotations_section(w, 0, "Annotations", ds.metadata.annotations)
    w.line(0, "Desired Number of Nodes Scheduled", status.desired_number_scheduled)
    w.line(0, "Current Number of Nodes Scheduled", status.current_number_scheduled)
    w.line(0, "Number of Nodes Scheduled with Up-to-date Pods", status.updated_number_scheduled)
    w.line(0, "Number of Nodes Scheduled with Available Pods", status.number_available)
    w.line(0, "Number of Nodes Misscheduled", status.number_misscheduled)
    w.line(0, "Pods Status", pods_statuses(pods or []))
    strategy = spec.update_strategy
    w.line(0, "Update Strategy", strategy.type or "RollingUpdate")
    if (strategy.type or "RollingUpdate") == "RollingUpdate" and strategy.HasField("rolling_update"):
        ru = strategy.rolling_update
        if intstr.is_set(ru.max_unavailable):
            w.line(1, "Max Unavailable", intstr.get(ru.max_unavailable))
        if intstr.is_set(ru.max_surge):
            w.line(1, "Max Surge", intstr.get(ru.max_surge))
    if spec.min_ready_seconds:
        w.line(0, "Min Ready Seconds", spec.min_ready_seconds)
    pod_template(w, spec.template)
    return w


# -- Node ------------------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{int(part * 100 / whole)}%" if whole else "0%"


def _cpu_text(m: int) -> str:
    return quantity.format_millicores(m) if m else "0"


def _mem_text(n: int) -> str:
    if not n:
        return "0"
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _pod_resources(pod: core_pb2.Pod) -> tuple[int, int, int, int]:
    """(cpu requests m, cpu limits m, memory requests, memory limits) of a pod's containers."""
    cr = cl = mr = ml = 0
    for c in pod.spec.containers:
        r, lim = c.resources.requests, c.resources.limits
        cr += quantity.millicores(r["cpu"]) if "cpu" in r else 0
        cl += quantity.millicores(lim["cpu"]) if "cpu" in lim else 0
        mr += quantity.to_bytes(r["memory"]) if "memory" in r else 0
        ml += quantity.to_bytes(lim["memory"]) if "memory" in lim else 0
    return cr, cl, mr, ml


def describe_node(node: core_pb2.Node, now: float, pods: list[Any] | None = None, lease: Any = None) -> Writer:
    w = Writer()
    spec, status = node.spec, node.status
    w.line(0, "Name", node.metadata.name)
    w.line(0, "Roles", node_roles(node))
    labels(w, 0, "Labels", node.metadata.labels)
    annotations_section(w, 0, "Annotations", node.metadata.annotations)
    w.line(0, "CreationTimestamp", rfc1123(node.metadata.creation_timestamp))
    taints = [f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in spec.taints]
    if taints:
        for i, t in enumerate(taints):
            w.write(0, f"Taints:\t{t}\n" if i == 0 else f"\t{t}\n")
    else:
        w.line(0, "Taints", "<none>")
    w.line(0, "Unschedulable", _bool(spec.unschedulable))
    if lease is not None:
        w.write(0, "Lease:\n")
        ls = lease.spec
        w.line(1, "HolderIdentity", ls.holder_identity if ls.HasField("holder_identity") else "<unset>")
        w.line(1, "AcquireTime", rfc1123(ls.acquire_time))
        w.line(1, "RenewTime", rfc1123(ls.renew_time))
    if len(status.conditions):
        w.write(0, "Conditions:\n")
        w.write(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
        for c in status.conditions:
            w.write(1, f"{c.type} \t{c.status} \t{rfc1123(c.last_heartbeat_time)} \t"
                       f"{rfc1123(c.last_transition_time)} \t{c.reason} \t{c.message}\n")
    w.write(0, "Addresses:\n")
    for a in status.addresses:
        w.line(1, a.type, a.address)
    for title, mapping in (("Capacity", status.capacity), ("Allocatable", status.allocatable)):
        if len(mapping):
            w.write(0, f"{title}:\n")
            for k in sorted(mapping):
                w.line(1, k, mapping[k])
    info = status.node_info
    w.write(0, "System Info:\n")
    for title, value in (("Machine ID", info.machine_id), ("System UUID", info.system_uuid),
                         ("Boot ID", info.boot_id), ("Kernel Version", info.kernel_version),
                         ("OS Image", info.os_image), ("Operating System", info.operating_system),
                         ("Architecture", info.architecture),
                         ("Container Runtime Version", info.container_runtime_version),
                         ("Kubelet Version", info.kubelet_version), ("Kube-Proxy Version", info.kube_proxy_version)):
        w.line(1, title, value)
    if pods is not None:
        _node_pods(w, node, pods, now)
    return w


def _node_pods(w: Writer, node: core_pb2.Node, pods: list[Any], now: float) -> None:
    alloc = node.status.allocatable or node.status.capacity
    cpu_total = quantity.millicores(alloc["cpu"]) if "cpu" in alloc else 0
    mem_total = quantity.to_bytes(alloc["memory"]) if "memory" in alloc else 0
    running = [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]
    w.line(0, "Non-terminated Pods", f"({len(running)} in total)")
    totals = [0, 0, 0, 0]
    if running:
        w.write(1, "Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n")
        w.write(1, "---------\t----\t------------\t----------\t---------------\t-------------\t---\n")
        for p in sorted(running, key=lambda p: (p.metadata.namespace, p.metadata.name)):
            cr, cl, mr, ml = _pod_resources(p)
            for i, v in enumerate((cr, cl, mr, ml)):
                totals[i] += v
            w.write(1, f"{p.metadata.namespace}\t{p.metadata.name}\t{_cpu_text(cr)} ({_pct(cr, cpu_total)})\t"
                       f"{_cpu_text(cl)} ({_pct(cl, cpu_total)})\t{_mem_text(mr)} ({_pct(mr, mem_total)})\t"
                       f"{_mem_text(ml)} ({_pct(ml, mem_total)})\t{since(p.metadata.creation_timestamp, now)}\n")
    w.write(0, "Allocated resources:\n")
    w.write(1, "(Total limits may be over 100 percent, i.e., overcommitted.)\n")
    w.write(1, "Resource\tRequests\tLimits\n")
    w.write(1, "--------\t--------\t------\n")
    w.write(1, f"cpu\t{_cpu_text(totals[0])} ({_pct(totals[0], cpu_total)})\t"
               f"{_cpu_text(totals[1])} ({_pct(totals[1], cpu_total)})\n")
    w.write(1, f"memory\t{_mem_text(totals[2])} ({_pct(totals[2], mem_total)})\t"
               f"{_mem_text(totals[3])} ({_pct(totals[3], mem_total)})\n")


# -- Namespace ------------------------------------------------------------------------------------


def describe_namespace(ns: Any, now: float) -> Writer:
    w = Writer()
    w.line(0, "Name", ns.metadata.name)
    labels(w, 0, "Labels", ns.metadata.labels)
    annotations_section(w, 0, "Annotations", ns.metadata.annotations)
    w.line(0, "Status", ns.status.phase or "Active")
    w.write(0, "\nNo resource quota.\n\nNo LimitRange resource.\n")
    return w


# -- RBAC -----------------------------------------------------------------------------------------


def _go_list(values: Iterable[str]) -> str:
    return "[" + " ".join(values) + "]"


def _rule_sort_key(r: Any) -> str:
    """The Go String() of a PolicyRule, by which kubectl sorts the rows."""
    return (f"&PolicyRule{{Verbs:{_go_list(r.verbs)},APIGroups:{_go_list(r.api_groups)},"
            f"Resources:{_go_list(r.resources)},ResourceNames:{_go_list(r.resource_names)},"
            f"NonResourceURLs:{_go_list(r.non_resource_urls)},}}")


def policy_rows(rules: Iterable[Any]) -> list[Any]:
    """kubectl's rows: each rule broken down, the pieces differing only in verbs joined again
    (rbacv1helpers.BreakdownRule, CompactRules), sorted."""
    merged: dict[tuple[str, str, tuple[str, ...]], Any] = {}
    rows: list[Any] = []
    for rule in rules:
        for group in rule.api_groups:
            for resource in rule.resources:
                names = list(rule.resource_names) or [""]
                for name in names:
                    key = (group, resource, (name,) if name else ())
                    row = merged.get(key)
                    if row is None:
                        row = rbac_pb2.PolicyRule(api_groups=[group], resources=[resource],
                                                  resource_names=list(key[2]))
                        merged[key] = row
                        rows.append(row)
                    row.verbs.extend(rule.verbs)
        for url in rule.non_resource_urls:
            rows.extend(rbac_pb2.PolicyRule(non_resource_urls=[url], verbs=[v]) for v in rule.verbs)
    return sorted(rows, key=_rule_sort_key)


def combine_resource_group(resources: Any, groups: Any) -> str:
    """`jobs.batch`, `pods/log` (CombineResourceGroup)."""
    if not resources:
        return ""
    resource, _, sub = resources[0].partition("/")
    text = resource + (f".{groups[0]}" if groups and groups[0] else "")
    return text + (f"/{sub}" if sub else "")


def describe_role(role: Any, now: float) -> Writer:
    w = Writer()
    w.line(0, "Name", role.metadata.name)
    labels(w, 0, "Labels", role.metadata.labels)
    annotations_section(w, 0, "Annotations", role.metadata.annotations)
    w.write(0, "PolicyRule:\n")
    w.write(1, "Resources\tNon-Resource URLs\tResource Names\tVerbs\n")
    w.write(1, "---------\t-----------------\t--------------\t-----\n")
    for r in policy_rows(role.rules):
        w.write(1, f"{combine_resource_group(r.resources, r.api_groups)}\t{_go_list(r.non_resource_urls)}\t"
                   f"{_go_list(r.resource_names)}\t{_go_list(r.verbs)}\n")
    return w


def describe_binding(binding: Any, now: float) -> Writer:
    w = Writer()
    w.line(0, "Name", binding.metadata.name)
    labels(w, 0, "Labels", binding.metadata.labels)
    annotations_section(w, 0, "Annotations", binding.metadata.annotations)
    w.write(0, "Role:\n")
    w.line(1, "Kind", binding.role_ref.kind)
    w.line(1, "Name", binding.role_ref.name)
    w.write(0, "Subjects:\n")
    w.write(1, "Kind\tName\tNamespace\n")
    w.write(1, "----\t----\t---------\n")
    for s in binding.subjects:
        w.write(1, f"{s.kind}\t{s.name}\t{s.namespace}\n")
    return w


# -- generic --------------------------------------------------------------------------------------


def title_case(key: str) -> str:
    """`holderIdentity` -> `Holder Identity`, as kubectl's generic describer labels fields."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).split(" ")
    return " ".join(w[:1].upper() + w[1:] for w in words)


def _generic_value(w: Writer, level: int, key: str, value: Any) -> None:
    if isinstance(value, dict):
        w.write(level, f"{title_case(key)}:\n")
        for k in sorted(value):
            _generic_value(w, level + 1, k, value[k])
    elif isinstance(value, list):
        w.write(level, f"{title_case(key)}:\n")
        for item in value:
            if isinstance(item, dict):
                for k in sorted(item):
                    _generic_value(w, level + 1, k, item[k])
            else:
                w.write(level + 1, f"{item}\n")
    else:
        text = "true" if value is True else "false" if value is False else str(value)
        w.line(level, title_case(key), text)


def describe_secret(secret: Any, now: float) -> Writer:
    """kubectl's Secret describer: each key with its size, never its value."""
    w = Writer()
    object_meta(w, secret, True)
    labels(w, 0, "Labels", secret.metadata.labels)
    annotations_section(w, 0, "Annotations", secret.metadata.annotations)
    w.write(0, "\n")
    w.line(0, "Type", secret.type)
    w.flush()
    w.write(0, "\nData\n====\n")
    for key in sorted(secret.data):
        w.line(0, key, f"{len(secret.data[key])} bytes")
    return w


def describe_configmap(cm: Any, now: float) -> Writer:
    """kubectl's ConfigMap describer: data values in full (they are not secret), binaryData by size."""
    w = Writer()
    object_meta(w, cm, True)
    labels(w, 0, "Labels", cm.metadata.labels)
    annotations_section(w, 0, "Annotations", cm.metadata.annotations)
    w.write(0, "\nData\n====\n")
    for key in sorted(cm.data):
        w.write(0, f"{key}:\n----\n")
        w.write(0, f"{cm.data[key]}\n")
        w.write(0, "\n")
    w.write(0, "\nBinaryData\n====\n")
    for key in sorted(cm.binary_data):
        w.write(0, f"{key}: {len(cm.binary_data[key])} bytes\n")
    w.write(0, "\n")
    return w


def describe_generic(obj: Any, now: float, namespaced: bool = True) -> Writer:
    w = Writer()
    doc = manifest.to_dict(obj)
    md = doc.get("metadata", {})
    object_meta(w, obj, namespaced)
    labels(w, 0, "Labels", obj.metadata.labels)
    annotations_section(w, 0, "Annotations", obj.metadata.annotations)
    w.line(0, "API Version", doc.get("apiVersion", ""))
    w.line(0, "Kind", doc.get("kind", ""))
    rest_md = {k: v for k, v in md.items() if k not in ("name", "namespace", "labels", "annotations")}
    if rest_md:
        _generic_value(w, 0, "metadata", rest_md)
    for key in sorted(doc):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        _generic_value(w, 0, key, doc[key])
    return w


# -- events ---------------------------------------------------------------------------------------


def events_text(events: list[Any], now: float) -> str:
    """kubectl's DescribeEvents: `Events:  <none>` or a table sorted by time."""
    w = Writer()
    if not events:
        w.line(0, "Events", "<none>")
        return w.text()
    w.write(0, "Events:\n")
    w.write(1, "Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in sorted(events, key=event_time):
        first = since(e.event_time or e.first_timestamp or e.metadata.creation_timestamp, now)
        if e.HasField("series") and e.series.fields.get("count"):
            count = int(e.series.fields["count"].number_value)
            last = e.series.fields["lastObservedTime"].string_value if "lastObservedTime" in e.series.fields else ""
            interval = f"{since(last, now)} (x{count} over {first})"
        elif e.count > 1:
            interval = f"{since(e.last_timestamp, now)} (x{e.count} over {first})"
        else:
            interval = first
        source = e.source.component or e.reporting_component
        w.write(1, f"{e.type}\t{e.reason}\t{interval}\t{source}\t{e.message.strip()}\n")
    return w.text()


__all__ = ["Writer", "describe_binding", "describe_cronjob", "describe_daemonset", "describe_generic",
           "describe_job", "describe_node", "describe_pod", "describe_role", "events_text", "pod_columns"]
