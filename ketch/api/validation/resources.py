"""Container resources (pkg/apis/core/validation).

Resource names (cpu, memory, ephemeral-storage, hugepages-*, or domain-qualified extended
resources), quantities (ketch.api.quantity, parsed once per distinct string), and requests <= limits
(= limits for resources that cannot be overcommitted). Security contexts: securitycontext.py.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from ketch.api import quantity
from ketch.api.errors import invalid, required
from ketch.v1 import core_pb2

from . import field
from .field import Errors

_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_STANDARD_RESOURCES = _CONTAINER_RESOURCES | {"storage", "pods", "services", "secrets", "configmaps"}


# ---------------------------------------------------------------------------------------------
# Resources


@lru_cache(maxsize=1024)
def parse_quantity(text: str) -> Decimal | str:
    try:
        return quantity.parse(text)
    except quantity.QuantityError as err:
        return str(err)


def _native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def resources(errs: Errors, req: core_pb2.ResourceRequirements, path: str) -> None:
    """Names, non-negative quantities, and requests <= limits (= limits for extended resources)."""
    limits_path, requests_path = path + ".limits", path + ".requests"
    limits: dict[str, Decimal] = {}
    for name, text in req.limits.items():
        value = _resource(errs, name, text, field.key(limits_path, name))
        if value is not None:
            limits[name] = value
    for name, text in req.requests.items():
        value = _resource(errs, name, text, field.key(requests_path, name))
        if value is None:
            continue
        overcommit = _native(name) and not name.startswith("hugepages-")
        if name in limits:
            if not overcommit and value != limits[name]:
                errs.append(invalid(requests_path, text, f"must be equal to {name} limit of {req.limits[name]}"))
            elif value > limits[name]:
                errs.append(invalid(requests_path, text,
                                    f"must be less than or equal to {name} limit of {req.limits[name]}"))
        elif not overcommit and name not in req.limits:
            errs.append(required(limits_path, "Limit must be set for non overcommitable resources"))


def _resource(errs: Errors, name: str, text: str, path: str) -> Decimal | None:
    before = len(errs)
    msgs = field.qualified_name(name)
    errs.extend(invalid(path, name, m) for m in msgs)
    if not msgs and "/" not in name and name not in _CONTAINER_RESOURCES and not name.startswith("hugepages-"):
        if name not in _STANDARD_RESOURCES:
            errs.append(invalid(path, name, "must be a standard resource type or fully qualified"))
        errs.append(invalid(path, name, "must be a standard resource for containers"))
    value = parse_quantity(text)
    if isinstance(value, str):
        errs.append(invalid(path, text, value))
        return None
    if value < 0:
        errs.append(invalid(path, text, field.IS_NEGATIVE))
    elif not _native(name) and value != value.to_integral_value():
        errs.append(invalid(path, text, "must be an integer"))
    return value if len(errs) == before else None
