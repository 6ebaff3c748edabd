"""Output: kubectl-like tables per kind (with -o wide), JSON, YAML and names.

A table printer is a function (obj, now, wide) -> list of cells, registered with its headers in
TABLES. Kinds without one get NAME and AGE.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from google.protobuf.message import Message

from ketch.api import durations, manifest, meta, timeutil
from ketch.api.kinds import KindInfo, info_of
from ketch.api.selectors import selector_string

Row = list[str]
RowFunc = Callable[[Any, float, bool], Row]


def age(ts: str, now: float) -> str:
    if not ts:
        return "<unknown>"
    return durations.format(now - timeutil.parse(ts))


def _none(text: str) -> str:
    return text if text else "<none>"


# -- Pod ------------------------------------------------------------------------------------------


def pod_status_reason(pod: Any) -> str:
    """kubectl's STATUS column for a pod."""
    status = pod.status
    reason = status.reason or status.phase or "Pending"
    initializing = False
    for i, cs in enumerate(status.init_container_statuses):
        st = cs.state
        if st.HasField("terminated") and st.terminated.exit_code == 0:
            continue
        if st.HasField("terminated"):
            if st.terminated.reason:
                reason = "Init:" + st.terminated.reason
            elif st.terminated.signal:
                reason = f"Init:Signal:{st.terminated.signal}"
            else:
                reason = f"Init:ExitCode:{st.terminated.exit_code}"
        elif st.HasField("waiting") and st.waiting.reason and st.waiting.reason != "PodInitializing":
            reason = "Init:" + st.waiting.reason
        else:
            reason = f"Init:{i}/{len(pod.spec.init_containers)}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.container_statuses):
            st = cs.state
            if st.HasField("waiting") and st.waiting.reason:
                reason = st.waiting.reason
            elif st.HasField("terminated") and st.terminated.reason:
                reason = st.terminated.reason
            elif st.HasField("terminated"):
                reason = (f"Signal:{st.terminated.signal}" if st.terminated.signal
                          else f"ExitCode:{st.terminated.exit_code}")
            elif st.HasField("running") and cs.ready:
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running" if meta.condition_true(status.conditions, "Ready") else "NotReady"
    if pod.metadata.deletion_timestamp:
        reason = "Unknown" if status.reason == "NodeLost" else "Terminating"
    return reason


def pod_row(pod: Any, now: float, wide: bool) -> Row:
    total = len(pod.spec.containers)
    ready = sum(1 for cs in pod.status.container_statuses if cs.ready)
    restarts = sum(cs.restart_count for cs in pod.status.container_statuses)
    last_restart = ""
    for cs in pod.status.container_statuses:
        if cs.last_state.HasField("terminated") and cs.last_state.terminated.finished_at:
            last_restart = cs.last_state.terminated.finished_at
    restarts_text = str(restarts)
    if restarts and last_restart:
        restarts_text += f" ({age(last_restart, now)} ago)"
    row = [pod.metadata.name, f"{ready}/{total}", pod_status_reason(pod), restarts_text,
           age(pod.metadata.creation_timestamp, now)]
    if wide:
        row += [_none(pod.status.pod_ip), _none(pod.spec.node_name),
                _none(pod.status.nominated_node_name), "<none>"]
    return row


# -- Job ------------------------------------------------------------------------------------------


def job_status(job: Any) -> str:
    conds = job.status.conditions
    for ctype, text in (("Failed", "Failed"), ("Complete", "Complete"), ("Suspended", "Suspended"),
                        ("FailureTarget", "FailureTarget"), ("SuccessCriteriaMet", "SuccessCriteriaMet")):
        if meta.condition_true(conds, ctype):
            return text
    if job.metadata.deletion_timestamp:
        return "Terminating"
    return "Running"


def job_row(job: Any, now: float, wide: bool) -> Row:
    spec, status = job.spec, job.status
    if spec.HasField("completions"):
        completions = f"{status.succeeded}/{spec.completions}"
    else:
        parallelism = spec.parallelism if spec.HasField("parallelism") else 1
        completions = f"{status.succeeded}/1 of {parallelism}" if parallelism > 1 else f"{status.succeeded}/1"
    duration = ""
    if status.start_time:
        end = timeutil.parse(status.completion_time) if status.completion_time else now
        duration = durations.format(end - timeutil.parse(status.start_time))
    row = [job.metadata.name, job_status(job), completions, duration, age(job.metadata.creation_timestamp, now)]
    if wide:
        row += _containers_images_selector(spec.template.spec, spec.selector)
    return row


def _containers_images_selector(pod_spec: Any, selector: Any) -> Row:
    return [",".join(c.name for c in pod_spec.containers), ",".join(c.image or "<none>" for c in pod_spec.containers),
            _none(selector_string(selector))]


# -- CronJob, DaemonSet ---------------------------------------------------------------------------


def cronjob_row(cj: Any, now: float, wide: bool) -> Row:
    spec = cj.spec
    row = [cj.metadata.name, spec.schedule, _none(spec.time_zone if spec.HasField("time_zone") else ""),
           "True" if spec.suspend else "False", str(len(cj.status.active)),
           age(cj.status.last_schedule_time, now) if cj.status.last_schedule_time else "<none>",
           age(cj.metadata.creation_timestamp, now)]
    if wide:
        tspec = spec.job_template.spec
        row += _containers_images_selector(tspec.template.spec, tspec.selector)
    return row


