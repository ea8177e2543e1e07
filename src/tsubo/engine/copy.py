"""``cp``: files between a container and the host (or a tar stream), as ``docker cp``.

Which root: a running (or paused) container is copied through ``/proc/PID/root`` of its
init, so the copy sees what the container sees (its volumes and tmpfs mounts included);
a stopped one through its overlay root, mounted for the copy when it is not; there a path
in one of its volumes or bind mounts is looked up in that mount's own directory instead,
with the mount's directory as the root (the longest destination that holds the path; what
lies below a mount point is not walked into when a whole tree above it is copied). Paths
are resolved inside that root and never followed out of it (``kernel/untrusted.py``): the
container may swap any directory for a symlink to ``/`` while we copy (CVE-2018-15664),
and at worst the copy lands elsewhere *inside* the container (or its volume). Entries are
read only when they are regular files, checked before they are opened; device nodes,
FIFOs and sockets are skipped. ``/proc`` and ``/sys`` of a running
container are kernel interfaces, not its files: refused.

Docker's rules for where a copy lands: a file onto a directory goes into it; onto a file
(or nothing) it takes that name; a directory onto a directory goes into it, or only its
contents when the source ends in ``/.``; a directory never replaces a file; a destination
ending in ``/`` must be a directory. Owners: into the container, root's (``-a``: the
source's); onto the host, ours with set-user/group-ID bits dropped (``-a``: the
container's owners and modes); in a tar stream, the container's. ``-L`` follows a
symlink the source path names (inside the root).
"""

from __future__ import annotations

import os
import stat

from tsubo.engine import status
from tsubo.errors import InvalidArgument, NotFound, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Iterator
    from typing import BinaryIO

    from tsubo.engine.core import EngineCore
    from tsubo.kernel.untrusted import CopyOwner
    from tsubo.state.db import ContainerRow

O_PATH = getattr(os, "O_PATH", 0o10000000)
_KERNEL_TREES = ("proc", "sys")


class _Place:
    """One end of a copy: a directory fd (``O_PATH``) and a name in it (``""``: the
    directory itself), and whether only a directory's contents are meant (``/.``)."""

    __slots__ = ("contents", "dir_fd", "name", "shown", "skip", "trailing_slash")

    def __init__(self, dir_fd: int, name: str, shown: str) -> None:
        #: file systems not to walk into (a running container's /proc and /sys)
        self.skip: frozenset[int] = frozenset()
        self.dir_fd = dir_fd
        self.name = name
        self.shown = shown
        stripped = shown.rstrip("/")
        self.contents = stripped.endswith("/.") or stripped == "."
        self.trailing_slash = shown.endswith("/") and len(shown) > 1

    def close(self) -> None:
        os.close(self.dir_fd)


def copy_from_container(engine: EngineCore, ref: str, path: str, *, destination: str = "",
                        stream: BinaryIO | None = None, follow: bool = False,
                        archive: bool = False) -> None:
    """Copy *path* of the container to the host path *destination*, or as a tar archive
    to *stream*."""
    from tsubo.kernel.untrusted import CopyOwner

    row = engine.refresh(engine.db.resolve_container(ref))
    with _container_root(engine, row, path) as root:
        root_fd, inner = root.fd, root.inner
        source = _container_place(root_fd, inner, path, follow=follow)
        source.skip = _kernel_file_systems(root_fd)
        try:
            if stream is not None:
                _write_archive(source, stream)
                return
            target = _host_place(destination)
            directory = _host_directory(destination)
            try:
                _copy(source, target, directory,
                      CopyOwner(keep=archive, uid=os.getuid(), gid=os.getgid(),
                                strip_setid=not archive))
            finally:
                target.close()
                if directory >= 0:
                    os.close(directory)
        finally:
            source.close()


