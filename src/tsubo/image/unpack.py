"""Unpack one image layer (a tar stream) into its own directory, safely and atomically.

``tarfile`` only parses the headers; it never extracts: its path filters were bypassed
several times (CVE-2007-4559, CVE-2023-24329 class, CVE-2025-4517). Every entry is written
through file descriptors instead: the layer root is opened with ``O_DIRECTORY``, each parent
component is opened with ``O_PATH|O_NOFOLLOW|O_DIRECTORY`` relative to the previous one, and
the final entry is created with ``dir_fd`` and exclusive, no-follow calls. A symlink in a
parent path therefore fails (``ENOTDIR``) instead of being followed out of the root
(CVE-2018-15664, containerd's TestBreakouts). Absolute entry names are made relative; a
``..`` that would leave the root rejects the layer.

Whiteouts are turned into overlayfs form as the OCI image spec says: ``.wh.NAME`` becomes
a 0:0 character device ``NAME``, ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its
directory. ``trusted.overlay.*`` xattrs coming from the tarball are dropped, so a layer
cannot forge overlay metadata.

Compression comes from the media type (gzip, zstd or none) unless the first bytes say
otherwise: a gzip or zstd magic number wins, as containerd sniffs, so a "plain" tar that
is really compressed still unpacks (a tar cannot start with either: its first bytes are an
entry name). zstd goes through libzstd (``image/zstd.py``), gzip through :mod:`gzip`.

The layer is written to ``<parent>/.tmp-<random>/`` and renamed to ``<parent>/<hex of
diff_id>/`` only when complete and verified: a half-unpacked layer is never visible. The
diff_id (sha256 of the uncompressed stream) is computed while reading.

Memory is bounded whatever the number of entries: each entry is handled and dropped as it
is read (tarfile would otherwise keep every ``TarInfo`` in ``TarFile.members``: ~0.5 KB an
entry, 424 MB for 900k files), at most ``_DIR_FDS_MAX`` directory fds are cached, and the
metadata of directories, applied at the end, stays in a dict only up to
``DIR_META_IN_MEMORY`` directories; past that it moves to a scratch SQLite file in
``<parent>/.tmp-<random>.dirs/`` (removed with the temp dir; ``image prune`` removes what a
killed unpack left), which also does the deepest-first ordering on disk.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from tsubo.errors import InvalidArgument, TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    import tarfile
    from collections.abc import Iterator
    from typing import Protocol

    class _Readable(Protocol):
        def read(self, n: int = -1, /) -> bytes: ...

    class _Hasher(Protocol):
        def update(self, data: bytes, /) -> None: ...
        def hexdigest(self) -> str: ...


#: read and write in chunks of this size: bounded memory whatever the layer holds
CHUNK = 1 << 20

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
#: xattrs in this namespace configure overlayfs itself: never taken from a layer
OVERLAY_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."

O_PATH = getattr(os, "O_PATH", 0o10000000)
_PATH_DIR = O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
#: tarfile's stream buffer: each of its reads copies the whole buffer (``_Stream.__read``
#: joins and slices it), so a large one makes every 512-byte header cost a megabyte copy
_TAR_BUFFER = 1 << 16
#: directory fds a layer writer keeps open at most (then it starts over)
_DIR_FDS_MAX = 256
#: directories whose metadata is kept in memory (~0.3 KB each); more go to a SQLite file
DIR_META_IN_MEMORY = 8192
#: errnos meaning "the kernel or filesystem does not allow this xattr here": skipped
_XATTR_SKIP = (1, 13, 95)  # EPERM, EACCES, EOPNOTSUPP/ENOTSUP

_GZIP_SUFFIXES = ("+gzip", ".gzip", ".tar.gz")
_ZSTD_SUFFIXES = ("+zstd", ".zstd")
_TAR_SUFFIXES = ("+tar", ".tar", "/tar", ".v1.tar")


@dataclass(frozen=True)
class UnpackResult:
    """An unpacked layer: its diff_id, the uncompressed size in bytes, its directory."""

    diff_id: str
    size: int
    path: str


class _Reject(Exception):
    """An entry that must not be unpacked; turned into InvalidArgument naming it."""


class _HashingReader:
    """A read-only stream that hashes and counts every byte read through it."""

    def __init__(self, raw: _Readable, hasher: _Hasher) -> None:
        self._raw = raw
        self._hasher = hasher
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._hasher.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, so the digest covers the padding after the tar's last entry."""
        while self.read(CHUNK):
            pass


