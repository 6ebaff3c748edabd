"""ConfigMap validation (core/v1 ValidateConfigMap): keys are config keys and in one of data and
binaryData only, all values together at most 1 MiB, and an immutable ConfigMap's contents (and
its immutability) fixed."""

from __future__ import annotations

from ketch.api.errors import FieldError, forbidden, invalid
from ketch.v1 import configmap_pb2

from . import field, meta
from .field import Errors
from .secret import MAX_SECRET_BYTES

DUPLICATE = "duplicate of key present in binaryData"


def validate_configmap(cm: configmap_pb2.ConfigMap) -> list[FieldError]:
    errs: Errors = []
    meta.object_meta(errs, cm.metadata, True, field.name_is_dns_subdomain)
    total = 0
    for key, value in cm.data.items():
        path = field.key("data", key)
        errs.extend(invalid(path, key, msg) for msg in field.config_key(key))
        if key in cm.binary_data:
            errs.append(invalid(path, key, DUPLICATE))
        total += len(value.encode())
    for key, raw in cm.binary_data.items():
        errs.extend(invalid(field.key("binaryData", key), key, msg) for msg in field.config_key(key))
        total += len(raw)
    if total > MAX_SECRET_BYTES:
        # Kubernetes names no field: the error is about the whole object.
        errs.append(FieldError("TooLong", "", f"may not be more than {MAX_SECRET_BYTES} bytes"))
    return errs


def validate_configmap_update(new: configmap_pb2.ConfigMap, old: configmap_pb2.ConfigMap) -> list[FieldError]:
    errs: Errors = []
    if old.HasField("immutable") and old.immutable:
        if not (new.HasField("immutable") and new.immutable):
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        if dict(new.data) != dict(old.data):
            errs.append(forbidden("data", "field is immutable when `immutable` is set"))
        if dict(new.binary_data) != dict(old.binary_data):
            errs.append(forbidden("binaryData", "field is immutable when `immutable` is set"))
    return errs
