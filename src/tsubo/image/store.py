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

    from tsubo.engine.db import Database


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

    # --- import --------------------------------------------------------------------------

    def import_tarball(self, tar_path: str, reference: str, changes: list[str]) -> Image:
        """A one-layer image from a root filesystem tarball (plain or gzip)."""
        from tsubo.image.blobs import BlobStore
        from tsubo.image.reference import parse_reference
        from tsubo.image.unpack import unpack_layer
        from tsubo.oci import jsonwire

        ref = parse_reference(reference)
        config_changes = parse_changes(changes)
        if not os.path.isfile(tar_path):
            raise NotFound("import image", tar_path, detail="no such file")
        blobs = BlobStore(self.root)
        digest = _file_digest(tar_path)
        if not blobs.has(digest):
            with open(tar_path, "rb") as source, blobs.writer(digest) as writer:
                while chunk := source.read(1 << 20):
                    writer.write(chunk)
                writer.commit()
        with open(tar_path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        media_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if gzipped
                      else "application/vnd.oci.image.layer.v1.tar")
        os.makedirs(self.layers_dir, mode=0o700, exist_ok=True)
        layer = unpack_layer(blobs.path(digest), media_type, self.layers_dir, digest)
        config = {
            "architecture": _architecture(), "os": "linux",
            "config": config_changes,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        }
        config_text = jsonwire.dumps(config)
        image_id = blobs.ingest_bytes(config_text.encode(),
                                      "application/vnd.oci.image.config.v1+json")
        hex_id = image_id.split(":", 1)[1]
        from tsubo.engine.db import now_rfc3339

        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO images (id, config, layers, size, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (hex_id, config_text, jsonwire.dumps([layer.diff_id]), layer.size,
                 now_rfc3339()))
            connection.execute("INSERT OR REPLACE INTO image_tags (name, image_id) "
                               "VALUES (?, ?)", (str(ref), hex_id))
        return self.get(hex_id)

    # --- lookups -------------------------------------------------------------------------

    def get(self, ref: str) -> Image:
        """By tag (any Docker form: busybox, busybox:latest, docker.io/...), full ID or a
        unique ID prefix."""
        from tsubo.oci import jsonwire

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
                           hint="`tsubo import ROOTFS.tar NAME` makes one")
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
        import shutil

        image = self.get(ref)
        name = _normalise(ref)
        connection = self.db.connection
        if name in image.tags and len(image.tags) > 1:
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM image_tags WHERE name = ?", (name,))
            return image
        users = [row[0] for row in connection.execute(
            "SELECT name FROM containers WHERE image = ?", (image.id,))]
        if users and not force:
            raise WrongState("remove image", ref, detail="used by container(s) "
                             + ", ".join(users), hint="remove them first, or use -f")
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM images WHERE id = ?", (image.id,))
        still_used = {diff for other in self.images() for diff in other.layers}
        for diff_id in image.layers:
            if diff_id not in still_used:
                shutil.rmtree(self.layer_path(diff_id), ignore_errors=True)
        return image


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
        else:
            raise InvalidArgument("parse --change", change, detail="supported: CMD, "
                                  "ENTRYPOINT, ENV, WORKDIR, USER, LABEL, STOPSIGNAL")
    return config


def _command(text: str, change: str) -> list[str]:
    if text.startswith("["):
        from tsubo.oci import jsonwire

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
