"""Throwaway registries, test images and a reference unpacker for the image pull tests.

Everything network-facing runs inside a network namespace made here (``tsubo-reg-<hex>``,
only ``lo``, up): the registry (Debian's ``docker-registry`` 2.8, filesystem storage in a
temp dir) listens on 127.0.0.1:5000 *of that namespace*; clients (skopeo, curl, tsubo)
are run in it with ``ip netns exec``. Nothing is ever sent outside it.

Fixtures (import them into a test module as values, like ``engine_fixtures``)::

    registry              a plain registry (no auth), per test
    registry_basic_auth   htpasswd (bcrypt) auth: user ``tsubo`` / ``hunter2-tsubo``
    registry_token_auth   token auth: a realm at 127.0.0.1:5001 (tests/e2e/token_server.py)
                          signing RS256 JWTs with an openssl-made key; same user/password
    test_images_registry  (module) (registry, TestImages): a plain registry with every test
                          image pushed (shared by the module's tests: read only!)

The test images (``TestImages``): ``test/multi:1`` = busybox + 5 layers with a whiteout, an
opaque dir, a deleted-then-recreated file, symlinks (relative, absolute, chain, dangling),
hardlink groups, setuid/setgid files, 1000:1000 owners, 0700/0000/1777 modes, a fifo, a
file turned into a dir and a symlink into a file (gzip, OCI); ``test/zstd:1`` the same
layers zstd-compressed; ``test/v2s2:1`` the same as a Docker schema 2 manifest;
``test/multiarch:1`` an index of linux/amd64 + linux/arm64 whose ``/platform`` differs.

The ``Registry`` object: ``.netns``, ``.address``, ``.run(argv)`` (inside the netns,
output captured), ``.skopeo(...)``, ``.get(path)`` (curl), ``.blob_file(digest)``,
``.push_layout(...)``, ``.reference_rootfs(...)`` (skopeo copy + ``umoci unpack``) and
``.start_proxy(...)`` / ``with .proxy(...)`` (tests/e2e/fault_proxy.py in front of it).
Teardown stops exactly the processes started here (by pid), deletes the netns and the work
dir.

Test images are built in Python (``tarfile``; no tsubo code) as OCI image layouts and pushed
with skopeo (see ``push_test_images``). ``scan_tree`` / ``diff_trees`` compare two root
filesystems entry by entry (type, mode with setuid bits, owner, size, sha256, symlink target,
hardlink groups), and ``merged_layers_tree`` scans a stack of overlay layer dirs through a
read-only overlay mount made in a private mount namespace (nothing to clean up).

skopeo and umoci run with HOME, XDG_RUNTIME_DIR, TMPDIR and the auth file in the work dir,
and with a private, empty /var/lib/containers (containers/image writes its blob-info cache
there for root), so the host's container state is neither read nor written.

``python -m tests.e2e.registry_fixtures scan DIR`` prints ``scan_tree(DIR)`` as JSON (used
inside the private mount namespace).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import json
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
PYTHON = Path(sys.executable)
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
REGISTRY_ADDRESS = "127.0.0.1:5000"
TOKEN_ADDRESS = "127.0.0.1:5001"
FIRST_PROXY_PORT = 5100
USERNAME = "tsubo"
PASSWORD = "hunter2-tsubo"
TOKEN_SERVICE = "tsubo-test-registry"
TOKEN_ISSUER = "tsubo-test-token-issuer"
START_TIMEOUT = 20.0
COMMAND_TIMEOUT = 180.0
LAYER_MTIME = 1_700_000_000
OPAQUE = ".wh..wh..opq"

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}

#: what a container runtime provides itself: not part of an image's tree comparison
RUNTIME_PATHS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys")


class FixtureError(Exception):
    """A registry, proxy or image builder step failed; the message says which and why."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tools_missing() -> list[str]:
    """The external programs these fixtures need that are not installed."""
    needed = {"docker-registry": str(REGISTRY_BINARY), "skopeo": "skopeo", "umoci": "umoci",
              "curl": "curl", "htpasswd": "htpasswd", "openssl": "openssl", "zstd": "zstd",
              "ip": "ip", "unshare": "unshare"}
    return [name for name, binary in needed.items() if shutil.which(binary) is None]


# ---------------------------------------------------------------------------------------------
# layers and OCI image layouts


