"""resources.limits enforcement: cgroups where the host allows, a watchdog otherwise."""
