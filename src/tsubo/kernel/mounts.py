"""Mounts of a container root: safe mount points, binds, remounts, pivot_root, masking.

Every path inside the container root is resolved with openat2(2) and ``RESOLVE_IN_ROOT``
from a directory fd of the root, so ``..`` and symlinks planted by an image stay inside it
(CVE-2019-19921, CVE-2025-31133 class). The resolved object is then mounted on through its
``/proc/self/fd/N`` magic link, never by a path string that could be swapped between check
and use — the technique runc uses.

Functions raise :class:`tsubo.errors.TsuboError` naming the operation and object. The steps
they take (:class:`MountStep`, :class:`DeviceNode`) are defined here, at the level that
carries them out; ``runtime/plan.py`` builds them from the config.
"""

from __future__ import annotations

import errno
import os
import stat

from tsubo.errors import TsuboError
from tsubo.kernel import procfs, syscalls
from tsubo.kernel.flags import (
    CLONE_NEWNS,
    MNT_DETACH,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_UNBINDABLE,
    OPEN_TREE_CLONE,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    STATVFS_LOCKED_FLAGS,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

O_PATH = getattr(os, "O_PATH", 0o10000000)


class MountStep:
    """One mount to make inside the new root, flags already parsed (``runtime/plan.py``
    makes them from the config's ``mounts``; :func:`mount_step` carries one out)."""

    __slots__ = ("copy_up", "data", "destination", "flags", "fstype", "is_bind",
                 "propagation", "remount_flags", "source")

    def __init__(self, source: str, destination: str, fstype: str, flags: int, data: str,
                 propagation: list[int], is_bind: bool, remount_flags: int) -> None:
        self.source = source
        self.destination = destination
        self.fstype = fstype
        self.flags = flags
        self.data = data
        self.propagation = propagation
        self.is_bind = is_bind
        #: flags that need a second, MS_REMOUNT|MS_BIND call (ro, nosuid, ... on binds)
        self.remount_flags = remount_flags
        #: ``tmpcopyup`` (runc's extension, used by podman): seed the new tmpfs with what
        #: the image has at the destination
        self.copy_up = False

    def __repr__(self) -> str:
        return (f"MountStep({self.source!r} -> {self.destination!r}, {self.fstype!r}, "
                f"flags={self.flags:#x}, data={self.data!r}, bind={self.is_bind})")


class DeviceNode:
    """A device node to create in the container's /dev (:func:`create_device`)."""

    __slots__ = ("gid", "major", "minor", "mode", "path", "type", "uid")

    def __init__(self, path: str, type_: str, major: int, minor: int, mode: int, uid: int,
                 gid: int) -> None:
        self.path = path
        self.type = type_
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid


def fd_path(fd: int) -> str:
    """The magic link that names the object behind *fd*."""
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd: int, path: str, flags: int = O_PATH) -> int:
    """openat2(root_fd, path, RESOLVE_IN_ROOT): symlinks and ``..`` cannot leave the root."""
    return syscalls.openat2(root_fd, path.lstrip("/") or ".", flags,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def make_mount_point(root_fd: int, path: str, directory: bool) -> int:
    """Create *path* inside the root (a directory, or an empty file for a file bind mount)
    with its missing parents, and return an O_PATH fd of it."""
    parts = [part for part in path.split("/") if part]
    parent_fd = os.dup(root_fd)
    try:
        for index, part in enumerate(parts):
            # Resolve each prefix from the root, so a symlink in the image is followed the
            # way the container will see it, and never out of the root.
            prefix = "/".join(parts[: index + 1])
            try:
                child = open_in_root(root_fd, prefix)
            except FileNotFoundError:
                try:
                    if index == len(parts) - 1 and not directory:
                        os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                                         | os.O_CLOEXEC, 0o644, dir_fd=parent_fd))
                    else:
                        os.mkdir(part, 0o755, dir_fd=parent_fd)
                except FileExistsError:
                    raise TsuboError("create mount point", path,
                                     detail=f"{prefix} is a dangling symlink in the image"
                                     ) from None
                child = open_in_root(root_fd, prefix)
            os.close(parent_fd)
            parent_fd = child
    except OSError as error:
        os.close(parent_fd)
        raise TsuboError.from_os_error("create mount point", path, error) from None
    except TsuboError:
        os.close(parent_fd)
        raise
    if _same_file(parent_fd, root_fd):
        os.close(parent_fd)
        raise TsuboError("create mount point", path,
                         detail="resolves to the container root itself (a symlink in the "
                         "image?): refusing to mount over the root")
    return parent_fd


