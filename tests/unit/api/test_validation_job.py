"""Job and CronJob validation on create: each rule passes a valid object and names the bad field
with Kubernetes' path and message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ketch.api import errors

from .objects import CRONJOB, JOB, UID, container, pod_spec, server_view, validate_create

RESTART_REQUIRED = 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
NONNEG = "Invalid value: -1: must be greater than or equal to 0"
GENERATED = (f'map[string]string{{"batch.kubernetes.io/controller-uid":"{UID}", '
             f'"batch.kubernetes.io/job-name":"pi", "controller-uid":"{UID}", "job-name":"%s"}}')


@dataclass(frozen=True)
class Case:
    name: str
    changes: dict[str, Any]
    errors: tuple[str, ...] = ()
    doc: dict[str, Any] = field(default_factory=lambda: JOB)


def indexed(**spec: Any) -> dict[str, Any]:
    return {"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 5, **spec}}


def pfp(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"spec": {"podFailurePolicy": {"rules": list(rules)}, **spec}}


JOB_CASES = [
    Case("the pi job is valid", {}),
    Case("negative parallelism and restartPolicy Always are both named (the contract check)",
         {"spec": {"parallelism": -1, "template": {"spec": {"restartPolicy": "Always"}}}},
         (f"spec.parallelism: {NONNEG}", RESTART_REQUIRED)),
    Case("restartPolicy OnFailure is valid", {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}}),
    Case("an unset restartPolicy defaults to Always, which a Job refuses",
         {"spec": {"template": {"spec": {"restartPolicy": None}}}}, (RESTART_REQUIRED,)),
    Case("an unknown restartPolicy fails the pod and the job rule",
         {"spec": {"template": {"spec": {"restartPolicy": "Sometimes"}}}},
         ('spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
          '"OnFailure", "Never"',
          'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "OnFailure", "Never"')),
    Case("negative completions", {"spec": {"completions": -1}}, (f"spec.completions: {NONNEG}",)),
    Case("negative activeDeadlineSeconds", {"spec": {"activeDeadlineSeconds": -1}},
         (f"spec.activeDeadlineSeconds: {NONNEG}",)),
    Case("negative backoffLimit", {"spec": {"backoffLimit": -1}}, (f"spec.backoffLimit: {NONNEG}",)),
    Case("negative ttlSecondsAfterFinished", {"spec": {"ttlSecondsAfterFinished": -1}},
         (f"spec.ttlSecondsAfterFinished: {NONNEG}",)),
    Case("an unknown completionMode", {"spec": {"completionMode": "Bogus"}},
         ('spec.completionMode: Unsupported value: "Bogus": supported values: "NonIndexed", "Indexed"',)),
    Case("an unknown completionMode is not also said to be NonIndexed",
         {"spec": {"completionMode": "Bogus", "backoffLimitPerIndex": 1, "maxFailedIndexes": 1}},
         ('spec.completionMode: Unsupported value: "Bogus": supported values: "NonIndexed", "Indexed"',)),
    Case("a container name with a dot: a subdomain, not a label, so IsDNS1123Label names the dots",
         {"spec": {"template": {"spec": {"containers": [container("main.c")]}}}},
         ('spec.template.spec.containers[0].name: Invalid value: "main.c": must not contain dots',)),
    Case("a job namespace with a dot", {"metadata": {"namespace": "team.a"}},
         ('metadata.namespace: Invalid value: "team.a": must not contain dots',)),
    Case("an Indexed job is valid", indexed()),
    Case("an Indexed job needs completions", {"spec": {"completionMode": "Indexed", "parallelism": 2}},
         ("spec.completions: Required value: when completion mode is Indexed",)),
    Case("an Indexed job runs at most 100000 pods at once", indexed(parallelism=100001),
         ("spec.parallelism: Invalid value: 100001: must be less than or equal to 100000 when completion mode is "
          "Indexed",)),
    Case("backoffLimitPerIndex needs Indexed", {"spec": {"backoffLimitPerIndex": 1}},
         ("spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",)),
    Case("backoffLimitPerIndex with maxFailedIndexes on an Indexed job is valid",
         indexed(backoffLimitPerIndex=1, maxFailedIndexes=2,
                 template={"spec": {"restartPolicy": "Never"}})),
    Case("maxFailedIndexes needs backoffLimitPerIndex", indexed(maxFailedIndexes=1),
         ("spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",)),
    Case("maxFailedIndexes at most completions", indexed(backoffLimitPerIndex=1, maxFailedIndexes=6),
         ("spec.maxFailedIndexes: Invalid value: 6: must be less than or equal to completions",)),
    Case("an Indexed job's last pod hostname must be a DNS label",
         {"metadata": {"name": "a" * 61}, **indexed(completions=100, parallelism=1)},
         (f'metadata.name: Invalid value: "{"a" * 61}": will not able to create pod with invalid DNS label: '
          f'{"a" * 61}-99',)),
    Case("a 60-character Indexed job with 100 completions fits",
         {"metadata": {"name": "a" * 60}, **indexed(completions=100, parallelism=1)}),
    Case("a pod failure policy is valid with restartPolicy Never",
         pfp({"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
             {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]})),
    Case("a pod failure policy needs restartPolicy Never",
         pfp({"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
             template={"spec": {"restartPolicy": "OnFailure"}}),
         ('spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
          'podFailurePolicy is specified',)),
    Case("FailIndex needs backoffLimitPerIndex",
         pfp({"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}),
         ('spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex '
          'to be set',)),
    Case("an unknown action", pfp({"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}),
         ('spec.podFailurePolicy.rules[0].action: Unsupported value: "Retry": supported values: "Count", '
          '"FailIndex", "FailJob", "Ignore"',)),
    Case("a missing action", pfp({"onExitCodes": {"operator": "In", "values": [1]}}),
         ('spec.podFailurePolicy.rules[0].action: Required value: valid values: ["Count" "FailIndex" "FailJob" '
          '"Ignore"]',)),
    Case("a rule with both requirements",
         pfp({"action": "Count", "onExitCodes": {"operator": "In", "values": [1]},
              "onPodConditions": [{"type": "DisruptionTarget"}]}),
         ("spec.podFailurePolicy.rules[0]: Invalid value: specifying both OnExitCodes and OnPodConditions is not "
          "supported",)),
    Case("a rule with neither requirement", pfp({"action": "Count"}),
         ("spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and OnPodConditions is "
          "required",)),
    Case("exit code 0 with In", pfp({"action": "Count", "onExitCodes": {"operator": "In", "values": [0, 1]}}),
         ("spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In "
          "operator",)),
    Case("exit codes out of order", pfp({"action": "Count", "onExitCodes": {"operator": "In", "values": [3, 1]}}),
         ("spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{3, 1}: must be ordered",)),
    Case("duplicate exit codes", pfp({"action": "Count", "onExitCodes": {"operator": "In", "values": [1, 1]}}),
         ("spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Duplicate value: 1",)),
    Case("no exit codes", pfp({"action": "Count", "onExitCodes": {"operator": "In", "values": []}}),
         ("spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{}: at least one value is "
          "required",)),
    Case("an unknown exit code operator", pfp({"action": "Count", "onExitCodes": {"operator": "Is", "values": [1]}}),
         ('spec.podFailurePolicy.rules[0].onExitCodes.operator: Unsupported value: "Is": supported values: "In", '
          '"NotIn"',)),
    Case("exit codes of a container that does not exist",
         pfp({"action": "Count", "onExitCodes": {"containerName": "other", "operator": "In", "values": [1]}}),
         ('spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: "other": must be one of the '
          'container or initContainer names in the pod template',)),
    Case("an unknown condition status",
         pfp({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]}),
         ('spec.podFailurePolicy.rules[0].onPodConditions[0].status: Unsupported value: "Maybe": supported values: '
          '"False", "True", "Unknown"',)),
    Case("more than 20 rules",
         pfp(*[{"action": "Count", "onExitCodes": {"operator": "In", "values": [i + 1]}} for i in range(21)]),
         ("spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items",)),
    Case("podReplacementPolicy Failed only with a pod failure policy",
         pfp({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
             podReplacementPolicy="TerminatingOrFailed"),
         ('spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: "Failed"',)),
    Case("an unknown podReplacementPolicy", {"spec": {"podReplacementPolicy": "Sometimes"}},
         ('spec.podReplacementPolicy: Unsupported value: "Sometimes": supported values: "Failed", '
          '"TerminatingOrFailed"',)),
    Case("a success policy on an Indexed job is valid",
         indexed(successPolicy={"rules": [{"succeededIndexes": "0,2-4", "succeededCount": 3}]})),
    Case("a success policy needs Indexed", {"spec": {"successPolicy": {"rules": [{"succeededCount": 1}]}}},
         ('spec.successPolicy: Invalid value: {"rules": [{"succeededCount": 1}]}: requires indexed completion mode',)),
    Case("a success policy needs rules", indexed(successPolicy={"rules": []}),
         ("spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy "
          "is specified",)),
    Case("an empty success rule", indexed(successPolicy={"rules": [{}]}),
         ("spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be "
          "specified",)),
    Case("succeededIndexes out of order", indexed(successPolicy={"rules": [{"succeededIndexes": "3-1"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "3-1": error parsing succeededIndexes: '
          'non-increasing order, previous: 3, current: 1',)),
    Case("succeededIndexes are read as Go's Atoi reads them: no spaces",
         indexed(successPolicy={"rules": [{"succeededIndexes": "0, 2"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0, 2": error parsing succeededIndexes: '
          'cannot convert string to integer for index: " 2"',)),
    Case("succeededIndexes are read as Go's Atoi reads them: no underscores",
         indexed(successPolicy={"rules": [{"succeededIndexes": "1_0"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "1_0": error parsing succeededIndexes: '
          'cannot convert string to integer for index: "1_0"',)),
    Case("succeededIndexes beyond completions", indexed(successPolicy={"rules": [{"succeededIndexes": "1,7"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "1,7": error parsing succeededIndexes: '
          'too large index: "7"',)),
    Case("succeededIndexes with a space", indexed(successPolicy={"rules": [{"succeededIndexes": "0, 2"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0, 2": error parsing succeededIndexes: '
          'cannot convert string to integer for index: " 2"',)),
    Case("succeededIndexes with an underscore", indexed(successPolicy={"rules": [{"succeededIndexes": "1_0"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "1_0": error parsing succeededIndexes: '
          'cannot convert string to integer for index: "1_0"',)),
    Case("succeededIndexes in another script", indexed(successPolicy={"rules": [{"succeededIndexes": "\u0661"}]}),
         ('spec.successPolicy.rules[0].succeededIndexes: Invalid value: "\u0661": error parsing succeededIndexes: '
          'cannot convert string to integer for index: "\u0661"',)),
    Case("succeededCount beyond completions", indexed(successPolicy={"rules": [{"succeededCount": 6}]}),
         ("spec.successPolicy.rules[0].succeededCount: Invalid value: 6: must be less than or equal to 5 (the "
          "number of specified completions)",)),
    Case("succeededCount beyond the listed indexes",
         indexed(successPolicy={"rules": [{"succeededIndexes": "0,1", "succeededCount": 3}]}),
         ("spec.successPolicy.rules[0].succeededCount: Invalid value: 3: must be less than or equal to 2 (the "
          "number of indexes in the specified succeededIndexes field)",)),
    Case("a manual selector that matches the template is valid",
         {"spec": {"manualSelector": True, "selector": {"matchLabels": {"app": "x"}},
                   "template": {"metadata": {"labels": {"app": "x"}}}}}),
    Case("a manual selector must match the template labels",
         {"spec": {"manualSelector": True, "selector": {"matchLabels": {"app": "x"}},
                   "template": {"metadata": {"labels": {"app": "y"}}}}},
         ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: `selector` does not match '
          'template `labels`',)),
    Case("a manual selector is required",
         {"spec": {"manualSelector": True, "template": {"metadata": {"labels": {"app": "y"}}}}},
         ("spec.selector: Required value",
          'spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: `selector` does not match '
          'template `labels`')),
    Case("a selector expression needs values for In",
         {"spec": {"manualSelector": True,
                   "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
                   "template": {"metadata": {"labels": {"app": "y"}}}}},
         ("spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or "
          "'NotIn'",)),
    Case("a template label that contradicts the generated one",
         {"spec": {"template": {"metadata": {"labels": {"job-name": "other"}}}}},
         ("spec.template.metadata.labels[job-name]: Invalid value: " + GENERATED % "other" + ": must be 'pi'",)),
    Case("a Job without a command",
         {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "perl"}]}}}},
         ("spec.template.spec.containers[0].command: Required value: ketch runs the command on the host and cannot "
          "use an image entrypoint",)),
    Case("template labels are checked at spec.template.labels",
         {"metadata": {"labels": {"team": "a"}}, "spec": {"template": {"metadata": {"labels": {"x": "a b"}}}}},
         ('spec.template.labels: Invalid value: "a b": a valid label must be an empty string or consist of '
          "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
          "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
          "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",)),
    # JobManagedBy is off in Kubernetes 1.31: the field is dropped on create, before validation.
    Case("managedBy is dropped on create, even one that is not a domain-prefixed path",
         {"spec": {"managedBy": "controller"}}),
    Case("managedBy with a domain is valid", {"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}}),
]

CRONJOB_CASES = [
    Case("a CronJob is valid", {}, doc=CRONJOB),
    Case("macros are valid", {"spec": {"schedule": "@hourly"}}, doc=CRONJOB),
    Case("six fields with leading seconds are valid (Ketch)", {"spec": {"schedule": "*/5 * * * * *"}}, doc=CRONJOB),
    Case("a schedule is required", {"spec": {"schedule": ""}}, ("spec.schedule: Required value",), doc=CRONJOB),
    Case("an unparseable schedule", {"spec": {"schedule": "61 * * * *"}},
         ('spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',), doc=CRONJOB),
    Case("TZ in the schedule is refused", {"spec": {"schedule": "TZ=UTC 0 * * * *"}},
         ('spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone '
          'field instead',), doc=CRONJOB),
    Case("a bad zone in CRON_TZ: the parse error and the TZ one, as two errors",
         {"spec": {"schedule": "CRON_TZ=Bad/Zone 0 * * * *"}},
         ('spec.schedule: Invalid value: "CRON_TZ=Bad/Zone 0 * * * *": provided bad location Bad/Zone: unknown time '
          'zone Bad/Zone',
          'spec.schedule: Invalid value: "CRON_TZ=Bad/Zone 0 * * * *": cannot use TZ or CRON_TZ in schedule, use '
          'timeZone field instead'), doc=CRONJOB),
    Case("an IANA time zone is valid", {"spec": {"timeZone": "Europe/Berlin"}}, doc=CRONJOB),
    Case("an unknown time zone", {"spec": {"timeZone": "Mars/Olympus"}},
         ('spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus',), doc=CRONJOB),
    Case("Local is not a time zone", {"spec": {"timeZone": "Local"}},
         ('spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone as defined in '
          'https://www.iana.org/time-zones',), doc=CRONJOB),
    Case("local is not a time zone, nor one that loads", {"spec": {"timeZone": "local"}},
         ('spec.timeZone: Invalid value: "local": timeZone must be an explicit time zone as defined in '
          'https://www.iana.org/time-zones',
          'spec.timeZone: Invalid value: "local": unknown time zone local'), doc=CRONJOB),
    Case("negative startingDeadlineSeconds", {"spec": {"startingDeadlineSeconds": -1}},
         (f"spec.startingDeadlineSeconds: {NONNEG}",), doc=CRONJOB),
    Case("an unknown concurrencyPolicy", {"spec": {"concurrencyPolicy": "Sometimes"}},
         ('spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',),
         doc=CRONJOB),
    Case("negative history limits", {"spec": {"successfulJobsHistoryLimit": -1, "failedJobsHistoryLimit": -1}},
         (f"spec.successfulJobsHistoryLimit: {NONNEG}", f"spec.failedJobsHistoryLimit: {NONNEG}"), doc=CRONJOB),
    Case("zero history limits are valid", {"spec": {"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0}},
         doc=CRONJOB),
    Case("a name of 52 characters is valid", {"metadata": {"name": "c" * 52}}, doc=CRONJOB),
    Case("a name longer than 52 characters", {"metadata": {"name": "c" * 53}},
         (f'metadata.name: Invalid value: "{"c" * 53}": must be no more than 52 characters',), doc=CRONJOB),
    Case("the job template is validated like a Job",
         {"spec": {"jobTemplate": {"spec": {"parallelism": -1, "template": {"spec": {"restartPolicy": "Always"}}}}}},
         (f"spec.jobTemplate.spec.parallelism: {NONNEG}",
          'spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'),
         doc=CRONJOB),
    Case("the job template may not carry a selector",
         {"spec": {"jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}}}}},
         ('spec.jobTemplate.spec.selector: Invalid value: {"matchLabels": {"a": "b"}}: `selector` will be '
          'auto-generated',), doc=CRONJOB),
    Case("the job template may not ask for a manual selector",
         {"spec": {"jobTemplate": {"spec": {"manualSelector": True}}}},
         ('spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: "nil", "false"',),
         doc=CRONJOB),
    Case("the job template's containers need a command",
         {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec(
             restartPolicy="Never", containers=[container(command=None)])}}}}},
         ("spec.jobTemplate.spec.template.spec.containers[0].command: Required value: ketch runs the command on the "
          "host and cannot use an image entrypoint",), doc=CRONJOB),
]


@pytest.mark.parametrize("case", JOB_CASES + CRONJOB_CASES, ids=[c.name for c in JOB_CASES + CRONJOB_CASES])
def test_validate_create(case: Case) -> None:
    errs = validate_create(server_view(case.doc, case.changes))
    assert [str(e) for e in errs] == list(case.errors)


def test_the_contract_message_names_both_fields() -> None:
    job = server_view(JOB, {"metadata": {"name": "bad"}, "spec": {
        "parallelism": -1, "template": {"spec": {"restartPolicy": "Always"}}}})
    err = errors.invalid_error("Job", "bad", validate_create(job))
    assert str(err) == ('The Job "bad" is invalid: [spec.parallelism: Invalid value: -1: must be greater than or '
                        'equal to 0, spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", '
                        '"Never"]')
