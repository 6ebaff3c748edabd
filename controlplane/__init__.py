"""The Ketch control plane: API server, storage, scheduler and controllers."""
