"""``tsubo push`` against a real registry in a throwaway netns, checked with skopeo and umoci.

The registry runs inside a network namespace made by the registry fixtures
(tests/e2e/registry_fixtures.py) and tsubo is run there with ``ip netns exec``: it reaches
127.0.0.1:5000 of that namespace and nothing else. An image gets into tsubo by a pull of
``test/multi:1`` (pushed by skopeo from a layout built in Python) or by ``tsubo import`` of a
tarball (an uncompressed-tar layer); tsubo pushes it, and what the registry then holds is
compared with the original: the manifest digest tsubo printed with the registry's, the layer
blobs byte for byte with the ones tsubo stored (a push never recompresses), and the tree
skopeo + ``umoci unpack`` make of the pushed image with the original's, entry by entry.
What a push uploads is read from the fault proxy's log (tests/e2e/fault_proxy.py).

Credentials go to files under the test's tmp dir (HOME, XDG_*, DOCKER_CONFIG point there).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import engine_fixtures, registry_fixtures
from tests.e2e.engine_fixtures import EngineCLI
from tests.e2e.registry_fixtures import (
    MEDIA_LAYER,
    MEDIA_OCI_MANIFEST,
    PASSWORD,
    USERNAME,
    LayerTar,
    Registry,
    TestImages,
    diff_trees,
    merged_layers_tree,
    push_test_images,
    scan_tree,
    sha256_hex,
)
from tests.e2e.test_engine_pull import (
    Puller,
    image_layers,
    images_listed,
    make_puller,
    push_multi,
)

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
registry = registry_fixtures.registry
registry_basic_auth = registry_fixtures.registry_basic_auth
registry_token_auth = registry_fixtures.registry_token_auth

DIGEST_LINE = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$")
UNAUTHORIZED = re.compile(r"credentials|unauthori[sz]ed|denied|refused|login", re.I)
HELLO = b"hello from an imported image\n"


def _push_available() -> bool:
    binary = engine_fixtures.engine_binary()
    if not binary.exists():
        return False
    proc = subprocess.run(
        [str(binary), "push", "--help"], capture_output=True, timeout=30, check=False,
        stdin=subprocess.DEVNULL)
    return proc.returncode == 0


pytestmark = pytest.mark.skipif(not _push_available(),
                                reason="`tsubo push --help` fails: tsubo push not there yet")


# ---------------------------------------------------------------------------------------------
# helpers


def pushed_digest(out: str, tag: str) -> str:
    """The digest of ``TAG: digest: sha256:... size: N``, the last line ``push`` prints."""
    lines = out.strip().splitlines()
    match = DIGEST_LINE.match(lines[-1]) if lines else None
    assert match, f"no digest line at the end of the push output:\n{out}"
    assert match.group(1) == tag, out
    return match.group(2)


def status_lines(out: str) -> dict[str, list[str]]:
    """Short blob key -> the statuses ``push`` printed for it, in order."""
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, status = line.partition(": ")
        if sep and re.fullmatch(r"[0-9a-f]{12}", key):
            found.setdefault(key, []).append(status)
    return found


def key_of(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def registry_manifest(reg: Registry, repository: str, tag: str) -> tuple[dict[str, Any], str]:
    """The manifest the registry serves for REPOSITORY:TAG and its Docker-Content-Digest,
    after checking that the digest is the one of the bytes served."""
    user = reg.creds or None
    answer = reg.get(f"/v2/{repository}/manifests/{tag}", user=user,
                     headers=[f"Accept: {MEDIA_OCI_MANIFEST}"])
    if answer.status == 401 and reg.auth == "token":  # a bearer token, as any client would
        token = reg.get(f"/token?service={registry_fixtures.TOKEN_SERVICE}"
                        f"&scope=repository:{repository}:pull",
                        address=registry_fixtures.TOKEN_ADDRESS, user=reg.creds)
        bearer = json.loads(token.body)["token"]
        answer = reg.get(f"/v2/{repository}/manifests/{tag}",
                         headers=[f"Accept: {MEDIA_OCI_MANIFEST}",
                                  f"Authorization: Bearer {bearer}"])
    assert answer.status == 200, (answer.status, answer.body[:500], answer.curl_error)
    digest = answer.headers.get("docker-content-digest", "")
    assert digest == f"sha256:{sha256_hex(answer.body)}", answer.headers
    document = json.loads(answer.body)
    assert isinstance(document, dict)
    return document, digest


def skopeo_inspect(reg: Registry, ref: str) -> dict[str, Any]:
    creds = ["--creds", reg.creds] if reg.creds else []
    out = reg.skopeo("inspect", "--tls-verify=false", *creds, f"docker://{reg.address}/{ref}")
    document = json.loads(out.stdout)
    assert isinstance(document, dict)
    return document


def assert_same_tree(expected: dict[str, registry_fixtures.Node],
                     actual: dict[str, registry_fixtures.Node], labels: tuple[str, str],
                     what: str) -> None:
    diff = diff_trees(expected, actual, labels)
    assert diff == "", f"{what}: the trees differ:\n{diff}"


def uploads_dir(reg: Registry, repository: str) -> Path:
    return (reg.storage / "docker" / "registry" / "v2" / "repositories" / repository /
            "_uploads")


def import_image(tsubo: Puller, tmp_path: Path, content: bytes, reference: str,
                 busybox_rootfs: Path | None = None) -> bytes:
    """``tsubo import`` of an uncompressed tarball: busybox (when given) + ``/hello.txt``
    holding *content*, ``CMD cat /hello.txt``; the tarball's bytes."""
    layer = LayerTar()
    if busybox_rootfs is not None:
        layer.tree(busybox_rootfs)
    data = layer.file("hello.txt", content).bytes()
    tarball = tmp_path / f"import-{sha256_hex(data)[:8]}.tar"
    tarball.write_bytes(data)
    tsubo.ok("import", "-c", 'CMD ["cat", "/hello.txt"]', str(tarball), reference)
    return data


