"""Kubernetes 1.31 validation rules, one module per group of kinds (core, cluster, batch, apps),
with the field and metadata rules they share. Each function returns every problem found as a
FieldError, in Kubernetes' order, paths and words; `ketch.api.errors.invalid_error` turns them into
`The Job "x" is invalid: [...]`. Which rules a kind gets on create, update and status writes is
its server strategy's choice (controlplane.registry).
"""
