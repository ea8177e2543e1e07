"""Snapshots: a container's root as an overlay of image layers, and the layers' sizes.

The root is an overlay mount (the seed's announced part 3): the image's layers — or a
``--rootfs`` directory — as read-only lower layers, and a private ``upper``/``work`` pair per
container, so many containers share one directory without writing into it. This module owns
mounting and unmounting it (through ``kernel/syscalls``), always ``nodev``.

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

from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class SnapshotFolder(Protocol):
        """A container's folder: ``directory`` holds ``upper``/``work``; ``merged`` is the
        mount point (the engine's ``ContainerFiles``)."""

        @property
        def directory(self) -> str: ...

        @property
        def merged(self) -> str: ...


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


def mount_root(files: SnapshotFolder, lower_dirs: list[str], *, volatile: bool = False
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
    Costs ~0.1 ms more than a plain mount."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import CLONE_FS, MS_NODEV

    def work() -> None:
        syscalls.unshare(CLONE_FS)
        os.chdir(directory)
        syscalls.mount("overlay", target, "overlay", MS_NODEV, options)

    syscalls.in_own_thread(work)


def unmount_root(merged: str) -> None:
    """Unmount the overlay root; "not mounted" counts as done."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import MNT_DETACH

    try:
        syscalls.umount2(merged, MNT_DETACH)
    except OSError as error:
        if error.errno not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise TsuboError.from_os_error("unmount", merged, error) from None


def tree_size(path: str) -> int:
    """Bytes in the files under *path*, as Docker's ``directory.Size`` counts them (a symlink
    is never followed and counts its own size, a file with several hard links counts once,
    a directory counts nothing); 0 if it is missing."""
    seen: set[tuple[int, int]] = set()
    total = 0
    pending = [path]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    continue
                if info.st_nlink > 1:
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += info.st_size
    return total