def copy_to_container(engine: EngineCore, ref: str, path: str, *, source: str = "",
                      stream: BinaryIO | None = None, follow: bool = False,
                      archive: bool = False) -> None:
    """Copy the host path *source*, or the tar archive read from *stream*, to *path* in
    the container."""
    from tsubo.kernel.untrusted import CopyOwner, open_in_root

    owner = CopyOwner(keep=archive)
    row = engine.refresh(engine.db.resolve_container(ref))
    with _container_root(engine, row, path) as root:
        root_fd, inner = root.fd, root.inner
        if stream is not None:
            try:
                directory = open_in_root(root_fd, inner)
            except FileNotFoundError:
                raise NotFound("copy to", f"{row.name}:{path}",
                               detail="no such directory") from None
            try:
                if not stat.S_ISDIR(os.fstat(directory).st_mode):
                    raise InvalidArgument("copy to", f"{row.name}:{path}",
                                          detail="extracting an archive needs a directory")
                _read_archive(stream, directory, owner)
            finally:
                os.close(directory)
            return
        origin = _host_source(source, follow)
        try:
            target = _container_target(root_fd, row.name, inner, path)
            directory = _directory_in_root(root_fd, inner)
            try:
                _copy(origin, target, directory, owner)
            finally:
                target.close()
                if directory >= 0:
                    os.close(directory)
        finally:
            origin.close()


# --- the container's root ---------------------------------------------------------------------

