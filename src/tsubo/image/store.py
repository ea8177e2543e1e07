"""Local images: tags -> image configs -> unpacked layers, in the engine's data root.

``<data root>/blobs`` holds the content-addressed blobs (``image/blobs.py``),
``<data root>/layers/<diff_id hex>`` the unpacked layers (``image/unpack.py``), shared by
every image and container that uses them (overlay lower directories, never written), and
the engine's SQLite the ``images`` and ``image_tags`` tables.

``import`` makes a one-layer image from a root filesystem tarball (offline first: the demo's
busybox image is built this way from Debian's busybox-static); ``--change`` takes Docker's
CMD, ENTRYPOINT, ENV, WORKDIR, USER and LABEL instructions.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.image.unpack import UnpackResult
    from tsubo.state.db import Database


class Image:
    __slots__ = ("config", "created_at", "id", "layers", "size", "tags")

    def __init__(self, image_id: str, config: dict[str, Any], layers: list[str], size: int,
                 created_at: str, tags: list[str]) -> None:
        self.id = image_id
        self.config = config
        self.layers = layers
        self.size = size
        self.created_at = created_at
        self.tags = tags

    def inspect(self) -> dict[str, Any]:
        """The ``docker image inspect`` shape of this image."""
        return {
            "Id": f"sha256:{self.id}",
            "RepoTags": list(self.tags),
            "Created": self.config.get("created", self.created_at),
            "Architecture": self.config.get("architecture", ""),
            "Os": self.config.get("os", ""),
            "Config": self.config.get("config", {}),
            "RootFS": {"Type": "layers", "Layers": list(self.layers)},
            "Size": self.size,
        }


class ImageStore:
    def __init__(self, db: Database, data_root: str) -> None:
        self.db = db
        self.root = data_root

    @property
    def layers_dir(self) -> str:
        return f"{self.root}/layers"

    def layer_path(self, diff_id: str) -> str:
        return f"{self.layers_dir}/{diff_id.split(':', 1)[-1]}"

    # --- the blob lock ---------------------------------------------------------------------

    def adding(self) -> _BlobLock:
        """Held (shared) while a pull, load or import adds blobs it has not recorded yet;
        :meth:`prune_unreferenced` takes it exclusively and prunes nothing while it is held,
        so it never deletes a blob between its download and its record."""
        return _BlobLock(f"{self.root}/blobs.lock", exclusive=False)

    # --- import --------------------------------------------------------------------------

    def import_tarball(self, tar_path: str, reference: str, changes: list[str]) -> Image:
        """A one-layer image from a root filesystem tarball (plain or gzip)."""
        with self.adding():
            return self._import_tarball(tar_path, reference, changes)

    def _import_tarball(self, tar_path: str, reference: str, changes: list[str]) -> Image:
        from tsubo import jsonwire
        from tsubo.image.blobs import BlobStore
        from tsubo.oci.image_spec import OCI_LAYER

        config_changes = parse_changes(changes)
        _check_reference(reference)
        if not os.path.isfile(tar_path):
            raise NotFound("import image", tar_path, detail="no such file")
        blobs = BlobStore(self.root)
        digest = _file_digest(tar_path)
        added_blob = not blobs.has(digest)
        if added_blob:
            with open(tar_path, "rb") as source, blobs.writer(digest) as writer:
                try:
                    while chunk := source.read(1 << 20):
                        writer.write(chunk)
                    writer.commit()
                except BaseException:
                    writer.discard()  # the tarball is here: no partial worth keeping
                    raise
        with open(tar_path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        media_type = OCI_LAYER + "+gzip" if gzipped else OCI_LAYER
        try:
            diff_id = self.ensure_layer(digest, media_type)
        except BaseException:
            if added_blob:
                blobs.delete(digest)  # ours alone, and the tarball is still there
            raise
        config = {
            "architecture": _architecture(), "os": "linux",
            "config": config_changes,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        return self.add_image(jsonwire.dumps(config).encode(), [(digest, media_type)],
                              [reference])

    # --- adding images (import, pull, load) -----------------------------------------------

    def ensure_layer(self, blob_digest: str, media_type: str, diff_id: str | None = None
                     ) -> str:
        """Unpack the layer blob *blob_digest* (already in the blob store) unless a layer
        with *diff_id* is there, record it, and return the diff_id."""
        if diff_id is not None and self._layer_size(diff_id) is not None:
            return diff_id
        result = self.unpack_blob(blob_digest, media_type, diff_id)
        self.record_layer(result, blob_digest, media_type)
        return result.diff_id

    def unpack_blob(self, blob_digest: str, media_type: str, diff_id: str | None = None
                    ) -> UnpackResult:
        """Unpack a stored layer blob into the layers directory without touching the
        database: safe from a pull's download threads (SQLite connections are not);
        :meth:`record_layer` then records it from the engine's thread."""
        from tsubo.image.blobs import BlobStore
        from tsubo.image.unpack import unpack_layer

        os.makedirs(self.layers_dir, mode=0o700, exist_ok=True)
        return unpack_layer(BlobStore(self.root).path(blob_digest), media_type,
                            self.layers_dir, blob_digest, diff_id)

    def record_layer(self, result: UnpackResult, blob_digest: str, media_type: str) -> None:
        from tsubo.image.blobs import BlobStore

        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO layers (diff_id, blob, media_type, blob_size, size) "
                "VALUES (?, ?, ?, ?, ?)",
                (result.diff_id, blob_digest, media_type, BlobStore(self.root).size(blob_digest),
                 result.size))

    def has_layer(self, diff_id: str) -> bool:
        return self._layer_size(diff_id) is not None

    def _layer_size(self, diff_id: str) -> int | None:
        row = self.db.connection.execute("SELECT size FROM layers WHERE diff_id = ?",
                                          (diff_id,)).fetchone()
        if row is None or not os.path.isdir(self.layer_path(diff_id)):
            return None
        return int(row[0])

    def add_image(self, config_bytes: bytes, layers: list[tuple[str, str]],
                  references: list[str], *, manifest_digest: str = "",
                  digest_repository: str = "", source: str = "",
                  sizes: list[int] | None = None) -> Image:
        """Register the image whose config is *config_bytes* and whose layer blobs
        ``(digest, media type)``, bottom first, are in the blob store: unpack the layers
        not unpacked yet (each checked against the config's diff_id), then record the
        image, its names and (for a pull) the manifest digest — under the repositories of
        the names and *digest_repository* — in one transaction. Each name also records
        the very blobs it came with, and *source* (the repository pulled from)."""
        from tsubo.image.blobs import BlobStore
        from tsubo.state.clock import now_rfc3339

        names = [_check_reference(reference) for reference in references]
        _config, diff_ids = parse_image_config(config_bytes)
        if len(diff_ids) != len(layers):
            raise InvalidArgument("add image", "config", detail=f"{len(diff_ids)} diff_ids "
                                  f"for {len(layers)} layers")
        for (blob_digest, media_type), diff_id in zip(layers, diff_ids, strict=True):
            self.ensure_layer(blob_digest, media_type, diff_id)
        blobs = BlobStore(self.root)
        image_id = blobs.ingest_bytes(config_bytes).split(":", 1)[1]
        size = sum(self._layer_size(diff_id) or 0 for diff_id in set(diff_ids))
        known_sizes = sizes or [-1] * len(layers)  # a pull knows them from the manifest
        blob_list = _json_value([[digest, media_type, blobs.size(digest) if blobs.has(digest)
                                  else known] for (digest, media_type), known
                                 in zip(layers, known_sizes, strict=True)])
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO images (id, config, layers, size, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (image_id, config_bytes.decode(), _json_list(diff_ids), size, now_rfc3339()))
            for name in names:
                connection.execute("INSERT OR REPLACE INTO image_tags (name, image_id) "
                                   "VALUES (?, ?)", (name, image_id))
                connection.execute("INSERT OR REPLACE INTO tag_blobs (name, source, blobs) "
                                   "VALUES (?, ?, ?)", (name, source, blob_list))
            repositories = {_repository(name) for name in names}
            if digest_repository:
                repositories.add(digest_repository)
            for repository in sorted(repositories) if manifest_digest else ():
                connection.execute(
                    "INSERT OR REPLACE INTO image_digests (name, digest, image_id) "
                    "VALUES (?, ?, ?)", (repository, manifest_digest, image_id))
        return self.get(image_id)

    def name_blobs(self, name: str) -> tuple[str, list[tuple[str, str, int]]] | None:
        """The blobs the image named *name* came with, and where from: ``(source
        repository or "", [(digest, media type, size or -1), ...])``; None if unknown."""
        from tsubo import jsonwire

        row = self.db.connection.execute("SELECT source, blobs FROM tag_blobs WHERE name = ?",
                                          (_normalise(name),)).fetchone()
        if row is None:
            return None
        entries = jsonwire.loads(row[1])
        assert isinstance(entries, list)
        return str(row[0]), [(str(d), str(m), int(n)) for d, m, n in entries]

    def image_blobs(self, image: Image, name: str = "") -> list[tuple[str, str, int]]:
        """The layer blobs to send for *image* (as *name*): the name's own where they are
        in the store, else the blob each layer was first stored from."""
        from tsubo.image.blobs import BlobStore

        blobs = BlobStore(self.root)
        recorded = self.name_blobs(name) if name else None
        own = recorded[1] if recorded and len(recorded[1]) == len(image.layers) else []
        chosen = []
        for index, diff_id in enumerate(image.layers):
            if own and blobs.has(own[index][0]):
                digest, media_type, _size = own[index]
                chosen.append((digest, media_type, blobs.size(digest)))
            else:
                chosen.append(self.layer_blob(diff_id))
        return chosen

    def layer_blob(self, diff_id: str) -> tuple[str, str, int]:
        """The stored blob of a layer: ``(digest, media type, size)``, for save and push."""
        row = self.db.connection.execute(
            "SELECT blob, media_type, blob_size FROM layers WHERE diff_id = ?",
            (diff_id,)).fetchone()
        if row is None:
            raise NotFound("find layer", diff_id, detail="no blob recorded for this layer")
        return str(row[0]), str(row[1]), int(row[2])

    # --- lookups -------------------------------------------------------------------------

    def get(self, ref: str) -> Image:
        """By tag (any Docker form: busybox, busybox:latest, docker.io/...), full ID or a
        unique ID prefix."""
        from tsubo import jsonwire

        connection = self.db.connection
        hex_ref = ref.removeprefix("sha256:")
        row = connection.execute("SELECT id, config, layers, size, created_at FROM images "
                                 "WHERE id = ?", (hex_ref,)).fetchone()
        if row is None:
            name = _normalise(ref)
            if name:
                row = connection.execute(
                    "SELECT i.id, i.config, i.layers, i.size, i.created_at FROM images i "
                    "JOIN image_tags t ON t.image_id = i.id WHERE t.name = ?",
                    (name,)).fetchone()
        if row is None and len(hex_ref) >= 4 and all(c in "0123456789abcdef" for c in hex_ref):
            rows = connection.execute("SELECT id, config, layers, size, created_at FROM images "
                                      "WHERE id >= ? AND id < ?",
                                      (hex_ref, hex_ref + "g")).fetchall()
            if len(rows) > 1:
                raise InvalidArgument("find image", ref, detail="the ID prefix is ambiguous")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound("find image", ref, detail="no such image",
                           hint="`tsubo pull NAME` or `tsubo import ROOTFS.tar NAME` makes one")
        tags = [name for (name,) in connection.execute(
            "SELECT name FROM image_tags WHERE image_id = ? ORDER BY name", (row[0],))]
        config = jsonwire.loads(row[1])
        layers = jsonwire.loads(row[2])
        assert isinstance(config, dict) and isinstance(layers, list)
        return Image(row[0], config, [str(d) for d in layers], int(row[3]), row[4], tags)

    def tag(self, source: str, target: str) -> Image:
        """Give the image *source* names one more name, *target* (moved if another image
        held it), as ``docker tag``."""
        from tsubo.image.reference import parse_reference

        image = self.get(source)
        name = str(parse_reference(target))
        with self.db.transaction() as connection:
            connection.execute("INSERT OR REPLACE INTO image_tags (name, image_id) "
                               "VALUES (?, ?)", (name, image.id))
            connection.execute("DELETE FROM tag_blobs WHERE name = ?", (name,))
            connection.execute("INSERT INTO tag_blobs (name, source, blobs) SELECT ?, source, "
                               "blobs FROM tag_blobs WHERE name = ?", (name, _normalise(source)))
        return self.get(image.id)

    def images(self) -> list[Image]:
        ids = [image_id for (image_id,) in self.db.connection.execute(
            "SELECT id FROM images ORDER BY created_at DESC")]
        return [self.get(image_id) for image_id in ids]

    def lower_dirs(self, image: Image) -> list[str]:
        """The overlay lower directories, top layer first."""
        return [self.layer_path(diff_id) for diff_id in reversed(image.layers)]

    def remove(self, ref: str, *, force: bool = False) -> Image:
        """Untag (a tag given and other tags left) or delete an image; refused while a
        container uses it unless *force*. Layers no other image uses are removed."""
        image = self.get(ref)
        name = _normalise(ref)
        connection = self.db.connection
        if name in image.tags and len(image.tags) > 1:
            dropped = self._name_blob_digests([name])
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM image_tags WHERE name = ?", (name,))
                tx.execute("DELETE FROM tag_blobs WHERE name = ?", (name,))
            self._delete_unreferenced(dropped)
            return image
        users = [row[0] for row in connection.execute(
            "SELECT name FROM containers WHERE image = ?", (image.id,))]
        if users and not force:
            raise WrongState("remove image", ref, detail="used by container(s) "
                             + ", ".join(users), hint="remove them first, or use -f")
        dropped = self._name_blob_digests(image.tags)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM images WHERE id = ?", (image.id,))
            for tag in image.tags:
                tx.execute("DELETE FROM tag_blobs WHERE name = ?", (tag,))
        self._remove_unused(image)
        self._delete_unreferenced(dropped)
        return image

    def _name_blob_digests(self, names: list[str]) -> set[str]:
        digests: set[str] = set()
        for name in names:
            recorded = self.name_blobs(name)
            digests |= {digest for digest, _media_type, _size in recorded[1]} if recorded \
                else set()
        return digests

    def _referenced_blobs(self) -> set[str]:
        from tsubo import jsonwire

        connection = self.db.connection
        keep = {f"sha256:{image_id}" for (image_id,) in connection.execute("SELECT id FROM images")}
        keep |= {str(blob) for (blob,) in connection.execute("SELECT blob FROM layers")}
        for (entries,) in connection.execute("SELECT blobs FROM tag_blobs"):
            listed = jsonwire.loads(entries)
            assert isinstance(listed, list)
            keep |= {str(entry[0]) for entry in listed}
        return keep

    def _delete_unreferenced(self, candidates: set[str]) -> None:
        """Delete those of *candidates* (blob digests) nothing refers to any more."""
        from tsubo.errors import NotFound as Missing
        from tsubo.image.blobs import BlobStore

        blobs = BlobStore(self.root)
        for digest in candidates - self._referenced_blobs():
            try:
                blobs.delete(digest)
            except Missing:
                pass

    def pruning(self) -> _BlobLock:
        """The blob lock, exclusive: :meth:`_BlobLock.try_acquire` it before removing what
        a running pull, load, import or build may be about to use."""
        return _BlobLock(f"{self.root}/blobs.lock", exclusive=True)

    def prune_unreferenced(self) -> int:
        """Delete what failed pulls and loads left: verified blobs that are neither an
        image's config nor a recorded layer's blob, and partial downloads no writer holds.
        Returns the bytes freed."""
        lock = self.pruning()
        if not lock.try_acquire():
            return 0  # a pull, load or import is adding blobs: prune them another time
        try:
            return self._prune_unreferenced()
        finally:
            lock.release()

    def _prune_unreferenced(self) -> int:
        from tsubo.image.blobs import BlobStore

        blobs = BlobStore(self.root)
        keep = self._referenced_blobs()
        freed = 0
        for digest in blobs.list():
            if digest not in keep:
                try:
                    size = blobs.size(digest)
                    blobs.delete(digest)
                    freed += size
                except NotFound:
                    pass
        try:
            partials = [entry.path for entry in os.scandir(blobs.ingest_dir)
                        if entry.name.endswith(".partial")]
        except FileNotFoundError:
            partials = []
        for path in partials:
            if _unlocked(path):
                try:
                    freed += os.stat(path).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return freed + self._prune_unrecorded_layers()

    def _prune_unrecorded_layers(self) -> int:
        """Layer directories no ``layers`` row names (a killed pull's finished unpacks)
        and half-unpacked ``.tmp-*`` ones: only under the exclusive blob lock, when no
        pull, load or import runs."""
        from tsubo.image.snapshots import tree_size
        from tsubo.image.unpack import remove_tree

        recorded = {str(diff_id).removeprefix("sha256:") for (diff_id,) in
                    self.db.connection.execute("SELECT diff_id FROM layers")}
        try:
            entries = [entry for entry in os.scandir(self.layers_dir)
                       if entry.is_dir(follow_symlinks=False) and entry.name not in recorded]
        except FileNotFoundError:
            return 0
        freed = 0
        for entry in entries:
            freed += tree_size(entry.path)
            remove_tree(entry.path)
        return freed

    def forget_image(self, image_id: str) -> None:
        """Drop the row of an untagged image, keeping its layers: a build's step image,
        made only so a RUN step's container has an image to start from (the layers
        stay for the build cache and the images built on them)."""
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM images WHERE id = ? AND id NOT IN "
                       "(SELECT image_id FROM image_tags)", (image_id,))
        self._delete_unreferenced({f"sha256:{image_id}"})  # its config blob

    def remove_unused_layers(self, diff_ids: set[str]) -> None:
        """Delete those of *diff_ids* (directory, row, blob) no image uses: what a failed
        build made."""
        self._remove_layers(diff_ids, set())

    def _remove_unused(self, image: Image) -> None:
        """Delete the config blob and the layers (directory, row, blob) of a removed
        *image* that no remaining image uses."""
        self._remove_layers(set(image.layers), {f"sha256:{image.id}"})

    def _remove_layers(self, layers: set[str], candidates: set[str]) -> None:
        import shutil

        still_used = {diff for other in self.images() for diff in other.layers}
        gone = layers - still_used
        for diff_id in gone:
            row = self.db.connection.execute("SELECT blob FROM layers WHERE diff_id = ?",
                                              (diff_id,)).fetchone()
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
            shutil.rmtree(self.layer_path(diff_id), ignore_errors=True)
            if row is not None:
                candidates.add(str(row[0]))
        self._delete_unreferenced(candidates)
        if gone:
            from tsubo.image.snapshots import LINKS_DIR, prune_layer_links

            prune_layer_links(f"{self.root}/{LINKS_DIR}")  # short links of long chains


