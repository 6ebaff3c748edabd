"""Ketch: Kubernetes-style batch and daemon workloads as plain processes on ordinary machines."""

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it)
