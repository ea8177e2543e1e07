"""``tsubo save`` and ``tsubo load``: images to and from Docker archives and OCI image layouts.

Formats, as ``docker save`` and ``podman save`` write them:

- ``docker-archive``: a tar with ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``),
  ``repositories`` and the config and layer blobs under ``blobs/sha256/<hex>``; like Docker
  25 and later, the same tar is also an OCI image layout (``oci-layout``, ``index.json``);
- ``oci-archive``: a tar of an OCI image layout: ``oci-layout``, ``index.json`` (one
  manifest descriptor per name, annotated ``org.opencontainers.image.ref.name`` and
  ``io.containerd.image.name`` with the full name), ``blobs/sha256/<hex>``;
- ``oci-dir``: that layout as a directory.

``save`` sends the stored layer blobs as they are (``ImageStore.image_blobs``), streamed from
the blob store; only the OCI manifests are made here. Output files appear complete or not at
all (written beside the target, then renamed).

``load`` reads all three (a directory with ``-i DIR``), gzip-, xz- or bzip2-compressed
archives, and the older Docker layout (``<id>/layer.tar``, symlinks between layers, config
``<hex>.json``). An archive is untrusted input: nothing is extracted. Members are looked up
by name; paths from ``manifest.json`` must stay inside the archive (``../x`` and ``/x`` are
refused); links between members are resolved inside the archive's name space; JSON
documents, tar extended headers, member and layer counts are bounded. Everything is checked
before anything is stored; layer blobs enter the blob store only through verified writers
(a docker-archive layer's digest is computed by a first read), ``ImageStore.ensure_layer``
unpacks them and checks each diff_id, and the images are registered last. When any step
fails, the layers this load unpacked are removed again: no image, no partial blob, no layer
is left; only verified blobs stay (content-addressed, a retry reuses them).
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound, TsuboError, Unsupported
from tsubo.oci.image_spec import (
    CONFIG_TYPES,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    layer_compression,
    oci_layer_media_type,
    oci_manifest,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Iterator
    from typing import IO, Any, BinaryIO, Protocol

    from tsubo.image.blobs import BlobStore
    from tsubo.image.store import ImageStore

    class _Archive(Protocol):
        label: str

        def open(self, path: str, what: str) -> tuple[IO[bytes], int]: ...
        def has(self, path: str) -> bool: ...
        def close(self) -> None: ...

    class _Readable(Protocol):
        def read(self, size: int = ..., /) -> bytes: ...

    class _Output(Protocol):
        def directory(self, name: str) -> None: ...
        def data(self, name: str, data: bytes) -> None: ...
        def blob(self, name: str, path: str) -> None: ...


FORMATS = ("docker-archive", "oci-archive", "oci-dir")
DEFAULT_FORMAT = "docker-archive"


ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

#: bounds on untrusted input (an archive is read by root)
MAX_JSON_BYTES = 4 << 20  # manifest.json, index.json, a manifest or an index
MAX_CONFIG_BYTES = 8 << 20  # an image config (its history can be long)
MAX_MEMBERS = 100_000
MAX_LAYERS = 1000  # per image (overlay stops far below)
MAX_TAR_META_BYTES = 1 << 20  # a pax or GNU long-name header: tarfile reads it whole
MAX_LINK_HOPS = 8
#: spooling stdin (or decompressing) stops when the data root's free space drops below this
MIN_FREE_BYTES = 256 << 20

CHUNK = 1 << 20
_BLOB_PREFIX = "blobs/sha256/"
_HEX = frozenset("0123456789abcdef")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_BZIP2_MAGIC = b"BZh"


# --- pure helpers ----------------------------------------------------------------------------

def archive_path(value: object, what: str) -> str:
    """A path named by the archive's own metadata (``manifest.json``), normalised; a path
    that is not a relative one inside the archive is refused, naming *what* it is."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument("load image", what, detail=f"expected a path, got {value!r}")
    if value.startswith("/"):
        raise InvalidArgument("load image", what, detail=f"absolute path {value!r} refused")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument("load image", what,
                              detail=f"path {value!r} leaves the archive: refused")
    if not parts or "\0" in value:
        raise InvalidArgument("load image", what, detail=f"invalid path {value!r}")
    return "/".join(parts)


def member_key(name: str) -> str | None:
    """The lookup key of a tar member name (``./a//b`` -> ``a/b``); None for a name that
    could only be reached through ``..`` (never looked up)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def resolve_link(member: str, target: str, *, symbolic: bool) -> str | None:
    """The member a link names, inside the archive: a symlink's target is relative to its
    directory, a hard link's to the archive root. None when it would leave the archive or
    is absolute."""
    if not target or target.startswith("/"):
        return None
    base = member.split("/")[:-1] if symbolic else []
    parts = list(base)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or None


def blob_path_digest(path: str) -> str:
    """``sha256:<hex>`` when *path* is ``blobs/sha256/<hex>`` (it names its digest), else ""."""
    if path.startswith(_BLOB_PREFIX):
        encoded = path[len(_BLOB_PREFIX):]
        if len(encoded) == 64 and set(encoded) <= _HEX:
            return f"sha256:{encoded}"
    return ""


def config_path_digest(path: str) -> str:
    """The digest a config path claims: ``blobs/sha256/<hex>`` or Docker's ``<hex>.json``."""
    stem = path.removesuffix(".json")
    if path.endswith(".json") and "/" not in stem and len(stem) == 64 and set(stem) <= _HEX:
        return f"sha256:{stem}"
    return blob_path_digest(path)


