"""The Job controller (Kubernetes 1.31 semantics): controller.py is the entry point
(JobController); the other modules hold the pure parts by concern (decisions, indexed, backoff,
failure_policy, success_policy, tracking, pods, spec) and the pod and status writes (manage,
status, podcontrol)."""