class _BlobLock:
    """An flock on ``<data root>/blobs.lock``: shared by adders, exclusive for pruning."""

    def __init__(self, path: str, *, exclusive: bool) -> None:
        self.path = path
        self.exclusive = exclusive
        self.fd = -1

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                          0o600)

    def try_acquire(self) -> bool:
        import fcntl

        self._open()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self.release()
            return False

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> _BlobLock:
        import fcntl

        self._open()
        fcntl.flock(self.fd, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _unlocked(path: str) -> bool:
    """True when no writer holds *path* (a partial download in progress is flock'ed)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def parse_image_config(config_bytes: bytes) -> tuple[dict[str, Any], list[str]]:
    """An OCI image config and its rootfs diff_ids, checked (a clear error, not a
    KeyError, for a config that is not one)."""
    from tsubo import jsonwire
    from tsubo.oci.image_spec import digest_problem

    config = jsonwire.loads(config_bytes, "config", operation="read image config")
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(config, dict) or not isinstance(diff_ids, list) \
            or rootfs.get("type") != "layers":  # type: ignore[union-attr]
        raise InvalidArgument("read image config", "config",
                              detail="no rootfs of type layers with diff_ids")
    for diff_id in diff_ids:
        problem = digest_problem(diff_id) if isinstance(diff_id, str) else "not a string"
        if problem:
            raise InvalidArgument("read image config", repr(diff_id), detail=problem)
    return config, [str(diff_id) for diff_id in diff_ids]


def _json_list(values: list[str]) -> str:
    from tsubo import jsonwire

    return jsonwire.dumps(values)


def _json_value(value: object) -> str:
    from tsubo import jsonwire

    return jsonwire.dumps(value)


def _repository(name: str) -> str:
    from tsubo.image.reference import parse_reference

    return parse_reference(name).name


def _check_reference(reference: str) -> str:
    from tsubo.image.reference import parse_reference

    return str(parse_reference(reference))


def parse_changes(changes: list[str]) -> dict[str, Any]:
    """Docker's ``--change`` instructions -> an image config ``config`` object."""
    config: dict[str, Any] = {}
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword in ("CMD", "ENTRYPOINT"):
            config["Cmd" if keyword == "CMD" else "Entrypoint"] = _command(rest, change)
        elif keyword == "ENV":
            key, sep, value = rest.partition("=")
            if not sep:
                key, _, value = rest.partition(" ")
            if not key:
                raise InvalidArgument("parse --change", change, detail="ENV needs KEY=VALUE")
            config.setdefault("Env", []).append(f"{key}={value.strip()}")
        elif keyword == "WORKDIR":
            config["WorkingDir"] = rest
        elif keyword == "USER":
            config["User"] = rest
        elif keyword == "LABEL":
            key, _, value = rest.partition("=")
            config.setdefault("Labels", {})[key] = value.strip('"')
        elif keyword == "STOPSIGNAL":
            config["StopSignal"] = rest
        elif keyword in ("VOLUME", "EXPOSE"):
            words = _command(rest, change) if rest.startswith("[") else rest.split()
            if not words:
                raise InvalidArgument("parse --change", change, detail=f"{keyword} needs a value")
            if keyword == "VOLUME":
                if not all(word.startswith("/") for word in words):
                    raise InvalidArgument("parse --change", change,
                                          detail="VOLUME paths must be absolute")
                config.setdefault("Volumes", {}).update({word: {} for word in words})
            else:
                config.setdefault("ExposedPorts", {}).update(
                    {_port(word, change): {} for word in words})
        else:
            raise InvalidArgument("parse --change", change, detail="supported: CMD, "
                                  "ENTRYPOINT, ENV, WORKDIR, USER, LABEL, STOPSIGNAL, VOLUME, "
                                  "EXPOSE")
    return config


def _port(text: str, change: str) -> str:
    """``80`` -> ``80/tcp``; ``53/udp`` stays."""
    number, _, protocol = text.partition("/")
    protocol = protocol.lower() or "tcp"
    if not number.isdigit() or not 0 < int(number) < 65536 \
            or protocol not in ("tcp", "udp", "sctp"):
        raise InvalidArgument("parse --change", change, detail=f"bad port {text!r}")
    return f"{int(number)}/{protocol}"


def _command(text: str, change: str) -> list[str]:
    if text.startswith("["):
        from tsubo import jsonwire

        try:
            value = jsonwire.loads(text)
        except ValueError:
            raise InvalidArgument("parse --change", change,
                                  detail="not a JSON array of strings") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument("parse --change", change, detail="not a JSON array of strings")
        return value
    return ["/bin/sh", "-c", text]  # shell form, as Docker


def _normalise(ref: str) -> str:
    from tsubo.errors import TsuboError
    from tsubo.image.reference import parse_reference

    try:
        return str(parse_reference(ref))
    except TsuboError:
        return ""


def _file_digest(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
