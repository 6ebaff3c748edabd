"""Which nodes a DaemonSet's pod belongs on (NodeShouldRunDaemonPod) and the pod it puts there.

Pure functions of a DaemonSet and a Node, as Kubernetes' pkg/controller/daemon: the decision is
made on the pod the controller would create (the template with the daemon tolerations added and
nodeName set), so that taints and affinity are judged exactly as the scheduler would judge them.
"""

from __future__ import annotations

from ketch.api import meta, scheduling, timeutil
from ketch.api.scheduling import NO_EXECUTE, NO_SCHEDULE
from ketch.v1 import apps_pb2, core_pb2

REVISION_HASH_LABEL = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

# (key, effect) of the tolerations every daemon pod gets (operator Exists, no tolerationSeconds),
# so it survives not-ready/unreachable eviction and lands on cordoned or pressured nodes.
DAEMON_TOLERATIONS: tuple[tuple[str, str], ...] = (
    (scheduling.TAINT_NOT_READY, NO_EXECUTE),
    (scheduling.TAINT_UNREACHABLE, NO_EXECUTE),
    (scheduling.TAINT_DISK_PRESSURE, NO_SCHEDULE),
    (scheduling.TAINT_MEMORY_PRESSURE, NO_SCHEDULE),
    (scheduling.TAINT_PID_PRESSURE, NO_SCHEDULE),
    (scheduling.TAINT_UNSCHEDULABLE, NO_SCHEDULE),
)
HOST_NETWORK_TOLERATION = (scheduling.TAINT_NETWORK_UNAVAILABLE, NO_SCHEDULE)


def _add_or_update_toleration(spec: core_pb2.PodSpec, key: str, effect: str) -> None:
    """AddOrUpdateTolerationInPodSpec: tolerations are unique by (key, effect, operator, value);
    an existing one is replaced (dropping any tolerationSeconds)."""
    for tol in spec.tolerations:
        if tol.key == key and tol.effect == effect and tol.operator == "Exists" and not tol.value:
            tol.ClearField("toleration_seconds")
            return
    spec.tolerations.add(key=key, operator="Exists", effect=effect)


def add_daemon_tolerations(spec: core_pb2.PodSpec) -> None:
    for key, effect in DAEMON_TOLERATIONS:
        _add_or_update_toleration(spec, key, effect)
    if spec.host_network:
        _add_or_update_toleration(spec, *HOST_NETWORK_TOLERATION)


def template_generation(ds: apps_pb2.DaemonSet) -> int | None:
    """The DS template generation the API server keeps in an annotation (None if unparsable)."""
    text = ds.metadata.annotations.get(TEMPLATE_GENERATION_ANNOTATION)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def pod_template(ds: apps_pb2.DaemonSet, hash_: str) -> core_pb2.PodTemplateSpec:
    """CreatePodTemplate: the template plus daemon tolerations and the revision labels."""
    tmpl = core_pb2.PodTemplateSpec()
    tmpl.CopyFrom(ds.spec.template)
    add_daemon_tolerations(tmpl.spec)
    gen = template_generation(ds)
    if gen is not None:
        tmpl.metadata.labels[TEMPLATE_GENERATION_LABEL] = str(gen)
    if hash_:
        tmpl.metadata.labels[REVISION_HASH_LABEL] = hash_
    return tmpl


