"""ketch-agent: the node agent. Registers its Node, heartbeats, and runs the pods bound to it
as processes (see DESIGN.md, "Node agent")."""

import os as _os

# The agent forks (spawning a container as another user) while gRPC threads run; gRPC's fork
# handlers only log noise there, so they stay off unless the environment asks for them.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
