"""``tsubo pull``: resolve a reference to one image manifest, fetch what is missing, unpack.

The steps, as containerd and Docker take them:

1. the manifest (or index) by tag or digest, size-bounded and digest-verified;
2. an index / manifest list picks the entry for ``--platform`` (default: this machine's
   os/arch/variant; ``arm64`` and ``arm64/v8`` are the same, attestation entries
   ``unknown/unknown`` are never picked);
3. the config (bounded, verified) gives the diff_ids; an image already complete in the
   store is only (re)tagged;
4. each layer whose diff_id is not unpacked yet is downloaded (unless its blob is already
   verified in the store: a failed pull's finished blobs are reused, its partial blobs
   resumed) and unpacked as soon as its download completes, up to :data:`PARALLEL` layers at
   a time; every layer's diff_id is checked against the config;
5. one transaction records layers, image, tag and manifest digest: a failed pull registers
   nothing.

Progress is reported through a callback ``(layer key, status, current, total)`` called from
the download threads; the CLI draws bars on a TTY and plain lines otherwise.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any

    from tsubo.image.blobs import BlobStore, BlobWriter
    from tsubo.image.registry import RegistryClient
    from tsubo.image.store import Image, ImageStore
    from tsubo.image.unpack import UnpackResult

    Events = Callable[[str, str, int, int], None]

#: layers downloaded and unpacked at once (Docker's default is 3)
PARALLEL = 3


class PullResult:
    __slots__ = ("digest", "image", "reference", "up_to_date")

    def __init__(self, image: Image, reference: str, digest: str, up_to_date: bool) -> None:
        self.image = image
        self.reference = reference
        self.digest = digest
        self.up_to_date = up_to_date


class Layer:
    """One layer descriptor of a manifest, checked."""

    __slots__ = ("diff_id", "digest", "media_type", "size")

    def __init__(self, digest: str, media_type: str, size: int, diff_id: str) -> None:
        self.digest = digest
        self.media_type = media_type
        self.size = size
        self.diff_id = diff_id

    @property
    def key(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


def host_platform() -> tuple[str, str, str]:
    """``(os, architecture, variant)`` of this machine in OCI terms."""
    machine = os.uname().machine
    architecture, variant = {
        "x86_64": ("amd64", ""), "aarch64": ("arm64", "v8"), "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"), "i686": ("386", ""), "i386": ("386", ""),
    }.get(machine, (machine, ""))
    return "linux", architecture, variant


def parse_platform(text: str) -> tuple[str, str, str]:
    """``linux/arm64[/v8]`` -> ``("linux", "arm64", "v8")``; "" -> this machine."""
    if not text:
        return host_platform()
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument("parse platform", repr(text), detail="expected OS/ARCH[/VARIANT]")
    os_name, architecture = parts[0].lower(), parts[1].lower()
    variant = parts[2].lower() if len(parts) == 3 else ""
    return os_name, architecture, variant


def _normal_variant(architecture: str, variant: str) -> str:
    return "v8" if architecture == "arm64" and variant in ("", "v8") else variant


def select_manifest(index: dict[str, Any], platform: tuple[str, str, str], where: str
                    ) -> dict[str, Any]:
    """The index entry for *platform* (variant given: exact; not given: the host's variant
    preferred, then any)."""
    os_name, architecture, variant = platform
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidArgument("read index", where, detail="no manifests list")
    candidates = []
    offered = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("platform"), dict):
            continue
        entry_platform = entry["platform"]
        entry_os, entry_arch = entry_platform.get("os", ""), entry_platform.get("architecture", "")
        entry_variant = entry_platform.get("variant", "")
        if entry_os == "unknown":
            continue
        offered.append("/".join(p for p in (entry_os, entry_arch, entry_variant) if p))
        if entry_os != os_name or entry_arch != architecture:
            continue
        if variant and _normal_variant(architecture, entry_variant) \
                != _normal_variant(architecture, variant):
            continue
        candidates.append(entry)
    if not candidates:
        wanted = "/".join(p for p in platform if p)
        raise InvalidArgument("select platform", where, detail=f"no image for {wanted}; "
                              f"the index offers {', '.join(offered) or 'nothing'}",
                              hint="choose one with --platform")
    host_variant = _normal_variant(architecture, host_platform()[2])
    candidates.sort(key=lambda entry: _normal_variant(
        architecture, entry["platform"].get("variant", "")) != host_variant)
    return candidates[0]


def _json_object(content: bytes, what: str, where: str) -> dict[str, Any]:
    from tsubo import jsonwire

    value = jsonwire.loads(content, where, operation=f"read {what}")
    if not isinstance(value, dict):
        raise InvalidArgument(f"read {what}", where, detail="not a JSON object")
    return value


def _descriptor(value: object, what: str, where: str) -> tuple[str, str, int]:
    from tsubo.oci.image_spec import check_descriptor

    return check_descriptor(value, "read manifest", f"{where} {what}")


def resolve(client: RegistryClient, repository: str, reference: str,
            platform: tuple[str, str, str], where: str) -> tuple[dict[str, Any], str]:
    """The image manifest for *platform* and its digest (following an index)."""
    from tsubo.oci.image_spec import INDEX_TYPES, MANIFEST_TYPES

    content, media_type, digest = client.get_manifest(repository, reference)
    manifest = _json_object(content, "manifest", where)
    media_type = manifest.get("mediaType") or media_type
    if media_type in INDEX_TYPES or (not media_type and "manifests" in manifest):
        entry = select_manifest(manifest, platform, where)
        child, _, _ = _descriptor(entry, "index entry", where)
        content, media_type, digest = client.get_manifest(repository, child)
        manifest = _json_object(content, "manifest", where)
        media_type = manifest.get("mediaType") or media_type
    if manifest.get("schemaVersion") == 1 or "vnd.docker.distribution.manifest.v1" in media_type:
        raise Unsupported("pull", where, detail="Docker schema 1 manifests are deprecated "
                          "and not supported")
    if media_type and media_type not in MANIFEST_TYPES:
        raise Unsupported("pull", where, detail=f"manifest media type {media_type!r}")
    return manifest, digest


def layers_of(manifest: dict[str, Any], diff_ids: list[str], where: str) -> list[Layer]:
    """The manifest's layers, each checked (descriptor, a layer media type of the list in
    :mod:`tsubo.oci.image_spec`) before any download."""
    from tsubo.oci.image_spec import DOCKER_FOREIGN_LAYER_TYPES, layer_compression

    entries = manifest.get("layers")
    if not isinstance(entries, list):
        raise InvalidArgument("read manifest", where, detail="no layers list")
    if len(entries) != len(diff_ids):
        raise InvalidArgument("read manifest", where, detail=f"{len(entries)} layers but "
                              f"{len(diff_ids)} diff_ids in the config")
    layers = []
    for number, (entry, diff_id) in enumerate(zip(entries, diff_ids, strict=True)):
        digest, media_type, size = _descriptor(entry, f"layer {number}", where)
        layer_compression(media_type, "pull", f"{where} layer {number}")
        if media_type in DOCKER_FOREIGN_LAYER_TYPES:
            raise Unsupported("pull", where, detail=f"foreign layer {digest} ({media_type})")
        layers.append(Layer(digest, media_type, size, diff_id))
    return layers


def pull(store: ImageStore, reference: str, *, platform: str = "", tls_verify: bool = True,
         authfile: str = "", events: Events | None = None) -> PullResult:
    """Pull *reference* into *store*; see the module docstring."""
    with store.adding():
        return _pull(store, reference, platform=platform, tls_verify=tls_verify,
                     authfile=authfile, events=events)


def _pull(store: ImageStore, reference: str, *, platform: str, tls_verify: bool,
          authfile: str, events: Events | None) -> PullResult:
    from tsubo.image import auth
    from tsubo.image.blobs import BlobStore
    from tsubo.image.reference import parse_reference
    from tsubo.image.registry import RegistryClient
    from tsubo.image.store import parse_image_config
    from tsubo.oci import image_spec

    ref = parse_reference(reference)
    wanted_platform = parse_platform(platform)
    report: Events = events or (lambda key, status, current, total: None)
    client = RegistryClient(ref.registry, tls_verify=tls_verify,
                            credentials=auth.lookup(ref.registry, authfile))
    where = str(ref)
    try:
        manifest, digest = resolve(client, ref.repository, ref.digest or ref.tag,
                                   wanted_platform, where)
        config_digest, config_type, _config_size = _descriptor(manifest.get("config"),
                                                               "config", where)
        if config_type and config_type not in image_spec.CONFIG_TYPES:
            raise Unsupported("pull", where, detail=f"not a container image (config "
                              f"media type {config_type!r})")
        blobs = BlobStore(store.root)
        if blobs.has(config_digest):
            with open(blobs.path(config_digest), "rb") as source:
                config_bytes = source.read()
        else:
            config_bytes = client.get_small_blob(ref.repository, config_digest)
        config, diff_ids = parse_image_config(config_bytes)
        if platform:
            _check_platform(config, wanted_platform, where)
        layers = layers_of(manifest, diff_ids, where)
        names = [str(ref)] if ref.tag else []
        up_to_date = _complete_image(store, config_digest)
        if not up_to_date:
            for layer, result in _fetch_layers(client, store, ref.repository, layers, report):
                store.record_layer(result, layer.digest, layer.media_type)
        image = store.add_image(config_bytes, [(layer.digest, layer.media_type)
                                               for layer in layers], names,
                                manifest_digest=digest, digest_repository=ref.name,
                                source=ref.name, sizes=[layer.size for layer in layers])
        return PullResult(image, where, digest, up_to_date=up_to_date)
    finally:
        client.close()


def _check_platform(config: dict[str, Any], platform: tuple[str, str, str], where: str
                    ) -> None:
    """Docker's check for ``--platform`` on a single-platform image."""
    actual = (config.get("os", ""), config.get("architecture", ""))
    if actual != platform[:2]:
        raise InvalidArgument(
            "pull", where, detail=f"the image is for {'/'.join(map(str, actual))}, "
            f"not the requested {'/'.join(p for p in platform if p)}")