class LayerTar:
    """An uncompressed layer tarball built entry by entry (numeric owners, fixed mtimes).

    Parent directories are never implied: add them (``dir``) with the metadata they should
    have, as image builders do; a layer that only touches ``etc/motd`` still carries ``etc/``.
    """

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.TarFile(fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = LAYER_MTIME
        return info

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerTar:
        self._tar.addfile(self._info(name.rstrip("/") + "/", tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0,
             gid: int = 0) -> LayerTar:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str) -> LayerTar:
        info = self._info(name, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> LayerTar:
        """*name* as a hard link to *target*, an earlier entry of this same layer."""
        info = self._info(name, tarfile.LNKTYPE, 0o644, 0, 0)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def fifo(self, name: str, mode: int = 0o644) -> LayerTar:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, mode, 0, 0))
        return self

    def whiteout(self, path: str) -> LayerTar:
        """Delete *path* of the layers below (``dir/.wh.name``)."""
        parent, _, name = path.rstrip("/").rpartition("/")
        return self.file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"")

    def opaque(self, directory: str) -> LayerTar:
        """Hide everything the layers below have in *directory* (``.wh..wh..opq``)."""
        return self.file(f"{directory.rstrip('/')}/{OPAQUE}", b"")

    def tree(self, root: Path) -> LayerTar:
        """Every entry under *root* (lstat metadata, numeric owners), root itself as ``./``."""
        def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uname = info.gname = ""
            return info
        self._tar.add(root, arcname=".", recursive=True, filter=clean)
        return self

    def bytes(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as stream:
            stream.write(data)
        return out.getvalue()
    if compression == "zstd":
        proc = subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True,
                              check=True, timeout=COMMAND_TIMEOUT)
        return proc.stdout
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


@dataclass(frozen=True)
class BuiltImage:
    """One image written into a layout: its manifest descriptor, config and layers."""

    manifest: dict[str, Any]
    config_digest: str
    layer_digests: list[str]
    diff_ids: list[str]
    layer_sizes: list[int]

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])


