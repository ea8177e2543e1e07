"""A container's files: its overlay root, its bundle, and the /etc files the engine owns.

The root is an overlay mount (the seed's announced part 3): the image's layers — or the
``--rootfs`` directory — as read-only lower layers, and a private ``upper``/``work`` pair per
container, so many containers share one directory without writing into it. The engine owns
``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``: it writes them in the container's
folder and the runtime bind-mounts them in (resolving the destinations inside the root, so
an image's symlinks there cannot redirect them).

Long layer chains: mount(2) copies one page of options, so ``lowerdir=`` with full layer
paths (``<data root>/layers/<64 hex>``, ~90 bytes each) fails beyond ~40 layers. Such
chains are mounted as Docker's overlay2 driver does: each layer gets a short symlink
``<data root>/l/<12 hex>`` -> ``../layers/<hex>`` and ``lowerdir=`` lists the link names,
relative to ``l/``. The kernel resolves relative option paths against the mounting task's
working directory; the engine's monitor calls this, so the directory is changed only in a
short-lived thread that has unshared its filesystem context (``unshare(CLONE_FS)``): no
other thread's cwd moves, and nothing needs to fork. See docs/images.md, "Long layer
chains".
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class ContainerFiles:
    """The folder ``<data root>/containers/<id>`` and what lives in it."""

    __slots__ = ("directory",)

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @property
    def bundle(self) -> str:
        return self.directory

    @property
    def config(self) -> str:
        return f"{self.directory}/config.json"

    @property
    def merged(self) -> str:
        return f"{self.directory}/merged"

    @property
    def log(self) -> str:
        return f"{self.directory}/container.log"

    def etc_file(self, name: str) -> str:
        return f"{self.directory}/etc/{name}"

    def create(self, lower_dir: str) -> None:
        os.makedirs(self.directory, mode=0o700)
        for sub in ("upper", "work", "merged", "etc"):
            os.mkdir(f"{self.directory}/{sub}", 0o700 if sub != "merged" else 0o755)
        # The merged root takes the upper directory's mode and owner: give it the image
        # root's, or every non-root user in the container would find / closed (0700).
        info = os.stat(lower_dir)
        os.chmod(f"{self.directory}/upper", info.st_mode & 0o7777)
        os.chown(f"{self.directory}/upper", info.st_uid, info.st_gid)

    def write_etc_files(self, hostname: str, host_resolv_conf: str = "/etc/resolv.conf",
                        nameserver: str = "") -> dict[str, str]:
        """Write hostname, hosts and resolv.conf (the host's, or *nameserver* alone: the
        gateway's resolver of a container on a network); {container path: host file}."""
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"127.0.1.1\t{hostname}\n")
        if nameserver:
            resolv = f"nameserver {nameserver}\noptions ndots:0\n".encode()
        else:
            try:
                with open(host_resolv_conf, "rb") as source:
                    resolv = source.read()
            except OSError:
                resolv = b""
        files = {"hostname": f"{hostname}\n".encode(), "hosts": hosts.encode(),
                 "resolv.conf": resolv}
        mapping = {}
        for name, content in files.items():
            path = self.etc_file(name)
            with open(path, "wb") as target:
                target.write(content)
            os.chmod(path, 0o644)
            mapping[f"/etc/{name}"] = path
        return mapping

    def remove(self) -> None:
        """Remove the folder (after the root is unmounted); a missing folder is fine."""
        import shutil

        if os.path.ismount(self.merged):
            unmount_root(self.merged)
        shutil.rmtree(self.directory, ignore_errors=True)


