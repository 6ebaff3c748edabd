"""Defaulting, validation and warnings through the real API server over gRPC: an invalid Job is
refused naming every bad field and nothing is stored; a valid Job reads back with Kubernetes'
defaults; updates keep the immutable fields; ignored pod fields come back as warnings."""

from __future__ import annotations

import pytest

from ketch.api import errors, manifest

PI_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  completions: 8
  parallelism: 2
  template:
    spec:
      containers:
      - name: pi
        image: perl
        command: ["perl", "-Mbignum=bpi", "-wle", "print bpi(200)"]
        ports: [{containerPort: 8080}]
      restartPolicy: Never
"""

BAD_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: bad
spec:
  parallelism: -1
  template:
    spec:
      containers:
      - name: c
        command: ["true"]
      restartPolicy: Always
"""


async def test_an_invalid_job_is_refused_naming_both_fields_and_nothing_is_stored(api) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await api.client.create(manifest.parse_objects(BAD_JOB)[0])
    assert str(caught.value) == (
        'The Job "bad" is invalid: [spec.parallelism: Invalid value: -1: must be greater than or equal to 0, '
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"]')
    with pytest.raises(errors.NotFound):
        await api.client.get("Job", "bad", "default")
    jobs, _ = await api.client.list("Job", "default")
    assert jobs == []


async def test_a_valid_job_reads_back_with_the_defaults_and_a_warning_for_ports(api) -> None:
    warnings: list[str] = []
    api.client.on_warning = warnings.append
    await api.client.create(manifest.parse_objects(PI_JOB)[0])
    job = manifest.to_dict(await api.client.get("Job", "pi", "default"))
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["completionMode"], spec["suspend"]) == (6, "NonIndexed", False)
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    pod = spec["template"]["spec"]
    assert (pod["terminationGracePeriodSeconds"], pod["dnsPolicy"], pod["schedulerName"]) == (
        30, "ClusterFirst", "default-scheduler")
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert warnings == ["spec.template.spec.containers[0].ports: ignored: Ketch runs host processes "
                        "(no container networking)"]


async def test_a_job_update_may_scale_but_not_change_its_template(api) -> None:
    job = await api.client.create(manifest.parse_objects(PI_JOB)[0])
    job.spec.parallelism = 4
    job = await api.client.update(job)
    assert job.spec.parallelism == 4
    job.spec.template.spec.containers[0].command.append("extra")
    with pytest.raises(errors.Invalid, match=r"spec\.template: Invalid value: field is immutable"):
        await api.client.update(job)
    stored = await api.client.get("Job", "pi", "default")
    assert list(stored.spec.template.spec.containers[0].command)[-1] == "print bpi(200)"


async def test_a_pod_without_a_command_is_refused(api) -> None:
    pod = manifest.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}})
    with pytest.raises(errors.Invalid, match=r"spec.containers\[0\].command: Required value: ketch runs the "
                                             "command on the host and cannot use an image entrypoint"):
        await api.client.create(pod)


SELECTOR_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: picky
spec:
  selector:
    matchLabels: {app: picky}
  template:
    metadata:
      labels: {app: picky}
    spec:
      containers:
      - name: c
        command: ["true"]
      restartPolicy: Never
"""


async def test_a_job_selector_without_manual_selector_is_refused_not_replaced(api) -> None:
    """Kubernetes keeps the user's matchLabels, adds its uid label, and refuses the result as
    not auto-generated (issue 14, item 2): the Job is not created with another selector."""
    with pytest.raises(errors.Invalid) as caught:
        await api.client.create(manifest.parse_objects(SELECTOR_JOB)[0])
    message = str(caught.value)
    assert message.startswith('The Job "picky" is invalid: spec.selector: Invalid value: ')
    assert '"app": "picky"' in message and "batch.kubernetes.io/controller-uid" in message
    assert message.endswith(": `selector` not auto-generated")
    jobs, _ = await api.client.list("Job", "default")
    assert jobs == []


async def test_a_job_selector_with_manual_selector_is_kept(api) -> None:
    doc = manifest.parse_objects(SELECTOR_JOB)[0]
    doc.spec.manual_selector = True
    job = await api.client.create(doc)
    assert dict(job.spec.selector.match_labels) == {"app": "picky"}


async def test_a_nameless_object_is_refused_naming_every_error(api) -> None:
    """Kubernetes lists every validation error, not only the missing name (issue 14, item 3)."""
    job = manifest.parse_objects(BAD_JOB)[0]
    job.metadata.name = ""
    with pytest.raises(errors.Invalid) as caught:
        await api.client.create(job)
    assert str(caught.value) == (
        'The Job "" is invalid: [metadata.name: Required value: name or generateName is required, '
        'spec.parallelism: Invalid value: -1: must be greater than or equal to 0, '
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"]')
    jobs, _ = await api.client.list("Job", "default")
    assert jobs == []


MANAGED_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: kueued
spec:
  managedBy: kueue.x-k8s.io/multikueue
  template:
    spec:
      containers:
      - name: c
        command: ["true"]
      restartPolicy: Never
"""


