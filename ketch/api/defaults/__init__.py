"""Kubernetes 1.31 defaulting, one module per group of kinds. Defaults only fill fields that are
unset, so applying them again is harmless; the server applies a kind's defaults (its strategy's
choice, controlplane.registry) on create and on every spec update. Event, Lease and
ControllerRevision have no defaults in Kubernetes and get none here.
"""