# ---------------------------------------------------------------------------------------------
# what a push sends


def test_push_of_a_pulled_image_gives_the_registry_the_very_same_image(
    registry: Registry, engine_cli: EngineCLI, busybox_rootfs: Path, tmp_path: Path
) -> None:
    images = push_multi(registry, busybox_rootfs)
    tsubo = make_puller(registry, engine_cli, tmp_path)
    source = f"{registry.address}/{TestImages.MULTI}"
    tsubo.ok("pull", source)
    target = f"{registry.address}/pushed/multi:2"
    tsubo.ok("tag", source, target)

    out = tsubo.ok("push", target)
    assert out.splitlines()[0] == f"The push refers to repository [{registry.address}/" \
        "pushed/multi]", out
    digest = pushed_digest(out, "2")
    blobs = [*images.multi.layer_digests, images.multi.config_digest]
    statuses = status_lines(out)
    for blob in blobs:  # a new repository: every blob goes up
        assert statuses.get(key_of(blob), [])[-1:] == ["Pushed"], out

    manifest, served = registry_manifest(registry, "pushed/multi", "2")
    assert served == digest
    assert manifest["mediaType"] == MEDIA_OCI_MANIFEST
    assert manifest["config"]["digest"] == images.multi.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == images.multi.layer_digests
    assert [layer["size"] for layer in manifest["layers"]] == images.multi.layer_sizes
    assert {layer["mediaType"] for layer in manifest["layers"]} == {MEDIA_LAYER["gzip"]}
    inspected = skopeo_inspect(registry, "pushed/multi:2")
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == images.multi.layer_digests
    # the very blobs tsubo stored, byte for byte (no recompression)
    for blob in blobs:
        stored = engine_cli.root / "blobs" / "sha256" / blob.removeprefix("sha256:")
        assert stored.read_bytes() == registry.blob_file(blob).read_bytes(), blob

    original = scan_tree(registry.reference_rootfs(TestImages.MULTI))
    assert_same_tree(original, scan_tree(registry.reference_rootfs("pushed/multi:2")),
                     ("test/multi:1", "pushed/multi:2"), "umoci unpack of the pushed image")

    # a second push of the same image: every blob is there already, nothing is uploaded
    with registry.proxy() as proxy:
        again_ref = f"{proxy.address}/pushed/multi:2"
        tsubo.ok("tag", source, again_ref)
        again = tsubo.ok("push", again_ref)
        requests = proxy.events("request")
    assert pushed_digest(again, "2") == digest
    statuses = status_lines(again)
    assert set(statuses) == {key_of(blob) for blob in blobs}, again
    for blob in blobs:
        assert statuses[key_of(blob)][-1] == "Layer already exists", again
        assert "Pushing" not in statuses[key_of(blob)] and "Pushed" not in \
            statuses[key_of(blob)], again
    uploads = [line for line in requests if "/blobs/uploads" in line
               or line.split()[1] in ("POST", "PATCH")
               or (line.split()[1] == "PUT" and "/manifests/" not in line)]
    assert uploads == [], "\n".join(requests)
    assert not any(uploads_dir(registry, "pushed/multi").glob("*")), "an upload was started"


