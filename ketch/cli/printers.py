"""Output: kubectl's tables per kind (with -o wide), JSON, YAML, names, jsonpath and custom columns.

A table printer is a function (obj, now, wide) -> list of cells, registered with its headers in
TABLES; each follows kubectl 1.31's printers.go for its kind. Kinds without one get NAME and AGE.
`now` is passed in, so tests print with a fixed clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from google.protobuf.message import Message

from ketch.api import manifest, meta, timeutil
from ketch.api.kinds import KindInfo, info_of

from .tabwriter import table_text

if TYPE_CHECKING:  # annotations only: a printer never needs the other kinds' modules loaded
    from ketch.v1 import apps_pb2, batch_pb2, core_pb2

Row = list[str]
RowFunc = Callable[[Any, float, bool], Row]
OUTPUT_FORMATS = "custom-columns,json,jsonpath,name,wide,yaml"


# -- time -----------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: 45s, 3m20s, 15m, 5h4m, 30h, 3d4h, 300d, 2y10d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h{m}m" if m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d{h}h" if h else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y{dy}d" if dy else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def since(ts: str, now: float) -> str:
    """translateTimestampSince: the age of an RFC 3339 time, `<unknown>` when unset."""
    if not ts:
        return "<unknown>"
    return human_duration(now - timeutil.parse(ts))


age = since  # the name older callers use


def _none(text: str) -> str:
    return text if text else "<none>"


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted k=v joined by commas, `<none>` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted(dict(labels).items())) or "<none>"


# -- Pod ------------------------------------------------------------------------------------------


def _restartable_init(c: Any) -> bool:
    return c is not None and c.HasField("restart_policy") and c.restart_policy == "Always"


def _terminal(phase: str) -> bool:
    return phase in ("Succeeded", "Failed")


def pod_columns(pod: core_pb2.Pod, now: float) -> tuple[int, int, str, str]:
    """(ready, total, STATUS, RESTARTS) exactly as kubectl's printPod computes them."""
    status, spec = pod.status, pod.spec
    reason = status.reason or status.phase
    for c in status.conditions:
        if c.type == "PodScheduled" and c.reason == "SchedulingGated":
            reason = "SchedulingGated"
    total = len(spec.containers)
    init_specs = {c.name: c for c in spec.init_containers}
    total += sum(1 for c in spec.init_containers if _restartable_init(c))
    ready = 0
    restarts = 0
    last_restart = 0.0
    sidecar_restarts = 0
    sidecar_last_restart = 0.0

    def finished(cs: Any) -> float:
        lt = cs.last_state
        if lt.HasField("terminated") and lt.terminated.finished_at:
            return timeutil.parse(lt.terminated.finished_at)
        return 0.0

    initializing = False
    for i, cs in enumerate(status.init_container_statuses):
        restarts += cs.restart_count
        last_restart = max(last_restart, finished(cs))
        restartable = _restartable_init(init_specs.get(cs.name))
        if restartable:
            sidecar_restarts += cs.restart_count
            sidecar_last_restart = max(sidecar_last_restart, finished(cs))
        st = cs.state
        if st.HasField("terminated") and st.terminated.exit_code == 0:
            continue
        if restartable and cs.started:
            if cs.ready:
                ready += 1
            continue
        if st.HasField("terminated"):
            t = st.terminated
            if t.reason:
                reason = "Init:" + t.reason
            elif t.signal:
                reason = f"Init:Signal:{t.signal}"
            else:
                reason = f"Init:ExitCode:{t.exit_code}"
        elif st.HasField("waiting") and st.waiting.reason and st.waiting.reason != "PodInitializing":
            reason = "Init:" + st.waiting.reason
        else:
            reason = f"Init:{i}/{len(spec.init_containers)}"
        initializing = True
        break
    if not initializing or meta.condition_true(status.conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, sidecar_last_restart
        has_running = False
        for cs in reversed(status.container_statuses):
            restarts += cs.restart_count
            last_restart = max(last_restart, finished(cs))
            st = cs.state
            if st.HasField("waiting") and st.waiting.reason:
                reason = st.waiting.reason
            elif st.HasField("terminated") and st.terminated.reason:
                reason = st.terminated.reason
            elif st.HasField("terminated"):
                t = st.terminated
                reason = f"Signal:{t.signal}" if t.signal else f"ExitCode:{t.exit_code}"
            elif cs.ready and st.HasField("running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if meta.condition_true(status.conditions, "Ready") else "NotReady"
    if pod.metadata.deletion_timestamp and status.reason == "NodeLost":
        reason = "Unknown"
    elif pod.metadata.deletion_timestamp and not _terminal(status.phase):
        reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    return ready, total, reason, restarts_text


def pod_status_reason(pod: core_pb2.Pod) -> str:
    return pod_columns(pod, 0.0)[2]


def pod_ip(pod: core_pb2.Pod) -> str:
    if len(pod.status.pod_ips):
        return pod.status.pod_ips[0].ip
    return pod.status.pod_ip


def pod_row(pod: core_pb2.Pod, now: float, wide: bool) -> Row:
    ready, total, reason, restarts = pod_columns(pod, now)
    row = [pod.metadata.name, f"{ready}/{total}", reason, restarts, since(pod.metadata.creation_timestamp, now)]
    if wide:
        gates = "<none>"
        if len(pod.spec.readiness_gates):
            want = [g.fields["conditionType"].string_value for g in pod.spec.readiness_gates]
            true = sum(1 for w in want if meta.condition_true(pod.status.conditions, w))
            gates = f"{true}/{len(want)}"
        row += [_none(pod_ip(pod)), _none(pod.spec.node_name), _none(pod.status.nominated_node_name), gates]
    return row


# -- Job, CronJob, DaemonSet ----------------------------------------------------------------------


def job_status(job: batch_pb2.Job) -> str:
    conds = job.status.conditions
    if meta.condition_true(conds, "Complete"):
        return "Complete"
    if meta.condition_true(conds, "Failed"):
        return "Failed"
    if job.metadata.deletion_timestamp:
        return "Terminating"
    if meta.condition_true(conds, "Suspended"):
        return "Suspended"
    if meta.condition_true(conds, "FailureTarget"):
        return "FailureTarget"
    if meta.condition_true(conds, "SuccessCriteriaMet"):
        return "SuccessCriteriaMet"
    return "Running"


def job_completions(job: batch_pb2.Job) -> str:
    spec, status = job.spec, job.status
    if spec.HasField("completions"):
        return f"{status.succeeded}/{spec.completions}"
    parallelism = spec.parallelism if spec.HasField("parallelism") else 0
    return f"{status.succeeded}/1 of {parallelism}" if parallelism > 1 else f"{status.succeeded}/1"


def job_duration(job: batch_pb2.Job, now: float) -> str:
    status = job.status
    if not status.start_time:
        return ""
    end = timeutil.parse(status.completion_time) if status.completion_time else now
    return human_duration(end - timeutil.parse(status.start_time))


def _containers_images_selector(pod_spec: Any, selector: Any) -> Row:
    names = ",".join(c.name for c in pod_spec.containers)
    images = ",".join(c.image for c in pod_spec.containers)
    from ketch.api.selectors import selector_string  # here: only -o wide shows it (start-up cost, issue 14)

    return [names, images, _none(selector_string(selector))]


def job_row(job: batch_pb2.Job, now: float, wide: bool) -> Row:
    row = [job.metadata.name, job_status(job), job_completions(job), job_duration(job, now),
           since(job.metadata.creation_timestamp, now)]
    if wide:
        row += _containers_images_selector(job.spec.template.spec, job.spec.selector)
    return row


def cronjob_row(cj: batch_pb2.CronJob, now: float, wide: bool) -> Row:
    spec = cj.spec
    row = [cj.metadata.name, spec.schedule, _none(spec.time_zone if spec.HasField("time_zone") else ""),
           "True" if spec.suspend else "False", str(len(cj.status.active)),
           since(cj.status.last_schedule_time, now) if cj.status.last_schedule_time else "<none>",
           since(cj.metadata.creation_timestamp, now)]
    if wide:
        tspec = spec.job_template.spec
        row += _containers_images_selector(tspec.template.spec, tspec.selector)
    return row


def daemonset_row(ds: apps_pb2.DaemonSet, now: float, wide: bool) -> Row:
    st = ds.status
    row = [ds.metadata.name, str(st.desired_number_scheduled), str(st.current_number_scheduled),
           str(st.number_ready), str(st.updated_number_scheduled), str(st.number_available),
           format_labels(ds.spec.template.spec.node_selector), since(ds.metadata.creation_timestamp, now)]
    if wide:
        row += _containers_images_selector(ds.spec.template.spec, ds.spec.selector)
    return row


# -- Node, Namespace, Event, others ---------------------------------------------------------------


def node_status(node: core_pb2.Node) -> str:
    ready = meta.find_condition(node.status.conditions, "Ready")
    parts = []
    if ready is not None:
        parts.append("Ready" if ready.status == "True" else "NotReady")
    else:
        parts.append("Unknown")
    if node.spec.unschedulable:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: core_pb2.Node) -> str:
    roles = set()
    for k, v in node.metadata.labels.items():
        if k.startswith("node-role.kubernetes.io/"):
            roles.add(k.partition("/")[2])
        elif k == "kubernetes.io/role":
            roles.add(v)
    return ",".join(sorted(r for r in roles if r)) or "<none>"


def node_row(node: core_pb2.Node, now: float, wide: bool) -> Row:
    row = [node.metadata.name, node_status(node), node_roles(node),
           since(node.metadata.creation_timestamp, now), node.status.node_info.kubelet_version]
    if wide:
        addr: dict[str, str] = {}
        for a in node.status.addresses:
            addr.setdefault(a.type, a.address)
        info = node.status.node_info
        row += [addr.get("InternalIP", "<none>"), addr.get("ExternalIP", "<none>"),
                info.os_image or "<unknown>", info.kernel_version or "<unknown>",
                info.container_runtime_version or "<unknown>"]
    return row


def namespace_row(ns: Any, now: float, wide: bool) -> Row:
    return [ns.metadata.name, ns.status.phase or "Active", since(ns.metadata.creation_timestamp, now)]


def event_time(ev: Any) -> float:
    """When an event last happened, for sorting (kubectl's SortableEvents)."""
    for ts in (ev.last_timestamp, ev.event_time, ev.first_timestamp, ev.metadata.creation_timestamp):
        if ts:
            return timeutil.parse(ts)
    return 0.0


def event_target(ev: Any) -> str:
    ref = ev.involved_object
    kind = ref.kind.lower()
    return f"{kind}/{ref.name}" if ref.name else kind


def event_row(ev: Any, now: float, wide: bool) -> Row:
    first = ev.first_timestamp or ev.event_time
    first_text = since(first, now)
    last = since(ev.last_timestamp, now) if ev.last_timestamp else first_text
    row = [last, ev.type, ev.reason, event_target(ev)]
    if wide:
        source = ev.source.component or ev.reporting_component
        if ev.source.host:
            source += f", {ev.source.host}"
        row += [ev.involved_object.field_path, source, ev.message.strip(), first_text,
                str(ev.count or 1), ev.metadata.name]
    else:
        row.append(ev.message.strip())
    return row


def revision_row(cr: Any, now: float, wide: bool) -> Row:
    owner = meta.controller_ref(cr)
    ctrl = "<none>"
    if owner is not None:
        group = owner.api_version.rpartition("/")[0]
        ctrl = f"{owner.kind.lower()}.{group}/{owner.name}" if group else f"{owner.kind.lower()}/{owner.name}"
    return [cr.metadata.name, ctrl, str(cr.revision), since(cr.metadata.creation_timestamp, now)]


def lease_row(lease: Any, now: float, wide: bool) -> Row:
    return [lease.metadata.name, lease.spec.holder_identity, since(lease.metadata.creation_timestamp, now)]


def secret_row(secret: Any, now: float, wide: bool) -> Row:
    """Like kubectl: the number of keys, never their values."""
    return [secret.metadata.name, secret.type, str(len(secret.data)), since(secret.metadata.creation_timestamp, now)]


def configmap_row(cm: Any, now: float, wide: bool) -> Row:
    """kubectl's DATA: the keys of data and binaryData together."""
    return [cm.metadata.name, str(len(cm.data) + len(cm.binary_data)), since(cm.metadata.creation_timestamp, now)]


def created_at_row(obj: Any, now: float, wide: bool) -> Row:
    """Roles and ClusterRoles: kubectl prints when they were made, not their age."""
    ts = obj.metadata.creation_timestamp
    return [obj.metadata.name, timeutil.format(timeutil.parse(ts)) if ts else "<unknown>"]


def subjects_strings(subjects: Any) -> tuple[str, str, str]:
    """rbac.SubjectsStrings: users, groups and service accounts (namespace/name), comma-joined."""
    users = [s.name for s in subjects if s.kind == "User"]
    groups = [s.name for s in subjects if s.kind == "Group"]
    sas = [f"{s.namespace}/{s.name}" for s in subjects if s.kind == "ServiceAccount"]
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def binding_row(obj: Any, now: float, wide: bool) -> Row:
    row = [obj.metadata.name, f"{obj.role_ref.kind}/{obj.role_ref.name}", since(obj.metadata.creation_timestamp, now)]
    if wide:
        row.extend(subjects_strings(obj.subjects))
    return row


TABLES: dict[str, tuple[list[str], list[str], RowFunc]] = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"], pod_row),
    "Job": (["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"], job_row),
    "CronJob": (["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
                ["CONTAINERS", "IMAGES", "SELECTOR"], cronjob_row),
    "DaemonSet": (["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
                  ["CONTAINERS", "IMAGES", "SELECTOR"], daemonset_row),
    "Node": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], node_row),
    "Namespace": (["NAME", "STATUS", "AGE"], [], namespace_row),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], [], event_row),
    "ControllerRevision": (["NAME", "CONTROLLER", "REVISION", "AGE"], [], revision_row),
    "Lease": (["NAME", "HOLDER", "AGE"], [], lease_row),
    "Secret": (["NAME", "TYPE", "DATA", "AGE"], [], secret_row),
    "ConfigMap": (["NAME", "DATA", "AGE"], [], configmap_row),
    "Role": (["NAME", "CREATED AT"], [], created_at_row),
    "ClusterRole": (["NAME", "CREATED AT"], [], created_at_row),
    "RoleBinding": (["NAME", "ROLE", "AGE"], ["USERS", "GROUPS", "SERVICEACCOUNTS"], binding_row),
    "ClusterRoleBinding": (["NAME", "ROLE", "AGE"], ["USERS", "GROUPS", "SERVICEACCOUNTS"], binding_row),
}
EVENT_WIDE_HEADERS = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
                      "COUNT", "NAME"]


