"""Object helpers over the generated types: kinds, manifests, selectors, errors, validation.

The rest of Ketch imports the API types from here (or from its submodules), never from
ketch.v1 directly.
"""

from ketch.v1 import api_pb2, apps_pb2, authorization_pb2, batch_pb2, coordination_pb2, core_pb2, meta_pb2, rbac_pb2

from . import errors, kinds, manifest, meta, selectors, timeutil

__all__ = [
    "api_pb2", "apps_pb2", "authorization_pb2", "batch_pb2", "coordination_pb2", "core_pb2", "errors", "kinds",
    "manifest", "meta", "meta_pb2", "rbac_pb2", "selectors", "timeutil",
]
