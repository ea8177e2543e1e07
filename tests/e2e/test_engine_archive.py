"""`tsubo save` / `tsubo load` (docker-archive, oci-archive, oci-dir), cross-checked with
skopeo and umoci; hostile archives; `tsubo image ...`, `image prune` and `system df`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import engine_fixtures

Cli = engine_fixtures.Cli
cli = engine_fixtures.cli
rootfs_tar = engine_fixtures.rootfs_tar

FORMATS = ("docker-archive", "oci-archive", "oci-dir")
OCI_TAR_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def tsubo_stdin(cli: Cli, source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with open(source, "rb") as stdin:
        return subprocess.run([str(engine_fixtures.engine_binary()), "--root", str(cli.root),
                               *args], stdin=stdin, capture_output=True, text=True,
                              timeout=60, check=False)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def state_outside_blobs(root: Path) -> set[str]:
    """Files of the data root (not directories: ``ingest/`` and ``layers/`` stay, empty),
    but the database, the verified blobs and the (empty) blob lock file."""
    found = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(("blobs/", "tsubo.db")) or relative == "blobs.lock" \
                or path.is_dir():
            continue
        found.add(relative)
    return found


def assert_only_verified_blobs(root: Path) -> None:
    folder = root / "blobs" / "sha256"
    for blob in folder.iterdir() if folder.is_dir() else []:
        assert sha256(blob.read_bytes()) == f"sha256:{blob.name}", f"unverified blob {blob}"
    partials = list((root / "ingest").glob("*")) if (root / "ingest").is_dir() else []
    assert partials == [], f"partial files left: {partials}"


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """Relative path -> (kind and permission bits, content hash or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        relative = path.relative_to(root).as_posix()
        mode = oct(stat.S_IMODE(info.st_mode))
        if stat.S_ISLNK(info.st_mode):
            found[relative] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            found[relative] = (f"dir {mode}", "")
        else:
            found[relative] = (f"file {mode}", sha256(path.read_bytes()))
    return found


def imported(cli: Cli, rootfs_tar: Path, name: str = "base:1") -> str:
    out = cli.run("import", "-c", 'CMD ["sh", "-c", "echo from the image"]', str(rootfs_tar),
                  name).stdout
    return out.strip().removeprefix("sha256:")


# --- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_save_rmi_load_run_round_trip(cli: Cli, rootfs_tar: Path, tmp_path: Path,
                                      fmt: str) -> None:
    image_id = imported(cli, rootfs_tar)
    target = tmp_path / ("saved" if fmt == "oci-dir" else "saved.tar")
    cli.run("save", "--format", fmt, "-o", str(target), "base:1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saved")]  # no temp left
    cli.run("rmi", "base:1")
    assert cli.run("images", "-q").stdout == ""
    assert not any((cli.root / "layers").iterdir())
    if fmt == "oci-dir":
        loaded = cli.run("load", "-i", str(target))
    else:
        loaded = tsubo_stdin(cli, target, "load")  # stdin, as `docker load < FILE`
        assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "Loaded image: base:1\n"
    assert cli.run("images", "-q", "--no-trunc").stdout == f"sha256:{image_id}\n"
    assert cli.run("run", "--rm", "base:1").stdout == "from the image\n"