def _same_file(first_fd: int, second_fd: int) -> bool:
    first, second = os.fstat(first_fd), os.fstat(second_fd)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _refuse_symlink(root_fd: int, path: str) -> None:
    """proc and sysfs must be mounted on an ordinary directory, never through a symlink
    the image planted (runc's rule): masking and read-only paths rely on their location."""
    parent, _, name = path.rstrip("/").rpartition("/")
    if not name:
        return
    parent_fd = open_in_root(root_fd, parent or "/")
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    finally:
        os.close(parent_fd)
    if stat.S_ISLNK(info.st_mode):
        raise TsuboError("mount", path, detail="the destination is a symlink in the image; "
                         "proc and sysfs must be mounted on an ordinary directory")


def locked_flags(path: str) -> int:
    """Mount flags of the mount at *path* that a remount must keep (else EPERM in a
    user namespace): nosuid, nodev, noexec, noatime... as statvfs(3) reports them."""
    vfs_flags = os.statvfs(path).f_flag
    return sum(mount_flag for vfs_flag, mount_flag in STATVFS_LOCKED_FLAGS
               if vfs_flags & vfs_flag)


def prepare_root(rootfs: str, propagation: int, root_mount: int = -1) -> None:
    """Set the new mount namespace's propagation, then make *rootfs* a mount point (a
    recursive bind on itself) so pivot_root(2) accepts it. *propagation* is the config's
    ``rootfsPropagation`` (default rslave); shared and unbindable reach the new / only after
    the pivot (:func:`propagate_new_root`). *root_mount* (closed here): a detached copy of
    the root's mount (:func:`clone_mount`) to mount on *rootfs* first."""
    if propagation & MS_UNBINDABLE:
        # Nothing could be bound from an unbindable tree (the rootfs onto itself, the
        # config's binds: EINVAL): build the root in a slave tree and make the new /
        # unbindable after the pivot (propagate_new_root).
        propagation = MS_SLAVE | MS_REC
    try:
        syscalls.mount(None, "/", None, propagation)
    except OSError as error:
        raise TsuboError.from_os_error("set propagation of", "/", error) from None
    if root_mount >= 0:
        try:
            attach_mount(root_mount, rootfs)
        finally:
            os.close(root_mount)
    if propagation & MS_SHARED:
        # pivot_root(2) refuses a new root whose parent mount is shared (EINVAL), and the
        # bind below would propagate to the parent's peers: make that one mount private
        # first, as runc does (the config's propagation is given to the new / after the
        # pivot).
        parent = parent_mount_point(rootfs)
        try:
            syscalls.mount(None, parent, None, MS_PRIVATE)
        except OSError as error:
            raise TsuboError.from_os_error("make private", parent, error) from None
    try:
        syscalls.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    except OSError as error:
        raise TsuboError.from_os_error("bind mount rootfs", rootfs, error,
                                       hint="does root.path exist?") from None
    if propagation & (MS_SLAVE | MS_PRIVATE) == 0:
        # pivot_root refuses a shared parent: make the root's own mount private.
        syscalls.mount(None, rootfs, None, MS_PRIVATE)


