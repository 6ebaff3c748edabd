"""Strategies of apps/v1: DaemonSet and ControllerRevision (pkg/registry/apps/*)."""

from __future__ import annotations

from ketch.api.defaults import apps as apps_defaults
from ketch.api.errors import FieldError
from ketch.api.validation import apps
from ketch.api.warnings import pod_spec_warnings
from ketch.v1 import apps_pb2

from .strategy import Strategy

# The template generation pods are labelled with (pod-template-generation), kept as Kubernetes
# 1.31 keeps it: bumped with generation only when the template changes.
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


class DaemonSetStrategy(Strategy):
    kind = "DaemonSet"
    bumps_generation = True
    resets_status_on_create = True

    def default(self, obj: apps_pb2.DaemonSet) -> None:
        apps_defaults.daemonset(obj)

    def prepare_for_create(self, obj: apps_pb2.DaemonSet, now: float) -> None:
        super().prepare_for_create(obj, now)
        obj.metadata.annotations[TEMPLATE_GENERATION] = str(obj.metadata.generation or 1)

    def validate(self, obj: apps_pb2.DaemonSet) -> list[FieldError]:
        return apps.validate_daemonset(obj)

    def warnings(self, obj: apps_pb2.DaemonSet) -> list[str]:
        return pod_spec_warnings(obj.spec.template.spec, "spec.template.spec")

    def validate_update(self, new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> list[FieldError]:
        return apps.validate_daemonset_update(new, old)

    def validate_status_update(self, new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> list[FieldError]:
        return apps.validate_daemonset_status_update(new, old)

    def prepare_for_update(self, new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> None:
        old_gen = old.metadata.annotations.get(TEMPLATE_GENERATION, str(old.metadata.generation))
        if new.spec.template.SerializeToString(deterministic=True) != \
                old.spec.template.SerializeToString(deterministic=True):
            new.metadata.annotations[TEMPLATE_GENERATION] = str(new.metadata.generation)
        else:
            new.metadata.annotations[TEMPLATE_GENERATION] = old_gen


class ControllerRevisionStrategy(Strategy):
    kind = "ControllerRevision"

    def validate(self, obj: apps_pb2.ControllerRevision) -> list[FieldError]:
        return apps.validate_controller_revision(obj)

    def validate_update(self, new: apps_pb2.ControllerRevision,
                        old: apps_pb2.ControllerRevision) -> list[FieldError]:
        return apps.validate_controller_revision_update(new, old)