def test_save_several_names_and_an_id(cli: Cli, rootfs_tar: Path, tmp_path: Path) -> None:
    image_id = imported(cli, rootfs_tar, "base:1")
    cli.run("tag", "base:1", "base:2")
    cli.run("tag", "base:1", "registry.local:5000/team/app:v3")
    archive = tmp_path / "multi.tar"
    cli.run("save", "-o", str(archive), "base:1", "registry.local:5000/team/app:v3", "base:2")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = set(tar.getnames())
    assert manifest == [{
        "Config": f"blobs/sha256/{image_id}",
        "RepoTags": ["base:1", "registry.local:5000/team/app:v3", "base:2"],
        "Layers": [manifest[0]["Layers"][0]],
    }]
    assert manifest[0]["Layers"][0] in names
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] \
        == ["docker.io/library/base:1", "registry.local:5000/team/app:v3",
            "docker.io/library/base:2"]
    by_id = tmp_path / "by-id.tar"
    with open(by_id, "wb") as sink:  # to stdout: docker save IMAGE > FILE
        proc = subprocess.run([str(engine_fixtures.engine_binary()), "--root", str(cli.root),
                               "save", image_id[:12]], stdout=sink, stderr=subprocess.PIPE,
                              text=False, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    cli.run("rmi", "-f", "base:1", "base:2", "registry.local:5000/team/app:v3")
    assert cli.run("images", "-q").stdout == ""
    assert cli.run("load", "-i", str(by_id)).stdout == f"Loaded image ID: sha256:{image_id}\n"
    assert cli.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == \
        "<none>:<none>\n"
    out = cli.run("load", "-i", str(archive)).stdout
    assert out == ("Loaded image: base:1\nLoaded image: registry.local:5000/team/app:v3\n"
                   "Loaded image: base:2\n")
    listing = cli.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert sorted(listing.splitlines()) == [
        f"docker.io/library/base:1 {image_id[:12]}", f"docker.io/library/base:2 {image_id[:12]}",
        f"registry.local:5000/team/app:v3 {image_id[:12]}"]


def test_save_refuses_bad_requests_and_leaves_nothing(cli: Cli, rootfs_tar: Path,
                                                      tmp_path: Path) -> None:
    imported(cli, rootfs_tar)
    before = set(tmp_path.iterdir())
    for args, words in (
            (("save", "-o", str(tmp_path / "x.tar"), "base:1", "nosuch"), "nosuch"),
            (("save", "--format", "zip", "-o", str(tmp_path / "x.tar"), "base:1"), "format"),
            (("save", "--format", "oci-dir", "base:1"), "-o"),
            (("save", "-o", str(tmp_path), "base:1"), "directory"),
            (("save",), "at least one image")):
        proc = cli.run(*args, check=False)
        assert proc.returncode == 1 and words in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1
    assert set(tmp_path.iterdir()) == before


# --- independent clients -----------------------------------------------------------------------

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo missing")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci missing")


def tool(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)


