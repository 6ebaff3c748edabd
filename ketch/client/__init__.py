"""The client library: clientset, informers with lister caches, work queues, leader election.

Names load on first use (PEP 562), so importing a light submodule (kubeconfig) does not load
grpc and cryptography with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clientset import Client, connect
    from .config import connect_with_kubeconfig

__all__ = ["Client", "connect", "connect_with_kubeconfig"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "connect"):
        from . import clientset

        value = getattr(clientset, name)
    elif name == "connect_with_kubeconfig":
        from . import config

        value = config.connect_with_kubeconfig
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
