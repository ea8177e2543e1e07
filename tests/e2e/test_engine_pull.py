"""``tsubo pull`` (and ``login``/``logout``) against a real registry in a throwaway netns.

The registry, the clients and the fault proxy all run inside a network namespace made by the
registry fixtures (tests/e2e/registry_fixtures.py): ``tsubo pull`` is run with ``ip netns
exec``, so it reaches 127.0.0.1:5000 of that namespace and nothing else. The images are
built in Python, pushed with skopeo, and unpacked for reference with skopeo + ``umoci
unpack``; a pulled image's tree is the read-only overlay of its layer directories (what a
container gets), compared with the reference entry by entry (type, mode with setuid bits,
owner, size, sha256, symlink target, hardlink groups). A container of the image lists its
own tree too, and must agree.

Credentials go to files under the test's tmp dir (HOME, XDG_*, DOCKER_CONFIG point there).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import engine_fixtures, registry_fixtures
from tests.e2e.engine_fixtures import EngineCLI, engine_binary
from tests.e2e.registry_fixtures import (
    PASSWORD,
    RUNTIME_PATHS,
    USERNAME,
    FaultProxy,
    LayerTar,
    Node,
    OciLayout,
    Registry,
    TestImages,
    build_test_layout,
    diff_trees,
    merged_layers_tree,
    scan_tree,
    sha256_hex,
)

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
registry = registry_fixtures.registry
registry_basic_auth = registry_fixtures.registry_basic_auth
registry_token_auth = registry_fixtures.registry_token_auth
test_images_registry = registry_fixtures.test_images_registry

PULL_TIMEOUT = 180.0
BLOB_LINE = re.compile(r"^(\w+) (GET|HEAD) \S+/blobs/(sha256:[0-9a-f]{64})\b")


def _pull_available() -> bool:
    binary = engine_binary()
    if not binary.exists():
        return False
    proc = subprocess.run([str(binary), "pull", "--help"], capture_output=True, timeout=30,
                          check=False, stdin=subprocess.DEVNULL)
    return proc.returncode == 0


pytestmark = pytest.mark.skipif(not _pull_available(),
                                reason="`tsubo pull --help` fails: tsubo pull not there yet")


@dataclass
class Puller:
    """``tsubo --root ROOT ARGS`` inside the registry's netns, with a private HOME."""

    registry: Registry
    engine: EngineCLI
    home: Path

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            # the engine's setting as the whole session has it: no default bridge here
            "TSUBO_DEFAULT_NETWORK": os.environ.get("TSUBO_DEFAULT_NETWORK", "none"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
            "DOCKER_CONFIG": str(self.home / ".docker"),
            "LANG": "C.UTF-8",
        }

    def __call__(self, *args: str, input: str | None = None, root: Path | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        argv = [str(engine_binary()), "--root", str(root or self.engine.root), *args]
        return self.registry.run(argv, input=None if input is None else input.encode(),
                                 env=self.env(), timeout=PULL_TIMEOUT)

    def ok(self, *args: str, input: str | None = None, root: Path | None = None) -> str:
        proc = self(*args, input=input, root=root)
        assert proc.returncode == 0, f"tsubo {args}: exit {proc.returncode}\n{proc.stderr}"
        return proc.stdout

    def pull(self, ref: str, *options: str, address: str | None = None,
             root: Path | None = None) -> str:
        return self.ok("pull", *options, f"{address or self.registry.address}/{ref}",
                       root=root)

    @property
    def auth_file(self) -> Path:
        return self.home / ".config" / "tsubo" / "auth.json"


def make_puller(reg: Registry, engine: EngineCLI, tmp_path: Path) -> Puller:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    return Puller(reg, engine, home)


@pytest.fixture
def shared(test_images_registry: tuple[Registry, TestImages]) -> Registry:
    return test_images_registry[0]


@pytest.fixture
def images(test_images_registry: tuple[Registry, TestImages]) -> TestImages:
    return test_images_registry[1]


@pytest.fixture
def puller(shared: Registry, engine_cli: EngineCLI, tmp_path: Path) -> Puller:
    """Pulls from the module's shared registry into the test's engine root."""
    return make_puller(shared, engine_cli, tmp_path)


@pytest.fixture(scope="module")
def reference_trees(test_images_registry: tuple[Registry, TestImages]) -> Iterator[
        dict[tuple[str, str], dict[str, Node]]]:
    """(ref, architecture) -> the umoci-unpacked tree, computed once per module."""
    reg, _ = test_images_registry
    cache: dict[tuple[str, str], dict[str, Node]] = {}
    for ref, architecture in ((TestImages.MULTI, "amd64"), (TestImages.MULTIARCH, "amd64"),
                              (TestImages.MULTIARCH, "arm64")):
        cache[ref, architecture] = scan_tree(
            reg.reference_rootfs(ref, architecture=architecture))
    yield cache


# ---------------------------------------------------------------------------------------------
# helpers


def image_layers(engine: EngineCLI, ref: str) -> list[Path]:
    """The layer directories of a pulled image, bottom first (from ``inspect``)."""
    [record] = json.loads(engine.ok("inspect", ref))
    layers = [engine.root / "layers" / diff_id.split(":", 1)[1]
              for diff_id in record["RootFS"]["Layers"]]
    for layer in layers:
        assert layer.is_dir(), f"{ref}: layer {layer.name} not unpacked"
    return layers


def pulled_tree(engine: EngineCLI, ref: str, tmp_path: Path) -> dict[str, Node]:
    return merged_layers_tree(image_layers(engine, ref), tmp_path / f"mnt-{os.urandom(3).hex()}")


def assert_same_tree(reference: dict[str, Node], actual: dict[str, Node], what: str) -> None:
    diff = diff_trees(reference, actual, ("umoci", "tsubo"))
    assert diff == "", f"{what}: tsubo's tree differs from umoci's:\n{diff}"


def container_listing(engine: EngineCLI, ref: str) -> dict[str, str]:
    """path -> "raw-mode-hex uid gid size" as a container of *ref* sees its root (busybox
    find + stat, not crossing mounts)."""
    out = engine.ok("run", "--rm", ref, "find", "/", "-xdev", "-exec", "stat", "-c",
                    "%n|%f|%u|%g|%s", "{}", "+")
    listing = {}
    for line in out.splitlines():
        path, mode, uid, gid, size = line.rsplit("|", 4)
        listing[path] = f"{int(mode, 16):o} {uid} {gid} {size}"
    return listing


def expected_listing(tree: dict[str, Node]) -> dict[str, str]:
    kinds = {"file": 0o100000, "dir": 0o040000, "symlink": 0o120000, "fifo": 0o010000,
             "char": 0o020000, "block": 0o060000, "socket": 0o140000}
    out = {}
    for path, node in tree.items():
        size = node.size if node.kind == "file" else len(node.target.encode())
        out[path] = f"{kinds[node.kind] | node.mode:o} {node.uid} {node.gid} {size}"
    return out


def comparable_listing(listing: dict[str, str]) -> dict[str, str]:
    """Without the runtime's own mounts and the root dir itself; dirs without sizes."""
    out = {}
    for path, value in listing.items():
        if path == "/" or any(path == p or path.startswith(p + "/") for p in RUNTIME_PATHS):
            continue
        mode, uid, gid, size = value.split()
        out[path] = f"{mode} {uid} {gid} {'-' if stat.S_ISDIR(int(mode, 8)) else size}"
    return out


def blob_events(proxy: FaultProxy) -> list[tuple[str, str, str]]:
    """(kind, method, digest) of the proxy's blob lines (request / sent / cut)."""
    found = []
    for line in proxy.events():
        match = BLOB_LINE.match(line)
        if match:
            found.append((match.group(1), match.group(2), match.group(3)))
    return found


def ranged_requests(proxy: FaultProxy, digest: str) -> list[str]:
    return [line for line in proxy.events("request")
            if digest in line and "range=-" not in line]


def images_listed(puller: Puller, root: Path | None = None) -> list[str]:
    return puller("images", "-q", root=root).stdout.split()


# ---------------------------------------------------------------------------------------------
# the images


def test_pull_gives_the_same_tree_as_umoci(
    puller: Puller, images: TestImages, reference_trees: dict[tuple[str, str], dict[str, Node]],
    tmp_path: Path,
) -> None:
    out = puller.pull(TestImages.MULTI)
    assert images.multi.digest in out
    ref = f"{puller.registry.address}/{TestImages.MULTI}"
    reference = reference_trees[TestImages.MULTI, "amd64"]
    assert_same_tree(reference, pulled_tree(puller.engine, ref, tmp_path), ref)

    [record] = json.loads(puller.engine.ok("inspect", ref))
    assert record["Id"] == images.multi.config_digest
    assert record["RootFS"]["Layers"] == images.multi.diff_ids
    assert record["Config"]["Cmd"] == ["sh"]

    # a container of it sees the same tree (modes, owners, sizes), runtime mounts aside
    assert comparable_listing(container_listing(puller.engine, ref)) == \
        comparable_listing(expected_listing(reference))
    check = ("cat /data/recreated; ls /opt/opaque; test ! -e /etc/motd && echo no-motd; "
             "cat /var/lib/app/l1; id -u")
    assert puller.engine.ok("run", "--rm", ref, "sh", "-c", check) == \
        "version 2\nfresh\nno-motd\nend of the chain\n0\n"

    # pulling again downloads nothing
    with puller.registry.proxy() as proxy:
        again = puller.pull(TestImages.MULTI, address=proxy.address)
        assert "up to date" in again.lower() or images.multi.digest in again
        layers = set(images.multi.layer_digests)
        assert [e for e in blob_events(proxy) if e[1] == "GET" and e[2] in layers] == []


def test_pull_zstd_image(puller: Puller, images: TestImages,
                         reference_trees: dict[tuple[str, str], dict[str, Node]],
                         tmp_path: Path) -> None:
    """The zstd image holds the same layers as test/multi: the same tree and diff_ids."""
    puller.pull(TestImages.ZSTD)
    ref = f"{puller.registry.address}/{TestImages.ZSTD}"
    assert_same_tree(reference_trees[TestImages.MULTI, "amd64"],
                     pulled_tree(puller.engine, ref, tmp_path), ref)
    [record] = json.loads(puller.engine.ok("inspect", ref))
    assert record["RootFS"]["Layers"] == images.multi.diff_ids
    assert puller.engine.ok("run", "--rm", ref, "cat", "/data/recreated") == "version 2\n"


def test_pull_docker_v2s2_manifest(puller: Puller, images: TestImages,
                                   reference_trees: dict[tuple[str, str], dict[str, Node]],
                                   tmp_path: Path) -> None:
    out = puller.pull(TestImages.V2S2)
    assert images.pushed_digests[TestImages.V2S2] in out
    ref = f"{puller.registry.address}/{TestImages.V2S2}"
    assert_same_tree(reference_trees[TestImages.MULTI, "amd64"],
                     pulled_tree(puller.engine, ref, tmp_path), ref)
    [record] = json.loads(puller.engine.ok("inspect", ref))
    assert record["RootFS"]["Layers"] == images.multi.diff_ids


def test_pull_selects_the_platform(puller: Puller, images: TestImages,
                                   reference_trees: dict[tuple[str, str], dict[str, Node]],
                                   tmp_path: Path) -> None:
    ref = f"{puller.registry.address}/{TestImages.MULTIARCH}"
    # default: this machine's platform (the tests run on linux/amd64)
    if os.uname().machine == "x86_64":
        puller.pull(TestImages.MULTIARCH)
        assert_same_tree(reference_trees[TestImages.MULTIARCH, "amd64"],
                         pulled_tree(puller.engine, ref, tmp_path), f"{ref} (default)")
        [record] = json.loads(puller.engine.ok("inspect", ref))
        assert record["Architecture"] == "amd64"
        assert record["Id"] == images.amd64.config_digest

    other = tmp_path / "arm-root"
    puller.pull(TestImages.MULTIARCH, "--platform", "linux/arm64", root=other)
    arm = EngineCLI(puller.engine.binary, other, puller.engine.rootfs)
    assert_same_tree(reference_trees[TestImages.MULTIARCH, "arm64"],
                     pulled_tree(arm, ref, tmp_path), f"{ref} --platform linux/arm64")
    [record] = json.loads(arm.ok("inspect", ref))
    assert record["Architecture"] == "arm64" and record["Id"] == images.arm64.config_digest

    missing = puller("pull", "--platform", "linux/s390x", ref, root=tmp_path / "s390x-root")
    assert missing.returncode != 0
    assert "s390x" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert images_listed(puller, root=tmp_path / "s390x-root") == []


def test_pull_of_a_missing_image_is_one_clear_line(puller: Puller) -> None:
    for ref in ("test/nosuch:1", "test/multi:nosuchtag"):
        proc = puller("pull", f"{puller.registry.address}/{ref}")
        assert proc.returncode != 0
        line = proc.stderr.strip().splitlines()[-1]
        assert ref.split(":")[0] in line or ref.split(":")[1] in line, proc.stderr
    assert images_listed(puller) == []


# ---------------------------------------------------------------------------------------------
# authentication


def push_multi(reg: Registry, busybox_rootfs: Path) -> TestImages:
    images = build_test_layout(reg.workdir / "layout", busybox_rootfs)
    images.pushed_digests[TestImages.MULTI] = reg.push_layout(images.layout, "multi",
                                                              TestImages.MULTI)
    return images


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_login_then_pull_from_an_authenticating_registry(
    auth: str, request: pytest.FixtureRequest, engine_cli: EngineCLI, busybox_rootfs: Path,
    tmp_path: Path,
) -> None:
    reg: Registry = request.getfixturevalue(f"registry_{auth}_auth")
    images = push_multi(reg, busybox_rootfs)
    puller = make_puller(reg, engine_cli, tmp_path)
    ref = f"{reg.address}/{TestImages.MULTI}"

    anonymous = puller("pull", ref)
    assert anonymous.returncode != 0
    [line] = anonymous.stderr.strip().splitlines()  # one line naming the registry
    assert reg.address in line
    assert re.search(r"credentials|unauthori[sz]ed|denied|refused|login", line, re.I), line
    assert images_listed(puller) == []

    wrong = puller("login", "-u", USERNAME, "-p", "not-the-password", reg.address)
    assert wrong.returncode != 0
    line = wrong.stderr.strip().splitlines()[-1]  # (after the --password warning)
    assert reg.address in line
    assert re.search(r"wrong|refused|unauthori[sz]ed|denied|invalid", line, re.I), line
    assert "not-the-password" not in wrong.stderr + wrong.stdout
    assert not puller.auth_file.exists() or reg.address not in puller.auth_file.read_text()

    puller.ok("login", "-u", USERNAME, "-p", PASSWORD, reg.address)
    assert puller.auth_file.stat().st_mode & 0o077 == 0  # credentials are 0600
    assert reg.address in json.loads(puller.auth_file.read_text())["auths"]
    out = puller.ok("pull", ref)
    assert images.multi.digest in out
    assert puller.engine.ok("run", "--rm", ref, "cat", "/data/recreated") == "version 2\n"

    puller.ok("logout", reg.address)
    assert reg.address not in json.loads(puller.auth_file.read_text()).get("auths", {})
    fresh = tmp_path / "root-2"
    assert puller("pull", ref, root=fresh).returncode != 0  # logged out: refused again
    puller.ok("login", "-u", USERNAME, "--password-stdin", reg.address,
              input=PASSWORD + "\n")
    puller.ok("pull", ref, root=fresh)
    assert images_listed(puller, root=fresh) != []


# ---------------------------------------------------------------------------------------------
# faults


@pytest.mark.parametrize("strip_range", [False, True], ids=["resume", "range-ignored"])
def test_pull_survives_a_cut_blob_download(
    puller: Puller, images: TestImages, strip_range: bool,
    reference_trees: dict[tuple[str, str], dict[str, Node]], tmp_path: Path,
) -> None:
    """The registry connection is cut after 64 KiB of the first big blob; the pull retries
    (resuming with Range, or from zero when the registry ignores Range), verifies the
    digest and unpacks the right tree."""
    shared = puller.registry
    with shared.proxy(cut_after=65536, strip_range=strip_range) as proxy:
        out = puller.pull(TestImages.MULTI, address=proxy.address)
        assert images.multi.digest in out
        cuts = proxy.events("cut")
        assert len(cuts) == 1, proxy.events()
        digest = cuts[0].split()[3]
        sent = [e for e in blob_events(proxy) if e[0] == "sent" and e[2] == digest]
        assert sent, f"{digest} was never downloaded again after the cut:\n{proxy.events()}"
        if strip_range:
            # any resume attempt reached the registry without its Range header
            assert len(proxy.events("strip-range")) == len(ranged_requests(proxy, digest))
        else:  # the download resumed where the cut left it
            assert any("range=bytes=65536-" in line for line in ranged_requests(proxy, digest)), \
                proxy.events()
    ref = f"{proxy.address}/{TestImages.MULTI}"
    assert_same_tree(reference_trees[TestImages.MULTI, "amd64"],
                     pulled_tree(puller.engine, ref, tmp_path), ref)


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_a_corrupt_blob_fails_the_pull_and_registers_nothing(
    damage: str, registry: Registry, engine_cli: EngineCLI, busybox_rootfs: Path,
    tmp_path: Path,
) -> None:
    images = push_multi(registry, busybox_rootfs)
    puller = make_puller(registry, engine_cli, tmp_path)
    victim = images.multi.layer_digests[4]
    blob = registry.blob_file(victim)
    original = blob.read_bytes()
    damaged = {
        "flip": original[:100] + bytes([original[100] ^ 0x01]) + original[101:],
        "truncate": original[: len(original) // 2],
        "extend": original + b"trailing garbage",
    }[damage]
    blob.write_bytes(damaged)
    ref = TestImages.MULTI

    failed = puller("pull", f"{registry.address}/{ref}")
    assert failed.returncode != 0, failed.stdout
    assert victim.removeprefix("sha256:") in failed.stderr, failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert images_listed(puller) == []
    assert puller.engine("inspect", f"{registry.address}/{ref}").returncode != 0
    # the layers the failed pull reported verified ("Download complete")
    verified = {digest for digest in images.multi.layer_digests
                if f"{digest.removeprefix('sha256:')[:12]}: Download complete" in failed.stdout}
    assert victim not in verified

    blob.write_bytes(original)  # repaired
    with registry.proxy() as proxy:  # to see what the second pull downloads
        out = puller.pull(ref, address=proxy.address)
        fetched = {digest for kind, method, digest in blob_events(proxy)
                   if kind == "request" and method == "GET"}
    assert images.multi.digest in out
    assert victim in fetched
    assert fetched & verified == set(), f"verified blobs downloaded again: {fetched & verified}"
    [record] = json.loads(puller.engine.ok("inspect", f"{proxy.address}/{ref}"))
    assert record["RootFS"]["Layers"] == images.multi.diff_ids


def test_a_layer_with_the_wrong_diff_id_fails_the_pull(
    registry: Registry, engine_cli: EngineCLI, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "layout")
    good = LayerTar().file("good", b"good\n").bytes()
    bad = LayerTar().file("bad", b"bad\n").bytes()
    lie = f"sha256:{sha256_hex(b'something else')}"
    built = layout.image([good, bad], diff_ids=[f"sha256:{sha256_hex(good)}", lie])
    layout.tag(built.manifest, "1")
    registry.push_layout(layout.path, "1", "test/liar:1")
    puller = make_puller(registry, engine_cli, tmp_path)
    proc = puller("pull", f"{registry.address}/test/liar:1")
    assert proc.returncode != 0
    assert built.layer_digests[1].removeprefix("sha256:") in proc.stderr or \
        lie.removeprefix("sha256:") in proc.stderr, proc.stderr
    assert images_listed(puller) == []


HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def test_a_helm_chart_layer_is_refused_before_any_download(
    registry: Registry, engine_cli: EngineCLI, tmp_path: Path
) -> None:
    """An image manifest whose layer is a Helm chart (``...tar+gzip``, but not an image
    layer type): one line naming the media type; no blob fetched, nothing registered."""
    layout = OciLayout(tmp_path / "layout")
    layer = LayerTar().file("Chart.yaml", b"apiVersion: v2\nname: evil\n").bytes()
    built = layout.image([layer])
    manifest_path = layout.path / "blobs" / "sha256" / built.digest.removeprefix("sha256:")
    manifest = json.loads(manifest_path.read_bytes())
    manifest["layers"][0]["mediaType"] = HELM_CHART_LAYER
    descriptor = layout.json_blob(manifest, manifest["mediaType"])
    layout.tag(descriptor, "1")
    registry.push_layout(layout.path, "1", "test/helm:1")
    puller = make_puller(registry, engine_cli, tmp_path)
    with registry.proxy() as proxy:
        proc = puller("pull", f"{proxy.address}/test/helm:1")
        fetched = {digest for kind, method, digest in blob_events(proxy)
                   if kind == "request" and method == "GET"}
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"media type '{HELM_CHART_LAYER}' is not an image layer" in lines[0]
    assert built.layer_digests[0] not in fetched, "the chart was downloaded"
    assert images_listed(puller) == []


#: where the stalling proxy stops sending: a multiple of tsubo's read size (256 KiB), so the
#: killed pull has written exactly this much of each big blob to its partial file
STALL_AT = 256 * 1024
STALL_TIMEOUT = 60.0


def test_a_pull_killed_midway_resumes_where_it_stopped(
    puller: Puller, images: TestImages, reference_trees: dict[tuple[str, str], dict[str, Node]],
    tmp_path: Path,
) -> None:
    """A pull hangs in the middle of its big blobs (the proxy stops sending after 256 KiB)
    and is SIGKILLed there: it registers nothing and keeps its partial downloads; the next
    pull asks for the rest only (``Range: bytes=262144-``), never downloads again the blobs
    the first one verified, and leaves nothing in ``ingest/``."""
    shared, root = puller.registry, puller.engine.root
    sizes = dict(zip(images.multi.layer_digests, images.multi.layer_sizes, strict=True))
    big = sorted(digest for digest, size in sizes.items() if size > STALL_AT)
    assert big, f"no layer of {TestImages.MULTI} is bigger than {STALL_AT} bytes: {sizes}"
    ingest = root / "ingest"

    def partial(digest: str) -> Path:
        return ingest / f"{digest.removeprefix('sha256:')}.partial"

    def partial_size(digest: str) -> int:
        try:
            return partial(digest).stat().st_size
        except FileNotFoundError:
            return -1

    with shared.proxy(stall_after=STALL_AT) as stalling:
        argv = ["ip", "netns", "exec", shared.netns, str(engine_binary()), "--root", str(root),
                "pull", f"{stalling.address}/{TestImages.MULTI}"]
        with (tmp_path / "killed.out").open("wb") as stdout, \
                (tmp_path / "killed.err").open("wb") as stderr:
            # `ip netns exec` execs tsubo: this pid is tsubo's own
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                       stderr=stderr, env=puller.env())
        try:
            stalled = engine_fixtures.wait_for(
                lambda: process.poll() is not None
                or all(partial_size(digest) == STALL_AT for digest in big), STALL_TIMEOUT)
            exited = process.poll()
            if exited is None:
                process.kill()  # SIGKILL, exactly this pid
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(30)
        report = (f"stdout:\n{(tmp_path / 'killed.out').read_text(errors='replace')}\n"
                  f"stderr:\n{(tmp_path / 'killed.err').read_text(errors='replace')}\n"
                  f"proxy:\n" + "\n".join(stalling.events()))
        assert exited is None, f"the stalled pull exited {exited} by itself\n{report}"
        assert stalled, (f"the partial files never reached {STALL_AT} bytes: "
                         f"{ {d: partial_size(d) for d in big} }\n{report}")
        assert process.returncode == -9
        stalls = {line.split()[3] for line in stalling.events("stall")}
        assert stalls == set(big), report

    # killed midway: nothing registered, the partial downloads kept
    assert images_listed(puller) == []
    assert {digest: partial_size(digest) for digest in big} == dict.fromkeys(big, STALL_AT)
    verified = {digest for digest in images.multi.layer_digests
                if (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).is_file()}
    assert not verified & set(big)

    with shared.proxy() as proxy:
        out = puller.pull(TestImages.MULTI, address=proxy.address)
        events = proxy.events()
        fetched = {digest for kind, method, digest in blob_events(proxy)
                   if kind == "request" and method == "GET"}
        for digest in big:
            ranged = ranged_requests(proxy, digest)
            assert any(f"range=bytes={STALL_AT}-" in line for line in ranged), \
                f"{digest} was not resumed at {STALL_AT}:\n" + "\n".join(events)
            sent = [e for e in blob_events(proxy) if e[0] == "sent" and e[2] == digest]
            assert sent, f"{digest} never came back:\n" + "\n".join(events)
            assert any(line.startswith("sent ") and digest in line
                       and f"bytes={sizes[digest] - STALL_AT}" in line for line in events), \
                f"{digest}: not only the missing {sizes[digest] - STALL_AT} bytes sent:\n" + \
                "\n".join(events)
        assert fetched & verified == set(), \
            f"blobs verified before the kill downloaded again: {fetched & verified}"
    assert images.multi.digest in out
    assert sorted(p.name for p in ingest.iterdir()) == [], "ingest/ not empty after the pull"

    ref = f"{proxy.address}/{TestImages.MULTI}"
    [record] = json.loads(puller.engine.ok("inspect", ref))
    assert record["RootFS"]["Layers"] == images.multi.diff_ids
    assert_same_tree(reference_trees[TestImages.MULTI, "amd64"],
                     pulled_tree(puller.engine, ref, tmp_path), ref)
    assert puller.engine.ok("run", "--rm", "--network", "none", ref, "cat",
                            "/data/recreated") == "version 2\n"


def test_pull_draws_progress_bars_on_a_terminal(puller: Puller) -> None:
    """stdout a terminal: one line per layer redrawn in place (cursor up, erase line), a
    bar while downloading; the last frame shows every layer complete."""
    import pty

    master, slave = pty.openpty()
    ref = f"{puller.registry.address}/{TestImages.MULTI}"
    argv = ["ip", "netns", "exec", puller.registry.netns, str(engine_binary()), "--root",
            str(puller.engine.root), "pull", ref]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.PIPE, env=puller.env())
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=PULL_TIMEOUT) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = b"".join(chunks).decode(errors="replace")
    assert "\x1b[2K" in text and re.search(r"\x1b\[\d+A", text), text[:400]
    frames = text.split("\x1b[")
    last = text[text.rfind("Digest:") - 2000:]
    keys = set(re.findall(r"([0-9a-f]{12}): ", text))
    assert len(keys) >= 6, keys  # six layers, one line each
    assert all(f"{key}: Pull complete" in last for key in keys), last
    assert len(frames) > len(keys)  # drawn more than once
    assert f"Status: Downloaded newer image for {ref}" in text


def test_two_pulls_of_one_image_at_once_share_the_downloads(puller: Puller) -> None:
    """Two `tsubo pull` of the same image into one root at the same time: both succeed
    (one waits for the other's blob downloads), one image, nothing left in ingest/."""
    ref = f"{puller.registry.address}/{TestImages.MULTI}"
    argv = ["ip", "netns", "exec", puller.registry.netns, str(engine_binary()), "--root",
            str(puller.engine.root), "pull", ref]
    procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=puller.env())
             for _ in range(2)]
    outcomes = [proc.communicate(timeout=PULL_TIMEOUT) for proc in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, (out, err)
        assert out.strip().endswith(ref), out
    assert len(puller.engine.ok("images", "-q").split()) == 1
    ingest = puller.engine.root / "ingest"
    assert not ingest.is_dir() or list(ingest.iterdir()) == []
    assert puller.engine.ok("run", "--rm", ref, "cat", "/data/recreated") == "version 2\n"