def compression_of(media_type: str) -> str:
    """``"gzip"``, ``"zstd"`` or ``"none"`` for a layer media type (the OCI ones, their
    ``nondistributable`` variants and Docker's); unknown types are refused."""
    if media_type.endswith(_GZIP_SUFFIXES):
        return "gzip"
    if media_type.endswith(_ZSTD_SUFFIXES):
        return "zstd"
    if media_type.endswith(_TAR_SUFFIXES):
        return "none"
    raise Unsupported("unpack layer", media_type, detail="unknown layer media type")


def sniff_compression(head: bytes) -> str | None:
    """``"gzip"`` or ``"zstd"`` when the first bytes of a blob carry that magic number."""
    from tsubo.image.zstd import is_zstd

    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if is_zstd(head):
        return "zstd"
    return None


def clean_entry_path(name: str) -> tuple[str, ...]:
    """Split a tar entry name into components inside the root.

    Leading ``/`` is dropped (absolute names are made relative), ``.`` and empty parts are
    dropped, ``..`` pops a component; a ``..`` that would leave the root raises ``_Reject``.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _Reject("path leaves the layer root")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def unpack_layer(
    blob_path: str,
    media_type: str,
    target_parent: str,
    layer_digest: str,
    expected_diff_id: str | None = None,
) -> UnpackResult:
    """Unpack the layer blob at *blob_path* into ``target_parent/<hex of diff_id>/``.

    Raises InvalidArgument naming *layer_digest* (and the entry) for a malicious, corrupt
    or truncated layer or a diff_id other than *expected_diff_id*; nothing is kept then.
    If the directory exists already (the same layer unpacked before) it is returned as is.
    """
    import gzip
    import hashlib

    from tsubo.image.zstd import ZstdReader

    compression = compression_of(media_type)
    hasher = hashlib.sha256()
    temp = os.path.join(target_parent, f".tmp-{os.urandom(8).hex()}")
    try:
        raw = open(blob_path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as error:
        raise TsuboError.from_os_error("unpack layer", f"{layer_digest}: {blob_path}", error) \
            from error
    root_fd = -1
    writer: _LayerWriter | None = None
    decompressor: ZstdReader | None = None
    try:
        os.mkdir(temp, 0o700)
        root_fd = os.open(temp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        compression = sniff_compression(raw.peek(4)[:4]) or compression
        stream: _Readable = raw
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif compression == "zstd":
            stream = decompressor = ZstdReader(raw)
        reader = _HashingReader(stream, hasher)
        writer = _LayerWriter(root_fd, layer_digest, DirMetadata(f"{temp}.dirs"))
        _extract(reader, writer, layer_digest)
        diff_id = f"sha256:{hasher.hexdigest()}"
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise InvalidArgument(
                "unpack layer", layer_digest,
                detail=f"diff_id is {diff_id}, the image config says {expected_diff_id}",
            )
        return UnpackResult(diff_id, reader.size, _install(temp, target_parent, diff_id,
                                                           writer))
    except BaseException:
        if writer is not None:
            writer.close()
        remove_tree(temp)
        raise
    finally:
        if writer is not None:
            writer.dir_meta.discard()
        if root_fd >= 0:
            os.close(root_fd)
        if decompressor is not None:
            decompressor.close()
        raw.close()


def _extract(reader: _HashingReader, writer: _LayerWriter, layer_digest: str) -> None:
    """Every entry of the tar stream *reader* through *writer*, then the rest of the
    stream (hashed: the diff_id covers the whole blob); a bad stream is InvalidArgument."""
    import tarfile
    import zlib

    from tsubo.image.zstd import ZstdError

    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_TAR_BUFFER) as archive:  # type: ignore[call-overload]
            # next(), not iteration: each TarInfo is dropped from ``members`` (which
            # tarfile keeps for getmembers()) as soon as it is read
            while (member := archive.next()) is not None:
                archive.members.clear()
                writer.add(member, archive)
        writer.close()
        reader.drain()
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise InvalidArgument("unpack layer", layer_digest,
                              detail=f"corrupt or truncated layer: {error}") from error
    except ZstdError as error:
        raise InvalidArgument("unpack layer", layer_digest,
                              detail=f"corrupt or truncated layer: zstd {error.detail}") \
            from error
    except OSError as error:  # gzip.BadGzipFile, or reading the blob failed
        raise InvalidArgument("unpack layer", layer_digest,
                              detail=f"corrupt or truncated layer: {error}") from error


def _install(temp: str, target_parent: str, diff_id: str, writer: _LayerWriter) -> str:
    """Move the complete layer *temp* to its place by diff_id (or drop it: the same layer
    is there already); its path."""
    final = os.path.join(target_parent, diff_id.removeprefix("sha256:"))
    if os.path.isdir(final):
        remove_tree(temp)
        return final
    writer.finish()
    try:
        os.rename(temp, final)
    except OSError:
        if not os.path.isdir(final):  # not "someone else unpacked it meanwhile"
            raise
        remove_tree(temp)
    return final


def remove_tree(path: str) -> None:
    """Remove a (temp) layer dir without following symlinks, even with read-only dirs."""
    import shutil

    if not os.path.lexists(path):
        return
    if os.geteuid() != 0:
        _make_dirs_writable(path)
    shutil.rmtree(path, ignore_errors=True)


def _make_dirs_writable(path: str) -> None:
    os.chmod(path, 0o700, follow_symlinks=False)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _make_dirs_writable(entry.path)


#: a directory's metadata, kept until the layer is complete: mode, uid, gid, mtime (ns)
#: and its xattrs as (name, value) pairs, ``trusted.overlay.*`` already dropped
DirMeta = tuple[int, int, int, int, tuple[tuple[str, bytes], ...]]


class DirMetadata:
    """The metadata of a layer's directories by path, to apply deepest first at the end.

    A later entry for the same directory replaces its metadata; a directory replaced or
    whited out is forgotten with everything below it. Up to *limit* directories (default
    ``DIR_META_IN_MEMORY``) are kept in a dict; past that they all move to a SQLite file
    in *spill_dir*, made then, private (0700) and removed by :meth:`discard`. The file is
    scratch: no journal, no fsync, one transaction; the path (components joined by ``/``,
    as bytes) is the key, so a subtree is one key range, and an index on the depth gives
    the order. Rows go in by batches of ``_SPILL_BATCH`` (~2 us a directory; one by one
    it was ~7), flushed before anything reads or deletes.
    """

    def __init__(self, spill_dir: str, limit: int | None = None) -> None:
        self.spill_dir = spill_dir
        self.limit = DIR_META_IN_MEMORY if limit is None else limit
        #: the layer root's own entry (``./``), if the layer has one
        self.root: DirMeta | None = None
        self._memory: dict[tuple[str, ...], DirMeta] = {}
        self._db: sqlite3.Connection | None = None
        self._pending: list[_Row] = []

    def set(self, parts: tuple[str, ...], meta: DirMeta) -> None:
        if not parts:
            self.root = meta
            return
        if self._db is None:
            if len(self._memory) < self.limit or parts in self._memory:
                self._memory[parts] = meta
                return
            self._spill()
        self._pending.append(_row(parts, meta))
        if len(self._pending) >= _SPILL_BATCH:
            self._flush()

    def drop_tree(self, parts: tuple[str, ...]) -> None:
        """Forget the directory *parts* and every directory below it."""
        if self._db is None:
            n = len(parts)
            for below in [key for key in self._memory if key[:n] == parts]:
                del self._memory[below]
            return
        import sqlite3

        self._flush()
        path = _path_key(parts)
        try:
            self._db.execute("DELETE FROM dirs WHERE path = ?", (path,))
            # below it: the keys starting with "path/", i.e. in [path + "/", path + "0")
            self._db.execute("DELETE FROM dirs WHERE path >= ? AND path < ?",
                             (path + b"/", path + b"0"))
        except sqlite3.Error as error:
            raise _scratch_error(error, self.spill_dir) from error

    def deepest_first(self) -> Iterator[tuple[tuple[str, ...], DirMeta]]:
        """Every directory but the root with its metadata, children before parents."""
        if self._db is None:
            for parts in sorted(self._memory, key=len, reverse=True):
                yield parts, self._memory[parts]
            return
        import marshal
        import sqlite3

        self._flush()
        try:
            rows = self._db.execute("SELECT path, mode, uid, gid, mtime_ns, xattrs FROM dirs "
                                    "INDEXED BY dirs_by_depth ORDER BY depth DESC")
            for path, mode, uid, gid, mtime_ns, xattrs in rows:
                yield (tuple(os.fsdecode(path).split("/")),
                       (mode, uid, gid, mtime_ns, marshal.loads(xattrs) if xattrs else ()))
        except sqlite3.Error as error:
            raise _scratch_error(error, self.spill_dir) from error

    def discard(self) -> None:
        """Close and remove the spill file (if any); forget everything."""
        self._memory.clear()
        self._pending.clear()
        if self._db is not None:
            self._db.close()
            self._db = None
        remove_tree(self.spill_dir)

    def _flush(self) -> None:
        import sqlite3

        if self._pending and self._db is not None:
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO dirs VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending)
            except sqlite3.Error as error:
                raise _scratch_error(error, self.spill_dir) from error
            self._pending.clear()

    def _spill(self) -> None:
        import sqlite3

        os.mkdir(self.spill_dir, 0o700)
        try:
            self._db = db = sqlite3.connect(os.path.join(self.spill_dir, "dirs.db"),
                                            isolation_level=None)
            for pragma in ("journal_mode = OFF", "synchronous = OFF",
                           "locking_mode = EXCLUSIVE", "cache_size = -4096"):
                db.execute(f"PRAGMA {pragma}")
            db.execute("CREATE TABLE dirs (path BLOB PRIMARY KEY, depth INTEGER NOT NULL, "
                       "mode INTEGER, uid INTEGER, gid INTEGER, mtime_ns INTEGER, "
                       "xattrs BLOB) WITHOUT ROWID")
            db.execute("CREATE INDEX dirs_by_depth ON dirs (depth)")
            # one transaction for the whole layer: nothing of this file outlives the unpack
            db.execute("BEGIN")
        except sqlite3.Error as error:
            raise _scratch_error(error, self.spill_dir) from error
        self._pending = [_row(parts, meta) for parts, meta in self._memory.items()]
        self._memory.clear()
        self._flush()


#: a directory's row in the spill file: path, depth, mode, uid, gid, mtime (ns), xattrs
_Row = tuple[bytes, int, int, int, int, int, bytes | None]
#: rows handed to SQLite at once
_SPILL_BATCH = 512


def _scratch_error(error: sqlite3.Error, spill_dir: str) -> OSError:
    """A sqlite3 error of the scratch file as OSError (ENOSPC for a full disk), so it is
    reported like any other failed write of the unpack."""
    full = getattr(error, "sqlite_errorcode", 0) == 13  # SQLITE_FULL
    return OSError(errno.ENOSPC if full else errno.EIO,
                   f"{os.strerror(errno.ENOSPC) if full else error} "
                   f"(directory metadata in {spill_dir})")


def _path_key(parts: tuple[str, ...]) -> bytes:
    return os.fsencode("/".join(parts))


def _row(parts: tuple[str, ...], meta: DirMeta) -> _Row:
    import marshal

    mode, uid, gid, mtime_ns, xattrs = meta
    return (_path_key(parts), len(parts), mode, uid, gid, mtime_ns,
            marshal.dumps(xattrs) if xattrs else None)


class _LayerWriter:
    """Writes tar entries below *root_fd*, never following a symlink on the way."""

    def __init__(self, root_fd: int, layer_digest: str, dir_meta: DirMetadata) -> None:
        self.root_fd = root_fd
        self.layer_digest = layer_digest
        self.as_root = os.geteuid() == 0
        # directory metadata is applied at the end, deepest first: their content changes
        # their mtime, and a read-only directory must stay writable while it is filled
        self.dir_meta = dir_meta
        # O_PATH fds of the directories walked so far, by path: a layer's entries come in
        # directory order, so most walks are one dict lookup instead of one open per
        # component. An entry that replaces or whites out a path drops the fds at and
        # below it (:meth:`_forget`), so a later walk never goes through a stale one.
        self.dir_fds: dict[tuple[str, ...], int] = {}

    # -- entry dispatch ------------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        try:
            self._add(member, archive)
        except _Reject as reason:
            raise InvalidArgument("unpack layer", f"{self.layer_digest}: {member.name}",
                                  detail=str(reason)) from None
        except OSError as error:
            raise TsuboError("unpack layer", f"{self.layer_digest}: {member.name}",
                             errno=error.errno or 0, detail=error.strerror or str(error)) \
                from error

    def _add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        if "\0" in member.name or "\0" in member.linkname:  # pax records can carry one
            raise _Reject("NUL byte in the entry's name or link target")
        parts = clean_entry_path(member.name)
        if not parts:
            if not member.isdir():
                raise _Reject("entry without a name")
            self.dir_meta.set((), _dir_meta_of(member))
            return
        *parent_parts, base = parts
        if base.startswith(WHITEOUT_PREFIX):
            self._add_whiteout(tuple(parent_parts), base, member)
            return
        parent_fd = self._open_parent(tuple(parent_parts), create=True)
        # parent_fd belongs to the writer's cache of directory fds: not closed here
        if member.isdir():
            self._add_dir(parent_fd, parts, member)
        elif member.isreg():
            self._replace(parent_fd, parts)
            self._add_file(parent_fd, base, member, archive)
        elif member.issym():
            self._replace(parent_fd, parts)
            os.symlink(member.linkname, base, dir_fd=parent_fd)
            self._chown(base, parent_fd, member)
            os.utime(base, ns=_mtime_ns(member), dir_fd=parent_fd, follow_symlinks=False)
        elif member.islnk():
            self._add_hardlink(parent_fd, parts, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._add_special(parent_fd, parts, member)
        else:
            raise _Reject(f"unsupported tar entry type {member.type!r}")

    # -- path resolution -----------------------------------------------------------------

    def _open_parent(self, parts: tuple[str, ...], *, create: bool) -> int:
        """An O_PATH fd of the directory *parts* (owned by the cache: not to be closed);
        missing dirs are made 0755 if *create*."""
        cached = self.dir_fds.get(parts)
        if cached is not None:
            return cached
        if len(self.dir_fds) >= _DIR_FDS_MAX:
            self.close()
        known = len(parts)
        while known and parts[:known] not in self.dir_fds:
            known -= 1
        fd = self.dir_fds[parts[:known]] if known else self.root_fd
        for depth in range(known, len(parts)):
            part = parts[depth]
            try:
                next_fd = os.open(part, _PATH_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise _Reject(f"{'/'.join(parts)} does not exist") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = os.open(part, _PATH_DIR, dir_fd=fd)
            except OSError as error:
                if error.errno in (20, 40):  # ENOTDIR, ELOOP: a symlink or a file
                    raise _Reject(f"parent {part!r} is a symlink or not a directory") \
                        from None
                raise
            self.dir_fds[parts[:depth + 1]] = next_fd
            fd = next_fd
        return fd

    def _forget(self, parts: tuple[str, ...]) -> None:
        """Drop the cached fds of *parts* and everything below it (it is being replaced)."""
        n = len(parts)
        for key in [key for key in self.dir_fds if key[:n] == parts]:
            os.close(self.dir_fds.pop(key))

    def close(self) -> None:
        for fd in self.dir_fds.values():
            os.close(fd)
        self.dir_fds.clear()

    def _replace(self, parent_fd: int, parts: tuple[str, ...]) -> None:
        """Remove what an earlier entry put at *parts* (a later entry wins)."""
        import shutil

        try:
            st = os.lstat(parts[-1], dir_fd=parent_fd)
        except FileNotFoundError:
            return
        self._forget(parts)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(parts[-1], dir_fd=parent_fd)
            self.dir_meta.drop_tree(parts)
        else:
            os.unlink(parts[-1], dir_fd=parent_fd)

    # -- entry kinds ---------------------------------------------------------------------

    def _add_dir(self, parent_fd: int, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        base = parts[-1]
        try:
            st = os.lstat(base, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(base, dir_fd=parent_fd)
        try:
            os.mkdir(base, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass  # an existing directory: this entry only updates its metadata
        self.dir_meta.set(parts, _dir_meta_of(member))

    def _add_file(
        self, parent_fd: int, base: str, member: tarfile.TarInfo, archive: tarfile.TarFile
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent_fd)
        try:
            source = archive.extractfile(member)
            if source is not None:
                remaining = member.size
                while remaining > 0:
                    chunk = source.read(min(CHUNK, remaining))
                    if not chunk:
                        raise EOFError("layer ends inside a file")
                    view = memoryview(chunk)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    remaining -= len(chunk)
            if self.as_root:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)  # after chown: chown clears setuid
            # after chown too: it clears security.capability
            _set_xattrs(fd, _xattrs_of(member))
            os.utime(fd, ns=_mtime_ns(member))
        finally:
            os.close(fd)

    def _add_hardlink(
        self, parent_fd: int, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        target = clean_entry_path(member.linkname)
        if not target:
            raise _Reject("hardlink to the layer root")
        if target == parts:
            raise _Reject("hardlink to itself")
        target_parent = self._open_parent(target[:-1], create=False)
        try:
            st = os.lstat(target[-1], dir_fd=target_parent)
        except FileNotFoundError:
            raise _Reject(f"hardlink target {member.linkname!r} is not in the layer") \
                from None
        if not stat.S_ISREG(st.st_mode):
            raise _Reject(f"hardlink target {member.linkname!r} is not a regular file")
        self._replace(parent_fd, parts)
        os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent_fd,
                follow_symlinks=False)

    def _add_special(
        self, parent_fd: int, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        if member.isfifo():
            self._replace(parent_fd, parts)
            os.mkfifo(parts[-1], 0o600, dir_fd=parent_fd)
        elif not self.as_root:
            return  # device nodes need CAP_MKNOD; rootless engines skip them too
        else:
            self._replace(parent_fd, parts)
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(parts[-1], kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=parent_fd)
        base = parts[-1]
        self._chown(base, parent_fd, member)
        os.chmod(base, member.mode & 0o7777, dir_fd=parent_fd)
        os.utime(base, ns=_mtime_ns(member), dir_fd=parent_fd)

    def _add_whiteout(
        self, parent_parts: tuple[str, ...], base: str, member: tarfile.TarInfo
    ) -> None:
        parent_fd = self._open_parent(parent_parts, create=True)
        if base == OPAQUE_WHITEOUT:
            dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                             dir_fd=parent_fd)
            try:
                os.setxattr(dir_fd, OPAQUE_XATTR, b"y")
            finally:
                os.close(dir_fd)
            return
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", "..") or name.startswith(WHITEOUT_PREFIX):
            raise _Reject("malformed whiteout name")
        parts = (*parent_parts, name)
        self._replace(parent_fd, parts)
        # overlayfs whiteout: a character device with device number 0:0
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent_fd)
        self._chown(name, parent_fd, member)

    # -- metadata ------------------------------------------------------------------------

    def _chown(self, base: str, parent_fd: int, member: tarfile.TarInfo) -> None:
        if self.as_root:
            os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)

    def finish(self) -> None:
        """Apply directory metadata, deepest first, then the layer root's."""
        try:
            for parts, meta in self.dir_meta.deepest_first():
                self._apply_dir_meta(parts, meta)  # its own errors name the directory
        except OSError as error:  # reading the spill file
            raise TsuboError("unpack layer", self.layer_digest, errno=error.errno or 0,
                             detail=error.strerror or str(error)) from error
        if self.dir_meta.root is None:
            os.fchmod(self.root_fd, 0o755)
        else:
            self._apply_dir_meta((), self.dir_meta.root)
        self.close()

    def _apply_dir_meta(self, parts: tuple[str, ...], meta: DirMeta) -> None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        mode, uid, gid, mtime_ns, xattrs = meta
        try:
            if parts:
                fd = os.open(parts[-1], flags,
                             dir_fd=self._open_parent(parts[:-1], create=False))
            else:
                fd = os.dup(self.root_fd)
            try:
                if self.as_root:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                _set_xattrs(fd, xattrs)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
        except _Reject as reason:
            raise InvalidArgument("unpack layer", f"{self.layer_digest}: {_shown(parts)}",
                                  detail=str(reason)) from None
        except OSError as error:
            raise TsuboError("unpack layer", f"{self.layer_digest}: {_shown(parts)}",
                             errno=error.errno or 0, detail=error.strerror or "") from error


