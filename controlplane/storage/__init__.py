"""Durable object storage: backends that persist, and the Store that serves the API server."""

from .backend import Backend, Record
from .store import Entry, Store, Version, WatchEvent, open_backend

__all__ = ["Backend", "Entry", "Record", "Store", "Version", "WatchEvent", "open_backend"]