class OciLayout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._refs: list[dict[str, Any]] = []
        self._write_index()

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = f"sha256:{sha256_hex(data)}"
        target = self.path / "blobs" / "sha256" / digest[7:]
        if not target.exists():
            target.write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def json_blob(self, document: dict[str, Any], media_type: str) -> dict[str, Any]:
        return self.blob(json.dumps(document, separators=(",", ":")).encode(), media_type)

    def image(self, layers: Sequence[bytes], *, compression: str = "gzip",
              architecture: str = "amd64", cmd: Sequence[str] = ("sh",),
              labels: dict[str, str] | None = None,
              diff_ids: Sequence[str] | None = None) -> BuiltImage:
        """Write the config, the (compressed) layers and the manifest; return them.
        *diff_ids* replaces the true ones in the config (to build a lying image)."""
        descriptors = [self.blob(compress(layer, compression), MEDIA_LAYER[compression])
                       for layer in layers]
        if diff_ids is None:
            diff_ids = [f"sha256:{sha256_hex(layer)}" for layer in layers]
        diff_ids = list(diff_ids)
        config = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": list(cmd),
                "WorkingDir": "/",
                "Labels": labels or {},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {n}"}
                        for n in range(len(layers))],
        }
        config_descriptor = self.json_blob(config, MEDIA_OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config_descriptor,
            "layers": descriptors,
        }
        descriptor = self.json_blob(manifest, MEDIA_OCI_MANIFEST)
        descriptor["platform"] = {"architecture": architecture, "os": "linux"}
        return BuiltImage(descriptor, str(config_descriptor["digest"]),
                          [str(d["digest"]) for d in descriptors], diff_ids,
                          [int(d["size"]) for d in descriptors])

    def index(self, manifests: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """An image index blob listing *manifests* (descriptors with platforms)."""
        document = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
                    "manifests": list(manifests)}
        return self.json_blob(document, MEDIA_OCI_INDEX)

    def tag(self, descriptor: dict[str, Any], tag: str) -> None:
        """Name *descriptor* (a manifest or an index) *tag* in index.json."""
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self._refs = [r for r in self._refs
                      if r["annotations"]["org.opencontainers.image.ref.name"] != tag]
        self._refs.append(entry)
        self._write_index()

    def _write_index(self) -> None:
        (self.path / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": self._refs}))


def multi_layers(busybox_rootfs: Path) -> list[bytes]:
    """The layers of ``test/multi``: busybox, then five layers exercising what unpacking
    must get right (see the comments); uncompressed."""
    base = LayerTar().tree(busybox_rootfs).bytes()
    content = (  # files that later layers delete, hide, replace or link to
        LayerTar()
        .dir("etc").file("etc/motd", b"welcome\n").file("etc/shape", b"a file for now\n")
        .dir("opt").dir("opt/opaque").file("opt/opaque/a", b"hidden by the opaque dir\n")
        .dir("opt/opaque/sub").file("opt/opaque/sub/b", b"also hidden\n")
        .symlink("opt/link", "../etc/passwd").symlink("opt/abs-link", "/data/hard1")
        .dir("data").file("data/recreated", b"version 1\n")
        .file("data/hard1", b"one inode, two names\n").hardlink("data/hard2", "data/hard1")
        .dir("usr").dir("usr/local").dir("usr/local/bin")
        .file("usr/local/bin/suid-tool", b"#!/bin/sh\necho suid\n", mode=0o4755)
        .file("usr/local/bin/sgid-tool", b"#!/bin/sh\necho sgid\n", mode=0o2755)
        .dir("home").dir("home/tsubotest", uid=1000, gid=1000)
        .file("home/tsubotest/owned", b"mine\n", mode=0o640, uid=1000, gid=1000)
        .dir("secret", mode=0o700).file("secret/key", b"s3cret\n", mode=0o600)
        .bytes()
    )
    deletions = (  # a whiteout, an opaque directory, the first half of delete-then-recreate
        LayerTar()
        .dir("etc").whiteout("etc/motd")
        .dir("opt").dir("opt/opaque").opaque("opt/opaque")
        .file("opt/opaque/fresh", b"after the opaque whiteout\n")
        .dir("data").whiteout("data/recreated")
        .bytes()
    )
    recreate = (
        LayerTar()
        .dir("data")
        .file("data/recreated", b"version 2\n", mode=0o600, uid=1000, gid=1000)
        .bytes()
    )
    links = (  # a three-name hardlink group, a symlink chain, a dangling symlink, a fifo
        LayerTar()
        .dir("var").dir("var/lib").dir("var/lib/app")
        .file("var/lib/app/h1", b"three names\n", mode=0o640)
        .hardlink("var/lib/app/h2", "var/lib/app/h1").hardlink("var/lib/app/h3", "var/lib/app/h1")
        .symlink("var/lib/app/l1", "l2").symlink("var/lib/app/l2", "target")
        .file("var/lib/app/target", b"end of the chain\n")
        .symlink("var/lib/app/dangling", "/nonexistent/file")
        .fifo("var/lib/app/pipe", mode=0o600)
        .dir("var/lib/app/sticky", mode=0o1777)
        .bytes()
    )
    rng = secrets.token_bytes  # incompressible content: exercises multi-chunk reads
    modes = (  # shapes changing type, odd modes, empty things, a bigger file
        LayerTar()
        .dir("etc").dir("etc/shape").file("etc/shape/now-a-dir", b"file became a dir\n")
        .dir("bin").file("bin/vi", b"#!/bin/sh\necho not vi\n", mode=0o755)
        .dir("secret", mode=0o700).file("secret/zero-mode", b"", mode=0o000)
        .dir("srv", mode=0o750, uid=1000, gid=1000)
        .file("srv/blob.bin", rng(300_000), mode=0o644, uid=1000, gid=1000)
        .dir("srv/empty", mode=0o711)
        .bytes()
    )
    return [base, content, deletions, recreate, links, modes]


def marker_layer(architecture: str) -> bytes:
    return LayerTar().file("platform", f"{architecture}\n".encode()).bytes()


@dataclass
class TestImages:
    """What ``push_test_images`` pushed, by repository: ``multi`` (gzip OCI), ``zstd``,
    ``v2s2`` (Docker schema 2 manifest of the same image), ``multiarch`` (index of
    linux/amd64 + linux/arm64, ``/platform`` reads ``amd64``/``arm64``)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    layout: Path
    multi: BuiltImage
    zstd: BuiltImage
    amd64: BuiltImage
    arm64: BuiltImage
    index_digest: str
    pushed_digests: dict[str, str] = field(default_factory=dict)

    MULTI = "test/multi:1"
    ZSTD = "test/zstd:1"
    V2S2 = "test/v2s2:1"
    MULTIARCH = "test/multiarch:1"


def build_test_layout(path: Path, busybox_rootfs: Path) -> TestImages:
    """Write every test image into one OCI layout at *path* (tags multi, zstd, multiarch)."""
    layout = OciLayout(path)
    layers = multi_layers(busybox_rootfs)
    multi = layout.image(layers, compression="gzip")
    layout.tag(multi.manifest, "multi")
    zstd = layout.image(layers, compression="zstd")
    layout.tag(zstd.manifest, "zstd")
    base = layers[0]
    amd64 = layout.image([base, marker_layer("amd64")], architecture="amd64")
    arm64 = layout.image([base, marker_layer("arm64")], architecture="arm64")
    index = layout.index([amd64.manifest, arm64.manifest])
    layout.tag(index, "multiarch")
    return TestImages(path, multi, zstd, amd64, arm64, str(index["digest"]))


def push_test_images(registry: Registry, busybox_rootfs: Path) -> TestImages:
    """Build the test layout in the registry's work dir and push every test image."""
    images = build_test_layout(registry.workdir / "test-layout", busybox_rootfs)
    pushes = {
        TestImages.MULTI: ("multi", []),
        TestImages.ZSTD: ("zstd", []),
        TestImages.V2S2: ("multi", ["--format", "v2s2"]),
        TestImages.MULTIARCH: ("multiarch", ["--all"]),
    }
    for target, (tag, options) in pushes.items():
        images.pushed_digests[target] = registry.push_layout(
            images.layout, tag, target, options=options)
    return images


# ---------------------------------------------------------------------------------------------
# the registry


@dataclass
class HttpResult:
    """What curl got: status, headers (lower-case names; last value wins), body."""

    status: int
    headers: dict[str, str]
    body: bytes
    curl_exit: int
    curl_error: str


@dataclass
class FaultProxy:
    """A running tests/e2e/fault_proxy.py: ``.address`` to pull from, ``.events()``."""

    address: str
    log: Path
    process: subprocess.Popen[bytes]

    def events(self, kind: str | None = None) -> list[str]:
        """The proxy's log lines (``cut ...``, ``stall ...``, ``strip-range ...``,
        ``request ...``)."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if kind is None or line.split(" ", 1)[0] == kind]


def _argv_text(process: subprocess.Popen[bytes]) -> str:
    args = process.args
    return shlex.join(str(a) for a in args) if isinstance(args, list) else str(args)


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """SIGTERM exactly this process, SIGKILL it after *timeout*; "" or a problem."""
    if process.poll() is not None:
        return ""
    process.terminate()
    try:
        process.wait(timeout)
        return ""
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
        return f"pid {process.pid} ({_argv_text(process)}) ignored SIGTERM"


@dataclass
class Registry:
    """A docker-registry serving ``address`` inside netns ``netns``; see the module doc."""

    netns: str
    address: str
    workdir: Path
    auth: str = "none"
    username: str = ""
    password: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    proxies: list[FaultProxy] = field(default_factory=list)
    _ports: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_PROXY_PORT))

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}" if self.username else ""

    def env(self) -> dict[str, str]:
        """An environment that keeps clients off the host's config and credentials."""
        home = self.workdir / "home"
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            # the engine's setting as the whole session has it: no default bridge here
            "TSUBO_DEFAULT_NETWORK": os.environ.get("TSUBO_DEFAULT_NETWORK", "none"),
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "DOCKER_CONFIG": str(home / "docker"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),
            "TMPDIR": str(self.workdir / "tmp"),
            "LANG": "C.UTF-8",
        }

    def run(self, argv: Sequence[str | Path], *, input: bytes | None = None,
            env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT,
            check: bool = False, private_containers_dir: bool = False,
            ) -> subprocess.CompletedProcess[str]:
        """Run *argv* inside the netns (``ip netns exec``), stdout/stderr captured as text.

        ``private_containers_dir``: a private empty /var/lib/containers (``ip netns exec``
        already gives the command its own mount namespace, a slave of ours: nothing mounted
        there comes back)."""
        command = [str(arg) for arg in argv]
        if private_containers_dir:
            shadow = self.workdir / "var-lib-containers"
            shadow.mkdir(exist_ok=True)
            target = "/var/lib/containers" if Path("/var/lib/containers").is_dir() \
                else "/var/lib"
            command = ["sh", "-c", f'mount --bind {shlex.quote(str(shadow))} {target} && '
                       'exec "$@"', "sh", *command]
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, *command],
            input=input, capture_output=True, timeout=timeout, check=False,
            env=self.env() if env is None else env,
        )
        result = subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))
        if check and result.returncode != 0:
            raise FixtureError(f"{shlex.join(command)} failed ({result.returncode}):\n"
                               f"{result.stderr.strip()}")
        return result

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["skopeo", *args], check=check, private_containers_dir=True)

    def url(self, path: str, address: str | None = None) -> str:
        return f"http://{address or self.address}{path}"

    def get(self, path: str, *, headers: Sequence[str] = (), address: str | None = None,
            method: str = "GET", user: str | None = None) -> HttpResult:
        """An HTTP request with curl inside the netns (no retries, no redirects followed)."""
        scratch = Path(tempfile.mkdtemp(dir=self.workdir / "tmp"))
        try:
            argv = ["curl", "-q", "-sS", "--max-time", "30", "-X", method,
                    "-D", str(scratch / "headers"), "-o", str(scratch / "body")]
            for value in headers:
                argv += ["-H", value]
            if user:
                argv += ["-u", user]
            proc = self.run([*argv, self.url(path, address)])
            head = (scratch / "headers").read_text(errors="replace") \
                if (scratch / "headers").exists() else ""
            body = (scratch / "body").read_bytes() if (scratch / "body").exists() else b""
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        status, parsed = 0, dict[str, str]()
        for line in head.splitlines():
            if line.startswith("HTTP/"):
                status, parsed = int(line.split()[1]), {}
            elif ":" in line:
                name, _, value = line.partition(":")
                parsed[name.strip().lower()] = value.strip()
        return HttpResult(status, parsed, body, proc.returncode, proc.stderr.strip())

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem storage driver keeps blob *digest*."""
        algorithm, _, hexdigest = digest.partition(":")
        return (self.storage / "docker" / "registry" / "v2" / "blobs" / algorithm /
                hexdigest[:2] / hexdigest / "data")

    def push_layout(self, layout: Path, tag: str, target: str,
                    options: Sequence[str] = ()) -> str:
        """skopeo copy ``oci:LAYOUT:TAG`` to ``docker://ADDRESS/TARGET``; the manifest digest."""
        digest_file = self.workdir / "tmp" / f"digest-{secrets.token_hex(4)}"
        creds = ["--dest-creds", self.creds] if self.creds else []
        self.skopeo("copy", "-q", "--dest-tls-verify=false", *creds, "--digestfile",
                    str(digest_file), *options, f"oci:{layout}:{tag}",
                    f"docker://{self.address}/{target}")
        digest = digest_file.read_text().strip()
        digest_file.unlink()
        return digest

    def reference_rootfs(self, ref: str, *, architecture: str | None = None) -> Path:
        """The reference unpack of ``ADDRESS/REF``: skopeo copy to an OCI layout, then
        ``umoci unpack``; the rootfs directory (under the work dir)."""
        name = f"ref-{secrets.token_hex(4)}"
        layout, bundle = self.workdir / f"{name}-layout", self.workdir / f"{name}-bundle"
        creds = ["--src-creds", self.creds] if self.creds else []
        arch = ["--override-arch", architecture] if architecture else []
        self.skopeo("--override-os", "linux", *arch, "copy", "-q", "--src-tls-verify=false",
                    *creds, f"docker://{self.address}/{ref}", f"oci:{layout}:ref")
        self.run(["umoci", "unpack", "--image", f"{layout}:ref", str(bundle)], check=True,
                 private_containers_dir=True)
        return bundle / "rootfs"

    def start_proxy(self, *, cut_after: int | None = None, cut_times: int = 1,
                    strip_range: bool = False, stall_after: int | None = None) -> FaultProxy:
        """tests/e2e/fault_proxy.py in front of the registry on the next free port
        (*stall_after*: every longer blob download hangs after that many bytes)."""
        address = f"127.0.0.1:{next(self._ports)}"
        log = self.workdir / f"proxy-{address.rpartition(':')[2]}.log"
        argv = [str(PYTHON), str(E2E_DIR / "fault_proxy.py"), "--listen", address,
                "--upstream", self.address, "--log", str(log)]
        if cut_after is not None:
            argv += ["--cut-after", str(cut_after), "--cut-times", str(cut_times)]
        if strip_range:
            argv.append("--strip-range")
        if stall_after is not None:
            argv += ["--stall-after", str(stall_after)]
        process = self._spawn(argv, "proxy")
        proxy = FaultProxy(address, log, process)
        self.proxies.append(proxy)
        self._wait_listening(address, process, log)
        return proxy

    @contextlib.contextmanager
    def proxy(self, *, cut_after: int | None = None, cut_times: int = 1,
              strip_range: bool = False, stall_after: int | None = None,
              ) -> Iterator[FaultProxy]:
        """``start_proxy`` for the duration of a with block (stopped by pid at its end)."""
        proxy = self.start_proxy(cut_after=cut_after, cut_times=cut_times,
                                 strip_range=strip_range, stall_after=stall_after)
        try:
            yield proxy
        finally:
            self.processes.remove(proxy.process)
            self.proxies.remove(proxy)
            problem = _stop(proxy.process)
            if problem:
                raise FixtureError(problem)

    def _spawn(self, argv: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        output = self.workdir / f"{name}.out"
        with output.open("ab") as sink:
            # `ip netns exec` execs the command: the pid is the server's own
            # (no REGISTRY_* variables: docker-registry reads them as configuration)
            env = {k: v for k, v in self.env().items() if not k.startswith("REGISTRY_")}
            process = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv],
                                       stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                       env=env)
        self.processes.append(process)
        return process

    def _wait_listening(self, address: str, process: subprocess.Popen[bytes],
                        log: Path, path: str = "/v2/") -> None:
        """Until http://ADDRESS/PATH answers anything (the server is up) or it exits."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise FixtureError(f"{_argv_text(process)} exited "
                                   f"{process.returncode}:\n{self._output(log)}")
            answer = self.run(["curl", "-q", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               "--max-time", "2", f"http://{address}{path}"], timeout=10)
            if answer.stdout.strip() not in ("", "000"):
                return
            if time.monotonic() > deadline:
                raise FixtureError(f"nothing answers on {address} in netns {self.netns} after "
                                   f"{START_TIMEOUT:.0f} s:\n{self._output(log)}")
            time.sleep(0.05)

    def _output(self, log: Path) -> str:
        texts = []
        for path in dict.fromkeys((log, *sorted(self.workdir.glob("*.out")))):
            if path.exists():
                texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    def stop(self) -> list[str]:
        """Stop every process started here (by pid, newest first); returns problems."""
        problems = [p for p in (_stop(proc) for proc in reversed(self.processes)) if p]
        self.processes.clear()
        return problems


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {address}
  secret: {secret}
{auth}"""

