"""The `ketch` command: kubectl-shaped verbs over the Ketch API."""