def _default_row(obj: Any, now: float, wide: bool) -> Row:
    return [obj.metadata.name, since(obj.metadata.creation_timestamp, now)]


def label_column_header(label: str) -> str:
    """formatLabelHeaders: a -L column is headed by the label key's last path segment, upper-cased."""
    return label.rpartition("/")[2].upper()


def headers_for(info: KindInfo, wide: bool = False, all_namespaces: bool = False,
                show_labels: bool = False, label_columns: Sequence[str] = ()) -> Row:
    if info.kind == "Event" and wide:
        h = list(EVENT_WIDE_HEADERS)
    else:
        head, wide_head, _fn = TABLES.get(info.kind, (["NAME", "AGE"], [], _default_row))
        h = list(head) + (list(wide_head) if wide else [])
    if all_namespaces and info.namespaced:
        h.insert(0, "NAMESPACE")
    h.extend(label_column_header(label) for label in label_columns)
    if show_labels:
        h.append("LABELS")
    return h


def table(info: KindInfo, objs: Sequence[Any], wide: bool = False, all_namespaces: bool = False,
          show_labels: bool = False, headers: bool = True, now: float | None = None,
          label_columns: Sequence[str] = ()) -> list[Row]:
    """Header (optional) and one row per object, as `kubectl get` shows them: the kind's columns,
    then a column per -L label, then LABELS (kubectl's decorateTable order)."""
    import time

    now = time.time() if now is None else now
    _head, _wide, fn = TABLES.get(info.kind, (["NAME", "AGE"], [], _default_row))
    rows: list[Row] = [headers_for(info, wide, all_namespaces, show_labels, label_columns)] if headers else []
    for obj in objs:
        row = fn(obj, now, wide)
        if all_namespaces and info.namespaced:
            row.insert(0, obj.metadata.namespace)
        row.extend(obj.metadata.labels.get(label, "") for label in label_columns)
        if show_labels:
            row.append(format_labels(obj.metadata.labels))
        rows.append(row)
    return rows


