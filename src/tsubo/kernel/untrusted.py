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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

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


# --- copying in and out of a container (``tsubo cp``) -------------------------------------------
#
# A copy names its two ends as (directory fd, entry name): the directory is resolved once,
# inside the container's root (``open_parent_in_root``), and everything below it is walked
# fd-relative without following a symlink. Entries are read only when they are regular
# files (opened O_PATH and checked first: a device node's driver is never called), and
# written under a temporary name then renamed over the target, so a symlink planted at
# the target is replaced, never written through.

_SETID_BITS = stat.S_ISUID | stat.S_ISGID


class CopyOwner:
    """Who owns what a copy writes: *keep* the source's owners (``cp -a``), else *uid*
    and *gid*; *strip_setid* drops set-user/group-ID bits (a copy onto the host)."""

    __slots__ = ("gid", "keep", "strip_setid", "uid")

    def __init__(self, *, keep: bool, uid: int = 0, gid: int = 0,
                 strip_setid: bool = False) -> None:
        self.keep = keep
        self.uid = uid
        self.gid = gid
        self.strip_setid = strip_setid

    def apply(self, fd: int, info: os.stat_result | EntryMeta) -> None:
        """Owner, then mode (a chown clears set-id bits), then times, on the open fd."""
        if self.keep:
            os.fchown(fd, info.st_uid, info.st_gid)
        else:
            os.fchown(fd, self.uid, self.gid)
        mode = stat.S_IMODE(info.st_mode)
        os.fchmod(fd, mode & ~_SETID_BITS if self.strip_setid else mode)
        os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))


class EntryMeta:
    """What a copy keeps of an entry that has no stat (a tar member): the stat fields
    :meth:`CopyOwner.apply` reads."""

    __slots__ = ("st_atime_ns", "st_gid", "st_mode", "st_mtime_ns", "st_size", "st_uid")

    def __init__(self, *, mode: int, uid: int, gid: int, size: int, mtime: float) -> None:
        self.st_mode = mode
        self.st_uid = uid
        self.st_gid = gid
        self.st_size = size
        self.st_mtime_ns = self.st_atime_ns = int(mtime * 1e9)


