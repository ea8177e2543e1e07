"""Named volumes: folders under ``<data root>/volumes/<name>/_data``, recorded in the database.

``-v NAME:/path`` creates the volume on first use (as Docker does); ``-v /path`` makes an
anonymous one, removed with its container by ``rm -v`` and ``--rm``. A name is checked
(``engine/names.py``, through the database's volume calls) before it becomes a path.
"""

from __future__ import annotations

import os

from tsubo.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.containers import Engine
    from tsubo.engine.paths import EnginePaths


def ensure_volume(engine: Engine, name: str, *, anonymous: bool = False,
                  labels: dict[str, str] | None = None) -> str:
    """The volume *name* (created if missing; a random name when *anonymous*).
    InvalidArgument, in Docker's words, for a name the local driver refuses (``/abs``
    would be a second name for ``abs``'s folder)."""
    from tsubo.engine import db as dbmod

    if anonymous:
        name = dbmod.new_container_id()
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


def remove_volume(engine: Engine, name: str) -> None:
    """Remove a volume no container uses (WrongState names the users otherwise); the
    name is checked before its folder is named."""
    engine.db.get_volume(name, "remove volume")
    engine.db.delete_volume(name)
    remove_volume_files(engine.paths, name)
