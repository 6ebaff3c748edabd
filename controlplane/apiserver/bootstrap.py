"""What a new cluster starts with: the namespaces Kubernetes always has (kube-apiserver's system
namespaces controller), created through the request chain as the loopback user."""

from __future__ import annotations

from google.protobuf import any_pb2

from controlplane.registry import DEFAULT_NAMESPACES
from ketch.api import errors
from ketch.v1 import api_pb2, core_pb2

from .authn import LOOPBACK
from .chain import RequestChain


async def ensure_default_namespaces(chain: RequestChain) -> None:
    for name in DEFAULT_NAMESPACES:
        ns = core_pb2.Namespace()
        ns.metadata.name = name
        obj = any_pb2.Any()
        obj.Pack(ns)
        try:
            await chain.unary("Create", api_pb2.CreateRequest(object=obj), LOOPBACK)
        except errors.AlreadyExists:
            pass
