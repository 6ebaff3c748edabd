"""The API server: validation, defaulting, admission, storage and watch fan-out over gRPC."""