HTPASSWD_AUTH = """\
auth:
  htpasswd:
    realm: tsubo-test-registry
    path: {path}
"""

TOKEN_AUTH = """\
auth:
  token:
    realm: http://{token_address}/token
    service: {service}
    issuer: {issuer}
    rootcertbundle: {cert}
"""


def _run_host(argv: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise FixtureError(f"{what}: {shlex.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()}")
    return proc


def _auth_config(registry: Registry, auth: str) -> str:
    work = registry.workdir
    if auth == "none":
        return ""
    if auth == "basic":
        line = _run_host(["htpasswd", "-Bbn", USERNAME, PASSWORD], "make htpasswd").stdout
        (work / "htpasswd").write_text(line.strip() + "\n")
        return HTPASSWD_AUTH.format(path=work / "htpasswd")
    if auth == "token":
        _run_host(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                   "-days", "2", "-subj", "/CN=tsubo-test-token-signer",
                   "-keyout", str(work / "token.key"), "-out", str(work / "token.crt")],
                  "make the token signing key")
        (work / "token-users").write_text(f"{USERNAME}:{PASSWORD}\n")
        return TOKEN_AUTH.format(token_address=TOKEN_ADDRESS, service=TOKEN_SERVICE,
                                 issuer=TOKEN_ISSUER, cert=work / "token.crt")
    raise ValueError(f"unknown auth {auth!r}")


