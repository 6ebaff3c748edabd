"""Pod and PodSpec validation on create: names, containers, the command rule, env and the
downward API, probes, resources, tolerations, node affinity, security contexts, metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .objects import POD, container, server_view, validate_create

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
                 "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
QNAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
ENV_MSG = ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and "
           "must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for "
           "validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
                 "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
                  "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
COMMAND = "ketch runs the command on the host and cannot use an image entrypoint"
FIELD_PATHS = ('"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", '
               '"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"')
NA = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"


@dataclass(frozen=True)
class Case:
    name: str
    changes: dict[str, Any]
    errors: tuple[str, ...] = ()


def spec(**fields: Any) -> dict[str, Any]:
    return {"spec": fields}


def main(**fields: Any) -> dict[str, Any]:
    """The pod with its one container changed."""
    return spec(containers=[container(**fields)])


def env(*variables: dict[str, Any]) -> dict[str, Any]:
    return main(env=list(variables))


def field_ref(path: str, api_version: str = "v1") -> dict[str, Any]:
    return env({"name": "X", "valueFrom": {"fieldRef": {"apiVersion": api_version, "fieldPath": path}}})


def probe(kind: str = "livenessProbe", **fields: Any) -> dict[str, Any]:
    return main(**{kind: fields})


def resources(**fields: Any) -> dict[str, Any]:
    return main(resources=fields)


def toleration(**fields: Any) -> dict[str, Any]:
    return spec(tolerations=[fields])


def node_affinity(*expressions: dict[str, Any]) -> dict[str, Any]:
    terms = [{"matchExpressions": list(expressions)}] if expressions else []
    return spec(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}})


CASES = [
    Case("a pod with a command is valid", {}),
    Case("a generateName prefix may end with a dash", {"metadata": {"name": None, "generateName": "pi-"}}),
    Case("a pod name must be a DNS subdomain", {"metadata": {"name": "Pi"}},
         (f'metadata.name: Invalid value: "Pi": {SUBDOMAIN_MSG}',)),
    Case("containers are required", spec(containers=[]), ("spec.containers: Required value",)),
    Case("a container name must be a DNS label", main(name="Main"),
         (f'spec.containers[0].name: Invalid value: "Main": {LABEL_MSG}',)),
    Case("a container needs a name", main(name=""), ("spec.containers[0].name: Required value",)),
    Case("container names are unique", spec(containers=[container(), container()]),
         ('spec.containers[1].name: Duplicate value: "main"',)),
    Case("init container names are unique across containers", spec(initContainers=[container()]),
         ('spec.initContainers[0].name: Duplicate value: "main"',)),
    Case("a container needs a command (there is no image entrypoint)", main(command=None, image="perl"),
         (f"spec.containers[0].command: Required value: {COMMAND}",)),
    Case("an init container needs a command too", spec(initContainers=[container("init", command=[])]),
         (f"spec.initContainers[0].command: Required value: {COMMAND}",)),
    Case("an image is not required", main(image=None)),
    Case("an image with surrounding spaces", main(image=" perl"),
         ('spec.containers[0].image: Invalid value: " perl": must not have leading or trailing whitespace',)),
    Case("a sidecar init container may have probes",
         spec(initContainers=[container("side", restartPolicy="Always", readinessProbe={"exec": {"command": ["x"]}})])),
    Case("a plain init container may not have probes",
         spec(initContainers=[container("init", livenessProbe={"exec": {"command": ["x"]}})]),
         ("spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without "
          "restartPolicy=Always",)),
    Case("an init container restartPolicy other than Always",
         spec(initContainers=[container("i", restartPolicy="Never")]),
         ('spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always"',)),
    Case("a regular container may not set restartPolicy", main(restartPolicy="Always"),
         ("spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",)),
    Case("an unknown restartPolicy", spec(restartPolicy="Sometimes"),
         ('spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',)),
    Case("a negative grace period", spec(terminationGracePeriodSeconds=-1),
         ("spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",)),
    Case("a zero grace period is valid", spec(terminationGracePeriodSeconds=0)),
    Case("activeDeadlineSeconds must be positive", spec(activeDeadlineSeconds=0),
         ("spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",)),
    Case("an unknown dnsPolicy", spec(dnsPolicy="Bogus"),
         ('spec.dnsPolicy: Unsupported value: "Bogus": supported values: "ClusterFirstWithHostNet", '
          '"ClusterFirst", "Default", "None"',)),
    Case("a nodeName must be a DNS subdomain", spec(nodeName="Node_A"),
         (f'spec.nodeName: Invalid value: "Node_A": {SUBDOMAIN_MSG}',)),
    Case("nodeSelector values are label values", spec(nodeSelector={"disk": "a b"}),
         ('spec.nodeSelector: Invalid value: "a b": a valid label must be an empty string or consist of '
          "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
          "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
          "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",)),
    Case("env names", env({"name": "1X", "value": "a"}),
         (f'spec.containers[0].env[0].name: Invalid value: "1X": {ENV_MSG}',)),
    Case("env names may contain dots and dashes", env({"name": "my.env-name", "value": "a"})),
    Case("env needs a name", env({"value": "a"}), ("spec.containers[0].env[0].name: Required value",)),
    Case("every supported fieldRef path is valid",
         env(*[{"name": f"V{i}", "valueFrom": {"fieldRef": {"fieldPath": p}}} for i, p in enumerate(
             ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
              "metadata.annotations['example.com/x']", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
              "status.podIP", "status.hostIPs", "status.podIPs"])])),
    Case("a fieldRef path Kubernetes knows but env cannot read", field_ref("spec.restartPolicy"),
         ('spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.restartPolicy": '
          f"supported values: {FIELD_PATHS}",)),
    Case("an unknown fieldRef path", field_ref("metadata.foo"),
         ('spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.foo": error converting '
          "fieldPath: field label not supported: metadata.foo",)),
    Case("a subscript on a field without keys", field_ref("status.phase['x']"),
         ("spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: \"status.phase['x']\": error "
          "converting fieldPath: field label does not support subscript: status.phase['x']",)),
    Case("a label subscript must be a label key", field_ref("metadata.labels['a b']"),
         (f'spec.containers[0].env[0].valueFrom.fieldRef: Invalid value: "a b": {QNAME_MSG}',)),
    Case("a fieldRef apiVersion other than v1", field_ref("metadata.name", "v2"),
         ('spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.name": error converting '
          "fieldPath: unsupported pod version: v2",)),
    Case("value and valueFrom together",
         env({"name": "X", "value": "a", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
         ('spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty',)),
    Case("a valueFrom with no source", env({"name": "X", "valueFrom": {}}),
         ('spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: `fieldRef`, '
          "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",)),
    Case("configMapKeyRef and secretKeyRef with optional are valid",
         env({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a.b", "optional": True}}},
             {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}})),
    Case("a configMapKeyRef needs a valid name and a config key",
         env({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "Bad_Name", "key": "a/b"}}}),
         ('spec.containers[0].env[0].valueFrom.configMapKeyRef.name: Invalid value: "Bad_Name": ' + SUBDOMAIN_MSG,
          'spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: "a/b": ' + CONFIG_KEY_MSG)),
    Case("a secretKeyRef needs a key", env({"name": "A", "valueFrom": {"secretKeyRef": {"name": "db"}}}),
         ("spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value",)),
    Case("envFrom with a prefix is valid",
         main(envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "db",
                                                                                           "optional": True}}])),
    Case("envFrom needs exactly one source", main(envFrom=[{"prefix": "X_"}]),
         ('spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`',)),
    Case("envFrom with both sources", main(envFrom=[{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]),
         ('spec.containers[0].envFrom: Invalid value: "": may not have more than one field specified at a time',)),
    Case("envFrom needs a name and a valid prefix", main(envFrom=[{"configMapRef": {}, "prefix": "1X"}]),
         ('spec.containers[0].envFrom[0].prefix: Invalid value: "1X": ' + ENV_MSG,
          "spec.containers[0].envFrom[0].configMapRef.name: Required value")),
    Case("a resourceFieldRef to limits.cpu is valid",
         env({"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}})),
    Case("probes with one handler are valid",
         main(livenessProbe={"exec": {"command": ["true"]}}, readinessProbe={"httpGet": {"port": 8080}},
              startupProbe={"tcpSocket": {"port": "http"}})),
    Case("a probe needs a handler", probe(periodSeconds=5),
         ("spec.containers[0].livenessProbe: Required value: must specify a handler type",)),
    Case("a probe has exactly one handler",
         probe("readinessProbe", exec={"command": ["true"]}, tcpSocket={"port": 80}),
         ("spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",)),
    Case("an exec probe needs a command", probe(exec={}),
         ("spec.containers[0].livenessProbe.exec.command: Required value",)),
    Case("a liveness probe's successThreshold is 1", probe(exec={"command": ["true"]}, successThreshold=2),
         ("spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",)),
    Case("a startup probe's successThreshold is 1", probe("startupProbe", exec={"command": ["x"]}, successThreshold=3),
         ("spec.containers[0].startupProbe.successThreshold: Invalid value: 3: must be 1",)),
    Case("a readiness probe may need several successes", probe("readinessProbe", exec={"command": ["x"]},
                                                               successThreshold=2)),
    Case("probe thresholds are not negative", probe(exec={"command": ["true"]}, failureThreshold=-1),
         ("spec.containers[0].livenessProbe.failureThreshold: Invalid value: -1: must be greater than or equal to 0",)),
    Case("a probe port in range", probe(httpGet={"port": 70000}),
         ("spec.containers[0].livenessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, "
          "inclusive",)),
    Case("a probe scheme", probe(httpGet={"port": 80, "scheme": "FTP"}),
         ('spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", '
          '"HTTPS"',)),
    Case("requests within limits are valid", resources(requests={"cpu": "500m", "memory": "64Mi"},
                                                       limits={"cpu": "1", "memory": "128Mi"})),
    Case("requests above limits", resources(requests={"cpu": "2"}, limits={"cpu": "1"}),
         ('spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',)),
    Case("an unparseable quantity", resources(limits={"memory": "12 Gi"}),
         ('spec.containers[0].resources.limits[memory]: Invalid value: "12 Gi": quantities must match the regular '
          "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
          'spec.containers[0].resources.requests[memory]: Invalid value: "12 Gi": quantities must match the regular '
          "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
    Case("a huge exponent is valid, as Kubernetes (it computes with the int64 cap)",
         resources(limits={"cpu": "1e999999999", "memory": "9" * 5000})),
    Case("an exponent beyond an int32", resources(limits={"memory": "1e99999999999"}),
         ('spec.containers[0].resources.limits[memory]: Invalid value: "1e99999999999": '
          "unable to parse quantity's suffix",
          'spec.containers[0].resources.requests[memory]: Invalid value: "1e99999999999": '
          "unable to parse quantity's suffix")),
    Case("a negative quantity (requests default to limits on a pod)", resources(limits={"cpu": "-1"}),
         ('spec.containers[0].resources.limits[cpu]: Invalid value: "-1": must be greater than or equal to 0',
          'spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0')),
    Case("an unknown resource name", resources(requests={"gpu": "1"}),
         ('spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource type or '
          "fully qualified",
          'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for '
          "containers")),
    Case("an extended resource request equals its limit", resources(requests={"example.com/gpu": "1"},
                                                                    limits={"example.com/gpu": "2"}),
         ('spec.containers[0].resources.requests: Invalid value: "1": must be equal to example.com/gpu limit of 2',)),
    Case("an extended resource needs a limit", resources(requests={"example.com/gpu": "1"}),
         ("spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable "
          "resources",)),
    Case("a NoExecute toleration with seconds is valid",
         toleration(key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute",
                    tolerationSeconds=60)),
    Case("tolerationSeconds only with NoExecute", toleration(key="k", operator="Exists", effect="NoSchedule",
                                                             tolerationSeconds=60),
         ("spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
          "`tolerationSeconds` is set",)),
    Case("an empty key needs Exists", toleration(operator="Equal", value="v"),
         ('spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which '
          'means "match all values and all keys"',)),
    Case("Exists takes no value", toleration(key="k", operator="Exists", value="v"),
         # ValidateTolerations passes the whole toleration as the bad value: Go prints it with %#v.
         ('spec.tolerations[0].operator: Invalid value: core.Toleration{Key:"k", Operator:"Exists", Value:"v", '
          'Effect:"", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is \'Exists\'',)),
    Case("an unknown toleration operator", toleration(key="k", operator="In"),
         ('spec.tolerations[0].operator: Unsupported value: "In": supported values: "Equal", "Exists"',)),
    Case("an unknown toleration effect", toleration(key="k", operator="Exists", effect="NoRun"),
         ('spec.tolerations[0].effect: Unsupported value: "NoRun": supported values: "NoSchedule", '
          '"PreferNoSchedule", "NoExecute"',)),
    Case("node affinity with known operators is valid",
         node_affinity({"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "gpu", "operator": "Exists"},
                       {"key": "cores", "operator": "Gt", "values": ["4"]})),
    Case("an unknown node selector operator", node_affinity({"key": "disk", "operator": "Near", "values": ["x"]}),
         (f'{NA}[0].matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator',)),
    Case("In needs values", node_affinity({"key": "disk", "operator": "In"}),
         (f"{NA}[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or "
          "'NotIn'",)),
    Case("Exists takes no values", node_affinity({"key": "disk", "operator": "Exists", "values": ["x"]}),
         (f"{NA}[0].matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or "
          "'DoesNotExist'",)),
    Case("Gt takes one value", node_affinity({"key": "cores", "operator": "Gt", "values": ["1", "2"]}),
         (f"{NA}[0].matchExpressions[0].values: Required value: must be specified single value when `operator` is "
          "'Lt' or 'Gt'",)),
    Case("required node affinity needs a term", node_affinity(),
         (f"{NA}: Required value: must have at least one node selector term",)),
    Case("runAsUser is valid from 0", spec(securityContext={"runAsUser": 0, "runAsGroup": 1000})),
    Case("a negative pod runAsUser", spec(securityContext={"runAsUser": -1}),
         ("spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",)),
    Case("a negative container runAsGroup", main(securityContext={"runAsGroup": -5}),
         ("spec.containers[0].securityContext.runAsGroup: Invalid value: -5: must be between 0 and 2147483647, "
          "inclusive",)),
    Case("allowPrivilegeEscalation false with privileged", main(securityContext={
        "privileged": True, "allowPrivilegeEscalation": False}),
         ("spec.containers[0].securityContext: Invalid value: false: cannot set `allowPrivilegeEscalation` to false "
          "and `privileged` to true",)),
    Case("allowPrivilegeEscalation false with CAP_SYS_ADMIN added", main(securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"add": ["NET_RAW", "CAP_SYS_ADMIN"]}}),
         ("spec.containers[0].securityContext: Invalid value: false: cannot set `allowPrivilegeEscalation` to false "
          "and `capabilities.Add` CAP_SYS_ADMIN",)),
    Case("Kubernetes compares the exact string CAP_SYS_ADMIN", main(securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"add": ["SYS_ADMIN"]}})),
    Case("capability names are not validated, as in Kubernetes", main(securityContext={
        "capabilities": {"add": ["FLY"], "drop": ["ALL"]}})),
    Case("capabilities are lists of strings", main(securityContext={"capabilities": {"add": "NET_ADMIN",
                                                                                     "drop": ["ALL", 3]}}),
         ("spec.containers[0].securityContext.capabilities.add: Invalid value: must be a list of capability names",
          "spec.containers[0].securityContext.capabilities.drop[1]: Invalid value: must be a string")),
    Case("supplementalGroupsPolicy is Merge or Strict", spec(securityContext={
        "supplementalGroupsPolicy": "Loose", "supplementalGroups": [5, -1]}),
         ("spec.securityContext.supplementalGroups[1]: Invalid value: -1: must be between 0 and 2147483647, inclusive",
          'spec.securityContext.supplementalGroupsPolicy: Unsupported value: "Loose": supported values: "Merge", '
          '"Strict"')),
    Case("a volume mount names a volume", spec(volumes=[{"name": "data", "emptyDir": {}}],
                                               containers=[container(volumeMounts=[{"name": "data",
                                                                                    "mountPath": "/data"}])])),
    Case("a volume mount of a missing volume", main(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
         ('spec.containers[0].volumeMounts[0].name: Not found: "data"',)),
    Case("a container port needs a number", main(ports=[{"name": "http"}]),
         ("spec.containers[0].ports[0].containerPort: Required value",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_pod_create(case: Case) -> None:
    errs = validate_create(server_view(POD, case.changes))
    assert [str(e) for e in errs] == list(case.errors)
