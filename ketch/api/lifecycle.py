"""Container lifecycle hooks (`lifecycle.postStart`, `lifecycle.preStop`) in typed form.

Ketch's API keeps a container's `lifecycle` as free-form JSON (a Struct); validation and the node
agent both read it through `parse`, which checks it as Kubernetes 1.31 does: exactly one handler
per hook, `exec` (command required), `httpGet` (path "/" and scheme HTTP by default), `tcpSocket`
(accepted and ignored, as the kubelet does) or `sleep` (seconds > 0, at most the pod's
terminationGracePeriodSeconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from ketch.api import manifest
from ketch.api.errors import FieldError, forbidden, invalid, required
from ketch.v1 import core_pb2

HOOKS = ("postStart", "preStop")
HANDLER_TYPES = ("exec", "httpGet", "tcpSocket", "sleep")


@dataclass(frozen=True, slots=True)
class Handler:
    """One hook: an exec/httpGet/tcpSocket action (in a Probe, as the probe runners take it) or
    a sleep."""

    action: core_pb2.Probe | None = None
    sleep_seconds: int | None = None


def parse(container: core_pb2.Container, path: str,
          grace_seconds: int | None) -> tuple[dict[str, Handler], list[FieldError]]:
    """The container's hooks by name, and what is wrong with them (path is the container's)."""
    if not container.HasField("lifecycle"):
        return {}, []
    data = _whole_numbers(json_format.MessageToDict(container.lifecycle))
    hooks: dict[str, Handler] = {}
    errs: list[FieldError] = []
    for key in sorted(set(data) - set(HOOKS)):
        errs.append(invalid(f"{path}.lifecycle.{key}", key, f"unknown field, expected one of {', '.join(HOOKS)}"))
    for name in HOOKS:
        if name in data:
            handler = _handler(data[name], f"{path}.lifecycle.{name}", grace_seconds, errs)
            if handler is not None:
                hooks[name] = handler
    return hooks, errs


def _handler(spec: Any, path: str, grace_seconds: int | None, errs: list[FieldError]) -> Handler | None:
    if not isinstance(spec, dict):
        errs.append(invalid(path, spec, "must be an object"))
        return None
    for key in sorted(set(spec) - set(HANDLER_TYPES)):
        errs.append(invalid(f"{path}.{key}", key, f"unknown field, expected one of {', '.join(HANDLER_TYPES)}"))
    present = [t for t in HANDLER_TYPES if t in spec]
    if not present:
        errs.append(required(path, "must specify a handler type"))
        return None
    for extra in present[1:]:
        errs.append(forbidden(f"{path}.{extra}", "may not specify more than 1 handler type"))
    kind = present[0]
    if kind == "sleep":
        return _sleep(spec["sleep"], f"{path}.sleep", grace_seconds, errs)
    probe = core_pb2.Probe()
    try:
        manifest.decode_into(probe, {kind: spec[kind]})
    except manifest.DecodeError as err:
        errs.append(invalid(f"{path}.{kind}", spec[kind], err.message))
        return None
    if kind == "exec" and not probe.exec.command:
        errs.append(required(f"{path}.exec.command"))
    if kind == "httpGet":
        probe.http_get.path = probe.http_get.path or "/"
        probe.http_get.scheme = probe.http_get.scheme or "HTTP"
    return Handler(action=probe)


def _whole_numbers(value: Any) -> Any:
    """JSON numbers in a Struct are doubles: 8080.0 back to 8080, as it was written."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _sleep(spec: Any, path: str, grace_seconds: int | None, errs: list[FieldError]) -> Handler | None:
    seconds = spec.get("seconds") if isinstance(spec, dict) else None
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        errs.append(required(f"{path}.seconds", "a whole number of seconds"))
        return None
    limit = grace_seconds if grace_seconds is not None else 30
    if not 0 < seconds <= limit:
        errs.append(invalid(f"{path}.seconds", seconds,
                            f"must be greater than 0 and less than terminationGracePeriodSeconds ({limit})"))
        return None
    return Handler(sleep_seconds=seconds)
