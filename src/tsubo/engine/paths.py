"""Where the engine keeps things on disk.

Two roots, as Docker and podman split them:

- the data root (``/var/lib/tsubo``; ``--root``/``TSUBO_ROOT``): ``tsubo.db`` (SQLite),
  ``containers/<id>/`` (bundle ``config.json``, overlay ``upper``/``work``/``merged``,
  engine-owned ``/etc`` files, ``container.log``), ``volumes/<name>/_data``;
- the run root (``/run/tsubo``; ``TSUBO_RUNROOT``, or ``<data root>/run`` when the data root
  is overridden, so a test's engine touches nothing global): the runtime's state folder and
  per-container sockets, which must not outlive a reboot.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from tsubo.state.db import ContainerRow, Database

    class EngineState(Protocol):
        """What the engine's helpers (volumes, networks, inspect, disk usage) need of an
        engine: where its files are and its database (``EngineCore`` is one)."""

        @property
        def paths(self) -> EnginePaths: ...

        @property
        def db(self) -> Database: ...

        def containers(self, *, all_states: bool = False) -> list[ContainerRow]: ...

DEFAULT_DATA_ROOT = "/var/lib/tsubo"
DEFAULT_RUN_ROOT = "/run/tsubo"


class EnginePaths:
    __slots__ = ("data", "run")

    def __init__(self, root: str | None = None) -> None:
        root = root or os.environ.get("TSUBO_ROOT") or ""
        self.data = os.path.abspath(root) if root else DEFAULT_DATA_ROOT
        run_root = os.environ.get("TSUBO_RUNROOT") or (f"{self.data}/run" if root else "")
        self.run = os.path.abspath(run_root) if run_root else DEFAULT_RUN_ROOT

    @property
    def database(self) -> str:
        return f"{self.data}/tsubo.db"

    @property
    def runtime_root(self) -> str:
        return f"{self.run}/runtime"

    def container_dir(self, container_id: str) -> str:
        return f"{self.data}/containers/{container_id}"

    def container_run_dir(self, container_id: str) -> str:
        return f"{self.run}/containers/{container_id[:12]}"

    def volume_dir(self, name: str) -> str:
        return f"{self.data}/volumes/{name}"


#: sun_path holds 108 bytes with the NUL; longer socket paths fail with "path too long"
_SUN_PATH_MAX = 107


def socket_address(path: str) -> tuple[str, int]:
    """An address for the unix socket at *path* that fits sun_path: *path* itself when
    short enough, else ``/proc/self/fd/N/NAME`` through an O_PATH fd of its folder (close
    the returned fd, or -1, once bound or connected)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path, -1
    folder, _, name = path.rpartition("/")
    fd = os.open(folder, getattr(os, "O_PATH", 0o10000000) | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{name}", fd
