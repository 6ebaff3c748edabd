from __future__ import annotations

import json

import pytest

from ketch.api import manifest
from ketch.v1 import apps_pb2, batch_pb2

PI = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
  creationTimestamp: null
spec:
  completions: 8
  parallelism: 2
  template:
    spec:
      volumes: [{name: v, configMap: {defaultMode: 420}}]
      containers:
      - name: pi
        image: perl
        command: ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]
        livenessProbe: {httpGet: {port: http}}
      restartPolicy: Never
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: d}
spec:
  selector: {matchLabels: {app: d}}
  updateStrategy: {rollingUpdate: {maxUnavailable: "25%", maxSurge: 1}}
  template:
    metadata: {labels: {app: d}}
    spec: {containers: [{name: c, command: [sleep, "60"]}]}
"""


def test_multi_document_yaml_decodes_to_typed_objects() -> None:
    job, ds = manifest.parse_objects(PI)
    assert isinstance(job, batch_pb2.Job) and isinstance(ds, apps_pb2.DaemonSet)
    assert job.spec.completions == 8 and job.spec.HasField("parallelism")
    assert not job.spec.HasField("backoff_limit")


def test_round_trip_is_exact_kubernetes_json() -> None:
    for doc in manifest.load_documents(PI):
        doc["metadata"].pop("creationTimestamp", None)
        obj = manifest.from_dict(doc)
        assert manifest.to_dict(obj) == json.loads(json.dumps(doc, sort_keys=True))


def test_int_or_string_and_struct_numbers_stay_integers() -> None:
    _, ds = manifest.parse_objects(PI)
    out = manifest.to_dict(ds)["spec"]["updateStrategy"]["rollingUpdate"]
    assert out == {"maxSurge": 1, "maxUnavailable": "25%"}
    job = manifest.to_dict(manifest.parse_objects(PI)[0])
    assert job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"] == 420


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"foo": 1}}, 'unknown field "spec.foo"'),
        ({"spec": {"template": {"spec": {"containers": [{"name": "c", "bar": 1}]}}}},
         'unknown field "spec.template.spec.containers[0].bar"'),
        ({"spec": {"parallelism": "two"}}, 'spec.parallelism: expected an integer, got string "two"'),
        ({"spec": {"suspend": "yes"}}, "spec.suspend: expected a boolean"),
        ({"metadata": {"labels": {"a": 1}}}, "metadata.labels.a: expected a string"),
    ],
)
def test_decoding_is_strict_and_names_the_field(patch: dict, message: str) -> None:
    doc = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}}
    doc.update(patch)
    with pytest.raises(manifest.DecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        manifest.from_dict(doc)


def test_unknown_kind_and_missing_kind_are_errors() -> None:
    with pytest.raises(manifest.DecodeError, match='no matches for kind "Deployment"'):
        manifest.from_dict({"apiVersion": "apps/v1", "kind": "Deployment"})
    with pytest.raises(manifest.DecodeError, match="Kind"):
        manifest.from_dict({"apiVersion": "v1"})


def test_json_list_documents_expand() -> None:
    text = json.dumps({"kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}]})
    (obj,) = manifest.parse_objects(text)
    assert obj.metadata.name == "a"


@pytest.mark.parametrize(("value", "shown"), [(".nan", "NaN"), (".inf", "+Inf"), ("-.inf", "-Inf")])
def test_a_yaml_number_json_cannot_carry_is_a_decode_error_naming_the_field(value: str, shown: str) -> None:
    # It decoded into the free-form field, and the server's validation failed on it (INTERNAL).
    text = f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: x}}
spec:
  template:
    spec:
      containers: [{{name: c, command: ["true"], ports: [{{containerPort: {value}}}]}}]
"""
    with pytest.raises(manifest.DecodeError) as info:
        manifest.parse_objects(text)
    path = "spec.template.spec.containers[0].ports[0].containerPort"
    assert str(info.value) == f'Job in version "v1" cannot be handled as a Job: {path}: unsupported value: {shown}'
    assert info.value.fields == ((path, f"{path}: unsupported value: {shown}"),)


@pytest.mark.parametrize("text", ["soon", "2024-05-01", "2024-05-01 12:00:00", "2024-05-01T12:00:00",
                                  "2024-13-01T00:00:00Z", "2024-05-01T24:00:00Z", "0000-01-01T00:00:00Z"])
def test_a_time_that_is_not_rfc_3339_is_a_decode_error_naming_the_field(text: str) -> None:
    doc = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
           "spec": {"taints": [{"key": "k", "effect": "NoExecute", "timeAdded": text}]}}
    with pytest.raises(manifest.DecodeError) as info:
        manifest.from_dict(doc)
    assert str(info.value) == ('Node in version "v1" cannot be handled as a Node: spec.taints[0].timeAdded: '
                               f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": not an RFC 3339 time')


@pytest.mark.parametrize("text", ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00.123456789Z",
                                  "2024-05-01T12:00:00+05:30", "2024-05-01T12:00:00-08:00"])
def test_rfc_3339_times_decode(text: str) -> None:
    doc = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
           "spec": {"taints": [{"key": "k", "effect": "NoExecute", "timeAdded": text}]}}
    assert manifest.from_dict(doc).spec.taints[0].time_added == text