def sniff_layer_media_type(head: bytes, what: str) -> str:
    """The OCI layer media type of a layer blob starting with *head* (docker-archive layer
    files carry no media type); xz and bzip2 layers are refused (never in an image)."""
    if head.startswith(_GZIP_MAGIC):
        return OCI_LAYER + "+gzip"
    if head.startswith(_ZSTD_MAGIC):
        return OCI_LAYER + "+zstd"
    if head.startswith((_XZ_MAGIC, _BZIP2_MAGIC)):
        raise Unsupported("load image", what, detail="xz or bzip2 layers are not supported: "
                          "plain tar, gzip and zstd are")
    return OCI_LAYER


def names_from_annotations(annotations: object) -> list[str]:
    """The image name an OCI index entry carries: ``io.containerd.image.name``, else
    ``org.opencontainers.image.ref.name`` when it is a full reference (``name:tag``,
    ``host/name``); a bare tag (``latest``, as ``skopeo copy ... oci:DIR:latest`` writes)
    names no repository, so the image loads untagged, as containerd does."""
    if not isinstance(annotations, dict):
        return []
    for key in (ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            if key == ANNOTATION_REF_NAME and not any(c in value for c in ":/@"):
                return []
            return [value]
    return []


def choose_platform(manifests: list[Any], architecture: str, os_name: str = "linux"
                    ) -> dict[str, Any]:
    """The entry of an image index for this platform; InvalidArgument listing the ones the
    index has when none fits."""
    offered = []
    for entry in manifests:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        if not isinstance(platform, dict):
            continue
        offered.append(f"{platform.get('os')}/{platform.get('architecture')}")
        if platform.get("os") == os_name and platform.get("architecture") == architecture:
            assert isinstance(entry, dict)
            return entry
    raise InvalidArgument("load image", "index", detail=f"no image for {os_name}/"
                          f"{architecture}; the index has {', '.join(offered) or 'none'}")


def _tar_number(field: bytes) -> int | None:
    """A tar header number: octal text, or base-256 (high bit set) as GNU writes."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def _pax_size(records: bytes) -> int | None:
    """The ``size`` record of a pax extended header, if any (``"%d size=%d\\n"``)."""
    size = None
    offset = 0
    while offset < len(records):
        length_text, space, _ = records[offset:offset + 24].partition(b" ")
        if not space or not length_text.isdigit() or int(length_text) <= 0:
            return size
        record = records[offset:offset + int(length_text)]
        key, _, value = record[len(length_text) + 1:].rstrip(b"\n").partition(b"=")
        if key == b"size" and value.isdigit():
            size = int(value)
        offset += int(length_text)
    return size


def check_tar_headers(stream: IO[bytes]) -> int:
    """Walk the headers of the seekable tar *stream*, refusing extended headers (pax, GNU
    long names) above MAX_TAR_META_BYTES, which ``tarfile`` would read into memory whole, and
    more than MAX_MEMBERS members. Returns the member count; stops quietly where the archive
    is malformed (``tarfile`` reports that, better)."""
    offset = 0
    members = 0
    next_size: int | None = None
    while True:
        stream.seek(offset)
        header = stream.read(512)
        if len(header) < 512 or header == bytes(512):
            return members
        size = _tar_number(header[124:136])
        if size is None:
            return members
        kind = header[156:157]
        if kind in (b"x", b"g", b"L", b"K"):
            if size > MAX_TAR_META_BYTES:
                raise InvalidArgument("load image", "archive", detail=f"a {size}-byte tar "
                                      f"extended header (limit {MAX_TAR_META_BYTES})")
            if kind == b"x":
                next_size = _pax_size(stream.read(size))
        else:
            members += 1
            if members > MAX_MEMBERS:
                raise InvalidArgument("load image", "archive",
                                      detail=f"more than {MAX_MEMBERS} members")
            if next_size is not None:
                size = next_size
            next_size = None
        offset += 512 + (size + 511) // 512 * 512


# --- save ------------------------------------------------------------------------------------

class SaveItem:
    """One image to save: its config blob, layer blobs (bottom first) and the names asked
    for (normalised; none when it was named by ID)."""

    __slots__ = ("architecture", "config_digest", "config_size", "image_id", "layers",
                 "names", "os")

    def __init__(self, image_id: str, config_digest: str, config_size: int,
                 layers: list[tuple[str, str, int]], architecture: str, os_name: str) -> None:
        self.image_id = image_id
        self.config_digest = config_digest
        self.config_size = config_size
        self.layers = layers
        self.names: list[str] = []
        self.architecture = architecture
        self.os = os_name


def plan_save(store: ImageStore, refs: list[str]) -> list[SaveItem]:
    """Resolve *refs* (each image once, in order) and check that every blob is there, before
    anything is written."""
    from tsubo.image.blobs import BlobStore
    from tsubo.image.reference import parse_reference

    if not refs:
        raise InvalidArgument("save", "", detail="requires at least one image")
    blobs = BlobStore(store.root)
    items: dict[str, SaveItem] = {}
    for ref in refs:
        image = store.get(ref)
        item = items.get(image.id)
        if item is None:
            config_digest = f"sha256:{image.id}"
            if not blobs.has(config_digest):
                raise NotFound("save image", ref, detail=f"its config blob {config_digest} "
                               "is not in the blob store")
            layers = []
            own_name = _normalised_name(ref)
            chosen = store.image_blobs(image, own_name if own_name in image.tags else "")
            for diff_id, (digest, media_type, _size) in zip(image.layers, chosen, strict=True):
                layer_compression(media_type, "save image", f"{ref} layer {digest}")
                if not blobs.has(digest):
                    raise NotFound("save image", ref, detail=f"the blob {digest} of layer "
                                   f"{diff_id} is not in the blob store")
                layers.append((digest, media_type, blobs.size(digest)))
            item = items[image.id] = SaveItem(
                image.id, config_digest, blobs.size(config_digest), layers,
                str(image.config.get("architecture", "")), str(image.config.get("os", "")))
        try:
            name = str(parse_reference(ref))
        except TsuboError:
            name = ""
        if name in image.tags and name not in item.names:
            item.names.append(name)
    return list(items.values())


def write_layout(output: _Output, store: ImageStore, items: list[SaveItem], fmt: str) -> None:
    """Write *items* as *fmt* through *output* (a tar stream or a directory)."""
    import hashlib

    from tsubo import jsonwire
    from tsubo.image.blobs import BlobStore
    from tsubo.image.reference import parse_reference

    blobs = BlobStore(store.root)
    output.directory("blobs")
    output.directory("blobs/sha256")
    index: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        for digest in (item.config_digest, *(digest for digest, _, _ in item.layers)):
            output.blob(_BLOB_PREFIX + digest.removeprefix("sha256:"), blobs.path(digest))
        manifest = oci_manifest(item.config_digest, item.config_size,
                                [(oci_layer_media_type(media_type), digest, size)
                                 for digest, media_type, size in item.layers])
        manifest_hex = hashlib.sha256(manifest).hexdigest()
        output.data(_BLOB_PREFIX + manifest_hex, manifest)
        descriptor: dict[str, Any] = {"mediaType": OCI_MANIFEST,
                                      "digest": f"sha256:{manifest_hex}", "size": len(manifest)}
        if item.architecture and item.os:
            descriptor["platform"] = {"architecture": item.architecture, "os": item.os}
        for name in item.names:
            index.append({**descriptor, "annotations": {ANNOTATION_CONTAINERD_NAME: name,
                                                        ANNOTATION_REF_NAME: name}})
        if not item.names:
            index.append(descriptor)
        references = [parse_reference(name) for name in item.names]
        docker_manifest.append({
            "Config": _BLOB_PREFIX + item.image_id,
            "RepoTags": [reference.familiar for reference in references],
            "Layers": [_BLOB_PREFIX + digest.removeprefix("sha256:")
                       for digest, _, _ in item.layers],
        })
        if item.layers:
            top = item.layers[-1][0].removeprefix("sha256:")
            for reference in references:
                if reference.tag:
                    repositories.setdefault(reference.familiar_name, {})[reference.tag] = top
    output.data("oci-layout", OCI_LAYOUT)
    output.data("index.json", jsonwire.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}).encode())
    if fmt == "docker-archive":
        output.data("manifest.json", jsonwire.dumps(docker_manifest).encode())
        if repositories:
            output.data("repositories", jsonwire.dumps(repositories).encode())


class _TarOutput:
    """A tar stream, written as it goes (``w|``): root-owned entries, mtime 0, each blob
    once."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        import tarfile

        self._tarfile = tarfile
        self.tar = tarfile.open(fileobj=fileobj, mode="w|",  # noqa: SIM115 - see close()
                                format=tarfile.PAX_FORMAT)
        self.written: set[str] = set()

    def _info(self, name: str, kind: bytes, size: int, mode: int) -> tarfile.TarInfo:
        info = self._tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mode = mode
        info.mtime = 0
        return info

    def directory(self, name: str) -> None:
        self.tar.addfile(self._info(name, self._tarfile.DIRTYPE, 0, 0o755))

    def data(self, name: str, data: bytes) -> None:
        import io

        if name not in self.written:
            self.written.add(name)
            self.tar.addfile(self._info(name, self._tarfile.REGTYPE, len(data), 0o644),
                             io.BytesIO(data))

    def blob(self, name: str, path: str) -> None:
        if name in self.written:
            return
        self.written.add(name)
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            self.tar.addfile(self._info(name, self._tarfile.REGTYPE, size, 0o644), source)

    def close(self) -> None:
        self.tar.close()


class _DirOutput:
    """Files under a new directory this process made (so its paths are trusted)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def directory(self, name: str) -> None:
        os.makedirs(os.path.join(self.root, name), mode=0o755, exist_ok=True)

    def _create(self, name: str) -> IO[bytes]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.fdopen(os.open(os.path.join(self.root, name), flags, 0o644), "wb")

    def data(self, name: str, data: bytes) -> None:
        if not os.path.exists(os.path.join(self.root, name)):
            with self._create(name) as target:
                target.write(data)

    def blob(self, name: str, path: str) -> None:
        if os.path.exists(os.path.join(self.root, name)):
            return
        with open(path, "rb") as source, self._create(name) as target:
            while chunk := source.read(CHUNK):
                target.write(chunk)


def save_images(store: ImageStore, refs: list[str], fmt: str, output: str,
                stdout: BinaryIO | None = None) -> None:
    """``tsubo save``: *refs* as *fmt* into the file or directory *output*, else to
    *stdout* (refused when it is a terminal, as Docker does)."""
    if fmt not in FORMATS:
        raise InvalidArgument("save", repr(fmt), detail="unknown format; supported: "
                              + ", ".join(FORMATS))
    if fmt == "oci-dir" and not output:
        raise InvalidArgument("save", "", detail="--format oci-dir needs -o DIRECTORY")
    items = plan_save(store, refs)
    if fmt == "oci-dir":
        _save_directory(store, items, output)
    elif output:
        _save_file(store, items, fmt, output)
    else:
        if stdout is None or os.isatty(stdout.fileno()):
            raise InvalidArgument("save", "", detail="cowardly refusing to write an archive "
                                  "to a terminal", hint="use -o FILE or redirect stdout")
        try:
            tar = _TarOutput(stdout)
            write_layout(tar, store, items, fmt)
            tar.close()
            stdout.flush()
        except OSError as error:
            raise TsuboError.from_os_error("save image", "stdout", error) from None


def _temp_sibling(path: str) -> str:
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.tsubo-{os.urandom(6).hex()}")


def _save_file(store: ImageStore, items: list[SaveItem], fmt: str, path: str) -> None:
    if os.path.isdir(path):
        raise InvalidArgument("save", path, detail="is a directory",
                              hint="--format oci-dir writes a directory")
    temp = _temp_sibling(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise TsuboError.from_os_error("save image", path, error) from None
    try:
        with os.fdopen(fd, "wb") as target:
            tar = _TarOutput(target)
            write_layout(tar, store, items, fmt)
            tar.close()
            target.flush()
            os.fsync(target.fileno())
        os.rename(temp, path)
    except BaseException as error:
        _unlink(temp)
        if isinstance(error, OSError):
            raise TsuboError.from_os_error("save image", path, error) from None
        raise


def _save_directory(store: ImageStore, items: list[SaveItem], path: str) -> None:
    import shutil

    if os.path.lexists(path) and (not os.path.isdir(path) or os.path.islink(path)
                                  or os.listdir(path)):
        raise InvalidArgument("save", path, detail="exists and is not an empty directory")
    temp = _temp_sibling(path)
    try:
        os.mkdir(temp, 0o755)
        write_layout(_DirOutput(temp), store, items, "oci-dir")
        os.rename(temp, path)  # replaces an empty directory
    except BaseException as error:
        shutil.rmtree(temp, ignore_errors=True)
        if isinstance(error, OSError):
            raise TsuboError.from_os_error("save image", path, error) from None
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- load: reading archives ------------------------------------------------------------------

class _TarArchive:
    """Members of a seekable (plain) tar, looked up by normalised name; nothing extracted."""

    def __init__(self, stream: IO[bytes], label: str) -> None:
        import tarfile

        self.label = label
        self.stream = stream  # closed with the archive
        check_tar_headers(stream)
        stream.seek(0)
        self.tar = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 - see close()
        self.files: dict[str, tarfile.TarInfo] = {}
        self.links: dict[str, str | None] = {}
        for member in self.tar:
            key = member_key(member.name)
            if key is None or member.isdir():
                continue
            if key in self.files or key in self.links:
                raise InvalidArgument("load image", repr(member.name),
                                      detail="the archive holds this name twice")
            if member.isreg():
                self.files[key] = member
            elif member.issym() or member.islnk():
                self.links[key] = resolve_link(key, member.linkname, symbolic=member.issym())

    def _find(self, path: str) -> tarfile.TarInfo | None:
        for _hop in range(MAX_LINK_HOPS):
            member = self.files.get(path)
            if member is not None:
                return member
            if path not in self.links:
                return None
            target = self.links[path]
            if target is None:
                raise InvalidArgument("load image", repr(path),
                                      detail="a link that leaves the archive")
            path = target
        raise InvalidArgument("load image", repr(path), detail="too many levels of links")

    def has(self, path: str) -> bool:
        return self._find(path) is not None

    def open(self, path: str, what: str) -> tuple[IO[bytes], int]:
        member = self._find(path)
        if member is None:
            raise NotFound("load image", what, detail=f"{path!r} is not in the archive")
        stream = self.tar.extractfile(member)
        assert stream is not None  # a regular file
        return stream, member.size

    def close(self) -> None:
        self.tar.close()
        self.stream.close()


class _DirArchive:
    """Files of a layout directory, opened without following a symlink on the way."""

    def __init__(self, path: str) -> None:
        self.label = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise TsuboError.from_os_error("load image", path, error) from None

    def _open(self, path: str) -> int:
        parts = path.split("/")
        directory = self.fd
        try:
            for part in parts[:-1]:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=directory)
                if directory != self.fd:
                    os.close(directory)
                directory = next_fd
            return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                           | os.O_CLOEXEC, dir_fd=directory)
        finally:
            if directory != self.fd:
                os.close(directory)

    def has(self, path: str) -> bool:
        try:
            os.close(self._open(path))
        except OSError:
            return False
        return True

    def open(self, path: str, what: str) -> tuple[IO[bytes], int]:
        import stat

        try:
            fd = self._open(path)
        except FileNotFoundError:
            raise NotFound("load image", what,
                           detail=f"{path!r} is not in {self.label}") from None
        except OSError as error:  # ELOOP: a symlink; ENOTDIR
            raise TsuboError.from_os_error("load image", f"{what} ({path})", error) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise InvalidArgument("load image", what, detail=f"{path!r} is not a file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size

    def close(self) -> None:
        os.close(self.fd)


def _prefixed(head: bytes, raw: IO[bytes]) -> IO[bytes]:
    """*raw* with the bytes already read from its start (*head*) put back."""
    import io

    class Prefixed(io.RawIOBase):
        def __init__(self) -> None:
            self.head = head

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            view = memoryview(buffer).cast("B")
            if self.head:
                count = min(len(view), len(self.head))
                view[:count] = self.head[:count]
                self.head = self.head[count:]
                return count
            data = raw.read(len(view))
            view[:len(data)] = data
            return len(data)

    return io.BufferedReader(Prefixed(), CHUNK)


def _decompressor(head: bytes, raw: IO[bytes], label: str) -> _Readable | None:
    """A decompressing reader when *head* starts a compressed stream, else None."""
    if head.startswith(_GZIP_MAGIC):
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(_XZ_MAGIC):
        import lzma

        return lzma.LZMAFile(raw)
    if head.startswith(_BZIP2_MAGIC):
        import bz2

        return bz2.BZ2File(raw)
    if head.startswith(_ZSTD_MAGIC):
        raise Unsupported("load image", label, detail="zstd-compressed archives are not "
                          "supported", hint="decompress it first (zstd -d)")
    return None


def _spool(source: _Readable, data_root: str, label: str) -> IO[bytes]:
    """Copy *source* into an unnamed temporary file in the data root (gone when closed,
    even after a crash); stops while the file system still has MIN_FREE_BYTES free."""
    import tempfile

    # O_TMPFILE where the kernel has it; closed by the caller (the archive)
    spool = tempfile.TemporaryFile(dir=data_root)  # noqa: SIM115
    try:
        copied = next_check = 0
        while chunk := source.read(CHUNK):
            spool.write(chunk)
            copied += len(chunk)
            if copied >= next_check:
                next_check = copied + 64 * CHUNK
                usage = os.statvfs(data_root)
                if usage.f_bavail * usage.f_frsize < MIN_FREE_BYTES:
                    raise TsuboError("load image", label, detail=f"stopped after {copied} "
                                     "bytes: the archive would fill the file system of "
                                     f"{data_root}")
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def _open_archive(data_root: str, source: str, stdin: BinaryIO | None) -> _Archive:
    """The archive at *source* (a file or directory), or on *stdin* when *source* is ""."""
    import stat

    if not source:
        if stdin is None or os.isatty(stdin.fileno()):
            raise InvalidArgument("load", "", detail="requested load from stdin, but stdin "
                                  "is a terminal", hint="use -i FILE or redirect stdin")
        label = "stdin"
        raw: IO[bytes] = stdin
    else:
        label = source
        try:
            info = os.stat(source)
        except OSError as error:
            raise TsuboError.from_os_error("load image", source, error) from None
        if stat.S_ISDIR(info.st_mode):
            return _DirArchive(source)
        try:
            raw = open(source, "rb")  # noqa: SIM115 - closed below or by the archive
        except OSError as error:
            raise TsuboError.from_os_error("load image", source, error) from None
    stream: IO[bytes] | None = None
    close_raw = bool(source)  # never stdin
    try:
        head = raw.read(8)
        if not head:
            raise InvalidArgument("load image", label, detail="empty input")
        decompressing = _decompressor(head, _prefixed(head, raw), label)
        if decompressing is not None:
            stream = _spool(decompressing, data_root, label)
        elif source and raw.seekable():
            raw.seek(0)
            stream, close_raw = raw, False
        else:
            stream = _spool(_prefixed(head, raw), data_root, label)
        return _TarArchive(stream, label)
    except BaseException:
        if stream is not None:
            stream.close()
        raise
    finally:
        if close_raw:
            raw.close()


# --- load: planning ----------------------------------------------------------------------------

class _Layer:
    __slots__ = ("diff_id", "digest", "media_type", "path", "size")

    def __init__(self, path: str, size: int, diff_id: str, digest: str = "",
                 media_type: str = "") -> None:
        self.path = path
        self.size = size
        self.diff_id = diff_id
        self.digest = digest  # "" when the archive does not say: hashed on the way in
        self.media_type = media_type  # "" for docker-archive files: sniffed


class _Plan:
    """One image to load: config bytes, layers (bottom first), names (normalised)."""

    __slots__ = ("config", "config_digest", "layers", "names")

    def __init__(self, config: bytes, config_digest: str, layers: list[_Layer],
                 names: list[str]) -> None:
        self.config = config
        self.config_digest = config_digest
        self.layers = layers
        self.names = names


def _sha256(data: bytes) -> str:
    import hashlib

    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _read(archive: _Archive, path: str, limit: int, what: str) -> bytes:
    stream, size = archive.open(path, what)
    try:
        if size > limit:
            raise InvalidArgument("load image", what, detail=f"{size} bytes, more than the "
                                  f"{limit} allowed")
        data = stream.read(size)
    finally:
        stream.close()
    if len(data) != size:
        raise InvalidArgument("load image", what, detail="truncated")
    return data


def _read_json(archive: _Archive, path: str, what: str, limit: int = MAX_JSON_BYTES
               ) -> object:
    from tsubo import jsonwire

    return jsonwire.loads(_read(archive, path, limit, what), what, operation="load image",
                          max_bytes=limit)


def _config(data: bytes, what: str) -> list[str]:
    from tsubo.image.store import parse_image_config

    try:
        return parse_image_config(data)[1]
    except InvalidArgument as error:
        raise InvalidArgument("load image", what, detail=error.message()) from None


def _name(text: object, what: str) -> str:
    from tsubo.image.reference import parse_reference

    if not isinstance(text, str):
        raise InvalidArgument("load image", what, detail=f"expected an image name, got {text!r}")
    try:
        return str(parse_reference(text))
    except InvalidArgument as error:
        raise InvalidArgument("load image", what, detail=error.message()) from None


def plan_docker_archive(archive: _Archive) -> list[_Plan]:
    """The images ``manifest.json`` lists, every path and count checked, configs read."""
    entries = _read_json(archive, "manifest.json", "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument("load image", "manifest.json",
                              detail="expected a non-empty list of images")
    plans: list[_Plan] = []
    for number, entry in enumerate(entries):
        where = f"manifest.json entry {number}"
        if not isinstance(entry, dict):
            raise InvalidArgument("load image", where, detail="expected an object")
        config_path = archive_path(entry.get("Config"), f"{where} Config")
        config = _read(archive, config_path, MAX_CONFIG_BYTES, f"config {config_path!r}")
        config_digest = _sha256(config)
        claimed = config_path_digest(config_path)
        if claimed and claimed != config_digest:
            raise InvalidArgument("load image", f"config {config_path!r}",
                                  detail=f"content digest is {config_digest}")
        diff_ids = _config(config, f"config {config_path!r}")
        paths = entry.get("Layers")
        if not isinstance(paths, list) or len(paths) > MAX_LAYERS:
            raise InvalidArgument("load image", f"{where} Layers",
                                  detail=f"expected a list of at most {MAX_LAYERS} paths")
        if len(paths) != len(diff_ids):
            raise InvalidArgument("load image", f"{where} Layers", detail=f"{len(paths)} "
                                  f"layers, but the config has {len(diff_ids)} diff_ids")
        layers = []
        for path_value, diff_id in zip(paths, diff_ids, strict=True):
            path = archive_path(path_value, f"{where} layer {path_value!r}")
            stream, size = archive.open(path, f"layer {path!r}")
            stream.close()
            layers.append(_Layer(path, size, diff_id, blob_path_digest(path)))
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list):
            raise InvalidArgument("load image", f"{where} RepoTags", detail="expected a list")
        names = [_name(tag, f"{where} RepoTags") for tag in tags]
        plans.append(_Plan(config, config_digest, layers, names))
    return plans


def _descriptor(value: object, what: str) -> dict[str, Any]:
    """An OCI descriptor with a valid digest and a size; InvalidArgument otherwise."""
    from tsubo.oci.image_spec import check_descriptor

    check_descriptor(value, "load image", what)
    assert isinstance(value, dict)
    return value


def _read_blob(archive: _Archive, descriptor: dict[str, Any], limit: int, what: str) -> bytes:
    digest = str(descriptor["digest"])
    path = _BLOB_PREFIX + digest.removeprefix("sha256:")
    if descriptor["size"] > limit:
        raise InvalidArgument("load image", what, detail=f"{descriptor['size']} bytes, more "
                              f"than the {limit} allowed")
    data = _read(archive, path, limit, f"{what} {digest}")
    if len(data) != descriptor["size"]:
        raise InvalidArgument("load image", f"{what} {digest}", detail=f"{len(data)} bytes, "
                              f"the descriptor says {descriptor['size']}")
    actual = _sha256(data)
    if actual != digest:
        raise InvalidArgument("load image", f"{what} {digest}",
                              detail=f"content digest is {actual}")
    return data


def _read_blob_json(archive: _Archive, descriptor: dict[str, Any], what: str
                    ) -> dict[str, Any]:
    from tsubo import jsonwire

    data = _read_blob(archive, descriptor, MAX_JSON_BYTES, what)
    value = jsonwire.loads(data, f"{what} {descriptor['digest']}", operation="load image",
                           max_bytes=MAX_JSON_BYTES)
    if not isinstance(value, dict):
        raise InvalidArgument("load image", f"{what} {descriptor['digest']}",
                              detail="expected an object")
    return value


def _manifest_of(archive: _Archive, descriptor: dict[str, Any], what: str
                 ) -> dict[str, Any]:
    """The image manifest an index.json entry names; an image index (multi-platform) is
    followed once, to this host's platform."""
    from tsubo.image.store import _architecture

    document = _read_blob_json(archive, descriptor, what)
    media_type = document.get("mediaType") or descriptor.get("mediaType")
    if media_type in INDEX_TYPES or (media_type is None and "manifests" in document):
        manifests = document.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidArgument("load image", what, detail="an index without manifests")
        chosen = _descriptor(choose_platform(manifests, _architecture()), f"{what} entry")
        document = _read_blob_json(archive, chosen, what)
        media_type = document.get("mediaType") or chosen.get("mediaType")
    if media_type not in (*IMAGE_MANIFEST_TYPES, None) or "layers" not in document:
        raise Unsupported("load image", what, detail=f"not an image manifest ({media_type})")
    return document


def plan_oci_layout(archive: _Archive) -> list[_Plan]:
    """The images ``index.json`` names (descriptors, digests and sizes checked)."""
    from tsubo import jsonwire

    if archive.has("oci-layout"):
        layout = _read(archive, "oci-layout", 4096, "oci-layout")
        try:
            version = jsonwire.loads(layout, "oci-layout", max_bytes=4096)
        except ValueError:
            version = None
        if not isinstance(version, dict) or version.get("imageLayoutVersion") != "1.0.0":
            raise Unsupported("load image", "oci-layout",
                              detail="expected imageLayoutVersion 1.0.0")
    index = _read_json(archive, "index.json", "index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise InvalidArgument("load image", "index.json", detail="no manifests")
    plans: dict[str, _Plan] = {}
    for number, entry in enumerate(manifests):
        where = f"index.json entry {number}"
        descriptor = _descriptor(entry, where)
        names = [_name(name, f"{where} annotation") for name in
                 names_from_annotations(descriptor.get("annotations"))]
        manifest = _manifest_of(archive, descriptor, f"{where} manifest")
        config_descriptor = _descriptor(manifest.get("config"), f"{where} config")
        if config_descriptor.get("mediaType") not in (*CONFIG_TYPES, None):
            raise Unsupported("load image", f"{where} config", detail="not an image config "
                              f"({config_descriptor.get('mediaType')})")
        config_digest = str(config_descriptor["digest"])
        if config_digest in plans:
            plans[config_digest].names += [n for n in names
                                           if n not in plans[config_digest].names]
            continue
        config = _read_blob(archive, config_descriptor, MAX_CONFIG_BYTES, f"{where} config")
        diff_ids = _config(config, f"{where} config {config_digest}")
        layer_descriptors = manifest.get("layers")
        if not isinstance(layer_descriptors, list) or len(layer_descriptors) > MAX_LAYERS:
            raise InvalidArgument("load image", f"{where} manifest",
                                  detail=f"expected a list of at most {MAX_LAYERS} layers")
        if len(layer_descriptors) != len(diff_ids):
            count = len(layer_descriptors)
            raise InvalidArgument("load image", f"{where} manifest", detail=f"{count} layers, "
                                  f"but the config has {len(diff_ids)} diff_ids")
        layers = []
        for position, (value, diff_id) in enumerate(
                zip(layer_descriptors, diff_ids, strict=True)):
            what = f"{where} layer {position}"
            layer = _descriptor(value, what)
            media_type = layer.get("mediaType")
            if not isinstance(media_type, str):
                raise InvalidArgument("load image", what, detail="no media type")
            layer_compression(media_type, "load image", what)  # exactly the layer types
            digest = str(layer["digest"])
            path = _BLOB_PREFIX + digest.removeprefix("sha256:")
            stream, size = archive.open(path, f"{what} {digest}")
            stream.close()
            if size != layer["size"]:
                raise InvalidArgument("load image", f"{what} {digest}", detail=f"{size} "
                                      f"bytes in the archive, the manifest says {layer['size']}")
            layers.append(_Layer(path, size, diff_id, digest, media_type))
        plans[config_digest] = _Plan(config, config_digest, layers, names)
    return list(plans.values())


# --- load: storing -----------------------------------------------------------------------------

class LoadedImage:
    __slots__ = ("id", "names")

    def __init__(self, image_id: str, names: list[str]) -> None:
        self.id = image_id
        self.names = names


def _hash_member(archive: _Archive, layer: _Layer) -> str:
    import hashlib

    digest = hashlib.sha256()
    stream, _size = archive.open(layer.path, f"layer {layer.path!r}")
    with stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _copy_layer(blobs: BlobStore, archive: _Archive, layer: _Layer, digest: str) -> None:
    """Copy the layer file into the blob store through a verified writer; on any failure
    the partial file goes too (a load is not resumed)."""
    writer = blobs.writer(digest, layer.size)
    try:
        writer.reset()
        stream, _size = archive.open(layer.path, f"layer {layer.path!r}")
        with stream:
            while chunk := stream.read(CHUNK):
                writer.write(chunk)
        writer.commit()
    except BaseException as error:
        writer.close()
        _unlink(blobs.partial_path(digest))
        if isinstance(error, InvalidArgument) and error.operation == "verify blob":
            raise InvalidArgument("load image", f"layer {layer.path!r}",
                                  detail=error.message()) from None
        raise


def _store_layer(store: ImageStore, archive: _Archive, layer: _Layer) -> tuple[str, str]:
    """Put one layer's blob in the blob store and unpack it (its diff_id checked)."""
    from tsubo.image.blobs import BlobStore

    blobs = BlobStore(store.root)
    digest = layer.digest or _hash_member(archive, layer)
    if not blobs.has(digest):
        _copy_layer(blobs, archive, layer, digest)
    media_type = layer.media_type
    if not media_type:
        with open(blobs.path(digest), "rb") as blob:
            media_type = sniff_layer_media_type(blob.read(8), f"layer {layer.path!r}")
    store.ensure_layer(digest, media_type, layer.diff_id)
    return digest, media_type


def _unpacked_layers(store: ImageStore) -> set[str]:
    rows = store.db.connection.execute("SELECT diff_id FROM layers").fetchall()
    return {str(row[0]) for row in rows if os.path.isdir(store.layer_path(str(row[0])))}


def _forget_layers(store: ImageStore, diff_ids: set[str]) -> None:
    """Remove the layers (row, directory) among *diff_ids* that no image uses."""
    import shutil

    used = {diff_id for image in store.images() for diff_id in image.layers}
    for diff_id in diff_ids - used:
        with store.db.transaction() as connection:
            connection.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
        shutil.rmtree(store.layer_path(diff_id), ignore_errors=True)


def store_images(store: ImageStore, archive: _Archive, plans: list[_Plan]) -> list[LoadedImage]:
    """Store every layer first, then register the images; on a failure, the layers this
    call unpacked are removed again (see the module docstring)."""
    present = _unpacked_layers(store)
    stored: dict[str, tuple[str, str]] = {}
    try:
        for plan in plans:
            for layer in plan.layers:
                if layer.diff_id in stored:
                    continue
                if layer.diff_id in present:
                    digest, media_type, _size = store.layer_blob(layer.diff_id)
                    stored[layer.diff_id] = (digest, media_type)
                else:
                    stored[layer.diff_id] = _store_layer(store, archive, layer)
        loaded = []
        for plan in plans:
            image = store.add_image(plan.config, [stored[layer.diff_id] for layer in
                                                  plan.layers], plan.names)
            loaded.append(LoadedImage(image.id, plan.names))
        return loaded
    except BaseException:
        _forget_layers(store, {layer.diff_id for plan in plans for layer in plan.layers}
                       - present)
        raise


def load_images(store: ImageStore, source: str, stdin: BinaryIO | None = None
                ) -> list[LoadedImage]:
    """``tsubo load``: the images of the archive or layout at *source* (a file or a
    directory), else on *stdin*."""
    with store.adding():
        return _load_images(store, source, stdin)


def _load_images(store: ImageStore, source: str, stdin: BinaryIO | None
                 ) -> list[LoadedImage]:
    import lzma
    import tarfile
    import zlib

    label = source or "stdin"
    try:
        archive = _open_archive(store.root, source, stdin)
        try:
            if archive.has("manifest.json"):
                plans = plan_docker_archive(archive)
            elif archive.has("index.json"):
                plans = plan_oci_layout(archive)
            else:
                raise InvalidArgument("load image", label, detail="neither a Docker archive "
                                      "(manifest.json) nor an OCI layout (index.json)")
            return store_images(store, archive, plans)
        finally:
            archive.close()
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as error:
        raise InvalidArgument("load image", label,
                              detail=f"corrupt or truncated archive: {error}") from None
    except TsuboError:
        raise
    except OSError as error:
        if error.errno is None:  # raised by gzip or bz2 about the data, not by the kernel
            raise InvalidArgument("load image", label,
                                  detail=f"corrupt or truncated archive: {error}") from None
        raise TsuboError.from_os_error("load image", label, error) from None


def iter_loaded_lines(loaded: list[LoadedImage]) -> Iterator[str]:
    """What ``docker load`` prints: ``Loaded image: NAME`` for each name, ``Loaded image ID:
    sha256:...`` for an image without one."""
    from tsubo.image.reference import parse_reference

    for image in loaded:
        if not image.names:
            yield f"Loaded image ID: sha256:{image.id}"
        for name in image.names:
            yield f"Loaded image: {parse_reference(name).familiar}"


def _normalised_name(ref: str) -> str:
    from tsubo.errors import TsuboError
    from tsubo.image.reference import parse_reference

    try:
        return str(parse_reference(ref))
    except TsuboError:
        return ""
