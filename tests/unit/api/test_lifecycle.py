"""Lifecycle hooks as validation and the agent read them (Kubernetes 1.31 rules)."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.api import manifest

from .objects import apply_defaults, validate_create


def errors_of(lifecycle: dict[str, Any], grace: int = 30) -> list[str]:
    pod = manifest.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": grace,
                 "containers": [{"name": "c", "command": ["sleep", "9"], "lifecycle": lifecycle}]}})
    apply_defaults(pod)
    return [str(e) for e in validate_create(pod)]


P = "spec.containers[0].lifecycle"


@pytest.mark.parametrize(("lifecycle", "expected"), [
    ({"preStop": {"exec": {"command": ["sh", "-c", "echo bye"]}}}, []),
    ({"postStart": {"httpGet": {"port": 8080}}, "preStop": {"sleep": {"seconds": 30}}}, []),
    ({"preStop": {"tcpSocket": {"port": "http"}}}, []),
    ({"preStop": {"sleep": {"seconds": 31}}},
     [f"{P}.preStop.sleep.seconds: Invalid value: 31: must be greater than 0 and less than "
      "terminationGracePeriodSeconds (30)"]),
    ({"preStop": {"sleep": {"seconds": 0}}},
     [f"{P}.preStop.sleep.seconds: Invalid value: 0: must be greater than 0 and less than "
      "terminationGracePeriodSeconds (30)"]),
    ({"preStop": {}}, [f"{P}.preStop: Required value: must specify a handler type"]),
    ({"preStop": {"exec": {"command": ["x"]}, "sleep": {"seconds": 1}}},
     [f"{P}.preStop.sleep: Forbidden: may not specify more than 1 handler type"]),
    ({"preStop": {"exec": {}}}, [f"{P}.preStop.exec.command: Required value"]),
    ({"postStart": {"httpGet": {"port": 0}}},
     [f"{P}.postStart.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ({"onStop": {"exec": {"command": ["x"]}}},
     [f'{P}.onStop: Invalid value: "onStop": unknown field, expected one of postStart, preStop']),
], ids=["exec", "httpGet and sleep", "tcpSocket", "sleep beyond the grace period", "sleep 0",
        "no handler", "two handlers", "exec without command", "bad port", "unknown hook"])
def test_lifecycle_validation(lifecycle: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(lifecycle) == expected
