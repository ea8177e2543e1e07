"""Named volumes: folders under ``<data root>/volumes/<name>/_data``, recorded in the database.

``-v NAME:/path`` creates the volume on first use (as Docker does); ``-v /path`` makes an
anonymous one, removed with its container by ``rm -v`` and ``--rm``. A name is checked
(``state/names.py``, through the database's volume calls) before it becomes a path.
"""

from __future__ import annotations

import os

from tsubo.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.engine.paths import EnginePaths, EngineState


def ensure_volume(engine: EngineState, name: str, *, anonymous: bool = False,
                  labels: dict[str, str] | None = None) -> str:
    """The volume *name* (created if missing; a random name when *anonymous*).
    InvalidArgument, in Docker's words, for a name the local driver refuses (``/abs``
    would be a second name for ``abs``'s folder)."""
    from tsubo.state import names

    if anonymous:
        name = names.new_container_id()
    try:
        engine.db.get_volume(name, "create volume")  # checks the name before any path
        return name
    except NotFound:
        pass
    os.makedirs(f"{engine.paths.volume_dir(name)}/_data", mode=0o755, exist_ok=True)
    engine.db.insert_volume(name, labels=labels or {}, anonymous=anonymous)
    return name


def remove_volume_files(paths: EnginePaths, name: str) -> None:
    import shutil

    shutil.rmtree(paths.volume_dir(name), ignore_errors=True)


def remove_volume(engine: EngineState, name: str) -> None:
    """Remove a volume no container uses (WrongState names the users otherwise); the
    name is checked before its folder is named."""
    engine.db.get_volume(name, "remove volume")
    engine.db.delete_volume(name)
    remove_volume_files(engine.paths, name)


def inspect_volume(engine: EngineState, name: str) -> dict[str, Any]:
    """Docker's ``volume inspect`` record of *name*."""
    from tsubo import jsonwire

    volume = engine.db.get_volume(name, "inspect volume")
    return {"Name": volume.name, "Driver": "local",
            "Mountpoint": f"{engine.paths.volume_dir(name)}/_data",
            "CreatedAt": volume.created_at,
            "Labels": jsonwire.loads(volume.labels, f"labels of volume {name}"),
            "Scope": "local"}


def prune_volumes(engine: EngineState, *, all_volumes: bool = False) -> list[tuple[str, int]]:
    """Remove the volumes no container uses: anonymous ones only unless *all_volumes*
    (Docker 23+'s ``volume prune`` and ``-a``). (name, bytes freed) of each removed; a
    volume a container claims meanwhile is kept (the database refuses, we skip it)."""
    from tsubo.errors import WrongState
    from tsubo.image.snapshots import tree_size

    removed = []
    for volume in engine.db.list_volumes():
        if not (volume.anonymous or all_volumes) or engine.db.volume_users(volume.name):
            continue
        size = tree_size(f"{engine.paths.volume_dir(volume.name)}/_data")
        try:
            engine.db.delete_volume(volume.name)
        except (WrongState, NotFound):
            continue
        remove_volume_files(engine.paths, volume.name)
        removed.append((volume.name, size))
    return removed

