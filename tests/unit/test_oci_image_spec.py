"""The image spec helpers: descriptor checks, layer media types, the OCI manifest."""

from __future__ import annotations

import json

import pytest

from tsubo.errors import InvalidArgument
from tsubo.oci.image_spec import (
    OCI_CONFIG,
    OCI_MANIFEST,
    check_descriptor,
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


def test_manifest() -> None:
    manifest = json.loads(oci_manifest(DIGEST, 10, [("m", "sha256:" + "b" * 64, 5)]))
    assert manifest == {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": DIGEST, "size": 10},
                        "layers": [{"mediaType": "m", "digest": "sha256:" + "b" * 64,
                                    "size": 5}]}
