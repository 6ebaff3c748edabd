"""Which exited containers run again (pure). Their crash-loop back-off is
ketch.client.flowcontrol.Backoff keyed by pod UID + container name, as the kubelet's
flowcontrol.Backoff: a container that exits and must restart is restarted at once
the first time; after that each restart waits `base`, doubling up to `cap`, counted from the
finish time of the run that just ended. A key whose last failure is older than 2 × cap (10 min
with the defaults) starts over.
"""

from __future__ import annotations


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a regular container that exited is run again under the pod's restartPolicy."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


def init_should_restart(policy: str, exit_code: int) -> bool:
    """A failed init container is retried unless the pod's restartPolicy is Never."""
    return exit_code != 0 and policy != "Never"