@needs_skopeo
@needs_umoci
def test_skopeo_and_umoci_read_what_we_save(cli: Cli, rootfs_tar: Path, tmp_path: Path,
                                            busybox_rootfs: Path) -> None:
    image_id = imported(cli, rootfs_tar)
    [record] = json.loads(cli.run("image", "inspect", "base:1").stdout)
    layer_dir = cli.root / "layers" / record["RootFS"]["Layers"][0].removeprefix("sha256:")
    ours = tree(layer_dir)
    assert ours == tree(busybox_rootfs)
    archive, layout = tmp_path / "docker.tar", tmp_path / "ours-oci"
    cli.run("save", "-o", str(archive), "base:1")
    cli.run("save", "--format", "oci-dir", "-o", str(layout), "base:1")
    copied = tmp_path / "skopeo-oci"
    tool("skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{copied}:tag")
    tool("skopeo", "copy", "-q", f"oci-archive:{archive}:docker.io/library/base:1",
         f"oci:{copied}:tag2")
    for image, bundle in ((f"{copied}:tag", tmp_path / "bundle1"),
                          (f"{layout}:docker.io/library/base:1", tmp_path / "bundle2")):
        tool("umoci", "unpack", "--image", image, str(bundle))
        assert tree(bundle / "rootfs") == ours, image
    # the image config went through unchanged: the same image ID
    index = json.loads((copied / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((copied / "blobs" / "sha256" / manifest_hex).read_text())
    assert manifest["config"]["digest"] == f"sha256:{image_id}"


def layer_bytes(busybox_rootfs: Path, extra: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(busybox_rootfs, arcname=".")
        info = tarfile.TarInfo("etc/made-by-test")
        info.size, info.mode = len(extra), 0o644
        tar.addfile(info, io.BytesIO(extra))
    return buffer.getvalue()


def write_oci_layout(folder: Path, layer: bytes, *, diff_id: str | None = None,
                     cmd: list[str] | None = None, ref_name: str = "latest") -> dict[str, Any]:
    """An OCI image layout of one gzip layer, made by hand; returns the paths and digests."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    compressed = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                                     os.uname().machine),
        "os": "linux", "config": {"Cmd": cmd or ["cat", "/etc/made-by-test"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id or sha256(layer)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_TAR_GZ, "digest": sha256(compressed),
                    "size": len(compressed)}],
    }).encode()
    for data in (compressed, config, manifest):
        (blobs / sha256(data).removeprefix("sha256:")).write_bytes(data)
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}))
    return {"config": sha256(config), "layer": sha256(compressed), "manifest": sha256(manifest)}


@needs_skopeo
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_load_what_skopeo_made(cli: Cli, busybox_rootfs: Path, tmp_path: Path,
                               transport: str) -> None:
    layout = tmp_path / "layout"
    digests = write_oci_layout(layout, layer_bytes(busybox_rootfs, b"made by skopeo\n"))
    archive = tmp_path / "skopeo.tar"
    tool("skopeo", "copy", "-q", f"oci:{layout}:latest", f"{transport}:{archive}:test/sk:1")
    assert cli.run("load", "-i", str(archive)).stdout == "Loaded image: test/sk:1\n"
    assert cli.run("images", "-q", "--no-trunc").stdout == f"{digests['config']}\n"
    assert cli.run("run", "--rm", "test/sk:1").stdout == "made by skopeo\n"
    # and an OCI layout directory as it is (a bare tag names no repository: untagged)
    cli.run("rmi", "-f", "test/sk:1")
    out = cli.run("load", "-i", str(layout)).stdout
    assert out == f"Loaded image ID: {digests['config']}\n"


# --- hostile and broken archives ---------------------------------------------------------------

def docker_archive(path: Path, members: dict[str, bytes], manifest: object,
                   links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


class _Repeated(io.RawIOBase):
    """*size* bytes: *head*, then *fill* repeated, then *tail*, made as they are read (a
    100 MB member without 100 MB in memory)."""

    def __init__(self, head: bytes, fill: bytes, size: int, tail: bytes) -> None:
        self.data = head
        self.fill, self.left, self.tail = fill, size - len(head) - len(tail), tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self.data) < len(buffer) and (self.left or self.tail):
            take = min(self.left, 1 << 20)
            self.data += self.fill * take
            self.left -= take
            if not self.left:
                self.data, self.tail = self.data + self.tail, b""
        count = min(len(buffer), len(self.data))
        buffer[:count] = self.data[:count]
        self.data = self.data[count:]
        return count


def gzipped_docker_archive(path: Path, manifest: io.RawIOBase, size: int) -> None:
    """A gzipped docker-archive whose only member is a *size*-byte ``manifest.json``."""
    with gzip.open(path, "wb", compresslevel=1) as compressed, \
            tarfile.open(fileobj=compressed, mode="w|") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = size
        tar.addfile(info, io.BufferedReader(manifest))


HUGE = 100 << 20  # 100 MB
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def retype_oci_layout(layout: Path, digests: dict[str, Any], *, layer_type: str = "",
                      config_type: str = "") -> None:
    """Give the layout's only image another layer or config media type (digests redone)."""
    blobs = layout / "blobs" / "sha256"
    old = blobs / digests["manifest"].removeprefix("sha256:")
    manifest = json.loads(old.read_bytes())
    if layer_type:
        manifest["layers"][0]["mediaType"] = layer_type
    if config_type:
        manifest["config"]["mediaType"] = config_type
    data = json.dumps(manifest).encode()
    old.unlink()
    (blobs / sha256(data).removeprefix("sha256:")).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=sha256(data), size=len(data))
    (layout / "index.json").write_text(json.dumps(index))


def config_for(layer: bytes, diff_id: str | None = None) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                       "rootfs": {"type": "layers",
                                  "diff_ids": [diff_id or sha256(layer)]}}).encode()


