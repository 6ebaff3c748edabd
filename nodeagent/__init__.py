"""ketch-agent: the node agent. Registers its Node, heartbeats, and runs the pods bound to it
as processes (see docs/design.md, "Node agent")."""