# -- other output formats -------------------------------------------------------------------------


def list_document(objs: Sequence[Message], resource_version: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "items": [manifest.to_dict(o) for o in objs], "kind": "List",
            "metadata": {"resourceVersion": resource_version}}


def qualified_name(obj: Message) -> str:
    """`job.batch/pi`, as `-o name` prints it."""
    i = info_of(obj)
    prefix = f"{i.singular}.{i.group}" if i.group else i.singular
    return f"{prefix}/{obj.metadata.name}"  # type: ignore[attr-defined]


def custom_columns(spec: str) -> list[tuple[str, str]]:
    """`NAME:.metadata.name,NODE:.spec.nodeName` into (header, expression) pairs."""
    cols = []
    for part in spec.split(","):
        if not part:
            continue
        header, sep, expr = part.partition(":")
        if not sep or not expr:
            raise ValueError(f'custom-columns format specified but no custom columns given: "{part}" '
                             "(expected HEADER:JSONPATH)")
        cols.append((header, expr))
    if not cols:
        raise ValueError("custom-columns format specified but no custom columns given")
    return cols


def custom_column_rows(cols: list[tuple[str, str]], docs: Sequence[dict[str, Any]], headers: bool) -> list[Row]:
    from . import jsonpath  # here and below, not at the top: a plain table needs no JSONPath (start-up, issue 14)

    rows: list[Row] = [[h for h, _ in cols]] if headers else []
    for doc in docs:
        row = []
        for _h, expr in cols:
            vals = jsonpath.values(expr, doc)
            row.append(",".join(jsonpath.format_value(v) for v in vals) if vals else "<none>")
        rows.append(row)
    return rows