def make_mount_base(keep_out: Sequence[str]) -> int:
    """A mount namespace for new containers to be copied from: a copy of the caller's, a
    recursive slave (mounts the host makes later still reach it), where every mount below
    each folder of *keep_out* is detached and the folder's own mount, when it is one, made
    private, so nothing mounted there later reaches it either (below a folder that is not a
    mount point, what the host propagates still does). Returns an fd (close-on-exec) that
    keeps it alive, for the runtime to ``setns`` into before its ``unshare``.

    Why: ``unshare(CLONE_NEWNS)`` copies every mount of the caller's namespace, and the
    pivot walks them twice more; an engine's namespace holds two mounts per running
    container (its root and its netns pin), so each start cost more than the one before
    (docs/performance.md, "The Nth container")."""
    made: list[int] = []

    def work() -> None:  # the thread's copy: ours goes with it, the fd keeps it alive
        syscalls.unshare(CLONE_NEWNS)
        syscalls.mount(None, "/", None, MS_SLAVE | MS_REC)
        folders = [os.path.realpath(folder) for folder in keep_out]
        for point in _mount_points_below(folders):
            while True:  # stacked mounts: each one on the point
                try:
                    syscalls.umount2(point, MNT_DETACH)
                except OSError as error:
                    if error.errno in (errno.EINVAL, errno.ENOENT):
                        break
                    raise
        for folder in folders:
            if folder != "/" and parent_mount_point(folder) == folder:
                syscalls.mount(None, folder, None, MS_PRIVATE)
        made.append(os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))

    try:
        syscalls.in_own_thread(work)
    except OSError as error:
        raise TsuboError.from_os_error("make mount namespace base", ", ".join(keep_out),
                                       error) from None
    return made[0]


def _mount_points_below(folders: Sequence[str]) -> list[str]:
    """The calling thread's mount points strictly below *folders*, outermost only (a
    detach takes what is mounted below)."""
    prefixes = tuple(folder.rstrip("/") + "/" for folder in folders)
    points: set[str] = set()
    with open("/proc/thread-self/mountinfo", "rb") as mountinfo:
        for line in mountinfo:
            point = procfs.unescape_mountinfo(os.fsdecode(line.split(b" ", 5)[4]))
            if point.startswith(prefixes):
                points.add(point)
    outermost: list[str] = []
    for point in sorted(points, key=len):
        if not point.startswith(tuple(kept + "/" for kept in outermost)):
            outermost.append(point)
    return outermost


def clone_mount(path: str) -> int:
    """An fd (close-on-exec) of a detached copy of the mount at *path* (not of what is
    mounted below it), for :func:`attach_mount` in another mount namespace."""
    try:
        return syscalls.open_tree(path, OPEN_TREE_CLONE | os.O_CLOEXEC)
    except OSError as error:
        raise TsuboError.from_os_error("clone mount", path, error) from None


def attach_mount(fd: int, target: str) -> None:
    """Mount the detached copy *fd* (:func:`clone_mount`) on *target*."""
    try:
        syscalls.move_mount_fd(fd, target)
    except OSError as error:
        raise TsuboError.from_os_error("attach mount on", target, error) from None


def parent_mount_point(path: str) -> str:
    """The mount point of the mount that holds *path* (resolved): the longest mount point
    in the calling thread's mountinfo that is *path* or one of its parent directories."""
    path = os.path.realpath(path)
    best = "/"
    with open("/proc/thread-self/mountinfo", "rb") as mountinfo:
        for line in mountinfo:
            point = procfs.unescape_mountinfo(os.fsdecode(line.split(b" ", 5)[4]))
            if len(point) > len(best) and (path == point or path.startswith(point + "/")):
                best = point
    return best


