"""Strategies of apps/v1: DaemonSet and ControllerRevision (pkg/registry/apps/*)."""

from __future__ import annotations

from ketch.api.defaults import apps as apps_defaults
from ketch.api.errors import FieldError
from ketch.api.validation import apps
from ketch.api.warnings import pod_spec_warnings
from ketch.v1 import apps_pb2

from .strategy import Strategy

# The template generation pods are labelled with (pod-template-generation), kept as Kubernetes
# 1.31 keeps spec.templateGeneration: 1 on create, one more with each template change.
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


class DaemonSetStrategy(Strategy):
    kind = "DaemonSet"
    bumps_generation = True
    resets_status_on_create = True

    def default(self, obj: apps_pb2.DaemonSet) -> None:
        apps_defaults.daemonset(obj)

    def prepare_for_create(self, obj: apps_pb2.DaemonSet, now: float) -> None:
        super().prepare_for_create(obj, now)
        # PrepareForCreate: a given templateGeneration below 1 becomes 1.
        obj.metadata.annotations[TEMPLATE_GENERATION] = str(max(_template_generation(obj), 1))

    def validate(self, obj: apps_pb2.DaemonSet) -> list[FieldError]:
        return apps.validate_daemonset(obj)

    def warnings(self, obj: apps_pb2.DaemonSet) -> list[str]:
        return pod_spec_warnings(obj.spec.template.spec, "spec.template.spec")

    def validate_update(self, new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> list[FieldError]:
        return apps.validate_daemonset_update(new, old)

    def validate_status_update(self, new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> list[FieldError]:
        return apps.validate_daemonset_status_update(new, old)

    def prepare_for_update(self, new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> None:
        # PrepareForUpdate: an update cannot set templateGeneration; a template change adds one.
        gen = _template_generation(old)
        if new.spec.template.SerializeToString(deterministic=True) != \
                old.spec.template.SerializeToString(deterministic=True):
            gen += 1
        new.metadata.annotations[TEMPLATE_GENERATION] = str(gen)


def _template_generation(ds: apps_pb2.DaemonSet) -> int:
    """spec.templateGeneration, which apps/v1 carries in the annotation (0 when absent or not a
    number)."""
    try:
        return int(ds.metadata.annotations.get(TEMPLATE_GENERATION, "0"))
    except ValueError:
        return 0


class ControllerRevisionStrategy(Strategy):
    kind = "ControllerRevision"

    def validate(self, obj: apps_pb2.ControllerRevision) -> list[FieldError]:
        return apps.validate_controller_revision(obj)

    def validate_update(self, new: apps_pb2.ControllerRevision,
                        old: apps_pb2.ControllerRevision) -> list[FieldError]:
        return apps.validate_controller_revision_update(new, old)
