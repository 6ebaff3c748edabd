"""The client library: clientset, informers with lister caches, work queues, leader election."""

from .clientset import Client, connect

__all__ = ["Client", "connect"]
