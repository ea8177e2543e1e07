"""A container's changes as an image layer: its overlay upper directory -> an OCI layer tar.

This module owns turning a directory tree into a layer tar, and the A/C/D change list of
``docker diff``; ``commit``, ``export``, ``diff`` and every layer ``build`` makes use it.

An overlay upper directory records a container's changes in overlayfs form. The OCI image
spec's form differs only in deletions:

- a whiteout (a 0:0 character device ``NAME``) becomes an empty file ``.wh.NAME``;
- an opaque directory (xattr ``trusted.overlay.opaque=y``: everything below it in the lower
  layers is hidden) becomes its directory entry followed by ``.wh..wh..opq``.

``trusted.overlay.*`` xattrs are never written to a layer. A tree with overlay redirects or
metacopy files (``trusted.overlay.redirect``/``metacopy``: a renamed directory, a file whose
data is still in a lower layer) would make an incomplete layer; tsubo mounts without
``redirect_dir`` and ``metacopy``, and such a tree is refused rather than written wrong.

Reproducible output: entries sorted by name (a directory before what it holds), numeric
owners without names, and with *timestamp* (``--timestamp``/``SOURCE_DATE_EPOCH``) every
mtime set to it. Files with several links inside the tree become one file and hard links.

The tree is written by a container, so it is hostile (ARCHITECTURE.md rule 6): it is walked
through directory fds opened ``O_NOFOLLOW|O_DIRECTORY`` relative to their parent, entries are
lstat'ed through the parent fd, files are opened ``O_NOFOLLOW|O_NONBLOCK`` and read only
when the opened fd is the regular file that was listed (a FIFO never blocks, a device is
never read), and symlinks are read, never followed.
"""

from __future__ import annotations

import os
import stat

from tsubo.errors import TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Callable, Iterator
    from typing import IO

    from tsubo.image.store import ImageStore

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
#: overlay xattrs that mean the upper tree alone does not hold the change
_INCOMPLETE_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20
#: deeper trees are refused (each level holds one fd)
MAX_DEPTH = 512


class Entry:
    """One entry of a walked tree: its path in the layer (``a/b``), lstat, and the fd of
    its parent directory (valid while the walk is at it)."""

    __slots__ = ("info", "name", "parent_fd", "path")

    def __init__(self, path: str, name: str, info: os.stat_result, parent_fd: int) -> None:
        self.path = path
        self.name = name
        self.info = info
        self.parent_fd = parent_fd


def is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def walk(root: str, skip: Callable[[str, os.stat_result], bool] | None = None
         ) -> Iterator[tuple[Entry, int]]:
    """Every entry under *root*, sorted, depth first, a directory before its content;
    for a directory, also its own fd (else -1), open until the walk moves past it.
    Entries *skip(path, lstat)* is true for are left out, with what they hold."""
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        yield from _walk(root_fd, "", 0, skip)
    finally:
        os.close(root_fd)


def _walk(dir_fd: int, prefix: str, depth: int,
          skip: Callable[[str, os.stat_result], bool] | None
          ) -> Iterator[tuple[Entry, int]]:
    if depth > MAX_DEPTH:
        raise TsuboError("read tree", prefix, detail=f"nested deeper than {MAX_DEPTH} levels")
    for name in sorted(os.listdir(dir_fd)):
        try:
            info = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue
        entry = Entry(f"{prefix}{name}", name, info, dir_fd)
        if skip is not None and skip(entry.path, info):
            continue
        if not stat.S_ISDIR(info.st_mode):
            yield entry, -1
            continue
        try:
            child_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as error:
            raise TsuboError.from_os_error("read directory", entry.path, error) from None
        try:
            yield entry, child_fd
            yield from _walk(child_fd, f"{entry.path}/", depth + 1, skip)
        finally:
            os.close(child_fd)


