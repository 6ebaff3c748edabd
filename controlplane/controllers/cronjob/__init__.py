"""The CronJob controller: Jobs from a CronJob's template at its scheduled times (Kubernetes 1.31)."""