def open_parent_in_root(root_fd: int, path: str) -> tuple[int, str]:
    """(an ``O_PATH`` fd of the directory holding *path*, the last component) with that
    directory resolved inside *root_fd* as the container sees it (symlinks and ``..``
    clamped to the root, magic links refused). The last component is ``""`` for the root
    itself; it is never resolved here (the caller decides whether to follow it)."""
    parts = [part for part in path.split("/") if part and part != "."]
    name = parts.pop() if parts else ""
    if name == "..":
        parts.append(name)
        name = ""
    fd = syscalls.openat2(root_fd, "/".join(parts) or ".", O_PATH | os.O_DIRECTORY,
                          RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    if name:
        return fd, name
    return fd, ""


def open_in_root(root_fd: int, path: str) -> int:
    """An ``O_PATH`` fd of *path* resolved inside *root_fd*, its last symlink followed
    too (still clamped to the root): ``cp -L``, and a destination that is a directory."""
    return syscalls.openat2(root_fd, path.lstrip("/") or ".", O_PATH,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def entry_stat(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of *name* in *dir_fd* (the directory itself for ``""``); None if missing."""
    try:
        if not name:
            return os.fstat(dir_fd)
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_directory_at(dir_fd: int, name: str) -> int:
    """A readable fd of the directory *name* in *dir_fd* (``""``: *dir_fd* itself), never
    through a symlink."""
    return os.open(name or ".", _DIRECTORY_FLAGS, dir_fd=dir_fd)


def open_regular_at(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """A read fd and the stat of *name* in *dir_fd* when it is a regular file (checked
    on an ``O_PATH`` fd before anything is opened: a FIFO or device is never opened);
    None when it is anything else or vanished."""
    try:
        path_fd = os.open(name or ".", O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd) if name else os.dup(dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(path_fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{path_fd}",
                     os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)
    return fd, info


def _temporary_name(dir_fd: int, make: Callable[[str], int | None]) -> tuple[str, int | None]:
    """Create an entry under a fresh name in *dir_fd* with *make* (retried on EEXIST)."""
    import secrets

    for _ in range(100):
        name = f".tsubo-cp-{secrets.token_hex(6)}"
        try:
            return name, make(name)
        except FileExistsError:
            continue
    raise TsuboError("copy", "temporary file", detail="no free temporary name")


def _replace(dir_fd: int, temporary: str, name: str) -> None:
    """Rename *temporary* over *name* (a symlink there is replaced, never followed)."""
    try:
        os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as error:
        _remove_entry(dir_fd, temporary)
        if error.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise TsuboError("copy to", name, detail="cannot overwrite a directory with "
                             "a non-directory") from None
        raise


def _remove_entry(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def write_file(dir_fd: int, name: str, source_fd: int, info: os.stat_result,
               owner: CopyOwner) -> None:
    """*name* in *dir_fd* becomes a copy of the open regular file *source_fd* (at most
    ``info.st_size`` bytes: a file growing meanwhile is cut there)."""
    def fill(fd: int) -> None:
        remaining = info.st_size
        while remaining > 0:
            sent = os.sendfile(fd, source_fd, None, min(remaining, 1 << 24))
            if not sent:
                break
            remaining -= sent

    _write_new_file(dir_fd, name, fill, info, owner)


def write_stream(dir_fd: int, name: str, read: Callable[[int], bytes], info: EntryMeta,
                 owner: CopyOwner) -> None:
    """As :func:`write_file`, from *read* (a tar member's stream)."""
    def fill(fd: int) -> None:
        while chunk := read(1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]

    _write_new_file(dir_fd, name, fill, info, owner)


def _write_new_file(dir_fd: int, name: str, fill: Callable[[int], None],
                    info: os.stat_result | EntryMeta, owner: CopyOwner) -> None:
    """A new file under a temporary name, filled by *fill*, given its owner, mode and
    times, then renamed over *name*; removed again when anything fails."""
    def make(temporary: str) -> int:
        return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)

    temporary, fd = _temporary_name(dir_fd, make)
    assert fd is not None
    try:
        fill(fd)
        owner.apply(fd, info)
    except BaseException:
        os.close(fd)
        _remove_entry(dir_fd, temporary)
        raise
    os.close(fd)
    _replace(dir_fd, temporary, name)


def write_symlink(dir_fd: int, name: str, target: str, info: os.stat_result | EntryMeta,
                  owner: CopyOwner) -> None:
    """*name* in *dir_fd* becomes a symlink to *target* (stored as is, never followed)."""
    def make(temporary: str) -> None:
        os.symlink(target, temporary, dir_fd=dir_fd)

    temporary, _ = _temporary_name(dir_fd, make)
    if owner.keep:
        os.chown(temporary, info.st_uid, info.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    _replace(dir_fd, temporary, name)


def write_hard_link(dir_fd: int, name: str, target_dir_fd: int, target: str) -> None:
    """*name* in *dir_fd* becomes a hard link to the regular file *target* in
    *target_dir_fd* (checked on an ``O_PATH`` fd, never through a symlink: linking a
    device or a directory is refused); what was at *name* is replaced."""
    path_fd = os.open(target, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=target_dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            raise TsuboError("copy to", name, detail="a hard link to something that is not "
                             "a regular file")

        def make(temporary: str) -> None:  # the very file checked, through its O_PATH fd
            os.link(f"/proc/self/fd/{path_fd}", temporary, dst_dir_fd=dir_fd,
                    follow_symlinks=True)

        temporary, _ = _temporary_name(dir_fd, make)
    finally:
        os.close(path_fd)
    _replace(dir_fd, temporary, name)


def make_directory(dir_fd: int, name: str, mode: int = 0o755) -> tuple[int, bool]:
    """A readable fd of the directory *name* in *dir_fd*, made if missing; (fd, made).
    A symlink or a file there is an error, never followed or replaced."""
    made = True
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        made = False
    try:
        return os.open(name, _DIRECTORY_FLAGS, dir_fd=dir_fd), made
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise TsuboError("copy to", name, detail="cannot overwrite a non-directory "
                             "with a directory") from None
        raise


def copy_entry(source_dir_fd: int, source_name: str, target_dir_fd: int, target_name: str,
               owner: CopyOwner, *, depth: int = 0, skip: frozenset[int] = frozenset()
               ) -> bool:
    """Copy one entry (a directory with everything under it, a regular file or a
    symlink) from one directory fd to another: directories merge into what is there,
    files and symlinks replace it. Device nodes, FIFOs and sockets are skipped, as is
    what vanishes or changes type meanwhile, and directories on the file systems
    (``st_dev``) in *skip* (a container's /proc and /sys). False when nothing was
    copied (skipped, or gone)."""
    info = entry_stat(source_dir_fd, source_name)
    if info is None:
        return False
    if stat.S_ISDIR(info.st_mode) and info.st_dev in skip:
        return False
    if stat.S_ISDIR(info.st_mode):
        try:
            source_fd = open_directory_at(source_dir_fd, source_name)
        except OSError:
            return False  # swapped for something else meanwhile
        try:
            target_fd, made = make_directory(target_dir_fd, target_name)
            try:
                copy_contents(source_fd, target_fd, owner, depth=depth + 1, skip=skip)
                if made or owner.keep:
                    owner.apply(target_fd, info)
            finally:
                os.close(target_fd)
        finally:
            os.close(source_fd)
        return True
    elif stat.S_ISREG(info.st_mode):
        opened = open_regular_at(source_dir_fd, source_name)
        if opened is None:
            return False
        source_fd, checked = opened
        try:
            write_file(target_dir_fd, target_name, source_fd, checked, owner)
        finally:
            os.close(source_fd)
        return True
    elif stat.S_ISLNK(info.st_mode):
        try:
            target = os.readlink(source_name, dir_fd=source_dir_fd)
        except OSError:
            return False
        write_symlink(target_dir_fd, target_name, target, info, owner)
        return True
    return False


def copy_contents(source_fd: int, target_fd: int, owner: CopyOwner, *, depth: int = 0,
                  skip: frozenset[int] = frozenset()) -> None:
    """Copy every entry of the directory *source_fd* into the directory *target_fd*
    (*skip*: as :func:`copy_entry`)."""
    if depth > MAX_COPY_DEPTH:
        raise TsuboError("copy", "directory tree", detail=f"nested deeper than "
                         f"{MAX_COPY_DEPTH} levels")
    with os.scandir(source_fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        copy_entry(source_fd, name, target_fd, name, owner, depth=depth, skip=skip)
