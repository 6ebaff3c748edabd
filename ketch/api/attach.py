"""What Attach answers that the API server and the agents must word alike."""

from __future__ import annotations


def stdin_refusal(container: str) -> str:
    """Attach to a container without stdin: true (it reads /dev/null: there is nothing to feed).
    kubectl's words for the same refusal of a TTY the container did not allocate."""
    return f"Unable to use stdin - container {container} did not allocate one"
