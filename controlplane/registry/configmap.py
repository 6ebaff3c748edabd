"""The ConfigMap strategy (core/v1): no defaults, no status, Kubernetes' key, size and
immutability rules."""

from __future__ import annotations

from typing import Any

from ketch.api.errors import FieldError
from ketch.api.validation.configmap import validate_configmap, validate_configmap_update

from .strategy import Strategy


class ConfigMapStrategy(Strategy):
    kind = "ConfigMap"
    keeps_parsed = False  # read when a container starts, written rarely: bytes until asked for

    def validate(self, obj: Any) -> list[FieldError]:
        return validate_configmap(obj)

    def validate_update(self, new: Any, old: Any) -> list[FieldError]:
        return super().validate_update(new, old) + validate_configmap_update(new, old)
