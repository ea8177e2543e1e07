"""The OCI image spec's wire format, as tsubo reads and writes it: media types, descriptors,
image manifests. Pure: no I/O. Used by pull, push, save and load, so each checks a
descriptor the same way and writes the same manifest."""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_TYPES = (*INDEX_TYPES, *IMAGE_MANIFEST_TYPES)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)


def check_descriptor(value: object, operation: str, what: str) -> tuple[str, str, int]:
    """``(digest, media type, size)`` of a descriptor with a valid sha256 digest and a
    non-negative size; InvalidArgument naming *what* otherwise."""
    from tsubo.image.reference import digest_problem

    if not isinstance(value, dict):
        raise InvalidArgument(operation, what, detail="expected a descriptor object")
    digest = value.get("digest")
    problem = digest_problem(digest) if isinstance(digest, str) else "no digest"
    if problem:
        raise InvalidArgument(operation, what, detail=problem)
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(operation, what, detail=f"invalid size {size!r}")
    media_type = value.get("mediaType", "")
    if not isinstance(media_type, str):
        raise InvalidArgument(operation, what, detail="media type is not a string")
    assert isinstance(digest, str)
    return digest, media_type, size


def oci_layer_media_type(media_type: str) -> str:
    """The OCI layer media type of the same bytes (Docker's ``...rootfs.diff.tar.gzip``
    is ``...layer.v1.tar+gzip``)."""
    if media_type.endswith(("+gzip", ".gzip")):
        return OCI_LAYER + "+gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return OCI_LAYER + "+zstd"
    return OCI_LAYER


def oci_manifest(config_digest: str, config_size: int,
                 layers: list[tuple[str, str, int]]) -> bytes:
    """An OCI image manifest: the config and ``(media type, digest, size)`` of each layer,
    bottom first (layer media types given in OCI form)."""
    from tsubo.oci import jsonwire

    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": media_type, "digest": digest, "size": size}
                   for media_type, digest, size in layers],
    }
    return jsonwire.dumps(manifest).encode()