class _Root:
    """A context manager giving itself: ``fd``, an ``O_PATH`` fd of the root the copy
    works in, and ``inner``, the path there (the container's path, or the rest of it in
    a stopped container's volume)."""

    def __init__(self, engine: EngineCore, row: ContainerRow, path: str) -> None:
        self.engine = engine
        self.row = row
        self.path = path
        self.inner = path
        self.fd = -1
        self.mounted: str = ""

    def __enter__(self) -> _Root:
        from tsubo.kernel.procfs import is_alive

        row = self.row
        if row.state in (status.RUNNING, status.PAUSED):
            first = [part for part in self.path.split("/") if part and part != "."][:1]
            if first and first[0] in _KERNEL_TREES:
                raise InvalidArgument("copy", f"{row.name}:{self.path}",
                                      detail=f"/{first[0]} of a running container is a "
                                      "kernel interface, not its files")
            record = self.engine.runtime.store.load(row.id)
            try:
                self.fd = os.open(f"/proc/{record.pid}/root",
                                  O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                self.fd = -1
            if self.fd >= 0 and is_alive(record.pid, record.start_time):
                return self
            if self.fd >= 0:
                os.close(self.fd)
            raise TsuboError("copy", row.name, detail=f"container {row.name} exited "
                             "meanwhile", hint="copy again")
        if row.state not in (status.CREATED, status.EXITED, status.DEAD):
            raise TsuboError("copy", row.name, detail=f"container is {row.state}",
                             hint="copy again in a moment")
        from tsubo.engine.storage import ContainerFiles
        from tsubo.image.snapshots import mount_root

        files = ContainerFiles(self.engine.paths.container_dir(row.id))
        mounted = _mount_holding(files.bundle, self.path)
        if mounted is not None:
            source, self.inner = mounted
            try:
                self.fd = os.open(source, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as error:
                raise TsuboError.from_os_error("open the volume of", row.name,
                                               error) from None
            return self
        if not os.path.ismount(files.merged):
            mount_root(files, [row.rootfs])
            self.mounted = files.merged
        try:
            self.fd = os.open(files.merged, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            self._unmount()
            raise TsuboError.from_os_error("open the root of", row.name, error) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self._unmount()

    def _unmount(self) -> None:
        if self.mounted:
            from tsubo.image.snapshots import unmount_root

            unmount_root(self.mounted)
            self.mounted = ""


def _mount_holding(bundle: str, path: str) -> tuple[str, str] | None:
    """(its source directory, the rest of *path*) for the bind mount of the container's
    config (a volume, a ``-v``/``--mount`` bind) whose destination holds *path*, the
    longest such; None when *path* is in the container's own root."""
    from tsubo import jsonwire

    try:
        with open(f"{bundle}/config.json", "rb") as config_file:
            config = jsonwire.loads(config_file.read())
    except (OSError, ValueError):
        return None
    mounts = config.get("mounts") if isinstance(config, dict) else None
    wanted = [part for part in path.split("/") if part and part != "."]
    best: tuple[int, str] | None = None
    for mount in mounts if isinstance(mounts, list) else []:
        if not isinstance(mount, dict) or mount.get("type") != "bind":
            continue
        destination, source = mount.get("destination"), mount.get("source")
        if not isinstance(destination, str) or not isinstance(source, str):
            continue
        parts = [part for part in destination.split("/") if part and part != "."]
        if parts and wanted[:len(parts)] == parts and os.path.isdir(source) \
                and (best is None or len(parts) > best[0]):
            best = (len(parts), source)
    if best is None:
        return None
    return best[1], "/" + "/".join(wanted[best[0]:])


def _container_root(engine: EngineCore, row: ContainerRow, path: str) -> _Root:
    if not path.startswith("/"):
        path = "/" + path  # Docker: relative to the container's root
    return _Root(engine, row, path)


def _kernel_file_systems(root_fd: int) -> frozenset[int]:
    """The ``st_dev`` of the root's /proc and /sys when they are mounts of their own (a
    running container's): a copy of ``/`` does not walk the kernel's interfaces."""
    devices = set()
    root_device = os.fstat(root_fd).st_dev
    for name in _KERNEL_TREES:
        try:
            device = os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_dev
        except OSError:
            continue
        if device != root_device:
            devices.add(device)
    return frozenset(devices)


def _container_place(root_fd: int, inner: str, path: str, *, follow: bool) -> _Place:
    """The source *path*, *inner* in the root (``-L``: its last symlink too)."""
    from tsubo.kernel.untrusted import open_in_root, open_parent_in_root

    try:
        if follow:
            return _Place(open_in_root(root_fd, inner), "", path)
        directory, name = open_parent_in_root(root_fd, inner)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound("copy", path, detail="no such file or directory") from None
    place = _Place(directory, name, path)
    from tsubo.kernel.untrusted import entry_stat

    if entry_stat(directory, name) is None:
        place.close()
        raise NotFound("copy", path, detail="no such file or directory")
    return place


def _container_target(root_fd: int, container: str, inner: str, path: str) -> _Place:
    from tsubo.kernel.untrusted import open_parent_in_root

    try:
        directory, name = open_parent_in_root(root_fd, inner)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound("copy to", f"{container}:{path}",
                       detail="no such directory (its parent must exist)") from None
    return _Place(directory, name, path)


def _directory_in_root(root_fd: int, path: str) -> int:
    """An ``O_PATH`` fd of *path* when it is (or, through symlinks clamped to the root,
    leads to) a directory of the container; else -1."""
    from tsubo.kernel.untrusted import open_in_root

    try:
        fd = open_in_root(root_fd, path)
    except OSError:
        return -1
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return -1


# --- the host's side --------------------------------------------------------------------------

def _host_place(path: str) -> _Place:
    """A host path we write to: the caller's own, so its symlinks are the caller's; only
    what we create below it is walked without following."""
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute.rstrip("/") or "/")
    try:
        directory = os.open(parent or "/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise TsuboError.from_os_error("copy to", os.path.dirname(absolute) or "/",
                                       error) from None
    return _Place(directory, name if name != "." else "", path)


def _host_directory(path: str) -> int:
    """An ``O_PATH`` fd of the host path *path* when it is a directory, else -1."""
    try:
        return os.open(path, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1


def _host_source(path: str, follow: bool) -> _Place:
    absolute = os.path.abspath(path)
    if follow:
        absolute = os.path.realpath(absolute)
    place = _host_place(absolute)
    place.shown = path
    stripped = path.rstrip("/")
    place.contents = stripped.endswith("/.") or stripped == "."
    if not os.path.lexists(absolute):
        place.close()
        raise NotFound("copy", path, detail="no such file or directory")
    return place


# --- Docker's rules ---------------------------------------------------------------------------

def _copy(source: _Place, target: _Place, directory: int, owner: CopyOwner) -> None:
    """Copy by Docker's rules; *directory* is an fd of the target when it is a directory
    (found through symlinks: the caller's own on the host, clamped to the root in the
    container), else -1."""
    from tsubo.kernel.untrusted import copy_entry, entry_stat

    info = entry_stat(source.dir_fd, source.name)
    if info is None:
        raise NotFound("copy", source.shown, detail="no such file or directory")
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)
            or stat.S_ISLNK(info.st_mode)):
        raise InvalidArgument("copy", source.shown, detail="only directories, regular files "
                              "and symlinks are copied (this is a device, FIFO or socket)")
    source_is_directory = stat.S_ISDIR(info.st_mode)
    contents = source_is_directory and (source.contents or not source.name)
    name = source.name or os.path.basename(source.shown.rstrip("/")) or ""
    try:
        if directory >= 0:
            if contents or not name or name == ".":
                _copy_contents(source, directory, owner)
            elif not copy_entry(source.dir_fd, source.name, directory, name, owner,
                                skip=source.skip):
                raise _vanished(source)
            return
        existing = entry_stat(target.dir_fd, target.name)
        if existing is not None and source_is_directory:
            raise InvalidArgument("copy", target.shown,
                                  detail="cannot copy a directory to a file")
        if existing is None and target.trailing_slash and not source_is_directory:
            raise NotFound("copy to", target.shown,
                           detail="the destination directory must exist")
        if not target.name:
            raise InvalidArgument("copy to", target.shown, detail="not a directory")
        if contents:
            from tsubo.kernel.untrusted import make_directory

            directory, _ = make_directory(target.dir_fd, target.name)
            try:
                _copy_contents(source, directory, owner)
            finally:
                os.close(directory)
        elif not copy_entry(source.dir_fd, source.name, target.dir_fd, target.name, owner,
                            skip=source.skip):
            raise _vanished(source)
    except OSError as error:
        raise TsuboError.from_os_error("copy to", target.shown, error) from None


def _vanished(source: _Place) -> NotFound:
    return NotFound("copy", source.shown, detail="no such file or directory (it changed "
                    "while being copied)")


def _copy_contents(source: _Place, directory: int, owner: CopyOwner) -> None:
    from tsubo.kernel.untrusted import copy_contents, open_directory_at

    source_fd = open_directory_at(source.dir_fd, source.name)
    try:
        copy_contents(source_fd, directory, owner, skip=source.skip)
    finally:
        os.close(source_fd)


# --- tar streams ------------------------------------------------------------------------------

class _SizedReader:
    """Exactly *size* bytes of *fd* (zeros if the file shrank meanwhile), for tarfile."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, count: int = -1) -> bytes:
        want = self.left if count < 0 else min(count, self.left)
        data = os.read(self.fd, want) if want else b""
        if want and not data:
            data = bytes(want)
        self.left -= len(data)
        return data


def _write_archive(source: _Place, stream: BinaryIO) -> None:
    import tarfile

    from tsubo.kernel.untrusted import entry_stat

    info = entry_stat(source.dir_fd, source.name)
    if info is None:
        raise NotFound("copy", source.shown, detail="no such file or directory")
    name = "." if source.contents or not source.name else source.name
    if source.name == "" and not source.contents and source.shown.rstrip("/"):
        name = os.path.basename(source.shown.rstrip("/"))
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _archive_entry(tar, source.dir_fd, source.name, name, 0, source.skip, {})


def _archive_entry(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str,
                   depth: int, skip: frozenset[int], linked: dict[tuple[int, int], str]
                   ) -> None:
    """One entry (a directory with what is below it). A file with more than one link
    that is already in the archive (*linked*: (device, inode) -> its name there) becomes a
    hard link to that member, as Docker's archives have them."""
    import tarfile

    from tsubo.kernel.untrusted import (
        MAX_COPY_DEPTH,
        entry_stat,
        open_directory_at,
        open_regular_at,
    )

    info = entry_stat(dir_fd, name)
    if info is None:
        return
    member = tarfile.TarInfo(arcname)
    member.mode = stat.S_IMODE(info.st_mode)
    member.uid, member.gid = info.st_uid, info.st_gid
    member.mtime = int(info.st_mtime)
    if stat.S_ISDIR(info.st_mode) and info.st_dev in skip:
        return
    if stat.S_ISDIR(info.st_mode):
        if depth > MAX_COPY_DEPTH:
            raise TsuboError("copy", arcname, detail=f"nested deeper than {MAX_COPY_DEPTH}")
        try:
            fd = open_directory_at(dir_fd, name)
        except OSError:
            return
        try:
            member.type = tarfile.DIRTYPE
            tar.addfile(member)
            with os.scandir(fd) as entries:
                names = sorted(entry.name for entry in entries)
            for child in names:
                _archive_entry(tar, fd, child, f"{arcname}/{child}", depth + 1, skip,
                               linked)
        finally:
            os.close(fd)
    elif stat.S_ISREG(info.st_mode):
        opened = open_regular_at(dir_fd, name)
        if opened is None:
            return
        fd, checked = opened
        try:
            key = (checked.st_dev, checked.st_ino)
            if checked.st_nlink > 1 and key in linked:
                member.type, member.linkname = tarfile.LNKTYPE, linked[key]
                tar.addfile(member)
                return
            if checked.st_nlink > 1:
                linked[key] = arcname
            member.size = checked.st_size
            tar.addfile(member, _SizedReader(fd, checked.st_size))
        finally:
            os.close(fd)
    elif stat.S_ISLNK(info.st_mode):
        try:
            member.linkname = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return
        member.type = tarfile.SYMTYPE
        tar.addfile(member)


def _read_archive(stream: BinaryIO, directory: int, owner: CopyOwner) -> None:
    """Write a tar stream's directories, files and symlinks below *directory*: each
    member's path is walked from there one component at a time, never through a symlink,
    and a member naming ``..`` or leaving the directory is refused. tarfile only parses."""
    import tarfile

    from tsubo.kernel.untrusted import (
        EntryMeta,
        make_directory,
        write_stream,
        write_symlink,
    )

    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 (closed by the with below)
    except tarfile.TarError as error:
        raise InvalidArgument("copy", "-", detail=f"not a tar archive: {error}") from None
    with tar:
        for member in _members(tar):
            parts = [part for part in member.name.split("/") if part and part != "."]
            if any(part == ".." for part in parts):
                raise InvalidArgument("copy archive member", repr(member.name),
                                      detail="leaves the destination directory")
            if not parts:
                continue
            meta = EntryMeta(mode=member.mode, uid=member.uid, gid=member.gid,
                             size=member.size, mtime=member.mtime)
            parent = os.dup(directory)
            try:
                for part in parts[:-1]:
                    child, _ = make_directory(parent, part)
                    os.close(parent)
                    parent = child
                last = parts[-1]
                if member.isdir():
                    child, _ = make_directory(parent, last, 0o700)
                    try:
                        owner.apply(child, meta)
                    finally:
                        os.close(child)
                elif member.isreg():
                    reader = tar.extractfile(member)
                    if reader is not None:
                        write_stream(parent, last, reader.read, meta, owner)
                elif member.issym():
                    write_symlink(parent, last, member.linkname, meta, owner)
                elif member.islnk():
                    _hard_link(directory, member, parent, last)
                # devices, FIFOs: not written (as the copy walk skips them)
            except OSError as error:
                raise TsuboError.from_os_error("copy archive member", repr(member.name),
                                               error) from None
            finally:
                os.close(parent)


def _hard_link(directory: int, member: tarfile.TarInfo, parent: int, last: str) -> None:
    """A hard link member: its target (a name from the archive's top, as tar stores it)
    is walked from *directory* as every member is, never through a symlink or out."""
    from tsubo.kernel.untrusted import open_directory_at, write_hard_link

    parts = [part for part in member.linkname.split("/") if part and part != "."]
    if not parts or ".." in parts:
        raise InvalidArgument("copy archive member", repr(member.name),
                              detail=f"links to {member.linkname!r}, outside the archive")
    target_dir = os.dup(directory)
    try:
        for part in parts[:-1]:
            child = open_directory_at(target_dir, part)
            os.close(target_dir)
            target_dir = child
        write_hard_link(parent, last, target_dir, parts[-1])
    finally:
        os.close(target_dir)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    import tarfile

    try:
        yield from tar
    except tarfile.TarError as error:
        raise InvalidArgument("copy", "-", detail=f"bad tar archive: {error}") from None
