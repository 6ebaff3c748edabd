"""Secret validation (core/v1): data keys are config keys, the whole data at most 1 MiB, the type
fixed once set, and an immutable Secret's data (and its immutability) fixed."""

from __future__ import annotations

from ketch.api.errors import FieldError, forbidden, invalid, required
from ketch.v1 import secret_pb2

from . import field, meta
from .field import Errors

MAX_SECRET_BYTES = 1024 * 1024
TYPE_MAX = 253


def _key(errs: Errors, key: str, path: str) -> None:
    errs.extend(invalid(path, key, msg) for msg in field.config_key(key))


def validate_secret(secret: secret_pb2.Secret) -> list[FieldError]:
    errs: Errors = []
    meta.object_meta(errs, secret.metadata, True, field.name_is_dns_subdomain)
    total = 0
    for key, value in secret.data.items():
        _key(errs, key, field.key("data", key))
        total += len(value)
    if total > MAX_SECRET_BYTES:
        errs.append(FieldError("TooLong", "data", f"may not be more than {MAX_SECRET_BYTES} bytes"))
    if len(secret.type) > TYPE_MAX:
        errs.append(invalid("type", secret.type, field.max_len_error(TYPE_MAX)))
    if secret.type == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in secret.data:
                errs.append(required(field.key("data", key)))
    return errs


def validate_secret_update(new: secret_pb2.Secret, old: secret_pb2.Secret) -> list[FieldError]:
    errs: Errors = []
    if new.type != old.type:
        errs.append(invalid("type", new.type, "field is immutable"))
    if old.HasField("immutable") and old.immutable:
        if not (new.HasField("immutable") and new.immutable):
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        if dict(new.data) != dict(old.data):
            errs.append(forbidden("data", "field is immutable when `immutable` is set"))
    return errs
