"""Validation of a log request (PodLogsRequest) before anything turns its names into paths.

The agent finds a run's log under its data dir by pod uid and container name, or by namespace
and name for a pod gone from the API, so every one of them must be what the API allows for it:
a pod name a DNS-1123 subdomain, a namespace and a container name DNS-1123 labels, and a pod uid
the UUID the API server assigned (Kubernetes' uids are RFC 4122 UUIDs). Anything else, such as
`../`, is refused as Kubernetes refuses bad PodLogOptions: `The PodLogOptions "web" is invalid:
podUID: Invalid value: "../x": must be a UUID`. The control plane checks before it forwards a
request to a node and the agent checks again on receipt.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ketch.api.errors import FieldError, invalid, invalid_error, required
from ketch.v1 import api_pb2

from . import field

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
UUID_MSG = "must be a UUID (such as 7c9e6679-7425-40de-944b-e07fc1f90ae7)"
# A hostile value is echoed only this far: an error travels in gRPC trailers, which are small.
SHOWN_CHARS = 100


def is_uid(value: str) -> bool:
    return _UUID_RE.fullmatch(value) is not None


def _shown(value: str) -> str:
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."


def _name(errs: list[FieldError], path: str, value: str, max_len: int, check: Callable[[str], tuple[str, ...]]) -> None:
    if len(value) > max_len:  # not through the (cached) pattern check: hostile values can be huge
        errs.append(invalid(path, _shown(value), field.max_len_error(max_len)))
        return
    errs.extend(invalid(path, value, m) for m in check(value))


def validate_pod_log_request(req: api_pb2.PodLogsRequest) -> list[FieldError]:
    errs: list[FieldError] = []
    if not req.name:
        errs.append(required("name"))
    else:
        _name(errs, "name", req.name, 253, field.dns1123_subdomain)
    if req.namespace:
        _name(errs, "namespace", req.namespace, 63, field.dns1123_label)
    if req.container:
        _name(errs, "container", req.container, 63, field.dns1123_label)
    if req.pod_uid and not is_uid(req.pod_uid):
        errs.append(invalid("podUID", _shown(req.pod_uid), UUID_MSG))
    return errs


def check_pod_log_request(req: api_pb2.PodLogsRequest) -> None:
    """Raise Invalid (gRPC INVALID_ARGUMENT) naming every bad field of the request."""
    errs = validate_pod_log_request(req)
    if errs:
        raise invalid_error("PodLogOptions", _shown(req.name), errs)

