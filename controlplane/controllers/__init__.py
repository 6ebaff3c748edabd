"""The controllers: one per module, each an API client built on informers and a work queue."""
