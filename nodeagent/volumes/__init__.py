"""Pod volumes on a host-process runtime: what each volume holds (spec, contents), where it lives
on the node (setup), and how a container sees it (binds into its private mount namespace,
nodeagent/runtime/confine.py)."""