async def test_job_managed_by_is_dropped_on_create_as_kubernetes_1_31(api) -> None:
    """JobManagedBy is off in Kubernetes 1.31: the field is dropped on create, so the Job
    controller runs the Job (issue 14, item 4); adding it later is refused as immutable."""
    job = await api.client.create(manifest.parse_objects(MANAGED_JOB)[0])
    assert not job.spec.HasField("managed_by")
    stored = await api.client.get("Job", "kueued", "default")
    assert not stored.spec.HasField("managed_by")
    stored.spec.managed_by = "kueue.x-k8s.io/multikueue"
    with pytest.raises(errors.Invalid, match=r"spec\.managedBy: Invalid value: .*field is immutable"):
        await api.client.update(stored)


DOTTED_NAME = ("metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; "
               "a DNS label is recommended: [must not contain dots]")


async def test_a_job_or_cronjob_named_with_dots_gets_the_dns_label_warning_on_create_only(api) -> None:
    """jobStrategy / cronJobStrategy WarningsOnCreate: a name that is no DNS label is warned about
    (Pods and hostnames are made from it); an update says nothing of it."""
    warnings: list[str] = []
    api.client.on_warning = warnings.append
    job = manifest.parse_objects(PI_JOB.replace("name: pi\n", "name: pi.v1\n", 1))[0]
    job.spec.template.spec.containers[0].ClearField("ports")
    job = await api.client.create(job)
    assert warnings == [DOTTED_NAME]
    cronjob = manifest.from_dict({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello.v1"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "command": ["true"]}]}}}}}})
    await api.client.create(cronjob)
    assert warnings == [DOTTED_NAME, DOTTED_NAME]
    job.spec.parallelism = 3
    await api.client.update(job)
    assert warnings == [DOTTED_NAME, DOTTED_NAME]


async def test_a_time_that_is_not_rfc_3339_is_refused_naming_the_field_and_nothing_is_stored(api) -> None:
    # Stored as it came, it failed every later sync of the object in the controllers (timeutil.parse).
    job = await api.client.create(manifest.parse_objects(PI_JOB)[0])
    with pytest.raises(errors.BadRequest) as caught:
        await api.client.patch("Job", "pi", {"status": {"startTime": "soon"}}, subresource="status")
    assert str(caught.value) == ('the patched Job: status.startTime: parsing time "soon" as '
                                 '"2006-01-02T15:04:05Z07:00": not an RFC 3339 time')
    job.status.start_time = "2024-02-30T00:00:00Z"
    with pytest.raises(errors.BadRequest) as caught:
        await api.client.update_status(job)
    assert str(caught.value) == ('cannot decode the Job: status.startTime: parsing time "2024-02-30T00:00:00Z" as '
                                 '"2006-01-02T15:04:05Z07:00": not an RFC 3339 time')
    stored = await api.client.get("Job", "pi", "default")
    assert stored.status.start_time == ""
    assert stored.metadata.resource_version == job.metadata.resource_version
    lease = manifest.from_dict({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": {"name": "n", "namespace": "kube-node-lease"}, "spec": {}})
    lease.spec.renew_time = "yesterday"
    with pytest.raises(errors.BadRequest, match=r'spec\.renewTime: parsing time "yesterday"'):
        await api.client.create(lease)
    lease.spec.renew_time = "2024-05-01T12:00:00.123456Z"
    assert (await api.client.create(lease)).spec.renew_time == "2024-05-01T12:00:00.123456Z"


async def test_a_cron_number_too_large_for_go_is_invalid_not_an_internal_error(api) -> None:
    doc = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
           "spec": {"schedule": "@every " + "9" * 400 + "h", "jobTemplate": {"spec": {"template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "c", "image": "x", "command": ["true"]}]}}}}}}
    with pytest.raises(errors.Invalid, match=r'^The CronJob "c" is invalid: spec\.schedule: .*time: invalid duration'):
        await api.client.create(manifest.from_dict(doc))
    assert (await api.client.list("CronJob"))[0] == []
