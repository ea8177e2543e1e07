"""Taking a container apart: off its networks, its runtime state, folder, anonymous
volumes and row. Used by the monitor (``--rm``, exits) and by commands (``rm``, ``prune``,
``gc``); every step treats "already gone" as done."""

from __future__ import annotations

from tsubo.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.paths import EnginePaths
    from tsubo.state.db import Database


def remove_container_files(paths: EnginePaths, db: Database, container_id: str, *,
                           volumes: bool = True) -> None:
    """Remove a stopped container's runtime state, root mount, folder, anonymous volumes
    and row (each "already gone" is fine)."""
    from tsubo.engine.storage import ContainerFiles
    from tsubo.runtime.container import Runtime

    try:
        Runtime(paths.runtime_root).delete(container_id, force=True)
    except NotFound:
        pass
    detach_networks(paths, db, container_id)
    ContainerFiles(paths.container_dir(container_id)).remove()
    anonymous = db.anonymous_volumes_of(container_id) if volumes else []
    try:
        name = db.get_container(container_id).name
    except NotFound:
        name = ""
    if db.delete_container(container_id):
        from tsubo.state import events

        events.record(paths.data, "container", "destroy", container_id, {"name": name})
    for name in anonymous:
        from tsubo.engine.volumes import remove_volume_files

        if db.volume_users(name):
            continue  # another container mounts it too (--volumes-from): kept, as Docker's
        db.delete_volume(name)
        remove_volume_files(paths, name)


def detach_networks(paths: EnginePaths, db: Database, container_id: str) -> None:
    """Take a container off its networks (published ports, netns pin, veths, leases), if
    it has any."""
    from tsubo.network.store import NetworkStore

    store = NetworkStore(db)
    pinned = [entry.name for entry in store.ledger_entries("netns", owner=container_id)]
    if not pinned and not store.container_endpoints(container_id):
        return
    from tsubo.engine.networks import unpublish

    errors: list[BaseException] = []
    try:
        unpublish(store, container_id)  # published ports first, while the addresses exist
    except Exception as error:  # the rest of the teardown goes on; reported below
        errors.append(error)
    from tsubo.network import bridge

    for name in pinned:
        bridge.delete_netns(name)
        store.forget("netns", name)
    for endpoint in store.forget_container(container_id):
        store.forget("link", endpoint.host_ifname)
    if errors:
        from tsubo.errors import TeardownErrors

        raise TeardownErrors("detach container", container_id[:12], errors)