def hostile(case: str, folder: Path, busybox_rootfs: Path) -> tuple[Path, str]:
    """An archive for *case* and a word the error must contain."""
    layer = layer_bytes(busybox_rootfs, b"x\n")
    config = config_for(layer)
    config_name = sha256(config).removeprefix("sha256:") + ".json"
    path = folder / f"{case}.tar"

    def entry(layers: list[str]) -> list[dict[str, object]]:
        return [{"Config": config_name, "RepoTags": ["evil:1"], "Layers": layers}]

    if case == "dotdot":
        docker_archive(path, {config_name: config, "l.tar": layer},
                       entry(["../../etc/passwd"]))
        return path, "leaves the archive"
    if case == "absolute":
        docker_archive(path, {config_name: config}, entry(["/etc/passwd"]))
        return path, "absolute"
    if case == "escaping-symlink":
        docker_archive(path, {config_name: config}, entry(["l/layer.tar"]),
                       links={"l/layer.tar": "../../../etc/passwd"})
        return path, "leaves the archive"
    if case == "missing-blob":
        docker_archive(path, {config_name: config}, entry(["abc/layer.tar"]))
        return path, "not in the archive"
    if case == "wrong-digest":  # a blobs/sha256/<hex> path whose content is another
        name = "blobs/sha256/" + "0" * 64
        docker_archive(path, {config_name: config, name: layer}, entry([name]))
        return path, "expected"
    if case == "diff-id-mismatch":
        config = config_for(layer, sha256(b"another layer"))
        config_name = sha256(config).removeprefix("sha256:") + ".json"
        docker_archive(path, {config_name: config, "l.tar": layer}, entry(["l.tar"]))
        return path, "diff_id"
    if case == "config-digest":
        docker_archive(path, {"f" * 64 + ".json": config, "l.tar": layer},
                       [{"Config": "f" * 64 + ".json", "RepoTags": ["evil:1"],
                         "Layers": ["l.tar"]}])
        return path, "digest"
    if case == "bad-tag":
        docker_archive(path, {config_name: config, "l.tar": layer},
                       [{"Config": config_name, "RepoTags": ["UPPER:x"], "Layers": ["l.tar"]}])
        return path, "UPPER"
    return _hostile_stream_or_layout(case, folder, path, layer, config_name, config)


