"""The client library: clientset, informers with lister caches, work queues, leader election."""

from .clientset import Client, connect
from .config import connect_with_kubeconfig

__all__ = ["Client", "connect", "connect_with_kubeconfig"]