def sort_objects(objs: list[Any], sort_by: str) -> list[Any]:
    """--sort-by: order by the value of a JSONPath (numbers by value, other values as text)."""
    if not sort_by:
        return objs
    from . import jsonpath

    def key(obj: Any) -> tuple[int, Any]:
        vals = jsonpath.values(sort_by, manifest.to_dict(obj))
        if not vals:
            return (0, "")
        v = vals[0]
        if isinstance(v, bool):
            return (1, int(v))
        if isinstance(v, int | float):
            return (1, v)
        return (2, jsonpath.format_value(v))

    keyed = [(key(o), i, o) for i, o in enumerate(objs)]
    kinds = {k[0] for k, _, _ in keyed if k[0]}
    if len(kinds) > 1:  # mixed numbers and text: compare as text
        keyed = [((2, jsonpath.format_value(k[1])) if k[0] else k, i, o) for k, i, o in keyed]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [o for _, _, o in keyed]


def check_output(output: str) -> None:
    name = output.partition("=")[0]
    if output in ("", "wide", "json", "yaml", "name") or name in (
            "jsonpath", "custom-columns", "jsonpath-as-json"):
        if name in ("jsonpath", "jsonpath-as-json", "custom-columns") and not output.partition("=")[2]:
            raise ValueError(f"{name} format specified but no {name} template given")
        if name.startswith("jsonpath"):
            from . import jsonpath

            jsonpath.parse_template(output.partition("=")[2])
        return
    raise ValueError(f'unable to match a printer suitable for the output format "{output}", '
                     f"allowed formats are: {OUTPUT_FORMATS}")