def _hostile_stream_or_layout(case: str, folder: Path, path: Path, layer: bytes,
                              config_name: str, config: bytes) -> tuple[Path, str]:
    """The cases of :func:`hostile` about broken streams, manifests and OCI layouts."""

    def entry(layers: list[str]) -> list[dict[str, object]]:
        return [{"Config": config_name, "RepoTags": ["evil:1"], "Layers": layers}]

    if case == "truncated":
        docker_archive(path, {config_name: config, "l.tar": layer}, entry(["l.tar"]))
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        return path, "archive"
    if case == "truncated-gzip":
        docker_archive(path, {config_name: config, "l.tar": layer}, entry(["l.tar"]))
        data = gzip.compress(path.read_bytes())
        path.write_bytes(data[:len(data) - 100])
        return path, "truncated"
    if case == "oci-layer-digest":
        layout = folder / "layout"
        digests = write_oci_layout(layout, layer)
        blob = layout / "blobs" / "sha256" / digests["layer"].removeprefix("sha256:")
        blob.write_bytes(gzip.compress(layer + b"\0" * 1024, mtime=0)[:blob.stat().st_size])
        return layout, "expected"
    if case == "oci-diff-id":
        digests = write_oci_layout(folder / "layout", layer, diff_id=sha256(b"other"),
                                   ref_name="evil:1")
        assert digests
        return folder / "layout", "diff_id"
    if case == "not-an-archive":
        path.write_bytes(b"hello, this is not a tar file at all" * 100)
        return path, "archive"
    if case == "nested-manifest":  # RecursionError in the JSON parser, once
        docker_archive(path, {config_name: config, "l.tar": layer},
                       b"[" * 100_000 + b"]" * 100_000)
        return path, "manifest.json: nested deeper than 64 levels"
    if case == "whitespace-manifest":
        gzipped_docker_archive(path, _Repeated(b"", b" ", HUGE, b"[]"), HUGE)
        return path, f"manifest.json: {HUGE} bytes, more than the"
    if case == "huge-string-manifest":
        gzipped_docker_archive(path, _Repeated(b'["', b"x", HUGE, b'"]'), HUGE)
        return path, f"manifest.json: {HUGE} bytes, more than the"
    if case == "oci-nested-manifest":  # a manifest blob with the right digest, 100,000 deep
        layout = folder / "layout"
        digests = write_oci_layout(layout, layer, ref_name="evil:1")
        deep = b'{"layers":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        (layout / "blobs" / "sha256" / digests["manifest"].removeprefix("sha256:")).unlink()
        (layout / "blobs" / "sha256" / sha256(deep).removeprefix("sha256:")).write_bytes(deep)
        index = json.loads((layout / "index.json").read_text())
        index["manifests"][0].update(digest=sha256(deep), size=len(deep))
        (layout / "index.json").write_text(json.dumps(index))
        return layout, "nested deeper than 64 levels"
    if case == "oci-nested-index":
        layout = folder / "layout"
        write_oci_layout(layout, layer)
        (layout / "index.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
        return layout, "index.json: nested deeper than 64 levels"
    if case == "helm-chart-layer":  # an image config, but the layer is a Helm chart
        layout = folder / "layout"
        retype_oci_layout(layout, write_oci_layout(layout, layer, ref_name="evil:1"),
                          layer_type=HELM_CHART_LAYER)
        return layout, f"media type '{HELM_CHART_LAYER}' is not an image layer"
    if case == "helm-chart":  # a Helm chart as OCI artifact, as `helm push` makes it
        layout = folder / "layout"
        retype_oci_layout(layout, write_oci_layout(layout, layer, ref_name="evil:1"),
                          layer_type=HELM_CHART_LAYER,
                          config_type="application/vnd.cncf.helm.config.v1+json")
        return layout, "application/vnd.cncf.helm.config.v1+json"
    raise AssertionError(case)


HOSTILE = ("dotdot", "absolute", "escaping-symlink", "missing-blob", "wrong-digest",
           "diff-id-mismatch", "config-digest", "bad-tag", "truncated", "truncated-gzip",
           "oci-layer-digest", "oci-diff-id", "not-an-archive", "nested-manifest",
           "whitespace-manifest", "huge-string-manifest", "oci-nested-manifest",
           "oci-nested-index", "helm-chart-layer", "helm-chart")


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archive_is_refused_and_leaves_nothing(
        cli: Cli, busybox_rootfs: Path, tmp_path: Path, case: str) -> None:
    cli.run("images")  # make the data root and database
    before = state_outside_blobs(cli.root)
    (tmp_path / "work").mkdir()
    path, word = hostile(case, tmp_path / "work", busybox_rootfs)
    proc = cli.run("load", "-i", str(path), check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1 and word in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert cli.run("images", "-q").stdout == ""
    assert state_outside_blobs(cli.root) == before
    assert_only_verified_blobs(cli.root)


def test_member_names_are_never_extracted(cli: Cli, busybox_rootfs: Path,
                                          tmp_path: Path) -> None:
    """Members named ``../x`` or ``/x`` are never written anywhere; the image loads."""
    layer = layer_bytes(busybox_rootfs, b"fine\n")
    config = config_for(layer)
    name = sha256(config).removeprefix("sha256:") + ".json"
    archive = tmp_path / "work" / "a.tar"
    archive.parent.mkdir()
    escape = tmp_path / "escaped"
    docker_archive(archive, {name: config, "l.tar": layer, f"../../{escape.name}": b"x",
                             str(escape): b"x"},
                   [{"Config": name, "RepoTags": ["fine:1"], "Layers": ["l.tar"]}])
    assert cli.run("load", "-i", str(archive)).stdout == "Loaded image: fine:1\n"
    assert not escape.exists()


# --- the image group, prune, df ----------------------------------------------------------------

def test_image_group_maps_to_the_commands(cli: Cli, rootfs_tar: Path, tmp_path: Path) -> None:
    image_id = imported(cli, rootfs_tar)
    cli.run("image", "tag", "base:1", "base:2")
    assert cli.run("image", "ls", "-q").stdout == f"{image_id[:12]}\n"
    listing = cli.run("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}")
    assert [line.split()[0] for line in listing.stdout.splitlines()] == \
        ["docker.io/library/base:1", "docker.io/library/base:2"]
    [record] = json.loads(cli.run("image", "inspect", "base:2").stdout)
    assert record["Id"] == f"sha256:{image_id}"
    assert "unknown" in cli.run("image", "frobnicate", check=False).stderr
    history = cli.run("image", "history", "base:1").stdout.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"] and image_id[:12] in history[1]
    cli.run("image", "save", "-o", str(tmp_path / "a.tar"), "base:1")
    cli.run("image", "rm", "base:1", "base:2")
    assert cli.run("image", "load", "-i", str(tmp_path / "a.tar")).stdout == \
        "Loaded image: base:1\n"
    pulled = cli.run("image", "pull", "--help", check=False)
    assert pulled.returncode == 0 or "not available" in pulled.stderr


def plain_layer(folder: Path, name: str, size: int) -> tuple[Path, int]:
    """A plain (uncompressed) rootfs tar holding one file of *size* bytes; its length is
    the layer's size."""
    path = folder / f"{name}.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(f"{name}.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return path, path.stat().st_size


def human(size: int, precision: int = 4) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.{precision}g}{unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError(size)


def test_image_filters_and_prune(cli: Cli, rootfs_tar: Path, tmp_path: Path) -> None:
    first, first_size = plain_layer(tmp_path, "first", 300_000)
    second, _ = plain_layer(tmp_path, "second", 200_000)
    dangling = cli.run("import", str(first), "app:1").stdout.strip()
    tagged = cli.run("import", str(second), "app:1").stdout.strip()  # moves the tag
    used = imported(cli, rootfs_tar, "used:1")
    cli.run("create", "--name", "keeper", "used:1", "true")
    assert cli.run("images", "--filter", "dangling=true", "-q", "--no-trunc").stdout == \
        f"{dangling}\n"
    refs = cli.run("images", "--filter", "reference=app*", "--format", "{{.Repository}}")
    assert refs.stdout == "docker.io/library/app\n"
    assert cli.run("images", "used", "-q").stdout == f"{used[:12]}\n"
    bad = cli.run("images", "--filter", "colour=red", check=False)
    assert bad.returncode == 1 and "filter" in bad.stderr
    # no terminal to answer the prompt, no -f: refused, nothing removed
    refused = cli.run("image", "prune", check=False)
    assert refused.returncode == 1 and "-f" in refused.stderr
    assert len(cli.run("images", "-q").stdout.split()) == 3
    out = cli.run("image", "prune", "-f").stdout
    assert out == (f"Deleted Images:\nDeleted: {dangling}\n\n"
                   f"Total reclaimed space: {human(first_size)}\n")
    assert not (cli.root / "layers" / sha256(first.read_bytes()).removeprefix("sha256:")).exists()
    out = cli.run("image", "prune", "-a", "-f").stdout
    _, second_size = plain_layer(tmp_path, "again", 200_000)
    assert out == (f"Deleted Images:\nUntagged: app:1\nDeleted: {tagged}\n\n"
                   f"Total reclaimed space: {human(second_size)}\n")
    assert cli.run("images", "-q", "--no-trunc").stdout == f"sha256:{used}\n"
    assert cli.run("image", "prune", "-a", "-f").stdout == "Total reclaimed space: 0B\n"


def df_lines(cli: Cli) -> dict[str, list[str]]:
    out = cli.run("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {}
    for line in out[1:]:
        kind = "Local Volumes" if line.startswith("Local Volumes") else line.split()[0]
        rows[kind] = line[len(kind):].split(None, 3)
    return rows


def test_system_df_counts_what_was_written(cli: Cli, rootfs_tar: Path,
                                           tmp_path: Path) -> None:
    from tsubo.engine.containers import Engine
    from tsubo.engine.diskusage import disk_usage

    base_size = len(gzip.decompress(rootfs_tar.read_bytes()))
    imported(cli, rootfs_tar, "base:1")
    extra, extra_size = plain_layer(tmp_path, "extra", 123_456)
    cli.run("import", str(extra), "extra:1")
    cli.run("volume", "create", "data")
    data = cli.root / "volumes" / "data" / "_data"
    (data / "file").write_bytes(b"v" * 54_321)
    os.link(data / "file", data / "hardlink")  # counted once
    cli.run("run", "-d", "--name", "writer", "-v", "data:/data", "base:1", "sh", "-c",
            "head -c 250000 /dev/zero > /written; ln /written /again; ln -s written /link;"
            " sleep 300")
    upper = cli.root / "containers"
    engine_fixtures.wait_for(lambda: any((d / "upper" / "link").is_symlink()
                                         for d in upper.iterdir()), 10)
    engine = Engine(str(cli.root))
    try:
        usage = disk_usage(engine)
    finally:
        engine.close()
    [container] = usage.containers
    assert container.size == 250_000 + len("written")
    assert [v.size for v in usage.volumes] == [54_321]
    assert usage.image_summary.size == base_size + extra_size
    rows = df_lines(cli)
    total = base_size + extra_size
    assert rows["Images"] == ["2", "1", human(total),
                              f"{human(extra_size)} ({extra_size * 100 // total}%)"]
    assert rows["Containers"] == ["1", "1", human(250_007), "0B (0%)"]
    assert rows["Local Volumes"] == ["1", "1", human(54_321), "0B (0%)"]
    verbose = cli.run("system", "df", "-v").stdout
    assert "Images space usage:" in verbose and "writer" in verbose
    cli.run("rm", "-f", "writer")
    rows = df_lines(cli)
    assert rows["Containers"] == ["0", "0", "0B", "0B"]
    assert rows["Local Volumes"] == ["1", "0", human(54_321), f"{human(54_321)} (100%)"]
