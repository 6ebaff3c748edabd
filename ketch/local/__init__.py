"""Running a whole cluster on this machine (ketch local up, tests, benchmarks)."""
