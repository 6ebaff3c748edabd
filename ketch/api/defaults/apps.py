"""apps/v1 defaults (pkg/apis/apps/v1/defaults.go): DaemonSet.

updateStrategy RollingUpdate with maxUnavailable 1 and maxSurge 0, revisionHistoryLimit 10
(minReadySeconds is a plain int, 0 when unset), and the pod template defaults.
"""

from __future__ import annotations

from ketch.api import intstr
from ketch.v1 import apps_pb2

from . import core


def daemonset(obj: apps_pb2.DaemonSet) -> None:
    spec = obj.spec
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
    if strategy.type == "RollingUpdate":
        ru = strategy.rolling_update
        ru.SetInParent()
        if not intstr.is_set(ru.max_unavailable):
            intstr.set_int(ru.max_unavailable, 1)
        if not intstr.is_set(ru.max_surge):
            intstr.set_int(ru.max_surge, 0)
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    core.pod_spec(spec.template.spec)