def _complete_image(store: ImageStore, config_digest: str) -> bool:
    from tsubo.errors import NotFound

    try:
        image = store.get(config_digest)
    except NotFound:
        return False
    return all(store.has_layer(diff_id) for diff_id in image.layers)


def _fetch_layers(client: RegistryClient, store: ImageStore, repository: str,
                  layers: list[Layer], report: Events) -> list[tuple[Layer, UnpackResult]]:
    """Download and unpack the layers not in the store yet, :data:`PARALLEL` at a time."""
    import threading
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from tsubo.image.blobs import BlobStore

    blobs = BlobStore(store.root)
    cancelled = threading.Event()
    todo: list[Layer] = []
    seen: set[str] = set()
    for layer in layers:
        if store.has_layer(layer.diff_id) or layer.diff_id in seen:
            report(layer.key, "Already exists", 0, 0)
            continue
        seen.add(layer.diff_id)
        report(layer.key, "Pulling fs layer", 0, layer.size)
        todo.append(layer)

    def fetch(layer: Layer) -> tuple[Layer, UnpackResult]:
        writer = _blob_writer(blobs, layer, cancelled, report)
        if writer is not None:
            with writer:
                done = [writer.offset]
                report(layer.key, "Downloading", done[0], layer.size)

                def progress(count: int) -> None:
                    done[0] += count
                    report(layer.key, "Downloading", done[0], layer.size)

                client.fetch_blob(repository, writer, progress, cancelled)
                report(layer.key, "Verifying Checksum", layer.size, layer.size)
                writer.commit()
            report(layer.key, "Download complete", layer.size, layer.size)
        if cancelled.is_set():
            raise InterruptedError(layer.digest)
        report(layer.key, "Extracting", 0, 0)
        result = store.unpack_blob(layer.digest, layer.media_type, layer.diff_id)
        report(layer.key, "Pull complete", 0, 0)
        return layer, result

    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(todo)),
                            thread_name_prefix="pull") as pool:
        futures = [pool.submit(fetch, layer) for layer in todo]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                cancelled.set()
                wait(futures)
                errors = [error for future in futures
                          if (error := future.exception()) is not None]
                first = next((error for error in errors
                              if not isinstance(error, InterruptedError)), errors[0])
                raise describe_failure(first) from first
        except BaseException:
            cancelled.set()
            raise
    return [future.result() for future in futures]


def _blob_writer(blobs: BlobStore, layer: Layer, cancelled: threading.Event,
                 report: Events) -> BlobWriter | None:
    """A writer for *layer*'s blob, or None when the blob is in the store. Another pull
    downloading the same blob (tsubo pull of two images sharing layers, at once) is
    waited for, and its verified blob used."""
    from tsubo.errors import WrongState

    waiting = False
    while not blobs.has(layer.digest):
        try:
            writer = blobs.writer(layer.digest, layer.size)
        except WrongState:
            if not waiting:
                report(layer.key, "Waiting", 0, layer.size)
                waiting = True
            if cancelled.wait(0.05):
                raise InterruptedError(layer.digest) from None
            continue
        if blobs.has(layer.digest):  # committed by the writer we just followed
            writer.discard()
            return None
        return writer
    return None


def describe_failure(error: BaseException) -> TsuboError:
    """A TsuboError for whatever a download thread raised."""
    if isinstance(error, TsuboError):
        return error
    return TsuboError("pull", "", detail=f"{type(error).__name__}: {error}")
