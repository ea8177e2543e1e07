"""The OCI runtime: bundle -> running container (plan, spawn, init, status, hooks)."""