def check_lower_dir(path: str) -> str:
    """``--rootfs DIR``: an absolute directory whose path is safe in overlay options."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise NotFound("use rootfs", path, detail="no such directory")
    if any(char in path for char in ",:\\\n"):
        raise InvalidArgument("use rootfs", path,
                              detail="overlay cannot take a path containing , : or \\")
    return path


#: mount(2) copies one page of options (PAGE_SIZE, with the terminating NUL)
OPTIONS_MAX = 4095
#: longer options with full layer paths are mounted through short links instead (tests
#: lower it to take that path, the only one a long chain has, with a short chain)
LINKS_ABOVE = OPTIONS_MAX
#: overlayfs stacks at most this many lower layers (OVL_MAX_STACK, Linux 6.1 to 6.18)
MAX_LOWER_LAYERS = 500
#: the folder of short layer links, beside the folder holding the layers
LINKS_DIR = "l"
#: link names are this many hex digits of a hash of the target; a name taken by another
#: layer (a hash-prefix collision) moves on to the next length
LINK_NAME_LENGTHS = (12, 16, 24, 32, 64)


def check_layer_count(image: str, count: int) -> None:
    """Refuse (at create time) an image with more layers than overlayfs can stack."""
    if count > MAX_LOWER_LAYERS:
        from tsubo.errors import Unsupported

        raise Unsupported("use image", image, detail=f"{count} layers, overlayfs stacks "
                          f"at most {MAX_LOWER_LAYERS}", hint="squash the image")


def mount_root(files: ContainerFiles, lower_dirs: list[str], *, volatile: bool = False
               ) -> None:
    """Mount the overlay root at ``merged`` (no-op when it is mounted already).

    *lower_dirs* are the lower directories, top first; an entry may hold several joined
    with ``:`` (a container row's ``rootfs``). When their full paths do not fit one page of
    mount options they are mounted through short links (:func:`layer_links`).

    *volatile* (for ``--rm`` containers, whose upper layer is thrown away) skips the sync
    of the upper file system that overlayfs otherwise does on every unmount and syncfs:
    measured here as occasional 200 ms stalls of the next container start."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import MS_NODEV

    if os.path.ismount(files.merged):
        return
    layers = [layer for entry in lower_dirs for layer in entry.split(":")]
    rest = f",upperdir={files.directory}/upper,workdir={files.directory}/work"
    if volatile:
        rest += ",volatile"
    options = f"lowerdir={':'.join(layers)}{rest}"
    try:
        if len(os.fsencode(options)) <= LINKS_ABOVE:
            # nodev: layers keep device nodes, and a container can make its own in its upper
            # layer; the engine reads files of this root from the host (docs/engine.md)
            syscalls.mount("overlay", files.merged, "overlay", MS_NODEV, options)
            return
        links_dir, names = layer_links(layers)
        options = f"lowerdir={':'.join(names)}{rest}"
        if len(os.fsencode(options)) > OPTIONS_MAX:
            raise TsuboError("mount overlay on", files.merged,
                             detail=f"{len(layers)} layers exceed one page of mount "
                                    "options even as short links", hint="squash the image")
        mount_relative(links_dir, files.merged, options)
    except OSError as error:
        raise TsuboError.from_os_error("mount overlay on", files.merged, error) from None


def layer_links(layer_dirs: list[str]) -> tuple[str, list[str]]:
    """Short names for *layer_dirs*, which must share one parent folder P: symlinks
    ``dirname(P)/l/<name>`` -> ``../<basename P>/<layer>``, made when missing. Returns the
    links folder and the names, in order.

    A name is the first 12 hex digits of the SHA-256 of the link's target. Links are only
    ever created (``symlinkat``, atomic), never changed, so a name read once keeps meaning
    the same layer; a name held by another target (a dangling link of a removed layer, or a
    hash-prefix collision) makes the layer take a longer name. Cost: one readlink per
    layer, whatever the number of containers (about 2.5 us each with the hash)."""
    parents = {os.path.dirname(layer) for layer in layer_dirs}
    if len(parents) != 1:
        raise InvalidArgument("link layers", ", ".join(sorted(parents)),
                              detail="layers of one chain must share one folder")
    parent = parents.pop()
    links_dir = os.path.join(os.path.dirname(parent), LINKS_DIR)
    os.makedirs(links_dir, mode=0o700, exist_ok=True)
    dir_fd = os.open(links_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        prefix = f"../{os.path.basename(parent)}/"
        return links_dir, [_link(dir_fd, prefix + os.path.basename(layer))
                           for layer in layer_dirs]
    finally:
        os.close(dir_fd)


def _link(dir_fd: int, target: str) -> str:
    """The name of a link to *target* in the folder *dir_fd* (made if none exists yet)."""
    import hashlib

    digest = hashlib.sha256(os.fsencode(target)).hexdigest()
    for length in LINK_NAME_LENGTHS:
        name = digest[:length]
        while True:
            try:
                if os.readlink(name, dir_fd=dir_fd) == target:
                    return name
                break  # taken by another target: try a longer name
            except FileNotFoundError:
                pass
            except OSError as error:
                if error.errno != 22:  # EINVAL: not a symlink, so taken as well
                    raise
                break
            try:
                os.symlink(target, name, dir_fd=dir_fd)
                return name
            except FileExistsError:
                continue  # made meanwhile by another engine process: read it again
    raise TsuboError("link layer", target, detail="every link name is taken")


def prune_layer_links(links_dir: str) -> list[str]:
    """Remove the links of ``links_dir`` whose layer is gone; their names."""
    removed: list[str] = []
    try:
        entries = os.scandir(links_dir)
    except FileNotFoundError:
        return removed
    with entries:
        for entry in entries:
            if entry.is_symlink() and not os.path.exists(entry.path):
                try:
                    os.unlink(entry.path)
                    removed.append(entry.name)
                except FileNotFoundError:
                    pass
    return removed


def mount_relative(directory: str, target: str, options: str) -> None:
    """mount(2) an overlay on *target* with *options* whose relative paths are resolved
    from *directory*: done in a new thread that first unshares its cwd from the process
    (``unshare(CLONE_FS)``), so other threads never see the change. OSError as mount's.
    Costs ~0.1 ms more than a plain mount (``_thread``, not ``threading``: ~4 ms import)."""
    import _thread

    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import CLONE_FS, MS_NODEV

    errors: list[BaseException] = []
    done = _thread.allocate_lock()
    done.acquire()

    def work() -> None:
        try:
            syscalls.unshare(CLONE_FS)
            os.chdir(directory)
            syscalls.mount("overlay", target, "overlay", MS_NODEV, options)
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)
        finally:
            done.release()

    _thread.start_new_thread(work, ())
    done.acquire()
    if errors:
        raise errors[0]


def unmount_root(merged: str) -> None:
    """Unmount the overlay root; "not mounted" counts as done."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import MNT_DETACH

    try:
        syscalls.umount2(merged, MNT_DETACH)
    except OSError as error:
        if error.errno not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise TsuboError.from_os_error("unmount", merged, error) from None


def make_passwd_lookup(rootfs: str) -> Callable[[str], tuple[int, int, list[int]]]:
    """A lookup of users in the container's own /etc/passwd and /etc/group, read through
    fd-safe paths (an image may make them symlinks to host files): ``name`` (or ``#uid``)
    -> (uid, primary gid, supplementary gids). Never NSS: the host's users are irrelevant."""

    def lookup(name: str) -> tuple[int, int, list[int]]:
        passwd = _read_in_root(rootfs, "/etc/passwd")
        by_uid = name[1:] if name.startswith("#") else None  # "#1000": look up by uid
        for line in passwd.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and (fields[2] == by_uid if by_uid else fields[0] == name):
                name = fields[0]
                uid, gid = int(fields[2]), int(fields[3])
                groups = [int(group_fields[2]) for group_fields in
                          (entry.split(":") for entry in
                           _read_in_root(rootfs, "/etc/group").splitlines())
                          if len(group_fields) >= 4 and name in group_fields[3].split(",")
                          and group_fields[2].isdigit()]
                return uid, gid, groups
        raise NotFound("find user", name, detail="no matching entries in passwd file")

    return lookup


def lookup_group(rootfs: str, name: str) -> int:
    """A group name's gid in the container's /etc/group."""
    for line in _read_in_root(rootfs, "/etc/group").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise NotFound("find group", name, detail="no matching entries in group file")


def _read_in_root(rootfs: str, path: str) -> str:
    """A file of the container's own (an image's or a live root's, so hostile): "" when it
    does not exist; a FIFO, a device node or an oversized file is an error, never read."""
    from tsubo.kernel.untrusted import read_file_in_root

    try:
        return read_file_in_root(rootfs, path).decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except OSError as error:
        raise TsuboError.from_os_error(f"read {path} in", rootfs, error) from None