def print_objects(out: TextIO, objs: Sequence[Message], output: str, single: bool, info: KindInfo,
                  all_namespaces: bool = False, show_labels: bool = False, headers: bool = True,
                  now: float | None = None) -> None:
    """Print objects in an output format; `single` prints one object rather than a List."""
    check_output(output)
    fmt, _, arg = output.partition("=")
    if fmt in ("json", "yaml", "jsonpath", "jsonpath-as-json"):
        from . import jsonpath

        doc = manifest.to_dict(objs[0]) if single and objs else list_document(objs)
        if fmt == "json":
            out.write(json.dumps(doc, indent=4, ensure_ascii=False) + "\n")
        elif fmt == "yaml":
            out.write(manifest.to_yaml(doc))
        elif fmt == "jsonpath-as-json":
            out.write(json.dumps(jsonpath.values(arg, doc), indent=4, ensure_ascii=False) + "\n")
        else:
            out.write(jsonpath.render(arg, doc))  # no newline added, as kubectl
    elif fmt == "name":
        for o in objs:
            out.write(qualified_name(o) + "\n")
    elif fmt == "custom-columns":
        docs = [manifest.to_dict(o) for o in objs]
        out.write(table_text(custom_column_rows(custom_columns(arg), docs, headers)))
    else:
        out.write(table_text(table(info, objs, wide=output == "wide", all_namespaces=all_namespaces,
                                   show_labels=show_labels, headers=headers, now=now)))
