"""The build cache: which layer each build step made, by the step's key.

A step's key is a SHA-256 the builder computes (``build/builder.py``: parent key,
instruction, variables, content hash of what a COPY reads). This module owns the folder
``<data root>/build-cache/``: one file a key, holding ``<diff_id> <time made>``, written
atomically (temp file, rename). The layers themselves are the image store's; an entry
whose layer is gone is a miss. ``builder prune`` (:func:`prune`) empties the folder and
removes the layers only the cache kept.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.containers import Engine

CACHE_DIR = "build-cache"


class BuildCache:
    """The cache of one data root; remembers the entries it recorded (a failed build
    forgets them: :meth:`forget_recorded`)."""

    def __init__(self, data_root: str) -> None:
        self.folder = os.path.join(data_root, CACHE_DIR)
        self.recorded: list[str] = []

    def _path(self, key: str) -> str:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return os.path.join(self.folder, key)

    def lookup(self, key: str) -> tuple[str, str] | None:
        """(diff_id, time made) recorded for *key*, or None."""
        try:
            with open(self._path(key), encoding="ascii") as entry:
                diff_id, _, created = entry.read().strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            return None
        return (diff_id, created) if diff_id and created else None

    def record(self, key: str, diff_id: str, created: str) -> None:
        path = self._path(key)
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        temp = f"{path}.{os.urandom(4).hex()}.tmp"
        with open(temp, "w", encoding="ascii") as entry:
            entry.write(f"{diff_id} {created}\n")
        os.rename(temp, path)
        self.recorded.append(path)

    def forget_recorded(self) -> None:
        for path in self.recorded:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.recorded.clear()


def prune(engine: Engine) -> tuple[int, int]:
    """``builder prune``: forget every cache entry and remove the layers only the cache
    kept (no image uses them: a multi-stage build's earlier stages); (entries, bytes).
    Refused while a build, pull, load or import runs (they hold the blob lock)."""
    from tsubo.errors import WrongState
    from tsubo.image.store import ImageStore

    store = ImageStore(engine.db, engine.paths.data)
    lock = store.pruning()
    if not lock.try_acquire():
        raise WrongState("prune build cache", engine.paths.data, detail="a build, pull, "
                         "load or import is running", hint="try again when it is done")
    try:
        folder = os.path.join(engine.paths.data, CACHE_DIR)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        layers: set[str] = set()
        for name in names:
            try:
                with open(os.path.join(folder, name), encoding="ascii") as entry:
                    layers.add(entry.read().split(" ", 1)[0].strip())
            except (OSError, UnicodeDecodeError):
                pass
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass
        used = {diff_id for image in store.images() for diff_id in image.layers}
        gone = {diff_id for diff_id in layers - used if store.has_layer(diff_id)}
        freed = sum(int(row[0]) for row in (store.db.connection.execute(
            "SELECT size FROM layers WHERE diff_id = ?", (diff_id,)).fetchone()
            for diff_id in gone) if row is not None)
        store.remove_unused_layers(gone)
        return len(names), freed
    finally:
        lock.release()
