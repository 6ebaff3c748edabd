"""The Secret strategy (core/v1): stringData merged into data (and never stored), type Opaque by
default, Kubernetes' key, size, type and immutability rules."""

from __future__ import annotations

from typing import Any

from ketch.api.errors import FieldError
from ketch.api.validation.secret import validate_secret, validate_secret_update
from ketch.v1 import secret_pb2

from .strategy import Strategy

OPAQUE = "Opaque"


class SecretStrategy(Strategy):
    kind = "Secret"
    keeps_parsed = False  # read far less often than written (bootstrap tokens, rare updates)

    def default(self, obj: Any) -> None:
        secret: secret_pb2.Secret = obj
        # Kubernetes merges stringData in conversion, before anything else sees the object.
        for key, value in secret.string_data.items():
            secret.data[key] = value.encode()
        secret.ClearField("string_data")
        if not secret.type:
            secret.type = OPAQUE

    def validate(self, obj: Any) -> list[FieldError]:
        return validate_secret(obj)

    def validate_update(self, new: Any, old: Any) -> list[FieldError]:
        return super().validate_update(new, old) + validate_secret_update(new, old)

    def field_values(self, obj: Any) -> dict[str, str]:
        return {"type": obj.type}

    field_labels = frozenset({"type"})
