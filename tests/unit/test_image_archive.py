"""Pure helpers of save/load (tsubo.image.archive), image listing filters (tsubo.cli.images),
Docker's size words (tsubo.cli.render.human_size) and tree_size (tsubo.image.snapshots)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tsubo.cli.images import glob_match, reference_matches
from tsubo.cli.render import human_size
from tsubo.errors import InvalidArgument, Unsupported
from tsubo.image import archive
from tsubo.image.archive import (
    archive_path,
    blob_path_digest,
    check_tar_headers,
    choose_platform,
    config_path_digest,
    member_key,
    names_from_annotations,
    resolve_link,
    sniff_layer_media_type,
)
from tsubo.image.snapshots import tree_size
from tsubo.oci.image_spec import oci_layer_media_type, oci_manifest

HEX = "ab" * 32


@pytest.mark.parametrize(("value", "expected"), [
    ("blobs/sha256/x", "blobs/sha256/x"), ("./a//b/./c", "a/b/c"), ("layer.tar", "layer.tar"),
])
def test_archive_path_normalises(value: str, expected: str) -> None:
    assert archive_path(value, "layer") == expected


@pytest.mark.parametrize(("value", "word"), [
    ("../../etc/passwd", "leaves the archive"), ("a/../../b", "leaves the archive"),
    ("a/../b", "leaves the archive"), ("/etc/passwd", "absolute"), ("", "expected a path"),
    (None, "expected a path"), (7, "expected a path"), (".", "invalid path"),
    ("a\0b", "invalid path"),
])
def test_archive_path_refuses(value: object, word: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        archive_path(value, "manifest.json layer")
    assert word in caught.value.message() and "manifest.json layer" in caught.value.message()


def test_member_keys_and_links() -> None:
    assert member_key("./manifest.json") == "manifest.json"
    assert member_key("/abs//x") == "abs/x"
    assert member_key("../x") is None and member_key("a/../x") is None and member_key(".") is None
    assert resolve_link("id/layer.tar", "../other/layer.tar", symbolic=True) == \
        "other/layer.tar"
    assert resolve_link("id/layer.tar", "../../etc/passwd", symbolic=True) is None
    assert resolve_link("id/layer.tar", "/etc/passwd", symbolic=True) is None
    assert resolve_link("id/layer.tar", "other/layer.tar", symbolic=False) == "other/layer.tar"
    assert resolve_link("a", "..", symbolic=False) is None


def test_digests_named_by_paths() -> None:
    assert blob_path_digest(f"blobs/sha256/{HEX}") == f"sha256:{HEX}"
    assert blob_path_digest(f"blobs/sha256/{HEX}x") == ""
    assert blob_path_digest(f"{HEX}/layer.tar") == ""
    assert config_path_digest(f"{HEX}.json") == f"sha256:{HEX}"
    assert config_path_digest(f"x/{HEX}.json") == ""
    assert config_path_digest(f"blobs/sha256/{HEX}") == f"sha256:{HEX}"
    assert config_path_digest("config.json") == ""


def test_media_types() -> None:
    assert sniff_layer_media_type(b"\x1f\x8b\x08\0", "l").endswith("tar+gzip")
    assert sniff_layer_media_type(b"\x28\xb5\x2f\xfd", "l").endswith("tar+zstd")
    assert sniff_layer_media_type(b"etc/\0\0\0\0", "l") == "application/vnd.oci.image.layer.v1.tar"
    with pytest.raises(Unsupported):
        sniff_layer_media_type(b"\xfd7zXZ\0", "l")
    assert oci_layer_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip") == \
        "application/vnd.oci.image.layer.v1.tar+gzip"
    assert oci_layer_media_type("application/vnd.oci.image.layer.v1.tar+zstd") == \
        "application/vnd.oci.image.layer.v1.tar+zstd"
    assert oci_layer_media_type("application/vnd.oci.image.layer.v1.tar") == \
        "application/vnd.oci.image.layer.v1.tar"


def test_oci_manifest() -> None:
    manifest = json.loads(oci_manifest(f"sha256:{HEX}", 10, [("t", f"sha256:{HEX}", 5)]))
    assert manifest == {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{HEX}", "size": 10},
        "layers": [{"mediaType": "t", "digest": f"sha256:{HEX}", "size": 5}],
    }


def test_names_from_annotations() -> None:
    assert names_from_annotations({"io.containerd.image.name": "docker.io/x/y:1",
                                   "org.opencontainers.image.ref.name": "1"}) == \
        ["docker.io/x/y:1"]
    assert names_from_annotations({"org.opencontainers.image.ref.name": "busybox:1"}) == \
        ["busybox:1"]
    assert names_from_annotations({"org.opencontainers.image.ref.name": "latest"}) == []
    assert names_from_annotations(None) == [] and names_from_annotations({}) == []


def test_choose_platform() -> None:
    entries = [{"digest": "a", "platform": {"os": "linux", "architecture": "arm64"}},
               {"digest": "b", "platform": {"os": "linux", "architecture": "amd64"}}, "junk"]
    assert choose_platform(entries, "amd64")["digest"] == "b"
    with pytest.raises(InvalidArgument) as caught:
        choose_platform(entries, "s390x")
    assert "linux/arm64, linux/amd64" in caught.value.message()


def tar_bytes(*members: tuple[str, bytes], pax: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_check_tar_headers_counts_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    data = tar_bytes(("a", b"1" * 700), ("b" * 150, b"2"), ("c", b""), pax={"comment": "x"})
    assert check_tar_headers(io.BytesIO(data)) == 3
    huge = tar_bytes(("a", b"1"), pax={"comment": "x" * 5000})
    monkeypatch.setattr(archive, "MAX_TAR_META_BYTES", 4096)
    with pytest.raises(InvalidArgument, match="extended header"):
        check_tar_headers(io.BytesIO(huge))
    monkeypatch.setattr(archive, "MAX_MEMBERS", 2)
    with pytest.raises(InvalidArgument, match="more than 2 members"):
        check_tar_headers(io.BytesIO(data))
    assert check_tar_headers(io.BytesIO(b"")) == 0
    assert check_tar_headers(io.BytesIO(data[:1600])) == 1  # truncated: for tarfile to report


def test_glob_and_reference_filters() -> None:
    assert glob_match("busy*", "busybox") and glob_match("*", "busybox:latest")
    assert not glob_match("*", "team/app") and glob_match("*/*", "team/app")
    assert glob_match("b?sybox", "busybox") and not glob_match("b?sybox", "b/sybox")
    assert reference_matches("busybox", "docker.io/library/busybox:latest")
    assert reference_matches("busybox:late*", "docker.io/library/busybox:latest")
    assert reference_matches("*/team/*", "registry.local:5000/team/app:v3")
    assert not reference_matches("app", "registry.local:5000/team/app:v3")


@pytest.mark.parametrize(("size", "precision", "text"), [
    (0, 4, "0B"), (999, 4, "999B"), (1000, 4, "1kB"), (250_007, 4, "250kB"),
    (123_456, 4, "123.5kB"), (4_261_000, 3, "4.26MB"), (16_430_000, 4, "16.43MB"),
    (999_999, 3, "1MB"), (2 * 10**9, 4, "2GB"),
])
def test_human_size(size: int, precision: int, text: str) -> None:
    assert human_size(size, precision) == text


def test_tree_size_counts_hardlinks_once_and_never_follows_symlinks(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "file").write_bytes(b"x" * 1000)
    os.link(tmp_path / "d" / "file", tmp_path / "d" / "e" / "again")
    (tmp_path / "d" / "e" / "small").write_bytes(b"y" * 10)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"z" * 5000)
    (tmp_path / "d" / "link").symlink_to(outside)
    assert tree_size(str(tmp_path / "d")) == 1000 + 10 + len(str(outside))
    assert tree_size(str(tmp_path / "missing")) == 0


def test_digest_of_path_names_is_not_trusted_without_content() -> None:
    """blob_path_digest only says what a path claims; the loader verifies the content."""
    data = b"content"
    claimed = blob_path_digest("blobs/sha256/" + hashlib.sha256(data).hexdigest())
    assert claimed == "sha256:" + hashlib.sha256(data).hexdigest()