def _xattrs(fd: int, path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    found = {}
    for attribute in sorted(names):
        if attribute in _INCOMPLETE_XATTRS:
            raise Unsupported("make layer", path, detail=f"{attribute} is set: the "
                              "upper directory alone does not hold this change",
                              hint="mount overlay without redirect_dir and metacopy")
        try:
            found[attribute] = os.getxattr(fd, attribute)
        except OSError:
            continue
    return found


class TarWriter:
    """Writes walked entries to a tar stream (PAX), deterministically."""

    def __init__(self, fileobj: IO[bytes], timestamp: int | None) -> None:
        import tarfile

        # closed by close(): the stream outlives this call
        self.tar = tarfile.open(fileobj=fileobj, mode="w|",  # noqa: SIM115
                                format=tarfile.PAX_FORMAT)
        self.timestamp = timestamp
        self.links: dict[tuple[int, int], str] = {}

    def _info(self, path: str, info: os.stat_result | None, kind: bytes) -> tarfile.TarInfo:
        import tarfile

        member = tarfile.TarInfo(path)
        member.type = kind
        if info is not None:
            member.mode = stat.S_IMODE(info.st_mode)
            member.uid, member.gid = info.st_uid, info.st_gid
            member.mtime = int(info.st_mtime) if self.timestamp is None else self.timestamp
        else:
            member.mode = 0o644
            member.mtime = self.timestamp or 0
        member.uname = member.gname = ""
        return member

    def whiteout(self, path: str, info: os.stat_result | None = None) -> None:
        """``.wh.NAME`` for *path*, or ``DIR/.wh..wh..opq`` when *path* ends so."""
        import tarfile

        directory, _, name = path.rpartition("/")
        prefix = f"{directory}/" if directory else ""
        shown = path if name == OPAQUE_WHITEOUT else f"{prefix}{WHITEOUT_PREFIX}{name}"
        member = self._info(shown, info, tarfile.REGTYPE)
        member.mode = 0
        member.uid = member.gid = 0
        self.tar.addfile(member)

    def add(self, entry: Entry, dir_fd: int) -> None:
        """One entry (not a whiteout); *dir_fd* is its fd when it is a directory."""
        import tarfile

        info, path = entry.info, entry.path
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            member = self._info(path, info, tarfile.DIRTYPE)
            self._set_xattrs(member, _xattrs(dir_fd, path))
            self.tar.addfile(member)
        elif stat.S_ISLNK(mode):
            member = self._info(path, info, tarfile.SYMTYPE)
            member.linkname = os.readlink(entry.name, dir_fd=entry.parent_fd)
            self.tar.addfile(member)
        elif stat.S_ISREG(mode):
            self._add_file(entry)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            member = self._info(path, info, tarfile.CHRTYPE if stat.S_ISCHR(mode)
                                else tarfile.BLKTYPE)
            member.devmajor, member.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
            self.tar.addfile(member)
        elif stat.S_ISFIFO(mode):
            self.tar.addfile(self._info(path, info, tarfile.FIFOTYPE))
        # sockets have no tar form: skipped, as Docker and buildah do

    def _add_file(self, entry: Entry) -> None:
        import tarfile

        info = entry.info
        key = (info.st_dev, info.st_ino)
        if info.st_nlink > 1 and key in self.links:
            member = self._info(entry.path, info, tarfile.LNKTYPE)
            member.linkname = self.links[key]
            self.tar.addfile(member)
            return
        try:
            fd = os.open(entry.name, _FILE_FLAGS, dir_fd=entry.parent_fd)
        except OSError as error:
            raise TsuboError.from_os_error("read file", entry.path, error) from None
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != key or not stat.S_ISREG(opened.st_mode):
                raise TsuboError("read file", entry.path, detail="changed while being read")
            member = self._info(entry.path, opened, tarfile.REGTYPE)
            member.size = opened.st_size
            self._set_xattrs(member, _xattrs(fd, entry.path))
            with os.fdopen(os.dup(fd), "rb") as source:
                self.tar.addfile(member, _Exact(source, opened.st_size, entry.path))
        finally:
            os.close(fd)
        if info.st_nlink > 1:
            self.links[key] = entry.path

    @staticmethod
    def _set_xattrs(member: tarfile.TarInfo, xattrs: dict[str, bytes]) -> None:
        headers = {f"SCHILY.xattr.{attribute}": value.decode("utf-8", "surrogateescape")
                   for attribute, value in xattrs.items()
                   if not attribute.startswith(OVERLAY_XATTR_PREFIX)}
        if headers:
            member.pax_headers = {**member.pax_headers, **headers}

    def close(self) -> None:
        self.tar.close()


class _Exact:
    """A file that must give exactly *size* bytes (tarfile trusts the header size)."""

    def __init__(self, source: IO[bytes], size: int, path: str) -> None:
        self.source = source
        self.left = size
        self.path = path

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        data = self.source.read(n)
        if len(data) < n:
            raise TsuboError("read file", self.path, detail="shrank while being read")
        self.left -= len(data)
        return data


def write_upper_layer(upper: str, out: IO[bytes], *, timestamp: int | None = None,
                      skip: Callable[[str, os.stat_result], bool] | None = None) -> None:
    """The overlay upper directory *upper* as an OCI layer tar on *out* (see the module
    docstring). *skip(path, lstat)* leaves an entry (and, for a directory, what it holds)
    out: the mount points a runtime made for a RUN step."""
    writer = TarWriter(out, timestamp)
    for entry, dir_fd in walk(upper, skip):
        if is_whiteout(entry.info):
            writer.whiteout(entry.path, entry.info)
            continue
        writer.add(entry, dir_fd)
        if dir_fd >= 0 and _opaque(dir_fd):
            writer.whiteout(f"{entry.path}/{OPAQUE_WHITEOUT}", entry.info)
    writer.close()


def write_tree(root: str, out: IO[bytes], *, timestamp: int | None = None) -> None:
    """A plain directory tree (``export``'s merged root) as a tar on *out*."""
    writer = TarWriter(out, timestamp)
    for entry, dir_fd in walk(root):
        writer.add(entry, dir_fd)
    writer.close()


def _opaque(dir_fd: int) -> bool:
    try:
        return os.getxattr(dir_fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


# --- docker diff ------------------------------------------------------------------------------

def changes(upper: str, lower_dirs: list[str],
            skip: Callable[[str, os.stat_result], bool] | None = None
            ) -> list[tuple[str, str]]:
    """``docker diff``: ``(kind, /path)`` sorted by path, kind ``A`` added, ``C`` changed
    (it exists in a lower layer), ``D`` deleted (a whiteout; below an opaque directory,
    every lower entry it hides)."""
    found: list[tuple[str, str]] = []
    for entry, dir_fd in walk(upper, skip):
        path = f"/{entry.path}"
        if is_whiteout(entry.info):
            if in_lower(lower_dirs, entry.path):
                found.append(("D", path))
            continue
        found.append(("C" if in_lower(lower_dirs, entry.path) else "A", path))
        if dir_fd >= 0 and _opaque(dir_fd):
            present = set(os.listdir(dir_fd))
            for name in sorted(_lower_names(lower_dirs, entry.path) - present):
                found.append(("D", f"{path}/{name}"))
    return sorted(found, key=lambda change: change[1])


def in_lower(lower_dirs: list[str], path: str) -> bool:
    """Whether *path* is visible in the stack of *lower_dirs* (top first)."""
    parts = path.split("/")
    for layer in lower_dirs:
        info = lstat_in(layer, parts)
        if info is None:
            if _hidden_below(layer, parts):
                return False
            continue
        return not is_whiteout(info)
    return False


def _hidden_below(layer: str, parts: list[str]) -> bool:
    """Whether *layer* hides *parts* from the layers under it: a parent whited out, or an
    opaque parent directory."""
    for depth in range(1, len(parts)):
        info = lstat_in(layer, parts[:depth])
        if info is None:
            continue
        if is_whiteout(info) or not stat.S_ISDIR(info.st_mode):
            return True
        fd = _open_in(layer, parts[:depth])
        if fd >= 0:
            try:
                if _opaque(fd):
                    return True
            finally:
                os.close(fd)
    return False


def _lower_names(lower_dirs: list[str], path: str) -> set[str]:
    names: set[str] = set()
    parts = path.split("/")
    for layer in lower_dirs:
        fd = _open_in(layer, parts)
        if fd < 0:
            if _hidden_below(layer, parts):
                break
            continue
        try:
            for name in os.listdir(fd):
                if in_lower(lower_dirs, f"{path}/{name}"):
                    names.add(name)
            opaque = _opaque(fd)
        finally:
            os.close(fd)
        if opaque:
            break
    return names


def _open_in(root: str, parts: list[str]) -> int:
    """A directory fd of *parts* under *root* through real directories only, else -1."""
    from tsubo.kernel.untrusted import open_directory_nofollow

    try:
        return open_directory_nofollow(root, "/".join(parts))
    except OSError:
        return -1


def lstat_in(root: str, parts: list[str]) -> os.stat_result | None:
    fd = _open_in(root, parts[:-1])
    if fd < 0:
        return None
    try:
        return os.lstat(parts[-1], dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)


# --- into the image store ---------------------------------------------------------------------

def store_layer(store: ImageStore, write: Callable[[IO[bytes]], None]) -> str:
    """Write a layer tar with *write*, store its blob and unpack it as a layer of *store*;
    its diff_id (the tar is stored uncompressed: digest and diff_id are one)."""
    import hashlib
    import tempfile
    from typing import cast

    from tsubo.image.blobs import BlobStore
    from tsubo.oci.image_spec import OCI_LAYER

    blobs = BlobStore(store.root)
    os.makedirs(blobs.ingest_dir, mode=0o700, exist_ok=True)
    with tempfile.TemporaryFile(dir=blobs.ingest_dir) as spool:
        hasher = hashlib.sha256()
        write(cast("IO[bytes]", _Hashing(spool, hasher)))
        digest = f"sha256:{hasher.hexdigest()}"
        added = not blobs.has(digest)
        if added:
            spool.seek(0)
            writer = blobs.writer(digest)
            try:
                writer.reset()
                while chunk := spool.read(_CHUNK):
                    writer.write(chunk)
                writer.commit()
            except BaseException:
                writer.discard()
                raise
    try:
        return store.ensure_layer(digest, OCI_LAYER, digest)
    except BaseException:
        if added:
            blobs.delete(digest)
        raise


class _Hashing:
    """A write-only file that hashes what passes through it."""

    def __init__(self, target: IO[bytes], hasher: hashlib._Hash) -> None:
        self.target = target
        self.hasher = hasher

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


if TYPE_CHECKING:
    import hashlib