@contextlib.contextmanager
def start_registry(workdir: Path, auth: str = "none") -> Iterator[Registry]:
    """A registry in a fresh netns with its storage in *workdir* (made, then removed).

    *auth*: ``none``, ``basic`` (htpasswd) or ``token``. Leaves nothing behind: the
    processes started (by pid), the netns and *workdir* are removed on exit."""
    missing = tools_missing()
    if missing:
        raise FixtureError(f"not installed: {', '.join(missing)}")
    workdir.mkdir(mode=0o700, parents=True)
    for sub in ("storage", "tmp", "home"):
        (workdir / sub).mkdir(mode=0o700)
    (workdir / "home" / "auth.json").write_text('{"auths": {}}')  # podman wants it to exist
    netns = f"tsubo-reg-{secrets.token_hex(4)}"
    registry = Registry(netns, REGISTRY_ADDRESS, workdir, auth=auth)
    if auth != "none":
        registry.username, registry.password = USERNAME, PASSWORD
    _run_host(["ip", "netns", "add", netns], "make the registry netns")
    problems: list[str] = []
    try:
        registry.run(["ip", "link", "set", "lo", "up"], check=True)
        config = REGISTRY_CONFIG.format(storage=registry.storage, address=registry.address,
                                        secret=secrets.token_hex(16),
                                        auth=_auth_config(registry, auth))
        (workdir / "config.yml").write_text(config)
        if auth == "token":
            token_server = registry._spawn([
                str(PYTHON), str(E2E_DIR / "token_server.py"), "--listen", TOKEN_ADDRESS,
                "--key", str(workdir / "token.key"), "--cert", str(workdir / "token.crt"),
                "--issuer", TOKEN_ISSUER, "--service", TOKEN_SERVICE,
                "--users", str(workdir / "token-users"), "--log", str(workdir / "token.log"),
            ], "token-server")
            registry._wait_listening(TOKEN_ADDRESS, token_server,
                                     workdir / "token-server.out", path="/")
        process = registry._spawn([str(REGISTRY_BINARY), "serve", str(workdir / "config.yml")],
                                  "registry")
        registry._wait_listening(registry.address, process, workdir / "registry.out")
        yield registry
    finally:
        problems += registry.stop()
        proc = subprocess.run(["ip", "netns", "delete", netns], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            problems.append(f"ip netns delete {netns}: {proc.stderr.strip()}")
        shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        raise FixtureError("registry teardown: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# trees


@dataclass(frozen=True)
class Node:
    """One entry of a root filesystem, as compared (mtimes and xattrs are not)."""

    kind: str  # file, dir, symlink, fifo, char, block, socket
    mode: int  # permission bits with setuid, setgid, sticky
    uid: int
    gid: int
    size: int = 0  # regular files
    sha256: str = ""  # regular files
    target: str = ""  # symlinks
    device: str = ""  # "major:minor" of char/block devices
    links: tuple[str, ...] = ()  # every path of the tree sharing this inode, if several

    def describe(self) -> str:
        text = f"{self.kind} {self.mode:04o} {self.uid}:{self.gid}"
        if self.kind == "file":
            text += f" {self.size}B sha256:{self.sha256[:12]}"
        if self.target:
            text += f" -> {self.target}"
        if self.device:
            text += f" dev {self.device}"
        if self.links:
            text += f" links={','.join(self.links)}"
        return text


_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"),
          (stat.S_ISSOCK, "socket"))


def _ignored(path: str, ignore: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in ignore)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def scan_tree(root: Path, ignore: Sequence[str] = RUNTIME_PATHS) -> dict[str, Node]:
    """Every entry under *root* (not following symlinks, not crossing into other mounts),
    keyed ``/relative/path`` (``/`` is the root itself); paths in *ignore* and their
    subtrees are left out."""
    entries: dict[str, os.stat_result] = {}
    root_dev = os.lstat(root).st_dev

    def walk(directory: str, key: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            child_key = f"{key.rstrip('/')}/{entry.name}"
            if _ignored(child_key, ignore):
                continue
            info = entry.stat(follow_symlinks=False)
            entries[child_key] = info
            if stat.S_ISDIR(info.st_mode) and info.st_dev == root_dev:
                walk(entry.path, child_key)

    entries["/"] = os.lstat(root)
    walk(str(root), "/")
    inodes: dict[tuple[int, int], list[str]] = {}
    for key, info in entries.items():
        if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1:
            inodes.setdefault((info.st_dev, info.st_ino), []).append(key)
    nodes = {}
    for key, info in entries.items():
        kind = next(name for test, name in _KINDS if test(info.st_mode))
        full = os.path.join(root, key.lstrip("/"))
        group = inodes.get((info.st_dev, info.st_ino), [])
        nodes[key] = Node(
            kind=kind, mode=stat.S_IMODE(info.st_mode), uid=info.st_uid, gid=info.st_gid,
            size=info.st_size if kind == "file" else 0,
            sha256=_file_sha256(full) if kind == "file" else "",
            target=os.readlink(full) if kind == "symlink" else "",
            device=f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
            if kind in ("char", "block") else "",
            links=tuple(sorted(group)) if len(group) > 1 else (),
        )
    return nodes


def diff_trees(expected: dict[str, Node], actual: dict[str, Node],
               labels: tuple[str, str] = ("reference", "actual"), limit: int = 60) -> str:
    """A readable list of differences ("" when the trees are the same)."""
    lines = []
    for key in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(key), actual.get(key)
        if want == got:
            continue
        if got is None:
            lines.append(f"  {key}: only in {labels[0]} ({want.describe() if want else ''})")
        elif want is None:
            lines.append(f"  {key}: only in {labels[1]} ({got.describe()})")
        else:
            fields = [name for name in asdict(want) if getattr(want, name) != getattr(got, name)]
            lines.append(f"  {key}: {', '.join(fields)} differ:\n"
                         f"      {labels[0]}: {want.describe()}\n"
                         f"      {labels[1]}: {got.describe()}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"  ... and {len(lines) - limit} more"]
    return "\n".join(lines)


def nodes_from_json(text: str) -> dict[str, Node]:
    raw = json.loads(text)
    return {key: Node(**{**value, "links": tuple(value["links"])}) for key, value in raw.items()}


def scan_tree_elsewhere(prefix: Sequence[str], root: Path) -> dict[str, Node]:
    """``scan_tree(root)`` run as ``PREFIX... python -m tests.e2e.registry_fixtures scan``."""
    proc = subprocess.run(
        [*prefix, str(PYTHON), "-m", "tests.e2e.registry_fixtures", "scan", str(root)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=COMMAND_TIMEOUT, check=False,
        stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise FixtureError(f"scan of {root} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return nodes_from_json(proc.stdout)


def merged_layers_tree(layer_dirs: Sequence[Path], mountpoint: Path) -> dict[str, Node]:
    """The tree a container sees over *layer_dirs* (bottom first): a read-only overlay of
    them mounted on *mountpoint* in a private mount namespace (gone when the scan ends),
    scanned there. One layer is scanned as it is."""
    if len(layer_dirs) == 1:
        return scan_tree(layer_dirs[0])
    mountpoint.mkdir(exist_ok=True)
    lower = ":".join(str(d) for d in reversed(layer_dirs))
    script = ('mount -t overlay overlay -o "ro,lowerdir=$1" "$2" || exit 97; shift 2; '
              'exec "$@"')
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
              lower, str(mountpoint)]
    return scan_tree_elsewhere(prefix, mountpoint)


# ---------------------------------------------------------------------------------------------
# fixtures


def _skip_unless_ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("registry fixtures need root")
    missing = tools_missing()
    if missing:
        pytest.skip(f"registry fixtures need {', '.join(missing)}")


def _registry_fixture(auth: str, tmp_path: Path) -> Iterator[Registry]:
    _skip_unless_ready()
    with start_registry(tmp_path / f"registry-{auth}", auth) as registry:
        yield registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A plain registry (no auth) on 127.0.0.1:5000 of its own netns."""
    yield from _registry_fixture("none", tmp_path)


@pytest.fixture
def registry_basic_auth(tmp_path: Path) -> Iterator[Registry]:
    """A registry with htpasswd auth (``USERNAME`` / ``PASSWORD``, bcrypt)."""
    yield from _registry_fixture("basic", tmp_path)


@pytest.fixture
def registry_token_auth(tmp_path: Path) -> Iterator[Registry]:
    """A registry with token auth; the realm (tests/e2e/token_server.py) is at
    ``TOKEN_ADDRESS`` in the same netns and knows ``USERNAME`` / ``PASSWORD``."""
    yield from _registry_fixture("token", tmp_path)


@pytest.fixture(scope="module")
def test_images_registry(
    tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
) -> Iterator[tuple[Registry, TestImages]]:
    """(registry, images): one plain registry per test module with every test image pushed.
    Shared by the module's tests: do not change what it stores."""
    _skip_unless_ready()
    with start_registry(tmp_path_factory.mktemp("shared") / "registry") as shared:
        yield shared, push_test_images(shared, busybox_rootfs)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "scan":
        nodes = scan_tree(Path(argv[1]))
        print(json.dumps({key: asdict(node) for key, node in nodes.items()}))
        return 0
    print("usage: python -m tests.e2e.registry_fixtures scan DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