def _shown(parts: tuple[str, ...]) -> str:
    return "/".join(parts) + "/" if parts else "./"


def _dir_meta_of(member: tarfile.TarInfo) -> DirMeta:
    return (member.mode & 0o7777, member.uid, member.gid, _mtime_ns(member)[0],
            _xattrs_of(member))


def _xattrs_of(member: tarfile.TarInfo) -> tuple[tuple[str, bytes], ...]:
    """The entry's ``SCHILY.xattr.*`` pax records as (name, value), ``trusted.overlay.*``
    dropped: a layer must not forge overlayfs metadata (whiteouts, redirects)."""
    if not member.pax_headers:
        return ()
    return tuple(
        (key[len(PAX_XATTR_PREFIX):], value.encode("utf-8", "surrogateescape"))
        for key, value in member.pax_headers.items()
        if key.startswith(PAX_XATTR_PREFIX)
        and not key[len(PAX_XATTR_PREFIX):].startswith(OVERLAY_XATTR_PREFIX)
    )


def _set_xattrs(fd: int, xattrs: tuple[tuple[str, bytes], ...]) -> None:
    for name, value in xattrs:
        try:
            os.setxattr(fd, name, value)
        except OSError as error:
            if error.errno not in _XATTR_SKIP:
                raise


def _mtime_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    ns = int(member.mtime * 1_000_000_000)
    return ns, ns
