"""Validation on create of metadata (every kind), DaemonSet, Node, Namespace, Lease, Event and
ControllerRevision."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

import pytest

from .objects import DAEMONSET, EVENT, LEASE, NAMESPACE, NODE, POD, REVISION, UID, server_view, validate_create

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
QNAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
RU = "spec.updateStrategy.rollingUpdate"


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    changes: dict[str, Any]
    errors: tuple[str, ...] = ()


def owner(name: str, controller: bool = True, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": UID, "controller": controller, **fields}


def _go_local_date(*utc: int) -> str:
    """time.Time's GoString of a UTC instant in this process's zone (metav1.Time decodes to Local)."""
    t = time.localtime(calendar.timegm((*utc, 0, 0, 0)))
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]
    return (f"time.Date({t.tm_year}, time.{months[t.tm_mon - 1]}, {t.tm_mday}, {t.tm_hour}, {t.tm_min}, "
            f"{t.tm_sec}, 0, time.Local)")


def rolling(**fields: Any) -> dict[str, Any]:
    return {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": fields}}}


CASES = [
    # metadata, through a Pod
    Case("labels and annotations with prefixes are valid", POD,
         {"metadata": {"labels": {"app.kubernetes.io/name": "x", "tier": ""},
                       "annotations": {"Example.com/Note": "any text at all"}}}),
    Case("a label key with a space", POD, {"metadata": {"labels": {"bad key": "x"}}},
         (f'metadata.labels: Invalid value: "bad key": {QNAME_MSG}',)),
    Case("a label value longer than 63", POD, {"metadata": {"labels": {"k": "v" * 64}}},
         (f'metadata.labels: Invalid value: "{"v" * 64}": must be no more than 63 characters',)),
    Case("a label key with an empty prefix", POD, {"metadata": {"labels": {"/x": "v"}}},
         ('metadata.labels: Invalid value: "/x": prefix part must be non-empty',)),
    Case("an annotation key with two slashes", POD, {"metadata": {"annotations": {"a/b/c": "v"}}},
         ("metadata.annotations: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric "
          "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
          "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with "
          "an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",)),
    Case("one controller owner is valid", POD, {"metadata": {"ownerReferences": [owner("a"), owner("b", False)]}}),
    Case("two controller owners", POD, {"metadata": {"ownerReferences": [owner("a"), owner("b")]}},
         ('metadata.ownerReferences: Invalid value: [Job/a Job/b]: Only one reference can have Controller set to '
          'true. Found "true" in references for Job/a and Job/b',)),
    Case("an owner without uid", POD, {"metadata": {"ownerReferences": [owner("a", uid="")]}},
         ('metadata.ownerReferences.uid: Invalid value: "": uid must not be empty',)),
    Case("an owner without apiVersion", POD, {"metadata": {"ownerReferences": [owner("a", apiVersion="")]}},
         ('metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',)),
    Case("standard and qualified finalizers are valid", POD,
         {"metadata": {"finalizers": ["batch.kubernetes.io/job-tracking", "foregroundDeletion"]}}),
    Case("a finalizer that is neither standard nor qualified", POD, {"metadata": {"finalizers": ["custom"]}},
         ('metadata.finalizers[0]: Invalid value: "custom": name is neither a standard finalizer name nor is it '
          "fully qualified",)),
    Case("orphan and foregroundDeletion together", POD, {"metadata": {"finalizers": ["orphan", "foregroundDeletion"]}},
         ('metadata.finalizers: Invalid value: []{"orphan", "foregroundDeletion"}: finalizer orphan and '
          "foregroundDeletion cannot be both set",)),
    # DaemonSet
    Case("a DaemonSet is valid", DAEMONSET, {}),
    # ValidateDaemonSetSpec has no Required for a nil selector (Deployments have one): nil selects
    # nothing, so the template's labels are what is reported.
    Case("a DaemonSet needs a selector", DAEMONSET, {"spec": {"selector": None}},
         ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"agentd"}: `selector` does not '
          "match template `labels`",)),
    Case("a DaemonSet selector must match the template", DAEMONSET,
         {"spec": {"selector": {"matchLabels": {"app": "other"}}}},
         ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"agentd"}: `selector` does not '
          "match template `labels`",)),
    Case("an empty DaemonSet selector", DAEMONSET, {"spec": {"selector": {}}},
         ("spec.selector: Invalid value: {}: empty selector is invalid for daemonset",)),
    Case("a DaemonSet template restarts Always", DAEMONSET,
         {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}},
         ('spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',)),
    Case("no activeDeadlineSeconds in a DaemonSet", DAEMONSET,
         {"spec": {"template": {"spec": {"activeDeadlineSeconds": 10}}}},
         ("spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",)),
    Case("OnDelete is valid", DAEMONSET, {"spec": {"updateStrategy": {"type": "OnDelete"}}}),
    Case("an unknown update strategy", DAEMONSET, {"spec": {"updateStrategy": {"type": "Recreate"}}},
         ('spec.updateStrategy: Unsupported value: {Type:"Recreate"}: supported values: "RollingUpdate", '
          '"OnDelete"',)),
    Case("maxUnavailable as a percentage is valid", DAEMONSET, rolling(maxUnavailable="25%")),
    Case("surge instead of unavailability is valid", DAEMONSET, rolling(maxUnavailable=0, maxSurge="25%")),
    Case("maxUnavailable over 100%", DAEMONSET, rolling(maxUnavailable="150%"),
         (f'{RU}.maxUnavailable: Invalid value: "150%": must not be greater than 100%',)),
    # int() of more than 4300 digits raised ValueError (INTERNAL); Go's Atoi reads the largest int64.
    Case("maxUnavailable of 5000 digits", DAEMONSET, rolling(maxUnavailable="9" * 5000 + "%"),
         (f'{RU}.maxUnavailable: Invalid value: "{"9" * 1024}... (5001 characters)": must not be greater than 100%',)),
    Case("maxSurge of 5000 digits", DAEMONSET, rolling(maxUnavailable=0, maxSurge="0" * 4999 + "1%")),
    Case("maxUnavailable not a percentage", DAEMONSET, rolling(maxUnavailable="half"),
         (f"{RU}.maxUnavailable: Invalid value: \"half\": a valid percent string must be a numeric string followed "
          "by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
          f"{RU}.maxUnavailable: Required value: cannot be 0 when maxSurge is 0")),
    Case("negative maxUnavailable", DAEMONSET, rolling(maxUnavailable=-1),
         (f"{RU}.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",)),
    Case("both zero", DAEMONSET, rolling(maxUnavailable=0, maxSurge=0),
         (f"{RU}.maxUnavailable: Required value: cannot be 0 when maxSurge is 0",)),
    Case("both non-zero (maxUnavailable defaults to 1)", DAEMONSET, rolling(maxSurge=1),
         (f"{RU}.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero",)),
    Case("negative minReadySeconds and revisionHistoryLimit", DAEMONSET,
         {"spec": {"minReadySeconds": -1, "revisionHistoryLimit": -1}},
         ("spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0",
          "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0")),
    # Node
    Case("a node with taints is valid", NODE, {"spec": {"taints": [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}, {"key": "gpu", "value": "a100",
                                                                           "effect": "NoSchedule"}]}}),
    Case("a taint needs an effect", NODE, {"spec": {"taints": [{"key": "k"}]}},
         ("spec.taints[0].effect: Required value",)),
    Case("an unknown taint effect", NODE, {"spec": {"taints": [{"key": "k", "effect": "NoRun"}]}},
         ('spec.taints[0].effect: Unsupported value: "NoRun": supported values: "NoSchedule", "PreferNoSchedule", '
          '"NoExecute"',)),
    Case("a taint key must be a label key", NODE, {"spec": {"taints": [{"key": "bad key", "effect": "NoSchedule"}]}},
         (f'spec.taints[0].key: Invalid value: "bad key": {QNAME_MSG}',)),
    Case("taints are unique by key and effect", NODE, {"spec": {"taints": [
        {"key": "k", "value": "a", "effect": "NoSchedule"}, {"key": "k", "value": "b", "effect": "NoSchedule"}]}},
         # Go's %#v of the core.Taint; a nil *metav1.Time prints <nil> (its GoString panics on nil).
         ('spec.taints[1]: Duplicate value: core.Taint{Key:"k", Value:"b", Effect:"NoSchedule", TimeAdded:<nil>}: '
          "taints must be unique by key and effect pair",)),
    Case("a duplicate taint with timeAdded", NODE, {"spec": {"taints": [
        {"key": "k", "effect": "NoExecute"},
        {"key": "k", "effect": "NoExecute", "timeAdded": "2024-03-05T10:20:30Z"}]}},
         ('spec.taints[1]: Duplicate value: core.Taint{Key:"k", Value:"", Effect:"NoExecute", TimeAdded:'
          f'{_go_local_date(2024, 3, 5, 10, 20, 30)}}}: taints must be unique by key and effect pair',)),
    Case("the same key with another effect is valid", NODE, {"spec": {"taints": [
        {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}]}}),
    Case("node capacity must be quantities", NODE, {"status": {"capacity": {"cpu": "lots"}}},
         ("status.capacity.cpu: Invalid value: \"lots\": quantities must match the regular expression "
          "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
          "status.allocatable.cpu: Invalid value: \"lots\": quantities must match the regular expression "
          "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
    Case("an agent's addresses and port as it registers them are valid", NODE, {"status": {
        "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}, {"type": "Hostname", "address": "node-a"},
                      {"type": "ExternalIP", "address": "2001:db8::1"}, {"type": "InternalDNS", "address": "a.lan"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}),
    Case("node addresses have one of the five types", NODE, {"status": {"addresses": [
        {"type": "Internal", "address": "10.0.0.7"}, {"address": "10.0.0.8"}]}},
         ('status.addresses[0].type: Unsupported value: "Internal": supported values: "Hostname", "InternalIP", '
          '"ExternalIP", "InternalDNS", "ExternalDNS"', "status.addresses[1].type: Required value")),
    Case("an InternalIP or ExternalIP is an IP", NODE, {"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.300"}, {"type": "ExternalIP", "address": "fe80::1%eth0"},
        {"type": "InternalIP"}]}},
         ('status.addresses[0].address: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or '
          "2001:db8::ffff)",
          'status.addresses[1].address: Invalid value: "fe80::1%eth0": must be a valid IP address, (e.g. 10.9.8.7 '
          "or 2001:db8::ffff)",
          "status.addresses[2].address: Required value")),
    Case("a Hostname or DNS address is a DNS name", NODE, {"status": {"addresses": [
        {"type": "Hostname", "address": "evil host:1"}]}},
         ('status.addresses[0].address: Invalid value: "evil host:1": a lowercase RFC 1123 subdomain must consist of '
          "lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
          "(e.g. 'example.com', regex used for validation is "
          "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",)),
    Case("the agent's port is a port", NODE, {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 70000}}}},
         ("status.daemonEndpoints.kubeletEndpoint.Port: Invalid value: 70000: must be between 1 and 65535, "
          "inclusive",)),
    Case("node addresses are unique", NODE, {"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.7"}, {"type": "InternalIP", "address": "10.0.0.7"}]}},
         ('status.addresses[1]: Duplicate value: {Type:"InternalIP", Address:"10.0.0.7"}',)),
    # Namespace
    Case("a namespace name is a DNS label", NAMESPACE, {"metadata": {"name": "team_a"}},
         (f'metadata.name: Invalid value: "team_a": {LABEL_MSG}',)),
    Case("a namespace name that is a DNS subdomain is told its dots", NAMESPACE, {"metadata": {"name": "team.a"}},
         ('metadata.name: Invalid value: "team.a": must not contain dots',)),
    Case("a namespace spec finalizer must be standard or qualified", NAMESPACE, {"spec": {"finalizers": ["custom"]}},
         ('spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully '
          "qualified",)),
    # Lease
    Case("a lease is valid", LEASE, {}),
    Case("a lease duration is positive", LEASE, {"spec": {"leaseDurationSeconds": 0}},
         ("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",)),
    Case("lease transitions are not negative", LEASE, {"spec": {"leaseTransitions": -1}},
         ("spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",)),
    # Event
    Case("an event is valid", EVENT, {}),
    Case("an event about an object in another namespace", EVENT,
         {"involvedObject": {"namespace": "other"}},
         ('involvedObject.namespace: Invalid value: "other": does not match event.namespace',)),
    Case("an event about a node goes to default", EVENT,
         {"involvedObject": {"kind": "Node", "name": "node-a", "namespace": None}}),
    Case("a new-style event needs a reporting component", EVENT, {"eventTime": "2024-05-01T12:00:00.000000Z"},
         ("reportingComponent: Required value",)),
    Case("an event name may not contain a slash", EVENT, {"metadata": {"name": "a/b"}},
         ("metadata.name: Invalid value: \"a/b\": may not contain '/'",)),
    # ControllerRevision
    Case("a revision is valid", REVISION, {}),
    Case("a revision needs data", REVISION, {"data": None}, ("data: Required value: data is mandatory",)),
    Case("a revision number is not negative", REVISION, {"revision": -1},
         ("revision: Invalid value: -1: must be greater than or equal to 0",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_create(case: Case) -> None:
    errs = validate_create(server_view(case.doc, case.changes))
    assert [str(e) for e in errs] == list(case.errors)
