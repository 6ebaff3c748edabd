"""The process runtime: starting, adopting, signalling and logging container processes."""
