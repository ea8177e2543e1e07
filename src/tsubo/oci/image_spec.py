"""The OCI image spec's wire format, as tsubo reads and writes it: media types, descriptors,
image manifests. Pure: no I/O. Used by pull, push, save and load, so each checks a
descriptor the same way, accepts the same layer media types and writes the same manifest.

Layer media types come from an explicit list (:data:`LAYER_MEDIA_TYPES`), never from a
suffix: ``application/vnd.cncf.helm.chart.content.v1.tar+gzip`` (a Helm chart), an
in-toto attestation or any other artifact that happens to be a tarball is not an image
layer, and is refused by name before anything is downloaded or unpacked."""

from __future__ import annotations

from tsubo.errors import InvalidArgument, Unsupported

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

#: Docker's foreign layers (Windows base layers): the blob is meant to come from the
#: descriptor's ``urls``, which a pull does not follow
DOCKER_FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
#: every layer media type, and how its bytes are compressed ("none", "gzip", "zstd"):
#: the OCI image spec's (with the non-distributable variants, deprecated in image-spec
#: 1.1 but still written) and Docker's schema 2 (with foreign layers, and the zstd form
#: containerd and BuildKit write under Docker media types)
LAYER_MEDIA_TYPES: dict[str, str] = {
    OCI_LAYER: "none",
    OCI_LAYER + "+gzip": "gzip",
    OCI_LAYER + "+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
    DOCKER_FOREIGN_LAYER_TYPES[0]: "none",
    DOCKER_FOREIGN_LAYER_TYPES[1]: "gzip",
}


_LOWER_HEX = frozenset("0123456789abcdef")


def digest_problem(digest: str) -> str:
    """"" when *digest* is ``sha256:`` and 64 lower-case hex digits, else what is wrong."""
    algorithm, colon, encoded = digest.partition(":")
    if not colon:
        return f"invalid digest {digest!r}: expected sha256:<64 hex digits>"
    if algorithm != "sha256":
        return f"unsupported digest algorithm {algorithm!r}"
    if len(encoded) != 64 or not set(encoded) <= _LOWER_HEX:
        return f"invalid digest {digest!r}: expected 64 lower-case hex digits"
    return ""


def check_descriptor(value: object, operation: str, what: str) -> tuple[str, str, int]:
    """``(digest, media type, size)`` of a descriptor with a valid sha256 digest and a
    non-negative size; InvalidArgument naming *what* otherwise."""
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


def layer_compression(media_type: object, operation: str, what: str) -> str:
    """``"none"``, ``"gzip"`` or ``"zstd"`` for a layer media type of
    :data:`LAYER_MEDIA_TYPES`; Unsupported naming the media type for anything else."""
    compression = LAYER_MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
    if compression is None:
        raise Unsupported(operation, what, detail=f"media type {media_type!r} is not an image "
                          "layer (OCI or Docker)")
    return compression


def oci_layer_media_type(media_type: str, operation: str = "write manifest",
                         what: str = "layer") -> str:
    """The OCI layer media type of the same bytes (Docker's ``...rootfs.diff.tar.gzip``
    is ``...layer.v1.tar+gzip``); Unsupported for what is not a layer media type."""
    compression = layer_compression(media_type, operation, what)
    return OCI_LAYER if compression == "none" else f"{OCI_LAYER}+{compression}"


def oci_manifest(config_digest: str, config_size: int,
                 layers: list[tuple[str, str, int]]) -> bytes:
    """An OCI image manifest: the config and ``(media type, digest, size)`` of each layer,
    bottom first (layer media types given in OCI form)."""
    from tsubo import jsonwire

    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": media_type, "digest": digest, "size": size}
                   for media_type, digest, size in layers],
    }
    return jsonwire.dumps(manifest).encode()