def replace_node_name_affinity(spec: core_pb2.PodSpec, node_name: str) -> None:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required terms become one term,
    `matchFields metadata.name In [node]` (the node was already checked against the old ones)."""
    required = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    del required.node_selector_terms[:]
    term = required.node_selector_terms.add()
    term.match_fields.add(key="metadata.name", operator="In", values=[node_name])


def new_pod(ds: apps_pb2.DaemonSet, template: core_pb2.PodTemplateSpec, node_name: str,
            bind: bool = True) -> core_pb2.Pod:
    """The pod to create on node_name from a template made by pod_template()."""
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.namespace = ds.metadata.namespace
    pod.metadata.generate_name = f"{ds.metadata.name}-"
    for k, v in template.metadata.labels.items():
        pod.metadata.labels[k] = v
    for k, v in template.metadata.annotations.items():
        pod.metadata.annotations[k] = v
    pod.metadata.finalizers.extend(template.metadata.finalizers)
    pod.metadata.owner_references.append(meta.owner_ref_for(ds))
    pod.spec.CopyFrom(template.spec)
    replace_node_name_affinity(pod.spec, node_name)
    if bind:
        pod.spec.node_name = node_name
    return pod


def simulated_pod(ds: apps_pb2.DaemonSet, node_name: str) -> core_pb2.PodSpec:
    """NewPod: the spec the predicates judge (template + daemon tolerations + nodeName)."""
    spec = core_pb2.PodSpec()
    spec.CopyFrom(ds.spec.template.spec)
    add_daemon_tolerations(spec)
    spec.node_name = node_name
    return spec


def node_should_run_daemon_pod(node: core_pb2.Node, ds: apps_pb2.DaemonSet,
                               spec: core_pb2.PodSpec | None = None) -> tuple[bool, bool]:
    """(shouldRun, shouldContinueRunning) for ds's pod on node.

    spec may pass a ready-made simulated_pod() spec (its nodeName is ignored) so that a sync over
    many nodes builds it once.
    """
    template_node = ds.spec.template.spec.node_name
    if template_node and template_node != node.metadata.name:
        return False, False
    if spec is None:
        spec = simulated_pod(ds, node.metadata.name)
    if not scheduling.matches_required_node_affinity(spec, node):
        return False, False
    taints = node.spec.taints
    if scheduling.find_untolerated_taint(taints, spec.tolerations,
                                         scheduling.effect_is(NO_SCHEDULE, NO_EXECUTE)) is None:
        return True, True
    # Running daemon pods stay unless a NoExecute taint is not tolerated.
    untolerated_exec = scheduling.find_untolerated_taint(taints, spec.tolerations, scheduling.effect_is(NO_EXECUTE))
    return False, untolerated_exec is None


# ---------------------------------------------------------------------------------------------
# Pod state


def is_pod_ready(pod: core_pb2.Pod) -> bool:
    return meta.condition_true(pod.status.conditions, "Ready")


def is_pod_available(pod: core_pb2.Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready, and Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    cond = meta.find_condition(pod.status.conditions, "Ready")
    if cond is None or cond.status != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = timeutil.parse(cond.last_transition_time) if cond.last_transition_time else 0.0
    return bool(since) and since + min_ready_seconds < now


def seconds_until_available(pod: core_pb2.Pod, min_ready_seconds: int, now: float) -> float | None:
    """How long until a Ready pod has been Ready for minReadySeconds (is_pod_available turns
    true); None when it is not Ready or already available: nothing to wait for."""
    if min_ready_seconds <= 0 or pod.metadata.deletion_timestamp:
        return None
    cond = meta.find_condition(pod.status.conditions, "Ready")
    if cond is None or cond.status != "True" or not cond.last_transition_time:
        return None
    since = timeutil.parse(cond.last_transition_time)
    if not since or since + min_ready_seconds < now:
        return None
    return since + min_ready_seconds - now


def is_pod_updated(pod: core_pb2.Pod, hash_: str, generation: int | None) -> bool:
    """IsPodUpdated: the pod carries the current revision's hash or the template generation."""
    labels = pod.metadata.labels
    if generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == str(generation):
        return True
    return bool(hash_) and labels.get(REVISION_HASH_LABEL) == hash_


def pod_sort_key(pod: core_pb2.Pod) -> tuple[int, float, str]:
    """podByCreationTimestampAndPhase: scheduled first, then oldest, then by name."""
    return (0 if pod.spec.node_name else 1, timeutil.parse(pod.metadata.creation_timestamp), pod.metadata.name)


def target_node_name(pod: core_pb2.Pod) -> str:
    """GetTargetNodeName: spec.nodeName, or the node its matchFields affinity pins it to."""
    if pod.spec.node_name:
        return str(pod.spec.node_name)
    required = scheduling.required_affinity(pod.spec)
    if required is not None:
        for term in required.node_selector_terms:
            for req in term.match_fields:
                if req.key == "metadata.name" and req.operator == "In":
                    # More than one name is an error in GetTargetNodeName: no target.
                    return str(req.values[0]) if len(req.values) == 1 else ""
    return ""
