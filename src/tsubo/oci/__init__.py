"""Wire formats of the OCI specs (runtime config and state): pure, no side effects."""