def push_again(tsubo: Puller, reg: Registry, source: str, repository: str
               ) -> tuple[dict[str, Any], str]:
    """``push REGISTRY/SOURCE REGISTRY/REPOSITORY:1`` (pulled before); the manifest the
    registry then serves, checked to be the one tsubo printed and to name the image's
    config."""
    pulled = f"{reg.address}/{source}"
    target = f"{reg.address}/{repository}:1"
    digest = pushed_digest(tsubo.ok("push", pulled, target), "1")
    manifest, served = registry_manifest(reg, repository, "1")
    assert served == digest, source
    [record] = json.loads(tsubo.engine.ok("inspect", pulled))
    assert manifest["mediaType"] == MEDIA_OCI_MANIFEST
    assert manifest["config"]["digest"] == record["Id"], source
    return manifest, digest


def assert_layers(manifest: dict[str, Any], digests: list[str], compression: str,
                  what: str) -> None:
    layers = [(layer["mediaType"], layer["digest"]) for layer in manifest["layers"]]
    wanted = [(MEDIA_LAYER[compression], digest) for digest in digests]
    assert layers == wanted, f"{what}: pushed layers (media type, digest) differ from the " \
        f"image's own blobs:\n  pushed: {layers}\n  wanted: {wanted}"


def test_push_of_a_docker_v2s2_image_sends_its_blobs_as_oci(
    registry: Registry, engine_cli: EngineCLI, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """A Docker schema 2 image goes up as an OCI manifest whose layers are its very Docker
    gzip blobs (OCI media types, same digests); umoci unpacks it to test/multi's tree."""
    images = push_test_images(registry, busybox_rootfs)
    tsubo = make_puller(registry, engine_cli, tmp_path)
    tsubo.ok("pull", f"{registry.address}/{TestImages.V2S2}")
    manifest, _ = push_again(tsubo, registry, TestImages.V2S2, "pushed/v2s2")
    assert_layers(manifest, images.multi.layer_digests, "gzip", TestImages.V2S2)
    assert_same_tree(scan_tree(registry.reference_rootfs(TestImages.MULTI)),
                     scan_tree(registry.reference_rootfs("pushed/v2s2:1")),
                     (TestImages.MULTI, "pushed/v2s2:1"), "umoci unpack of pushed/v2s2:1")


def test_push_of_a_zstd_image_keeps_its_zstd_blobs(
    registry: Registry, engine_cli: EngineCLI, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """(umoci cannot unpack zstd layers: the digests, those of the layers built, say the
    content is the same.)"""
    images = push_test_images(registry, busybox_rootfs)
    tsubo = make_puller(registry, engine_cli, tmp_path)
    tsubo.ok("pull", f"{registry.address}/{TestImages.ZSTD}")
    manifest, _ = push_again(tsubo, registry, TestImages.ZSTD, "pushed/zstd")
    assert_layers(manifest, images.zstd.layer_digests, "zstd", TestImages.ZSTD)


@pytest.mark.parametrize("kind", ["registry", "registry_token_auth"])
def test_push_sends_the_image_own_blobs_when_another_image_shares_its_layers(
    kind: str, request: pytest.FixtureRequest, engine_cli: EngineCLI, busybox_rootfs: Path,
    tmp_path: Path
) -> None:
    """test/zstd and test/v2s2 have the same layers (diff_ids) in different blobs (zstd,
    gzip): with both pulled, each is pushed with its own blobs (a gzip image does not
    become a zstd one, which older clients could not pull). The v2s2 blobs were never
    downloaded (the layers were there): they are mounted from test/v2s2 in the registry,
    with a token for both repositories where the registry wants tokens."""
    registry: Registry = request.getfixturevalue(kind)
    images = push_test_images(registry, busybox_rootfs)
    tsubo = make_puller(registry, engine_cli, tmp_path)
    if registry.auth != "none":
        tsubo.ok("login", "-u", USERNAME, "--password-stdin", registry.address,
                 input=PASSWORD + "\n")
    tsubo.ok("pull", f"{registry.address}/{TestImages.ZSTD}")
    tsubo.ok("pull", f"{registry.address}/{TestImages.V2S2}")
    manifest, _ = push_again(tsubo, registry, TestImages.ZSTD, "pushed/zstd")
    assert_layers(manifest, images.zstd.layer_digests, "zstd", TestImages.ZSTD)
    manifest, _ = push_again(tsubo, registry, TestImages.V2S2, "pushed/v2s2")
    assert_layers(manifest, images.multi.layer_digests, "gzip", TestImages.V2S2)


def test_push_of_an_imported_image_then_rmi_pull_run(
    registry: Registry, engine_cli: EngineCLI, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """An imported image's layer is an uncompressed tar: it goes up as that very tar (OCI
    ``tar`` media type); the image comes back by pull after ``rmi`` and runs."""
    tsubo = make_puller(registry, engine_cli, tmp_path)
    target = f"{registry.address}/imported/base:1"
    data = import_image(tsubo, tmp_path, HELLO, target, busybox_rootfs)
    [record] = json.loads(engine_cli.ok("inspect", target))
    image_id = record["Id"]
    original = merged_layers_tree(image_layers(engine_cli, target), tmp_path / "mnt")

    out = tsubo.ok("push", "-q", target)
    [digest] = out.splitlines()  # -q: the digest only
    manifest, served = registry_manifest(registry, "imported/base", "1")
    assert served == digest
    layer_digest = f"sha256:{sha256_hex(data)}"
    assert manifest["layers"] == [{"mediaType": MEDIA_LAYER["none"], "digest": layer_digest,
                                   "size": len(data)}]
    assert manifest["config"]["digest"] == image_id
    assert registry.blob_file(layer_digest).read_bytes() == data
    assert skopeo_inspect(registry, "imported/base:1")["Digest"] == digest
    assert_same_tree(original, scan_tree(registry.reference_rootfs("imported/base:1")),
                     ("tsubo", "umoci"), "umoci unpack of the pushed imported image")

    # round trip: rmi, pull it back, run it
    tsubo.ok("rmi", target)
    assert images_listed(tsubo) == []
    pulled = tsubo.ok("pull", target)
    assert digest in pulled
    [record] = json.loads(engine_cli.ok("inspect", target))
    assert record["Id"] == image_id
    assert engine_cli.ok("run", "--rm", "--network", "none", target) == HELLO.decode()


# ---------------------------------------------------------------------------------------------
# authentication


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_push_to_an_authenticating_registry_needs_a_login(
    auth: str, request: pytest.FixtureRequest, engine_cli: EngineCLI, tmp_path: Path
) -> None:
    reg: Registry = request.getfixturevalue(f"registry_{auth}_auth")
    tsubo = make_puller(reg, engine_cli, tmp_path)
    local = "local/private:1"
    target = f"{reg.address}/private/img:1"
    import_image(tsubo, tmp_path, b"for authorised eyes\n", local)

    anonymous = tsubo("push", local, target)
    assert anonymous.returncode == 1, anonymous
    [line] = anonymous.stderr.strip().splitlines()  # one line naming the registry
    assert reg.address in line and UNAUTHORIZED.search(line), line
    denied = reg.skopeo("inspect", "--tls-verify=false", "--creds", reg.creds,
                        f"docker://{target}", check=False)
    assert denied.returncode != 0, "the refused push stored a manifest"

    tsubo.ok("login", "-u", USERNAME, "--password-stdin", reg.address, input=PASSWORD + "\n")
    out = tsubo.ok("push", local, target)
    digest = pushed_digest(out, "1")
    manifest, served = registry_manifest(reg, "private/img", "1")
    assert served == digest
    [record] = json.loads(engine_cli.ok("inspect", local))
    assert manifest["config"]["digest"] == record["Id"]
    assert skopeo_inspect(reg, "private/img:1")["Digest"] == digest


# ---------------------------------------------------------------------------------------------
# errors


def test_push_errors_are_one_line(registry: Registry, engine_cli: EngineCLI,
                                  tmp_path: Path) -> None:
    tsubo = make_puller(registry, engine_cli, tmp_path)
    unknown = tsubo("push", f"{registry.address}/nosuch/image:1")
    assert unknown.returncode == 1, unknown
    [line] = unknown.stderr.strip().splitlines()
    assert "nosuch/image" in line and re.search(r"no such|not found|unknown", line, re.I), line

    source = f"{registry.address}/errors/img:1"
    import_image(tsubo, tmp_path, b"never pushed\n", source)
    by_digest = f"{registry.address}/errors/img@sha256:{sha256_hex(b'some manifest')}"
    for argv in (("push", source, by_digest), ("push", by_digest)):
        refused = tsubo(*argv)
        assert refused.returncode == 1, (argv, refused)
        [line] = refused.stderr.strip().splitlines()
        assert "digest" in line.lower() or "no such" in line.lower(), (argv, line)
    assert "Traceback" not in unknown.stderr + refused.stderr
    tags = registry.get("/v2/errors/img/tags/list")
    assert tags.status == 404, (tags.status, tags.body[:300])
