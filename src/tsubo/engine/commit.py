"""``tsubo diff``, ``commit`` and ``export``: a container's files, from its overlay folders.

A container's changes are its overlay upper directory (``image/layerdiff.py`` turns it into
a layer or an A/C/D list); its whole file system is the overlay of its image's layers and
that upper directory. Mount points the runtime had to create for the container (``/proc``,
``/etc/hosts``, a volume's destination, ... when the image lacks them) are not the
container's changes: an empty entry at a mount destination that no lower layer holds is
left out, as Docker and buildah leave them out.
"""

from __future__ import annotations

import os
import stat

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

    from tsubo.engine.core import EngineCore
    from tsubo.image.store import Image
    from tsubo.state.db import ContainerRow


def mount_point_filter(bundle_config: str, upper: str, lower_dirs: list[str]
                       ) -> Callable[[str, os.stat_result], bool]:
    """A ``skip(path, lstat)`` for the layer writers: True for an empty file or directory
    at a mount destination of the container's OCI config that no lower layer has, and
    for a directory above one that was copied up only for it (the lower layers have it
    with the same owner and mode, and all it holds in *upper* is skipped)."""
    from tsubo import jsonwire
    from tsubo.image.layerdiff import OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, in_lower, lstat_in
    from tsubo.kernel.untrusted import open_directory_nofollow

    destinations: set[str] = set()
    try:
        with open(bundle_config, "rb") as source:
            config = jsonwire.loads(source.read())
    except (OSError, ValueError):
        config = {}
    mounts = config.get("mounts") if isinstance(config, dict) else None
    for mount in mounts if isinstance(mounts, list) else []:
        destination = mount.get("destination") if isinstance(mount, dict) else None
        if isinstance(destination, str) and destination.strip("/"):
            destinations.add(os.path.normpath(destination).strip("/"))

    def skip(path: str, info: os.stat_result) -> bool:
        if path in destinations and not in_lower(lower_dirs, path):
            if stat.S_ISREG(info.st_mode):
                return info.st_size == 0
            return stat.S_ISDIR(info.st_mode)
        if not stat.S_ISDIR(info.st_mode) or \
                not any(dest.startswith(path + "/") for dest in destinations):
            return False
        below = next((found for layer in lower_dirs
                      if (found := lstat_in(layer, path.split("/"))) is not None), None)
        if below is None or (below.st_mode, below.st_uid, below.st_gid) != \
                (info.st_mode, info.st_uid, info.st_gid):
            return False
        fd = open_directory_nofollow(upper, path)
        if fd < 0:
            return False
        try:
            if any(not name.startswith(OVERLAY_XATTR_PREFIX) or name == OPAQUE_XATTR
                   for name in os.listxattr(fd)):
                return False  # opaque, or metadata of its own (not overlay's bookkeeping)
            return all(skip(f"{path}/{name}", os.lstat(name, dir_fd=fd))
                       for name in os.listdir(fd))
        finally:
            os.close(fd)

    return skip


class ContainerTree:
    """Where one container's files are: upper directory, lower layers, bundle config."""

    def __init__(self, core: EngineCore, ref: str) -> None:
        from tsubo.engine.storage import ContainerFiles

        self.row: ContainerRow = core.refresh(core.db.resolve_container(ref))
        self.files = ContainerFiles(core.paths.container_dir(self.row.id))
        self.lower_dirs = [layer for entry in self.row.rootfs.split(":") for layer in
                           entry.split(":") if layer]

    @property
    def upper(self) -> str:
        return f"{self.files.directory}/upper"

    def skip(self) -> Callable[[str, os.stat_result], bool]:
        return mount_point_filter(self.files.config, self.upper, self.lower_dirs)


def container_changes(core: EngineCore, ref: str) -> list[tuple[str, str]]:
    """``docker diff CONTAINER``: ``(A|C|D, /path)``, sorted by path."""
    from tsubo.image.layerdiff import changes

    tree = ContainerTree(core, ref)
    return changes(tree.upper, tree.lower_dirs, tree.skip())


def commit_container(core: EngineCore, ref: str, reference: str = "", *,
                     changes: list[str] | None = None, message: str = "", author: str = "",
                     pause: bool = True, timestamp: int | None = None) -> Image:
    """``docker commit``: the container's image plus one layer of its changes, with
    *changes* (``--change`` instructions) applied to the config; tagged *reference* when
    given. A running container is paused while its upper directory is read."""
    from tsubo import jsonwire
    from tsubo.engine import status
    from tsubo.image.layerdiff import store_layer, write_upper_layer
    from tsubo.image.store import ImageStore, parse_changes
    from tsubo.oci.image_spec import OCI_LAYER
    from tsubo.state.clock import now_rfc3339

    tree = ContainerTree(core, ref)
    if not tree.row.image:
        raise InvalidArgument("commit", tree.row.name, detail="the container runs on a "
                              "--rootfs directory, not an image")
    config_changes = parse_changes(changes or [])
    store = ImageStore(core.db, core.paths.data)
    base = store.get(tree.row.image)
    paused = False
    if pause and tree.row.state == status.RUNNING:
        core.pause(tree.row.id)
        paused = True
    try:
        diff_id = store_layer(store, lambda out: write_upper_layer(
            tree.upper, out, timestamp=timestamp, skip=tree.skip()))
    finally:
        if paused:
            core.unpause(tree.row.id)
    config: dict[str, Any] = dict(base.config)
    image_config = dict(config.get("config") or {})
    for key, value in config_changes.items():
        if key in ("Env", "Labels", "Volumes", "ExposedPorts"):
            merged = _merge(image_config.get(key), value, key)
            image_config[key] = merged
        else:
            image_config[key] = value
    created = now_rfc3339() if timestamp is None else _rfc3339(timestamp)
    config["config"] = image_config
    config["created"] = created
    config["rootfs"] = {"type": "layers", "diff_ids": [*base.layers, diff_id]}
    history = list(config.get("history") or [])
    entry: dict[str, Any] = {"created": created}
    if author:
        config["author"] = entry["author"] = author
    if message:
        entry["comment"] = message
    config["history"] = [*history, entry]
    blobs = [store.layer_blob(layer)[:2] for layer in base.layers]
    blobs.append((diff_id, OCI_LAYER))
    return store.add_image(jsonwire.dumps(config).encode(), blobs,
                           [reference] if reference else [])


def _merge(old: object, new: object, key: str) -> object:
    if key == "Env" and isinstance(new, list):
        merged = {item.partition("=")[0]: item for item in (old if isinstance(old, list)
                                                              else [])}
        merged.update({item.partition("=")[0]: item for item in new})
        return list(merged.values())
    if isinstance(new, dict):
        return {**(old if isinstance(old, dict) else {}), **new}
    return new


def _rfc3339(seconds: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def export_container(core: EngineCore, ref: str, out: IO[bytes]) -> None:
    """``docker export``: the container's whole file system (its image's layers under its
    changes) as one tar on *out*. The root is mounted for the copy when it is not."""
    from tsubo.image.layerdiff import write_tree
    from tsubo.image.snapshots import mount_root, unmount_root

    tree = ContainerTree(core, ref)
    mounted_here = not os.path.ismount(tree.files.merged)
    if mounted_here:
        mount_root(tree.files, [tree.row.rootfs])
    try:
        write_tree(tree.files.merged, out)
    finally:
        if mounted_here:
            unmount_root(tree.files.merged)
