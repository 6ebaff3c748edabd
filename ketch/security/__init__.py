"""Certificates and tokens shared by the control plane, the agent and the CLI: key and
certificate making (certs), the join token (jointoken), and the public no-identity client
certificate (anonymous). Pure functions over the `cryptography` package; no I/O but files."""
