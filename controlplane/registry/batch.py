"""Strategies of batch/v1: Job and CronJob (pkg/registry/batch/*)."""

from __future__ import annotations

from collections.abc import Mapping

from ketch.api.defaults import batch as batch_defaults
from ketch.api.errors import FieldError
from ketch.api.validation import batch, batch_update, field
from ketch.api.warnings import pod_spec_warnings
from ketch.v1 import batch_pb2

from .strategy import ORPHAN, Strategy


def name_warnings(name: str) -> list[str]:
    """WarningsOnCreate of Jobs and CronJobs (Kubernetes 1.27+): their name makes Pod names and
    hostnames, so one that is no DNS label is warned about (not refused)."""
    msgs = field.dns1123_label(name)
    if not msgs:
        return []
    return ["metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; "
            f"a DNS label is recommended: [{' '.join(msgs)}]"]


class JobStrategy(Strategy):
    kind = "Job"
    bumps_generation = True
    resets_status_on_create = True
    # Kubernetes keeps a Job's pods when no propagation is asked for, and says so.
    default_propagation = ORPHAN
    default_propagation_warning = (
        "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
        "to remove them or set propagationPolicy=Orphan to suppress this warning")
    # JobToSelectableFields: `kubectl delete jobs --field-selector status.successful=1`.
    field_labels = frozenset({"status.successful"})

    def default(self, obj: batch_pb2.Job) -> None:
        batch_defaults.job(obj)

    def prepare_for_create(self, obj: batch_pb2.Job, now: float) -> None:
        """The generated selector and pod labels (manualSelector unset), as Kubernetes' job strategy
        (generateSelector): a selector the user wrote is kept and gets the uid label added, so
        validation refuses it as not auto-generated rather than it being silently replaced.
        spec.managedBy is dropped: Kubernetes 1.31's JobManagedBy gate is off."""
        super().prepare_for_create(obj, now)
        uid, name = obj.metadata.uid, obj.metadata.name
        labels = obj.spec.template.metadata.labels
        if not (obj.spec.HasField("manual_selector") and obj.spec.manual_selector):
            for k, v in (("batch.kubernetes.io/controller-uid", uid), ("controller-uid", uid),
                         ("batch.kubernetes.io/job-name", name), ("job-name", name)):
                labels.setdefault(k, v)
            obj.spec.selector.match_labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        obj.spec.ClearField("managed_by")
        if not obj.metadata.labels:
            for k, v in labels.items():
                obj.metadata.labels[k] = v

    def validate(self, obj: batch_pb2.Job) -> list[FieldError]:
        return batch.validate_job(obj)

    def field_values(self, obj: batch_pb2.Job) -> Mapping[str, str]:
        return {"status.successful": str(obj.status.succeeded)}

    def warnings(self, obj: batch_pb2.Job) -> list[str]:
        return pod_spec_warnings(obj.spec.template.spec, "spec.template.spec")

    def warnings_on_create(self, obj: batch_pb2.Job) -> list[str]:
        return name_warnings(obj.metadata.name) + self.warnings(obj)

    def validate_update(self, new: batch_pb2.Job, old: batch_pb2.Job) -> list[FieldError]:
        return batch_update.validate_job_update(new, old)

    def validate_status_update(self, new: batch_pb2.Job, old: batch_pb2.Job) -> list[FieldError]:
        return batch_update.validate_job_status_update(new, old)


class CronJobStrategy(Strategy):
    kind = "CronJob"
    bumps_generation = True
    resets_status_on_create = True

    def default(self, obj: batch_pb2.CronJob) -> None:
        batch_defaults.cronjob(obj)

    def validate(self, obj: batch_pb2.CronJob) -> list[FieldError]:
        return batch.validate_cronjob(obj)

    def warnings(self, obj: batch_pb2.CronJob) -> list[str]:
        return pod_spec_warnings(obj.spec.job_template.spec.template.spec, "spec.jobTemplate.spec.template.spec")

    def warnings_on_create(self, obj: batch_pb2.CronJob) -> list[str]:
        return name_warnings(obj.metadata.name) + self.warnings(obj)

    def validate_update(self, new: batch_pb2.CronJob, old: batch_pb2.CronJob) -> list[FieldError]:
        return batch_update.validate_cronjob_update(new, old)
