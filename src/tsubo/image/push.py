"""``tsubo push``: send a local image to a registry as an OCI image manifest.

Each layer goes as the very blob that was pulled, imported or loaded (so its digest, and
the digest of a re-pushed manifest, stay stable); a blob the registry already has (``HEAD``)
is skipped. Uploads are monolithic (``POST`` a session, ``PUT`` the content with its digest),
streamed from the blob file. Docker media types of pulled layers are written as their OCI
equivalents (same bytes), so the manifest is one consistent OCI manifest; the config goes
as stored (its digest is the image ID). The manifest goes last: a failed push never leaves
a tag naming missing blobs.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from tsubo.image.reference import Reference
    from tsubo.image.registry import RegistryClient
    from tsubo.image.store import ImageStore

    Events = Callable[[str, str, int, int], None]



class PushResult:
    __slots__ = ("digest", "reference", "size")

    def __init__(self, reference: str, digest: str, size: int) -> None:
        self.reference = reference
        self.digest = digest
        self.size = size


def push(store: ImageStore, source: str, destination: str = "", *, tls_verify: bool = True,
         authfile: str = "", events: Events | None = None) -> PushResult:
    """Push the local image *source* as *destination* (default: its own name)."""
    import hashlib

    from tsubo.image import auth
    from tsubo.image.blobs import BlobStore
    from tsubo.image.registry import RegistryClient
    from tsubo.oci.image_spec import (
        OCI_MANIFEST,
        layer_compression,
        oci_layer_media_type,
        oci_manifest,
    )

    image = store.get(source)
    ref = destination_reference(destination or source)
    report: Events = events or (lambda key, status, current, total: None)
    blobs = BlobStore(store.root)
    config_digest = f"sha256:{image.id}"
    if not blobs.has(config_digest):
        raise NotFound("push", source, detail=f"config blob {config_digest} is missing")
    name = _own_name(image.tags, source)
    chosen = store.image_blobs(image, name)
    for digest, media_type, _size in chosen:  # before anything is sent
        layer_compression(media_type, "push", f"{source} layer {digest}")
    config_size = blobs.size(config_digest)
    client = RegistryClient(ref.registry, tls_verify=tls_verify,
                            credentials=auth.lookup(ref.registry, authfile))
    try:
        mounted = _mount_own_blobs(store, client, name, chosen, ref, report)
        layers = [mounted.get(index, entry) for index, entry in enumerate(chosen)]
        uploads = [(digest, size) for index, (digest, _media_type, size) in enumerate(layers)
                   if index not in mounted]
        uploads.append((config_digest, config_size))
        content = oci_manifest(config_digest, config_size,
                               [(oci_layer_media_type(media_type, "push", f"{source} layer "
                                                      f"{digest}"), digest, size)
                                for digest, media_type, size in layers])
        seen: set[str] = set()
        for digest, size in uploads:
            if digest in seen:
                continue
            seen.add(digest)
            _upload(client, ref.repository, blobs.path(digest), digest, size, report)
        sent = client.put_manifest(ref.repository, ref.tag, content, OCI_MANIFEST)
    finally:
        client.close()
    digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
    if sent and sent != digest:
        raise InvalidArgument("push", str(ref), detail=f"the registry stored {sent}, "
                              f"we sent {digest}")
    return PushResult(str(ref), digest, len(content))


def destination_reference(destination: str) -> Reference:
    """The reference pushed to: a tag (a digest names content, it cannot be pushed to)."""
    from tsubo.image.reference import parse_reference

    ref = parse_reference(destination)
    if ref.digest:
        raise InvalidArgument("push", str(ref), detail="push to a tag, not a digest")
    return ref


def _own_name(tags: list[str], source: str) -> str:
    """*source* normalised when it is one of the image's names (not an ID), else ""."""
    from tsubo.errors import TsuboError
    from tsubo.image.reference import parse_reference

    try:
        name = str(parse_reference(source))
    except TsuboError:
        return ""
    return name if name in tags else ""


def _mount_own_blobs(store: ImageStore, client: RegistryClient, name: str,
                     chosen: list[tuple[str, str, int]], ref: Reference, report: Events
                     ) -> dict[int, tuple[str, str, int]]:
    """The layers whose own blobs (those *name* was pulled with) are not in the store but
    are in the destination registry: made part of the destination repository by a
    cross-repository mount (no bytes sent), so the manifest names the very blobs the
    image came with. By layer index."""
    from tsubo.image.reference import parse_reference

    recorded = store.name_blobs(name) if name else None
    if recorded is None or not recorded[0] or len(recorded[1]) != len(chosen):
        return {}
    origin = parse_reference(recorded[0])
    if origin.registry != ref.registry:
        return {}
    mounted = {}
    for index, (digest, media_type, size) in enumerate(recorded[1]):
        if digest == chosen[index][0] or size < 0:
            continue
        key = digest.removeprefix("sha256:")[:12]
        report(key, "Preparing", 0, 0)
        if client.has_blob(ref.repository, digest) or \
                client.mount_blob(ref.repository, digest, origin.repository):
            report(key, f"Mounted from {origin.repository}", 0, 0)
            mounted[index] = (digest, media_type, size)
    return mounted


def _upload(client: RegistryClient, repository: str, path: str, digest: str, size: int,
            report: Events) -> None:
    key = digest.removeprefix("sha256:")[:12]
    report(key, "Preparing", 0, size)
    if client.has_blob(repository, digest):
        report(key, "Layer already exists", size, size)
        return
    report(key, "Pushing", 0, size)
    with open(path, "rb") as source:
        client.upload_blob(repository, digest, size, source)
    report(key, "Pushed", size, size)
