"""What the engine's data root holds on disk (``tsubo system df``), and ``tsubo image prune``.

Sizes, as Docker counts them:

- an image: the sum of its layers' sizes, a layer's size being its uncompressed tar stream
  (the ``layers`` table); in totals each layer counts once, however many images share it;
- a container: what it wrote, the files in its overlay upper directory
  (``<data root>/containers/<id>/upper``);
- a volume: the files under ``<data root>/volumes/<name>/_data``.

Directory trees are measured by ``image.snapshots.tree_size``.

Reclaimable: images no container uses (what ``image prune -a`` frees: their layers that no
used image shares), containers that are not running, volumes no container mounts.
"""

from __future__ import annotations

from tsubo.errors import NotFound, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.paths import EngineState
    from tsubo.image.store import Image
    from tsubo.state.db import ContainerRow, Database


def layer_sizes(db: Database) -> dict[str, int]:
    """Every unpacked layer's size, by diff_id."""
    rows = db.connection.execute("SELECT diff_id, size FROM layers").fetchall()
    return {str(diff_id): int(size) for diff_id, size in rows}


def container_sizes(engine: EngineState, rows: list[ContainerRow]) -> dict[str, tuple[int, int]]:
    """``ps -s``: (writable, virtual) bytes by container ID, as Docker's SizeRw and
    SizeRootFs: what the container wrote, and that plus its image (its layers' sizes; a
    ``--rootfs`` container: the size of that tree)."""
    from tsubo.image.snapshots import tree_size
    from tsubo.image.store import ImageStore

    sizes = layer_sizes(engine.db) if any(row.image for row in rows) else {}
    store = ImageStore(engine.db, engine.paths.data)
    result = {}
    for row in rows:
        written = tree_size(f"{engine.paths.container_dir(row.id)}/upper")
        try:
            base = sum(sizes.get(d, 0) for d in set(store.get(row.image).layers)) \
                if row.image else sum(tree_size(lower) for lower in row.rootfs.split(":"))
        except NotFound:  # its image was removed with -f
            base = 0
        result[row.id] = (written, written + base)
    return result


class ImageUsage:
    __slots__ = ("containers", "image", "shared_size", "size")

    def __init__(self, image: Image, size: int, shared_size: int, containers: int) -> None:
        self.image = image
        self.size = size
        self.shared_size = shared_size
        self.containers = containers


class ContainerUsage:
    __slots__ = ("row", "size", "volumes")

    def __init__(self, row: ContainerRow, size: int, volumes: int) -> None:
        self.row = row
        self.size = size
        self.volumes = volumes


class VolumeUsage:
    __slots__ = ("links", "name", "size")

    def __init__(self, name: str, links: int, size: int) -> None:
        self.name = name
        self.links = links
        self.size = size


class Summary:
    """One line of ``system df``: TOTAL, ACTIVE, SIZE, RECLAIMABLE (bytes)."""

    __slots__ = ("active", "reclaimable", "size", "total")

    def __init__(self, total: int, active: int, size: int, reclaimable: int) -> None:
        self.total = total
        self.active = active
        self.size = size
        self.reclaimable = reclaimable


class DiskUsage:
    __slots__ = ("container_summary", "containers", "image_summary", "images",
                 "volume_summary", "volumes")

    def __init__(self, images: list[ImageUsage], image_summary: Summary,
                 containers: list[ContainerUsage], volumes: list[VolumeUsage]) -> None:
        from tsubo.engine.status import ACTIVE

        self.images = images
        self.image_summary = image_summary
        self.containers = containers
        self.volumes = volumes
        stopped = [usage for usage in containers if usage.row.state not in ACTIVE]
        self.container_summary = Summary(
            len(containers), len(containers) - len(stopped),
            sum(usage.size for usage in containers), sum(usage.size for usage in stopped))
        unused = [usage for usage in volumes if not usage.links]
        self.volume_summary = Summary(
            len(volumes), len(volumes) - len(unused), sum(usage.size for usage in volumes),
            sum(usage.size for usage in unused))


def disk_usage(engine: EngineState) -> DiskUsage:
    """``system df``: images, containers and volumes with their sizes."""
    from tsubo.image.snapshots import tree_size
    from tsubo.image.store import ImageStore

    rows = engine.containers(all_states=True)
    users: dict[str, int] = {}
    for row in rows:
        if row.image:
            users[row.image] = users.get(row.image, 0) + 1
    sizes = layer_sizes(engine.db)
    images = ImageStore(engine.db, engine.paths.data).images()
    layer_users: dict[str, int] = {}
    for image in images:
        for diff_id in set(image.layers):
            layer_users[diff_id] = layer_users.get(diff_id, 0) + 1
    image_usage = []
    for image in images:
        own = set(image.layers)
        image_usage.append(ImageUsage(
            image, sum(sizes.get(d, 0) for d in own),
            sum(sizes.get(d, 0) for d in own if layer_users[d] > 1), users.get(image.id, 0)))
    all_layers = {d for image in images for d in image.layers}
    used_layers = {d for image in images if image.id in users for d in image.layers}
    image_summary = Summary(
        len(images), sum(1 for image in images if image.id in users),
        sum(sizes.get(d, 0) for d in all_layers),
        sum(sizes.get(d, 0) for d in all_layers - used_layers))
    containers = [
        ContainerUsage(row, tree_size(f"{engine.paths.container_dir(row.id)}/upper"),
                       len(engine.db.container_volumes(row.id)))
        for row in rows]
    volumes = [
        VolumeUsage(volume.name, len(engine.db.volume_users(volume.name)),
                    tree_size(f"{engine.paths.volume_dir(volume.name)}/_data"))
        for volume in engine.db.list_volumes()]
    return DiskUsage(image_usage, image_summary, containers, volumes)


class PruneResult:
    __slots__ = ("deleted", "reclaimed")

    def __init__(self, deleted: list[Image], reclaimed: int) -> None:
        self.deleted = deleted
        self.reclaimed = reclaimed


def prune_images(engine: EngineState, *, all_images: bool) -> PruneResult:
    """``image prune``: remove the dangling (untagged) images, or with *all_images* every
    image, that no container uses, and the blobs and partial downloads failed pulls left;
    *reclaimed* is the size of the layers and blobs that went."""
    from tsubo.image.store import ImageStore

    store = ImageStore(engine.db, engine.paths.data)
    used = {row.image for row in engine.db.list_containers(True) if row.image}
    before = layer_sizes(engine.db)
    deleted = []
    for image in store.images():
        if image.id in used or (image.tags and not all_images):
            continue
        try:
            # by full ID: the whole image, all its names; refused if a container was
            # created from it meanwhile
            deleted.append(store.remove(image.id))
        except (NotFound, WrongState):
            continue
    after = layer_sizes(engine.db)
    leftovers = store.prune_unreferenced()  # blobs and partials of failed pulls and loads
    return PruneResult(deleted, leftovers + sum(size for diff_id, size in before.items()
                                                if diff_id not in after))
