"""Object helpers over the generated types: kinds, manifests, selectors, errors, validation.

The rest of Ketch imports the API types from here (or from its submodules), never from
ketch.v1 directly. Nothing is imported until it is used (PEP 562 `__getattr__`): a CLI verb
that needs only `ketch.api.errors` must not pay for loading every protobuf module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ketch.v1 import api_pb2, apps_pb2, authorization_pb2, batch_pb2, coordination_pb2, core_pb2, meta_pb2, rbac_pb2

    from . import errors, kinds, manifest, meta, selectors, timeutil

__all__ = [
    "api_pb2", "apps_pb2", "authorization_pb2", "batch_pb2", "coordination_pb2", "core_pb2", "errors", "kinds",
    "manifest", "meta", "meta_pb2", "rbac_pb2", "selectors", "timeutil",
]

_GENERATED = {"api_pb2", "apps_pb2", "authorization_pb2", "batch_pb2", "coordination_pb2", "core_pb2", "meta_pb2",
              "rbac_pb2"}


def __getattr__(name: str) -> Any:
    """Load a generated module or a submodule on first use."""
    if name in _GENERATED:
        module = importlib.import_module(f"ketch.v1.{name}")
    elif name in __all__:
        module = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = module
    return module