def mount_step(root_fd: int, step: MountStep) -> None:
    """Carry out one planned mount inside the root."""
    directory = True
    if step.fstype in ("proc", "sysfs"):
        _refuse_symlink(root_fd, step.destination)
    if step.is_bind:
        try:
            directory = stat.S_ISDIR(os.stat(step.source).st_mode)
        except OSError as error:
            raise TsuboError.from_os_error("bind mount", step.source, error) from None
    target_fd = make_mount_point(root_fd, step.destination, directory)
    target = fd_path(target_fd)
    # For tmpcopyup: this fd keeps naming the image's directory under the new tmpfs.
    below_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) \
        if step.copy_up else -1
    try:
        try:
            syscalls.mount(step.source or step.fstype, target, step.fstype or None, step.flags,
                           step.data or None)
        except OSError as error:
            if step.fstype == "sysfs" and error.errno == 1:
                # No network namespace of our own: sysfs cannot be mounted fresh; bind the
                # host's read-only instead, as runc does.
                syscalls.mount("/sys", target, None, MS_BIND | MS_REC)
                _remount(target, MS_RDONLY)
            else:
                raise TsuboError.from_os_error(
                    f"mount {step.fstype or 'bind'} {step.source or ''}".rstrip() + " on",
                    step.destination, error) from None
        if step.remount_flags or step.propagation:
            # Re-open: the fd we hold names the mount point under the new mount, and a
            # remount or a propagation change must name the new mount itself.
            os.close(target_fd)
            target_fd = open_in_root(root_fd, step.destination)
            target = fd_path(target_fd)
        if step.copy_up:
            # loaded before any fork when a mount has tmpcopyup (runtime/init.py's
            # load_host_code): this import looks nothing up
            from tsubo.kernel.untrusted import copy_tree

            top_fd = open_in_root(root_fd, step.destination, os.O_RDONLY | os.O_DIRECTORY)
            try:
                copy_tree(below_fd, top_fd)
            finally:
                os.close(top_fd)
        if step.remount_flags:
            _remount(target, step.remount_flags)
        for propagation in step.propagation:
            syscalls.mount(None, target, None, propagation)
    except OSError as error:
        raise TsuboError.from_os_error("mount", step.destination, error) from None
    finally:
        os.close(target_fd)
        if below_fd >= 0:
            os.close(below_fd)


def mount_entries(root_fd: int, destination: str,
                  entries: list[tuple[str, str, str, int, str]]) -> None:
    """Carry out raw ``(source, target, fstype, flags, data)`` mount calls below
    *destination* in order (the shape :meth:`Cgroup.mount_plan` returns).

    Once a fresh tmpfs covers the destination (a v1 or hybrid host's cgroup tree), the
    entries below it are made and opened from that tmpfs: it is ours and empty, nothing of
    the image is in it, so one component is resolved from it (``RESOLVE_IN_ROOT``: it cannot
    be left) instead of every prefix from the container root — ~70 fewer ``openat2`` calls
    for a hybrid host's eleven hierarchies, on every container start."""
    tmpfs_fd = -1
    try:
        for source, relative, fstype, flags, data in entries:
            path = f"{destination}/{relative}" if relative else destination
            if relative and tmpfs_fd >= 0:
                target_fd = _directory_in(tmpfs_fd, relative, path)
            else:
                target_fd = make_mount_point(root_fd, path, True)
            try:
                syscalls.mount(source or None, fd_path(target_fd), fstype or None, flags,
                               data or None)
            except OSError as error:
                raise TsuboError.from_os_error(f"mount {fstype or 'bind'} {source} on".replace(
                    "  ", " "), path, error) from None
            finally:
                os.close(target_fd)
            if not relative and fstype == "tmpfs" and not flags & MS_REMOUNT:
                if tmpfs_fd >= 0:
                    os.close(tmpfs_fd)
                tmpfs_fd = open_in_root(root_fd, destination)  # the new mount, not below it
    finally:
        if tmpfs_fd >= 0:
            os.close(tmpfs_fd)


def _directory_in(parent_fd: int, name: str, path: str) -> int:
    """An O_PATH fd of directory *name* in *parent_fd* (made if missing), resolved with
    *parent_fd* as its root."""
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
        return open_in_root(parent_fd, name)
    except OSError as error:
        raise TsuboError.from_os_error("create mount point", path, error) from None


def _remount(target: str, flags: int) -> None:
    syscalls.mount(None, target, None, MS_REMOUNT | MS_BIND | flags | locked_flags(target))


def create_device(root_fd: int, node: DeviceNode, bind_from_host: bool) -> None:
    """Create a device node inside the root; in a user namespace (no mknod there) bind the
    host's node onto an empty file instead."""
    parent, _, name = node.path.rpartition("/")
    parent_fd = make_mount_point(root_fd, parent, True)
    try:
        try:
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        if bind_from_host:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o000,
                             dir_fd=parent_fd))
            file_fd = open_in_root(parent_fd, name)
            try:
                syscalls.mount(node.path, fd_path(file_fd), None, MS_BIND)
            finally:
                os.close(file_fd)
            return
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        os.mknod(name, kind[node.type] | node.mode, os.makedev(node.major, node.minor),
                 dir_fd=parent_fd)
        # mknod obeys the umask: set the exact mode and owner afterwards.
        os.chmod(name, node.mode, dir_fd=parent_fd, follow_symlinks=False)
        os.chown(name, node.uid, node.gid, dir_fd=parent_fd, follow_symlinks=False)
    except OSError as error:
        raise TsuboError.from_os_error("create device", node.path, error) from None
    finally:
        os.close(parent_fd)


