"""End-to-end tests: real clients (podman) driving tsubo-runtime (root only)."""
