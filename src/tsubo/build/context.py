"""The build context: which files a COPY or ADD names, ``.dockerignore``, and copying them.

``.dockerignore`` follows Docker's rules: one pattern a line, ``#`` comments, blank lines
skipped, patterns cleaned (``./a``, ``/a`` and ``a/`` are ``a``), Go ``filepath.Match``
syntax (``*``, ``?``, ``[...]``) plus ``**`` for any number of directories, ``!`` re-includes;
the last pattern that matches a path (or one of its parent directories) decides.

Sources are context-relative; one that leaves the context (``../x``) or reaches out of it
through a symlink is refused. The content hash of a COPY's sources (the build cache's key)
covers names, types, modes, owners, sizes, link targets and contents — not times.

Copies go into a mounted image root, which is hostile (an image can plant a symlink at a
destination): destinations are resolved with ``openat2(RESOLVE_IN_ROOT)`` (a symlink there
is followed inside the root, as in a container), missing directories are made with
``mkdirat``, files are created ``O_EXCL|O_NOFOLLOW`` relative to directory fds, and owners,
modes and times are set on open fds. Sources are read the same way (``O_NOFOLLOW``), so an
image root used as a source (``COPY --from``) cannot send us out of it either.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from tsubo.errors import InvalidArgument, NotFound, TsuboError
from tsubo.kernel import syscalls
from tsubo.kernel.flags import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS

TYPE_CHECKING = False
if TYPE_CHECKING:
    import hashlib
    from collections.abc import Iterator

O_PATH = getattr(os, "O_PATH", 0o10000000)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_WILDCARD = re.compile(r"[*?\[]")
MAX_DEPTH = 512


# --- patterns ---------------------------------------------------------------------------------

def _clean(path: str) -> str:
    cleaned = os.path.normpath("/" + path.strip()).lstrip("/")
    return "" if cleaned == "." else cleaned


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Go ``filepath.Match`` pattern with Docker's ``**``, as a regex on ``a/b/c``."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            index += 2
            if pattern.startswith("/", index):
                out.append("(?:.*/)?")
                index += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = pattern.find("]", index + 2)
            if close < 0:
                raise InvalidArgument("read .dockerignore", pattern, detail="unterminated [")
            body = pattern[index + 1:close]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + re.escape(body[1:]).replace("\\-", "-")
                              if body.startswith("!") else
                              re.escape(body).replace("\\-", "-")) + "]")
            index = close
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("^" + "".join(out) + "$")


class IgnoreRules:
    """The patterns of a ``.dockerignore`` (see the module docstring)."""

    def __init__(self, text: str = "") -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            cleaned = _clean(line[1:] if negate else line)
            if cleaned:
                self.rules.append((negate, pattern_regex(cleaned)))

    def excluded(self, path: str) -> bool:
        """Whether the context path *path* (``a/b``) is left out."""
        if not self.rules:
            return False
        parts = path.split("/")
        prefixes = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        result = False
        for negate, regex in self.rules:
            if any(regex.match(prefix) for prefix in prefixes):
                result = not negate
        return result


# --- the context ------------------------------------------------------------------------------

class Source:
    """A root to copy from (the context, or a stage's mounted root), by directory fd."""

    def __init__(self, root: str, ignore: IgnoreRules | None, label: str) -> None:
        self.root = root
        self.ignore = ignore or IgnoreRules()
        self.label = label

    def files(self) -> list[str]:
        """Every path in the source not excluded, sorted (directories too)."""
        found: list[str] = []
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            self._list(fd, "", found, 0)
        finally:
            os.close(fd)
        return found

    def _list(self, dir_fd: int, prefix: str, found: list[str], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise TsuboError("read build context", prefix, detail="nested too deep")
        for name in sorted(os.listdir(dir_fd)):
            path = f"{prefix}{name}"
            if self.ignore.excluded(path) and not self._reincluded_below(path):
                continue
            info = os.lstat(name, dir_fd=dir_fd)
            if not self.ignore.excluded(path):
                found.append(path)
            if stat.S_ISDIR(info.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._list(child, f"{path}/", found, depth + 1)
                finally:
                    os.close(child)

    def _reincluded_below(self, path: str) -> bool:
        """A ``!`` rule could re-include something under the excluded *path*."""
        return any(negate for negate, _regex in self.ignore.rules)

    def resolve(self, sources: list[str], where: str) -> list[str]:
        """The source paths (relative, cleaned) the arguments of a COPY name: wildcards
        matched, each checked to exist, not excluded, inside the root."""
        chosen: list[str] = []
        listing: list[str] | None = None
        for given in sources:
            if given.startswith(("http://", "https://", "git@")):
                raise InvalidArgument("build", where, detail=f"remote source {given!r}: "
                                      "only files of the build context are supported")
            normal = os.path.normpath(given.strip())
            if normal == ".." or normal.startswith("../"):
                raise InvalidArgument("build", where,
                                      detail=f"{given!r} is outside the build context")
            cleaned = _clean(given)
            if _WILDCARD.search(cleaned):
                listing = self.files() if listing is None else listing
                regex = pattern_regex(cleaned)
                matched = [path for path in listing if regex.match(path)]
                if not matched:
                    raise NotFound("build", where, detail=f"no source files were specified "
                                   f"by {given!r} in {self.label}")
                chosen += matched
                continue
            if cleaned and self.ignore.excluded(cleaned):
                raise NotFound("build", where, detail=f"{given!r} is excluded by "
                               ".dockerignore")
            if self.lstat(cleaned, where) is None:
                raise NotFound("build", where, detail=f"{given!r}: no such file or "
                               f"directory in {self.label}")
            chosen.append(cleaned)
        return chosen

    def open_parent(self, path: str, where: str) -> tuple[int, str]:
        """An fd of *path*'s parent directory (through real directories only) and its
        name; the source's own root is (fd of root, ".")."""
        parts = [part for part in path.split("/") if part]
        fd = os.open(self.root, _DIR_FLAGS)
        if not parts:
            return fd, "."
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                raise InvalidArgument("build", where, detail=f"{path!r}: a parent is a "
                                      f"symlink or not a directory in {self.label}") from None
            os.close(fd)
            fd = child
        return fd, parts[-1]

    def follow(self, path: str, where: str) -> str:
        """*path*, or when it is a symlink the path it leads to, resolved inside the
        source's root (an absolute or ``..`` target is clamped to it, as BuildKit follows
        a named source): the copy takes what the link points to, under the link's name."""
        info = self.lstat(path, where)
        if info is None or not stat.S_ISLNK(info.st_mode):
            return path
        root_fd = os.open(self.root, _DIR_FLAGS)
        try:
            target_fd = syscalls.openat2(root_fd, path, O_PATH,
                                         RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except OSError:
            raise NotFound("build", where, detail=f"{path!r} is a symlink to nothing in "
                           f"{self.label}") from None
        root_path = os.readlink(f"/proc/self/fd/{root_fd}")
        try:
            resolved = os.readlink(f"/proc/self/fd/{target_fd}")
        finally:
            os.close(target_fd)
            os.close(root_fd)
        relative = os.path.relpath(resolved, root_path)
        if relative == ".":
            return ""
        if relative.startswith("../"):  # moved meanwhile: never read outside
            raise InvalidArgument("build", where, detail=f"{path!r} leads out of {self.label}")
        return relative

    def lstat(self, path: str, where: str) -> os.stat_result | None:
        fd, name = self.open_parent(path, where)
        try:
            return os.lstat(name, dir_fd=fd)
        except OSError:
            return None
        finally:
            os.close(fd)


def content_hash(source: Source, paths: list[str], where: str, hasher: hashlib._Hash) -> None:
    """Feed *hasher* with what copying *paths* reads (see the module docstring)."""
    for path in paths:
        fd, name = source.open_parent(path, where)
        try:
            for relative, info, parent_fd, leaf in _entries(source, fd, name, path, 0):
                kind = stat.S_IFMT(info.st_mode)
                hasher.update(f"{relative}\0{kind}\0{stat.S_IMODE(info.st_mode)}\0"
                              f"{info.st_uid}\0{info.st_gid}\0{info.st_size}\0".encode())
                if stat.S_ISLNK(info.st_mode):
                    hasher.update(os.fsencode(os.readlink(leaf, dir_fd=parent_fd)))
                elif stat.S_ISREG(info.st_mode):
                    file_fd = os.open(leaf, _READ_FLAGS, dir_fd=parent_fd)
                    try:
                        while chunk := os.read(file_fd, 1 << 20):
                            hasher.update(chunk)
                    finally:
                        os.close(file_fd)
        finally:
            os.close(fd)


def _entries(source: Source, parent_fd: int, name: str, path: str, depth: int
             ) -> Iterator[tuple[str, os.stat_result, int, str]]:
    """(path, lstat, parent fd, name) for *path* and, for a directory, what it holds
    (excluded paths left out)."""
    if depth > MAX_DEPTH:
        raise TsuboError("read build context", path, detail="nested too deep")
    info = os.lstat(name, dir_fd=parent_fd)
    yield path, info, parent_fd, name
    if not stat.S_ISDIR(info.st_mode):
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        for child in sorted(os.listdir(fd)):
            child_path = f"{path}/{child}" if path else child
            if source.ignore.excluded(child_path):
                continue
            yield from _entries(source, fd, child, child_path, depth + 1)
    finally:
        os.close(fd)


# --- copying into an image root ----------------------------------------------------------------

#: hard links a copy keeps at most (each holds a directory fd until the copy ends); past
#: that, further links of a file become copies
MAX_LINKS_KEPT = 1024


class CopyOptions:
    """How copied entries are written: *owner* (uid, gid) or None to keep the source's,
    *mode* from ``--chmod`` or None to keep the source's. Files with several links in the
    source stay hard links of each other in the copy: :attr:`links` remembers where the
    first of each was written (a directory fd and a name) until :meth:`close`."""

    def __init__(self, owner: tuple[int, int] | None, mode: int | None) -> None:
        self.owner = owner
        self.mode = mode
        self.links: dict[tuple[int, int], tuple[int, str]] = {}

    def close(self) -> None:
        for fd, _name in self.links.values():
            os.close(fd)
        self.links.clear()

    def __enter__(self) -> CopyOptions:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_destination(root: str, path: str, owner: tuple[int, int] | None) -> int:
    """A directory fd of *path* inside the image root *root*, symlinks resolved inside
    the root (each prefix from the root, so an absolute link means the image's root);
    missing directories are made (0755, owned by *owner* or root)."""
    parts = [part for part in path.split("/") if part]
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        fd = os.dup(root_fd)
        for depth in range(len(parts)):
            prefix = "/".join(parts[:depth + 1])
            try:
                child = syscalls.openat2(root_fd, prefix, os.O_RDONLY | os.O_DIRECTORY,
                                         RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            except FileNotFoundError:
                try:
                    os.mkdir(parts[depth], 0o755, dir_fd=fd)
                    child = os.open(parts[depth], _DIR_FLAGS, dir_fd=fd)
                except OSError as error:
                    os.close(fd)
                    raise TsuboError.from_os_error("make directory", "/" + prefix,
                                                   error) from None
                uid, gid = owner or (0, 0)
                os.fchown(child, uid, gid)
                os.fchmod(child, 0o755)
            except OSError as error:
                os.close(fd)
                raise TsuboError.from_os_error("open destination", "/" + prefix,
                                               error) from None
            os.close(fd)
            fd = child
        return fd
    finally:
        os.close(root_fd)


def is_directory(root: str, path: str) -> bool:
    """Whether *path* resolves (inside *root*) to a directory."""
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        fd = syscalls.openat2(root_fd, path.lstrip("/") or ".", O_PATH,
                              RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError:
        return False
    finally:
        os.close(root_fd)
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def copy_entry(source: Source, parent_fd: int, name: str, path: str, target_fd: int,
               target_name: str, options: CopyOptions, *, contents_only: bool = False,
               depth: int = 0) -> None:
    """Copy the source entry *name* (in *parent_fd*; context path *path*) to
    *target_name* in *target_fd*; a directory with *contents_only* is merged into
    *target_fd* itself."""
    if depth > MAX_DEPTH:
        raise TsuboError("copy", path, detail="nested too deep")
    info = os.lstat(name, dir_fd=parent_fd)
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        source_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            if contents_only:
                child_fd = os.dup(target_fd)
            else:
                child_fd = _make_dir(target_fd, target_name, info, options)
            try:
                for child in sorted(os.listdir(source_fd)):
                    child_path = f"{path}/{child}" if path else child
                    if source.ignore.excluded(child_path):
                        continue
                    copy_entry(source, source_fd, child, child_path, child_fd, child,
                               options, depth=depth + 1)
            finally:
                os.close(child_fd)
        finally:
            os.close(source_fd)
        return
    _remove_existing(target_fd, target_name)
    if stat.S_ISREG(mode):
        _copy_file(parent_fd, name, path, info, target_fd, target_name, options)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(name, dir_fd=parent_fd), target_name, dir_fd=target_fd)
        uid, gid = options.owner if options.owner is not None else (info.st_uid, info.st_gid)
        os.chown(target_name, uid, gid, dir_fd=target_fd, follow_symlinks=False)
        os.utime(target_name, ns=(info.st_mtime_ns, info.st_mtime_ns), dir_fd=target_fd,
                 follow_symlinks=False)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(target_name, stat.S_IMODE(mode), dir_fd=target_fd)
    # devices and sockets are not copied from a context


def _make_dir(target_fd: int, name: str, info: os.stat_result, options: CopyOptions) -> int:
    try:
        os.mkdir(name, 0o700, dir_fd=target_fd)
        created = True
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=target_fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        _remove_existing(target_fd, name)  # a file or symlink there: replaced, not followed
        os.mkdir(name, 0o700, dir_fd=target_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=target_fd)
        created = True
    if created or options.owner is not None:
        uid, gid = options.owner if options.owner is not None else (info.st_uid, info.st_gid)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, options.mode if options.mode is not None else stat.S_IMODE(info.st_mode))
    return fd


def _remove_existing(target_fd: int, name: str) -> None:
    import shutil

    try:
        info = os.lstat(name, dir_fd=target_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=target_fd)
    else:
        os.unlink(name, dir_fd=target_fd)


def _copy_file(parent_fd: int, name: str, path: str, info: os.stat_result, target_fd: int,
               target_name: str, options: CopyOptions) -> None:
    key = (info.st_dev, info.st_ino)
    if info.st_nlink > 1 and key in options.links:
        first_fd, first_name = options.links[key]
        os.link(first_name, target_name, src_dir_fd=first_fd, dst_dir_fd=target_fd,
                follow_symlinks=False)
        return
    _copy_data(parent_fd, name, path, info, target_fd, target_name, options)
    if info.st_nlink > 1 and len(options.links) < MAX_LINKS_KEPT:
        options.links[key] = (os.dup(target_fd), target_name)


def _copy_data(parent_fd: int, name: str, path: str, info: os.stat_result, target_fd: int,
               target_name: str, options: CopyOptions) -> None:
    reader = os.open(name, _READ_FLAGS, dir_fd=parent_fd)
    try:
        opened = os.fstat(reader)
        if not stat.S_ISREG(opened.st_mode) or opened.st_ino != info.st_ino:
            raise TsuboError("copy", path, detail="changed while being copied")
        writer = os.open(target_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=target_fd)
        try:
            while os.sendfile(writer, reader, None, 1 << 20):
                pass
            uid, gid = options.owner if options.owner is not None else (info.st_uid,
                                                                         info.st_gid)
            os.fchown(writer, uid, gid)
            os.fchmod(writer, options.mode if options.mode is not None
                      else stat.S_IMODE(info.st_mode))
            os.utime(writer, ns=(info.st_mtime_ns, info.st_mtime_ns))
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def write_file(target_fd: int, name: str, data: bytes, options: CopyOptions) -> None:
    """A file with *data* (a COPY heredoc), replacing what is there."""
    _remove_existing(target_fd, name)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=target_fd)
    try:
        os.write(fd, data)
        uid, gid = options.owner or (0, 0)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, options.mode if options.mode is not None else 0o644)
    finally:
        os.close(fd)


# --- archives ADD unpacks --------------------------------------------------------------------

def is_archive(source: Source, path: str, where: str) -> bool:
    """A tar (plain, gzip or zstd): ADD unpacks it."""
    fd, leaf = source.open_parent(path, where)
    try:
        file_fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)
    finally:
        os.close(fd)
    try:
        head = os.pread(file_fd, 512, 0)
    finally:
        os.close(file_fd)
    if head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", *_OTHER_COMPRESSIONS)):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


#: archives the layer unpacker does not read itself: decompressed to a scratch file first
_OTHER_COMPRESSIONS = {b"\xfd7zXZ\x00": "lzma", b"BZh": "bz2"}


def decompressed(path: str, scratch: str) -> str:
    """*path* itself, or for an xz or bzip2 archive a decompressed copy in *scratch*."""
    import importlib

    with open(path, "rb") as source:
        head = source.read(6)
        module = next((name for magic, name in _OTHER_COMPRESSIONS.items()
                       if head.startswith(magic)), "")
        if not module:
            return path
        source.seek(0)
        target = os.path.join(scratch, "archive.tar")
        opener = importlib.import_module(module).open
        try:
            with opener(source, "rb") as stream, open(target, "xb") as out:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
        except (OSError, EOFError, ValueError) as error:
            raise InvalidArgument("build", path, detail=f"corrupt {module} archive: "
                                  f"{error}") from None
        return target
