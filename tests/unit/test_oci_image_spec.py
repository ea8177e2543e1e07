"""The image spec helpers: descriptor checks, layer media types, the OCI manifest."""

from __future__ import annotations

import json

import pytest

from tsubo.errors import InvalidArgument, Unsupported
from tsubo.oci.image_spec import (
    LAYER_MEDIA_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    check_descriptor,
    layer_compression,
    oci_layer_media_type,
    oci_manifest,
)

DIGEST = "sha256:" + "a" * 64


def test_a_good_descriptor() -> None:
    assert check_descriptor({"digest": DIGEST, "size": 3, "mediaType": "x"}, "op", "w") == (
        DIGEST, "x", 3)
    assert check_descriptor({"digest": DIGEST, "size": 0}, "op", "w") == (DIGEST, "", 0)


@pytest.mark.parametrize(("value", "complaint"), [
    ([], "descriptor object"), ({"size": 1}, "no digest"),
    ({"digest": "sha256:../x", "size": 1}, "64"), ({"digest": "md5:" + "a" * 32, "size": 1},
                                                   "algorithm"),
    ({"digest": DIGEST, "size": -1}, "size"), ({"digest": DIGEST, "size": True}, "size"),
    ({"digest": DIGEST, "size": "1"}, "size"),
    ({"digest": DIGEST, "size": 1, "mediaType": 7}, "media type"),
])
def test_bad_descriptors_are_named(value: object, complaint: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        check_descriptor(value, "read manifest", "layer 2")
    assert error.value.object == "layer 2" and complaint in error.value.message()


def test_layer_media_types_in_oci_form() -> None:
    assert oci_layer_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip") == \
        "application/vnd.oci.image.layer.v1.tar+gzip"
    assert oci_layer_media_type("application/vnd.oci.image.layer.v1.tar+zstd") == \
        "application/vnd.oci.image.layer.v1.tar+zstd"
    assert oci_layer_media_type("application/vnd.oci.image.layer.v1.tar") == \
        "application/vnd.oci.image.layer.v1.tar"


@pytest.mark.parametrize(("media_type", "compression"), [
    ("application/vnd.oci.image.layer.v1.tar", "none"),
    ("application/vnd.oci.image.layer.v1.tar+gzip", "gzip"),
    ("application/vnd.oci.image.layer.v1.tar+zstd", "zstd"),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar", "none"),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "zstd"),
    ("application/vnd.docker.image.rootfs.diff.tar", "none"),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"),
    ("application/vnd.docker.image.rootfs.diff.tar.zstd", "zstd"),
    ("application/vnd.docker.image.rootfs.foreign.diff.tar", "none"),
    ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "gzip"),
])
def test_the_layer_media_types(media_type: str, compression: str) -> None:
    assert layer_compression(media_type, "pull", "layer 0") == compression
    assert oci_layer_media_type(media_type).startswith("application/vnd.oci.image.layer.v1.tar")


def test_the_list_is_exactly_those() -> None:
    assert len(LAYER_MEDIA_TYPES) == 11


@pytest.mark.parametrize("media_type", [
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",  # a Helm chart
    "application/vnd.cncf.helm.chart.provenance.v1.prov",
    "application/vnd.in-toto+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.oci.image.layer.v1.tar+lz4",
    "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
    "application/vnd.example.thing.v1.tar",
    "application/x-tar", "application/gzip", "application/tar+gzip", "+gzip", ".tar.gz",
    "application/vnd.oci.image.layer.v1.tar ",  # near misses of real ones
    "APPLICATION/VND.OCI.IMAGE.LAYER.V1.TAR",
    "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "", None, 7,
])
def test_anything_else_is_refused_naming_the_media_type(media_type: object) -> None:
    with pytest.raises(Unsupported) as caught:
        layer_compression(media_type, "load image", "index.json entry 0 layer 0")
    error = caught.value
    assert (error.operation, error.object) == ("load image", "index.json entry 0 layer 0")
    assert error.message() == (f"load image index.json entry 0 layer 0: media type "
                               f"{media_type!r} is not an image layer (OCI or Docker)")
    if isinstance(media_type, str):
        with pytest.raises(Unsupported, match="is not an image layer"):
            oci_layer_media_type(media_type, "push", "layer sha256:x")


def test_manifest() -> None:
    manifest = json.loads(oci_manifest(DIGEST, 10, [("m", "sha256:" + "b" * 64, 5)]))
    assert manifest == {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": DIGEST, "size": 10},
                        "layers": [{"mediaType": "m", "digest": "sha256:" + "b" * 64,
                                    "size": 5}]}
