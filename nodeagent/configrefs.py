"""The ConfigMaps and Secrets a container's environment reads, fetched when it starts.

The kubelet reads them through its managers (the default, Watch, keeps one watch per referenced
object); Ketch's agent gets each one from the API server at the container's start, and again at
each retry while one is missing (the container waits in CreateContainerConfigError meanwhile).
The Node authorizer lets a node get exactly the objects its pods reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ketch.api import configrefs, errors
from ketch.client.clientset import Client
from ketch.v1 import core_pb2

from .envvars import ConfigLookup
from .security import ConfigError


def _as_strings(kind: str, obj: Any) -> dict[str, str]:
    """The values a variable can take: a ConfigMap's data (binaryData is for volumes only), a
    Secret's data as the bytes they are (undecodable bytes round-trip through surrogateescape)."""
    if kind == configrefs.SECRET:
        return {k: v.decode("utf-8", "surrogateescape") for k, v in obj.data.items()}
    return dict(obj.data)


async def _get(client: Client, kind: str, name: str, namespace: str) -> dict[str, str] | None:
    try:
        obj = await client.get(kind, name, namespace)
    except errors.NotFound:
        return None
    except errors.StatusError as err:
        raise ConfigError(f"couldn't get {kind.lower()} {namespace}/{name}: {err}") from None
    return _as_strings(kind, obj)


async def fetch(client: Client, pod: core_pb2.Pod, container: core_pb2.Container) -> ConfigLookup:
    """A lookup over the objects the container references (None for one that does not exist)."""
    refs = list(dict.fromkeys(configrefs.container_refs(container)))
    found: Mapping[tuple[str, str], dict[str, str] | None] = {}
    if refs:
        ns = pod.metadata.namespace
        values = await asyncio.gather(*(_get(client, kind, name, ns) for kind, name in refs))
        found = dict(zip(refs, values, strict=True))

    def lookup(kind: str, name: str) -> Mapping[str, str] | None:
        return found.get((kind, name))
    return lookup