def daemonset_row(ds: Any, now: float, wide: bool) -> Row:
    st = ds.status
    node_selector = ",".join(f"{k}={v}" for k, v in sorted(ds.spec.template.spec.node_selector.items()))
    row = [ds.metadata.name, str(st.desired_number_scheduled), str(st.current_number_scheduled),
           str(st.number_ready), str(st.updated_number_scheduled), str(st.number_available),
           _none(node_selector), age(ds.metadata.creation_timestamp, now)]
    if wide:
        row += _containers_images_selector(ds.spec.template.spec, ds.spec.selector)
    return row


# -- Node, Namespace, Event, others ---------------------------------------------------------------


def node_status(node: Any) -> str:
    ready = meta.find_condition(node.status.conditions, "Ready")
    if ready is None:
        text = "Unknown"
    elif ready.status == "True":
        text = "Ready"
    else:
        text = "NotReady"
    if node.spec.unschedulable:
        text += ",SchedulingDisabled"
    return text


def node_row(node: Any, now: float, wide: bool) -> Row:
    roles = sorted(k.partition("/")[2] for k in node.metadata.labels
                   if k.startswith("node-role.kubernetes.io/"))
    row = [node.metadata.name, node_status(node), ",".join(roles) or "<none>",
           age(node.metadata.creation_timestamp, now), node.status.node_info.kubelet_version or "<none>"]
    if wide:
        addr = {a.type: a.address for a in node.status.addresses}
        info = node.status.node_info
        row += [addr.get("InternalIP", "<none>"), addr.get("ExternalIP", "<none>"), _none(info.os_image),
                _none(info.kernel_version), _none(info.container_runtime_version)]
    return row


def namespace_row(ns: Any, now: float, wide: bool) -> Row:
    return [ns.metadata.name, ns.status.phase or "Active", age(ns.metadata.creation_timestamp, now)]


def event_row(ev: Any, now: float, wide: bool) -> Row:
    last = ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp
    obj = f"{ev.involved_object.kind.lower()}/{ev.involved_object.name}"
    return [age(last, now), ev.type, ev.reason, obj, ev.message]


def revision_row(cr: Any, now: float, wide: bool) -> Row:
    owner = meta.controller_ref(cr)
    ctrl = f"{owner.kind.lower()}.apps/{owner.name}" if owner else "<none>"
    return [cr.metadata.name, ctrl, str(cr.revision), age(cr.metadata.creation_timestamp, now)]


def lease_row(lease: Any, now: float, wide: bool) -> Row:
    return [lease.metadata.name, lease.spec.holder_identity or "", age(lease.metadata.creation_timestamp, now)]


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
}


def _default_row(obj: Any, now: float, wide: bool) -> Row:
    return [obj.metadata.name, age(obj.metadata.creation_timestamp, now)]


def table(info: KindInfo, objs: Sequence[Any], wide: bool = False, all_namespaces: bool = False,
          show_labels: bool = False, headers: bool = True, now: float | None = None) -> list[Row]:
    now = time.time() if now is None else now
    head, wide_head, fn = TABLES.get(info.kind, (["NAME", "AGE"], [], _default_row))
    rows: list[Row] = []
    if headers:
        h = list(head) + (wide_head if wide else [])
        if all_namespaces and info.namespaced:
            h.insert(0, "NAMESPACE")
        if show_labels:
            h.append("LABELS")
        rows.append(h)
    for obj in objs:
        row = fn(obj, now, wide)
        if all_namespaces and info.namespaced:
            row.insert(0, obj.metadata.namespace)
        if show_labels:
            row.append(",".join(f"{k}={v}" for k, v in sorted(obj.metadata.labels.items())) or "<none>")
        rows.append(row)
    return rows


def format_rows(rows: list[Row]) -> str:
    if not rows:
        return ""
    widths = [0] * max(len(r) for r in rows)
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for r in rows:
        cells = [cell.ljust(widths[i]) if i < len(r) - 1 else cell for i, cell in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def list_document(objs: Sequence[Message]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": [manifest.to_dict(o) for o in objs],
            "metadata": {"resourceVersion": ""}}


def print_objects(out: TextIO, objs: Sequence[Message], output: str, single: bool, info: KindInfo,
                  all_namespaces: bool = False, show_labels: bool = False, headers: bool = True) -> None:
    if output == "json":
        doc = manifest.to_dict(objs[0]) if single and objs else list_document(objs)
        out.write(json.dumps(doc, indent=4, ensure_ascii=False) + "\n")
    elif output == "yaml":
        doc = manifest.to_dict(objs[0]) if single and objs else list_document(objs)
        out.write(manifest.to_yaml(doc))
    elif output == "name":
        for o in objs:
            i = info_of(o)
            prefix = f"{i.singular}.{i.group}" if i.group else i.singular
            out.write(f"{prefix}/{o.metadata.name}\n")  # type: ignore[attr-defined]
    elif output in ("", "wide"):
        out.write(format_rows(table(info, objs, wide=output == "wide", all_namespaces=all_namespaces,
                                    show_labels=show_labels, headers=headers)))
    else:
        raise ValueError(f"unable to match a printer suitable for the output format \"{output}\", "
                         "allowed formats are: json,name,wide,yaml")