def create_symlink(root_fd: int, target: str, link: str) -> None:
    """Create *link* -> *target* inside the root unless something is there already."""
    parent, _, name = link.rpartition("/")
    parent_fd = make_mount_point(root_fd, parent, True)
    try:
        os.symlink(target, name, dir_fd=parent_fd)
    except FileExistsError:
        pass
    except OSError as error:
        raise TsuboError.from_os_error("create symlink", link, error) from None
    finally:
        os.close(parent_fd)


def pivot_into(rootfs: str) -> None:
    """Make *rootfs* the root: pivot_root(".", ".") then detach the old root stacked on top
    (runc's way: no temporary directory inside the container root is needed)."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        syscalls.pivot_root(".", ".")
        os.fchdir(old_root)
        # The old root may be shared with the host: make it a slave before detaching so the
        # unmount does not propagate back.
        syscalls.mount(None, ".", None, MS_SLAVE | MS_REC)
        syscalls.umount2(".", MNT_DETACH)
        os.chdir("/")
    except OSError as error:
        raise TsuboError.from_os_error("pivot_root into", rootfs, error) from None
    finally:
        os.close(old_root)
        os.close(new_root)


def propagate_new_root(propagation: int) -> None:
    """After pivot_root: give the new "/" the config's ``rootfsPropagation`` when that is
    shared (or unbindable): before the pivot the root's own mount had to be private. Slave
    and private were set on the whole tree already (runc's order)."""
    if not propagation or propagation & (MS_SLAVE | MS_PRIVATE):
        return
    try:
        syscalls.mount(None, "/", None, propagation)
    except OSError as error:
        raise TsuboError.from_os_error("set propagation of", "/", error) from None


def chroot_into(rootfs: str) -> None:
    """``--no-pivot``: move the root mount over / and chroot (for ramfs roots)."""
    try:
        os.chdir(rootfs)
        syscalls.mount(rootfs, "/", None, 8192)  # MS_MOVE
        os.chroot(".")
        os.chdir("/")
    except OSError as error:
        raise TsuboError.from_os_error("chroot into", rootfs, error) from None


def mask_path(path: str) -> None:
    """Hide *path*: /dev/null over a file, an empty read-only tmpfs over a directory.
    Runs after pivot_root, so the path is resolved inside the container."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if stat.S_ISDIR(info.st_mode):
            syscalls.mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k,mode=0555")
        else:
            null_fd = _open_dev_null()
            try:
                syscalls.mount(fd_path(null_fd), path, None, MS_BIND)
            finally:
                os.close(null_fd)
    except OSError as error:
        raise TsuboError.from_os_error("mask path", path, error) from None


def _open_dev_null() -> int:
    """/dev/null, checked to be the real character device 1:3 (an image could have made it a
    symlink to a host file; binding that over a masked path would expose it)."""
    fd = os.open("/dev/null", O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISCHR(info.st_mode) or info.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise TsuboError("mask path", "/dev/null", detail="is not the null device (1:3)")
    return fd


def make_readonly(path: str) -> None:
    """Bind *path* onto itself and remount it read-only (``readonlyPaths``)."""
    try:
        syscalls.mount(path, path, None, MS_BIND | MS_REC)
        _remount(path, MS_RDONLY | MS_REC)
    except FileNotFoundError:
        return
    except OSError as error:
        raise TsuboError.from_os_error("make read-only", path, error) from None


def make_root_readonly() -> None:
    """``root.readonly``: remount the new / read-only."""
    try:
        _remount("/", MS_RDONLY)
    except OSError as error:
        raise TsuboError.from_os_error("remount read-only", "/", error) from None
