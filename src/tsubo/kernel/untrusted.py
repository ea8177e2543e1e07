"""Host-side reads and writes of trees a container controls: its root, its volumes.

Everything a container can write to is hostile to the host-privileged code that touches
it (ARCHITECTURE.md, rule 6). Another container sharing a volume can swap a directory for a
symlink to ``/`` between any check and any use; an image can put a FIFO (which blocks a
reader forever) or a block device node (which reads the host's disk) where the engine
expects ``/etc/passwd``. So this module never opens a name that could be swapped:

- reads open the object ``O_PATH`` first (no open(2) side effects: a FIFO does not block, a
  device's driver is not called), check it is a regular file of bounded size through that
  fd, and only then reopen that same inode through ``/proc/self/fd/N``, non-blocking;
- writes walk fd-relative, one component at a time, never following a symlink: directories
  are made with ``mkdirat`` and opened ``O_NOFOLLOW|O_DIRECTORY``, files are created
  ``O_CREAT|O_EXCL|O_NOFOLLOW``, and owners, modes and times are set on the open fds
  (``fchown``/``fchmod``/``futimens``), never by a name that could have become a symlink.
  An entry that appears meanwhile (another container raced us) is left alone: nothing
  already there is overwritten or followed.
"""

from __future__ import annotations

import errno
import os
import stat

from tsubo.errors import InvalidArgument, TsuboError
from tsubo.kernel import syscalls
from tsubo.kernel.flags import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS

O_PATH = getattr(os, "O_PATH", 0o10000000)
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a copy deeper than this is refused (each level holds two fds and a Python frame)
MAX_COPY_DEPTH = 256
#: what ``read_file_in_root`` reads at most unless told otherwise
DEFAULT_READ_LIMIT = 1 << 20


def read_file_in_root(root: str, path: str, *, limit: int = DEFAULT_READ_LIMIT) -> bytes:
    """The content of *path* resolved inside the directory *root* as the container sees it
    (symlinks and ``..`` clamped to *root*). Raises FileNotFoundError when it does not
    exist, :class:`InvalidArgument` when it is not a regular file or is larger than
    *limit* bytes; never blocks, never opens a device."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        path_fd = syscalls.openat2(root_fd, path.lstrip("/") or ".", O_PATH,
                                   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(root_fd)
    try:
        return _read_regular(path_fd, path, limit)
    finally:
        os.close(path_fd)


def _read_regular(path_fd: int, path: str, limit: int) -> bytes:
    checked = os.fstat(path_fd)
    _check_regular(checked, path, limit)
    fd = os.open(f"/proc/self/fd/{path_fd}",
                 os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            raise InvalidArgument("read", path, detail="changed while being opened")
        _check_regular(opened, path, limit)
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InvalidArgument("read", path, detail=f"larger than {limit} bytes")
    return data


def _check_regular(info: os.stat_result, path: str, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InvalidArgument("read", path, detail=f"not a regular file ({_kind(info)})")
    if info.st_size > limit:
        raise InvalidArgument("read", path, detail=f"larger than {limit} bytes")


def _kind(info: os.stat_result) -> str:
    mode = info.st_mode
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "unknown type"


def open_directory_nofollow(root: str, path: str) -> int:
    """A directory fd of ``root + path`` when every component of *path* is a real
    directory (no symlink, no ``..``), else -1."""
    fd = os.open(root, _DIRECTORY_FLAGS)
    for part in path.strip("/").split("/"):
        if not part:
            continue
        if part in (".", ".."):
            os.close(fd)
            return -1
        try:
            child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
        except OSError:
            child = -1
        os.close(fd)
        if child < 0:
            return -1
        fd = child
    return fd


def copy_tree(source_fd: int, target_fd: int, *, depth: int = 0) -> None:
    """Copy a directory's contents (directories, regular files, symlinks, with owners,
    modes, times and extended attributes) from one directory fd into another, never
    following a symlink on either side and never replacing what the target already holds.
    Device nodes, FIFOs and sockets are not copied (runc's tmpcopyup does the same);
    hard links become separate files."""
    if depth > MAX_COPY_DEPTH:
        raise TsuboError("copy", "directory tree", detail=f"nested deeper than "
                         f"{MAX_COPY_DEPTH} levels")
    with os.scandir(source_fd) as entries:
        names = [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]
    for name, info in names:
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            _copy_directory(source_fd, target_fd, name, info, depth)
        elif stat.S_ISREG(mode):
            _copy_file(source_fd, target_fd, name, info)
        elif stat.S_ISLNK(mode):
            try:
                os.symlink(os.readlink(name, dir_fd=source_fd), name, dir_fd=target_fd)
            except FileExistsError:
                continue
            os.chown(name, info.st_uid, info.st_gid, dir_fd=target_fd, follow_symlinks=False)


def _copy_directory(source_fd: int, target_fd: int, name: str, info: os.stat_result,
                    depth: int) -> None:
    try:
        child_source = os.open(name, _DIRECTORY_FLAGS, dir_fd=source_fd)
    except OSError:
        return  # replaced meanwhile in the source: nothing to copy
    try:
        created = True
        try:
            os.mkdir(name, 0o700, dir_fd=target_fd)
        except FileExistsError:
            created = False
        try:
            child_target = os.open(name, _DIRECTORY_FLAGS, dir_fd=target_fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                return  # a symlink or a file planted there: never followed, left alone
            raise
        try:
            copy_tree(child_source, child_target, depth=depth + 1)
            if created:
                _copy_metadata(child_source, child_target, info)
        finally:
            os.close(child_target)
    finally:
        os.close(child_source)


def _copy_file(source_fd: int, target_fd: int, name: str, info: os.stat_result) -> None:
    try:
        reader = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                         | os.O_CLOEXEC, dir_fd=source_fd)
    except OSError:
        return  # replaced meanwhile in the source
    try:
        if not stat.S_ISREG(os.fstat(reader).st_mode):
            return
        try:
            writer = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=target_fd)
        except FileExistsError:
            return  # something is there already: never overwritten, never followed
        try:
            while os.sendfile(writer, reader, None, 1 << 20):
                pass
            _copy_metadata(reader, writer, info)
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def _copy_metadata(source_fd: int, target_fd: int, info: os.stat_result) -> None:
    """Owner, then mode (a chown clears set-id bits), extended attributes, times: all on
    the open target fd."""
    os.fchown(target_fd, info.st_uid, info.st_gid)
    os.fchmod(target_fd, stat.S_IMODE(info.st_mode))
    try:
        names = os.listxattr(source_fd)
    except OSError:
        names = []
    for attribute in names:
        try:
            os.setxattr(target_fd, attribute, os.getxattr(source_fd, attribute))
        except OSError:
            pass  # an attribute this file system or namespace does not take
    os.utime(target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))
