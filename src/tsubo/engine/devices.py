"""The host's device nodes a container is given: ``--device`` and ``--privileged``.

Docker's daemon looks them up when it creates the container (moby ``daemon/oci_linux.go``
``getDevicesFromPath``, containerd ``oci.HostDevices``): a ``--device`` path is a device node
(a symlink to one is followed), or a directory whose device nodes are all taken, under the
container path; ``--privileged`` takes every device node under the host's ``/dev``, less the
pseudo-terminal, shared-memory and message-queue folders (the container has its own). Each is
an OCI ``linux.devices`` entry plus a ``linux.resources.devices`` rule with its permissions;
:func:`tsubo.engine.ocispec.build_config` puts them in the config.
"""

from __future__ import annotations

import os
import stat

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: folders of /dev that ``--privileged`` does not copy (containerd's HostDevices)
_SKIPPED_FOLDERS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def _node(host: str, container: str, permissions: str) -> dict[str, Any] | None:
    """The ``linux.devices`` entry of the device node *host* (None: not a device node),
    with the cgroup *permissions* it is given (``access``, read by :func:`build_config`)."""
    info = os.stat(host)
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        return None
    return {"path": container, "type": kind, "major": os.major(info.st_rdev),
            "minor": os.minor(info.st_rdev), "fileMode": stat.S_IMODE(info.st_mode),
            "uid": info.st_uid, "gid": info.st_gid, "access": permissions}


def device_entries(host: str, container: str, permissions: str) -> list[dict[str, Any]]:
    """``--device HOST:CONTAINER:PERMISSIONS``: the node, or a directory's nodes (under
    *container*), with Docker's error for anything else."""
    def refuse(reason: str) -> InvalidArgument:
        return InvalidArgument(f'error gathering device information while adding custom '
                               f'device "{host}"', detail=reason)

    resolved = os.path.realpath(host)
    try:
        node = _node(resolved, container, permissions)
    except OSError as error:
        raise refuse(os.strerror(error.errno or 2).lower()) from None
    if node is not None:
        return [node]
    if not os.path.isdir(resolved):
        raise refuse("not a device node")
    found = _walk(resolved)
    if not found:
        raise refuse("not a device node")
    return [entry for path in found
            if (entry := _node(path, container + path[len(resolved):], permissions))]


def host_devices() -> list[dict[str, Any]]:
    """``--privileged``: every device node of the host's ``/dev``, at the same path."""
    return [entry for path in _walk("/dev", top=True)
            if (entry := _safe_node(path)) is not None]


def _safe_node(path: str) -> dict[str, Any] | None:
    try:
        return _node(path, path, "rwm")
    except OSError:  # gone meanwhile
        return None


def _walk(folder: str, *, top: bool = False) -> list[str]:
    """Device-node candidates under *folder* (no symlinks followed; at the top of ``/dev``,
    the skipped folders, ``console`` and ``ptmx`` left out: the container has its own
    console, and its ``/dev/ptmx`` leads to its own ``/dev/pts``, as runc makes them)."""
    paths = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            if not (top and entry.name in _SKIPPED_FOLDERS):
                paths += _walk(entry.path)
        elif not (top and entry.name in ("console", "ptmx")):
            paths.append(entry.path)
    return paths
