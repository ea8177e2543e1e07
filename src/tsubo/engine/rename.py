"""``rename``: another name for a container, as Docker's ``container rename``.

The name is checked by Docker's rule and taken in one SQLite statement (two renames or a
create racing for one name: exactly one wins). A container on a bridge network is known
by its name below the database too: its network namespace is pinned at
``/run/netns/<name>`` and its ``config.json`` joins that path at start. Its config gets
the new path (written whole, then renamed in), and a running one's pin moves to the new
name (pinned there first, then unpinned at the old; the ledger follows), so a restart,
``network connect`` and the teardown find it. Its DNS names are read from the database
at each query: the new name answers at once.
"""

from __future__ import annotations

import contextlib
import os

from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.core import EngineCore
    from tsubo.state.db import ContainerRow


def rename_container(engine: EngineCore, ref: str, new_name: str) -> ContainerRow:
    """Rename the container *ref* to *new_name*; its row, renamed."""
    from tsubo.engine.options import RunOptions
    from tsubo.state.names import container_name

    row = engine.refresh(engine.db.resolve_container(ref))
    name = container_name(new_name)
    if name == row.name:
        raise InvalidArgument("rename container", row.name,
                              detail="renaming a container with the same name as its "
                              "current name")
    options = RunOptions.from_json_text(row.options)
    engine.db.rename_container(row.id, name)
    if options.network == "bridge":
        try:
            _repoint_netns(engine.paths.container_dir(row.id), row.name, name)
            _move_pin(engine, row.id, row.name, name)
        except (OSError, ValueError, TsuboError) as error:
            engine.db.rename_container(row.id, row.name)  # as it was
            with contextlib.suppress(OSError, ValueError):
                _repoint_netns(engine.paths.container_dir(row.id), name, row.name)
            detail = error.detail if isinstance(error, TsuboError) else str(error)
            raise TsuboError("rename container", row.name, detail=detail) from None
    engine.event(row.id, "rename", name=name, oldName=row.name)
    return engine.db.get_container(row.id)


def _move_pin(engine: EngineCore, container_id: str, old: str, new: str) -> None:
    """A running container's netns pin (the ledger names it) moves to the new name."""
    from tsubo.network import bridge
    from tsubo.network.store import NetworkStore

    store = NetworkStore(engine.db)
    if not any(entry.name == old for entry in store.ledger_entries("netns",
                                                                   owner=container_id)):
        return  # not running: pinned again under its name at the next start
    store.record("netns", new, container_id)
    try:
        bridge.rename_netns(old, new)
    except BaseException:
        store.forget("netns", new)
        raise
    store.forget("netns", old)


def _repoint_netns(folder: str, old: str, new: str) -> None:
    """The network namespace path of the bundle's config.json: ``/run/netns/OLD`` becomes
    ``/run/netns/NEW`` (an engine-owned file: written to a temp file and renamed in)."""
    from tsubo import jsonwire

    path = f"{folder}/config.json"
    with open(path, "rb") as config_file:
        config = _dict(jsonwire.loads(config_file.read()))
    namespaces = _dict(config.get("linux")).get("namespaces")
    changed = False
    for namespace in namespaces if isinstance(namespaces, list) else []:
        if isinstance(namespace, dict) and namespace.get("type") == "network" \
                and namespace.get("path") == f"/run/netns/{old}":
            namespace["path"] = f"/run/netns/{new}"
            changed = True
    if not changed:
        return
    temporary = f"{path}.rename"
    with open(temporary, "w", encoding="utf-8") as config_file:
        config_file.write(jsonwire.dumps(config))
        config_file.flush()
        os.fsync(config_file.fileno())
    os.replace(temporary, path)


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}
