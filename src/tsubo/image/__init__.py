"""OCI images: references, the content store, layer unpacking."""
