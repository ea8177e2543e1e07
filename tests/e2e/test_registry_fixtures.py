"""Checks of the registry test fixtures themselves (tests/e2e/registry_fixtures.py).

These need no tsubo code: the registries answer (plain, htpasswd, token auth), skopeo pushes
and ``umoci unpack`` give the tree the image builders meant, the overlay tree helper
interprets whiteouts, and the fault proxy cuts and strips as told. Every registry, client
and proxy runs inside a throwaway network namespace of the fixture.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import (
    PASSWORD,
    TOKEN_ADDRESS,
    TOKEN_SERVICE,
    USERNAME,
    Node,
    OciLayout,
    Registry,
    TestImages,
    diff_trees,
    marker_layer,
    merged_layers_tree,
    scan_tree,
    sha256_hex,
)

# the fixtures this module uses (imported as values so they register here)
registry = registry_fixtures.registry
registry_basic_auth = registry_fixtures.registry_basic_auth
registry_token_auth = registry_fixtures.registry_token_auth
test_images_registry = registry_fixtures.test_images_registry

OCI_ACCEPT = "Accept: application/vnd.oci.image.manifest.v1+json"
V2S2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def small_layout(path: Path, size: int = 200_000) -> tuple[OciLayout, str]:
    """A one-layer image (random, incompressible content) tagged ``1``; its layer digest."""
    layout = OciLayout(path)
    built = layout.image([registry_fixtures.LayerTar()
                          .file("blob.bin", os.urandom(size)).bytes()])
    layout.tag(built.manifest, "1")
    return layout, built.layer_digests[0]


# ---------------------------------------------------------------------------------------------
# registries


def test_registry_answers_inside_its_netns_only(registry: Registry) -> None:
    answer = registry.get("/v2/")
    assert answer.status == 200, answer
    assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
    assert Path(f"/run/netns/{registry.netns}").exists()
    # the registry listens on the namespace's loopback, not ours: nothing of ours is touched
    listening = registry.run(["ss", "-Htln"]).stdout
    assert registry.address in listening
    layout, layer = small_layout(registry.workdir / "small")
    digest = registry.push_layout(layout.path, "1", "test/small:1")
    assert registry.blob_file(layer).is_file()
    manifest = registry.get("/v2/test/small/manifests/1", headers=[OCI_ACCEPT])
    assert manifest.headers["docker-content-digest"] == digest
    assert sha256_hex(manifest.body) == digest.removeprefix("sha256:")


def test_basic_auth_registry_wants_the_password(registry_basic_auth: Registry) -> None:
    reg = registry_basic_auth
    anonymous = reg.get("/v2/")
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert reg.get("/v2/", user=f"{USERNAME}:{PASSWORD}").status == 200
    assert reg.get("/v2/", user=f"{USERNAME}:wrong").status == 401
    layout, layer = small_layout(reg.workdir / "small")
    reg.push_layout(layout.path, "1", "test/small:1")  # skopeo with --dest-creds
    assert reg.get(f"/v2/test/small/blobs/{layer}").status == 401
    blob = reg.get(f"/v2/test/small/blobs/{layer}", user=f"{USERNAME}:{PASSWORD}")
    assert blob.status == 200 and sha256_hex(blob.body) == layer.removeprefix("sha256:")


def test_token_auth_registry_issues_and_checks_tokens(registry_token_auth: Registry) -> None:
    reg = registry_token_auth
    challenge = reg.get("/v2/")
    assert challenge.status == 401
    header = challenge.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    assert f'realm="http://{TOKEN_ADDRESS}/token"' in header
    assert f'service="{TOKEN_SERVICE}"' in header

    layout, layer = small_layout(reg.workdir / "small")
    reg.push_layout(layout.path, "1", "test/small:1")  # the whole token dance, by skopeo
    scope = "repository:test/small:pull"
    realm = f"/token?service={TOKEN_SERVICE}&scope={scope}"
    denied = reg.get(realm, address=TOKEN_ADDRESS, user=f"{USERNAME}:wrong")
    assert denied.status == 401
    assert reg.get(realm, address=TOKEN_ADDRESS).status == 401  # no anonymous pulls
    granted = reg.get(realm, address=TOKEN_ADDRESS, user=f"{USERNAME}:{PASSWORD}")
    assert granted.status == 200, granted
    token = json.loads(granted.body)["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": "test/small",
                                 "actions": ["pull"]}]
    blob = reg.get(f"/v2/test/small/blobs/{layer}", headers=[f"Authorization: Bearer {token}"])
    assert blob.status == 200 and sha256_hex(blob.body) == layer.removeprefix("sha256:")
    # a token for one repository does not open another
    other = reg.get("/v2/test/other/manifests/1", headers=[f"Authorization: Bearer {token}"])
    assert other.status == 401
    log = (reg.workdir / "token.log").read_text()
    assert f"token user={USERNAME}" in log and "denied" in log


# ---------------------------------------------------------------------------------------------
# images and the reference unpacker


def test_pushed_images_unpack_to_the_tree_the_builders_meant(
    test_images_registry: tuple[Registry, TestImages], busybox_rootfs: Path
) -> None:
    reg, images = test_images_registry
    assert images.pushed_digests[TestImages.MULTI] == images.multi.digest
    assert images.pushed_digests[TestImages.ZSTD] == images.zstd.digest
    assert images.pushed_digests[TestImages.MULTIARCH] == images.index_digest
    assert len(images.multi.layer_digests) >= 6
    tree = scan_tree(reg.reference_rootfs(TestImages.MULTI))

    def node(path: str) -> Node:
        assert path in tree, f"{path} missing from the unpacked image"
        return tree[path]

    # the busybox layer is all there, except what later layers change on purpose
    base = scan_tree(busybox_rootfs)
    changed = {"/", "/bin/vi"}
    assert diff_trees({k: v for k, v in base.items() if k not in changed},
                      {k: v for k, v in tree.items() if k in base and k not in changed},
                      ("busybox rootfs", "image")) == ""
    assert "/etc/motd" not in tree  # whiteout
    assert sorted(k for k in tree if k.startswith("/opt/opaque/")) == ["/opt/opaque/fresh"]
    recreated = node("/data/recreated")
    assert (recreated.mode, recreated.uid, recreated.gid) == (0o600, 1000, 1000)
    assert recreated.sha256 == sha256_hex(b"version 2\n")
    assert node("/data/hard1").links == ("/data/hard1", "/data/hard2")
    assert node("/var/lib/app/h3").links == ("/var/lib/app/h1", "/var/lib/app/h2",
                                             "/var/lib/app/h3")
    assert node("/usr/local/bin/suid-tool").mode == 0o4755
    assert node("/usr/local/bin/sgid-tool").mode == 0o2755
    owned = node("/home/tsubotest/owned")
    assert (owned.uid, owned.gid, owned.mode) == (1000, 1000, 0o640)
    assert node("/secret").mode == 0o700 and node("/secret/key").mode == 0o600
    assert node("/secret/zero-mode").mode == 0
    assert node("/opt/link").target == "../etc/passwd"
    assert node("/opt/abs-link").target == "/data/hard1"
    assert node("/var/lib/app/l1").target == "l2"
    assert node("/var/lib/app/dangling").kind == "symlink"
    assert node("/var/lib/app/pipe").kind == "fifo"
    assert node("/var/lib/app/sticky").mode == 0o1777
    assert node("/etc/shape").kind == "dir" and node("/etc/shape/now-a-dir").kind == "file"
    assert node("/bin/vi").kind == "file"
    assert (node("/srv").uid, node("/srv").mode) == (1000, 0o750)
    assert node("/srv/blob.bin").size == 300_000

    # the Docker schema 2 copy of the same image unpacks to the same tree
    v2s2 = reg.get("/v2/test/v2s2/manifests/1",
                   headers=[f"Accept: {V2S2_MANIFEST}"])
    assert json.loads(v2s2.body)["mediaType"] == V2S2_MANIFEST
    assert diff_trees(tree, scan_tree(reg.reference_rootfs(TestImages.V2S2)),
                      ("oci", "v2s2")) == ""


def test_zstd_and_multiarch_images_are_stored_as_built(
    test_images_registry: tuple[Registry, TestImages]
) -> None:
    reg, images = test_images_registry
    manifest = json.loads(reg.get("/v2/test/zstd/manifests/1", headers=[OCI_ACCEPT]).body)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"}
    assert [layer["digest"] for layer in manifest["layers"]] == images.zstd.layer_digests
    blob = reg.blob_file(images.zstd.layer_digests[-1]).read_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic

    index = json.loads(reg.get("/v2/test/multiarch/manifests/1", headers=[
        "Accept: application/vnd.oci.image.index.v1+json"]).body)
    platforms = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert platforms == {"amd64": images.amd64.digest, "arm64": images.arm64.digest}
    for architecture in ("amd64", "arm64"):
        rootfs = reg.reference_rootfs(TestImages.MULTIARCH, architecture=architecture)
        assert (rootfs / "platform").read_text() == f"{architecture}\n"
    assert marker_layer("arm64") != marker_layer("amd64")


def test_merged_layers_tree_applies_whiteouts_like_overlayfs(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for path in (lower / "dir", lower / "gone", upper / "dir"):
        path.mkdir(parents=True)
    (lower / "dir" / "old").write_text("hidden by the opaque dir")
    (lower / "gone" / "file").write_text("whited out")
    (lower / "kept").write_text("kept")
    (upper / "dir" / "new").write_text("new")
    os.setxattr(upper / "dir", "trusted.overlay.opaque", b"y")
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    for path in (lower, upper, lower / "dir", upper / "dir"):
        path.chmod(0o755)
    tree = merged_layers_tree([lower, upper], tmp_path / "mnt")
    assert sorted(tree) == ["/", "/dir", "/dir/new", "/kept"]
    assert tree["/kept"].sha256 == sha256_hex(b"kept")
    # nothing stays mounted: the overlay lived in a private mount namespace
    assert str(tmp_path / "mnt") not in Path("/proc/self/mountinfo").read_text()


def test_diff_trees_names_every_difference(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        root.mkdir()
        (root / "same").write_text("same")
    (one / "content").write_text("a")
    (two / "content").write_text("b")
    (one / "only-one").write_text("x")
    (one / "mode").write_text("m")
    (two / "mode").write_text("m")
    (two / "mode").chmod(0o4755)
    (two / "link").symlink_to("same")
    text = diff_trees(scan_tree(one), scan_tree(two), ("one", "two"))
    assert "/content: size, sha256 differ" not in text  # sizes are equal: sha256 only
    assert "/content: sha256 differ" in text
    assert "/only-one: only in one" in text
    assert "/link: only in two" in text
    assert "/mode: mode differ" in text and "4755" in text
    assert "/same" not in text


# ---------------------------------------------------------------------------------------------
# the fault proxy


def test_fault_proxy_cuts_one_blob_download_then_passes(
    test_images_registry: tuple[Registry, TestImages]
) -> None:
    reg, images = test_images_registry
    digest = images.multi.layer_digests[0]  # busybox: the biggest layer
    path = f"/v2/test/multi/blobs/{digest}"
    with reg.proxy(cut_after=4096) as proxy:
        # a small blob (the config, < 4096 bytes) is not cut and does not use up the cut
        config = reg.get(f"/v2/test/multi/blobs/{images.multi.config_digest}",
                         address=proxy.address)
        assert config.status == 200 and config.curl_exit == 0
        cut = reg.get(path, address=proxy.address)
        assert cut.status == 200 and len(cut.body) == 4096
        assert cut.curl_exit == 18, cut.curl_error  # CURLE_PARTIAL_FILE
        whole = reg.get(path, address=proxy.address)
        assert whole.curl_exit == 0 and sha256_hex(whole.body) == digest.removeprefix("sha256:")
        cuts = proxy.events("cut")
        assert len(cuts) == 1 and digest in cuts[0] and "after 4096 of" in cuts[0]
        # manifests pass untouched
        manifest = reg.get("/v2/test/multi/manifests/1", headers=[OCI_ACCEPT],
                           address=proxy.address)
        assert manifest.headers["docker-content-digest"] == images.multi.digest


def test_fault_proxy_strips_range_so_the_whole_blob_comes_back(
    test_images_registry: tuple[Registry, TestImages]
) -> None:
    reg, images = test_images_registry
    digest = images.multi.layer_digests[0]
    full = reg.blob_file(digest).read_bytes()
    path = f"/v2/test/multi/blobs/{digest}"
    direct = reg.get(path, headers=["Range: bytes=1000-"])
    assert direct.status == 206 and direct.body == full[1000:]  # the registry does ranges
    with reg.proxy(strip_range=True) as proxy:
        stripped = reg.get(path, headers=["Range: bytes=1000-"], address=proxy.address)
        assert stripped.status == 200 and stripped.body == full
        assert len(proxy.events("strip-range")) == 1
    with reg.proxy(cut_after=1000, strip_range=True) as proxy:
        assert len(reg.get(path, address=proxy.address).body) == 1000
        resumed = reg.get(path, headers=["Range: bytes=1000-"], address=proxy.address)
        assert resumed.status == 200 and resumed.body == full
