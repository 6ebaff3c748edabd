"""ketch-agent: the node agent. Registers its Node, heartbeats, and runs the pods bound to it
as processes (see DESIGN.md, "Node agent")."""
