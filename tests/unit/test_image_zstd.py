"""zstd layers: the libzstd binding (``image/zstd.py``) and its use by ``unpack_layer``.

Compressed data comes from the ``zstd`` command (an independent producer, Debian package
``zstd``), never from our own code. A zstd layer must unpack to exactly the tree (and
diff_id) of the same tar gzipped; concatenated frames are one stream; corrupt or truncated
blobs are rejected naming the layer digest and leave nothing in ``layers/``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tsubo.errors import InvalidArgument, Unsupported
from tsubo.image import zstd
from tsubo.image.unpack import compression_of, unpack_layer

ZSTD = shutil.which("zstd") or "/usr/bin/zstd"
DIGEST = "sha256:" + "cd" * 32
TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MTIME = 1_600_000_000

pytestmark = pytest.mark.skipif(not os.path.exists(ZSTD),
                                reason="zstd missing: install Debian package zstd")


def compress(data: bytes, *args: str) -> bytes:
    """*data* compressed by the zstd CLI."""
    return subprocess.run([ZSTD, "-q", "-c", *args], input=data, capture_output=True,
                          check=True).stdout


def sample_tar() -> bytes:
    """A layer with dirs, files (one of 2 MiB random bytes), a symlink, a hardlink and a
    whiteout, in PAX format."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
                mode: int = 0o644, linkname: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, MTIME, linkname
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("etc", tarfile.DIRTYPE, mode=0o755)
        add("etc/hostname", data=b"box\n", mode=0o640)
        add("usr/lib/big.bin", data=os.urandom(2 << 20), mode=0o755)
        add("usr/lib/text", data=b"line\n" * 50_000)
        add("usr/bin/sh", tarfile.SYMTYPE, linkname="/usr/lib/big.bin")
        add("usr/bin/big2", tarfile.LNKTYPE, linkname="usr/lib/big.bin")
        add("var", tarfile.DIRTYPE, mode=0o700)
        add("var/.wh.gone")
    return buffer.getvalue()


def tree(root: Path) -> list[tuple[str, int, str]]:
    """(path, mode, content digest or link target) of everything below *root*."""
    entries = [("", stat.S_IMODE(root.lstat().st_mode), "dir")]
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            what = "-> " + os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISCHR(info.st_mode):
            what = f"chr {os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
        else:
            what = "dir"
        entries.append((str(path.relative_to(root)), info.st_mode, what))
    return entries


class Layers:
    """``layers/`` (the target parent) in a tmp dir, and blobs written next to it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.parent = tmp / "layers"
        self.parent.mkdir(parents=True)

    def unpack(self, blob: bytes, media_type: str = TAR_ZSTD, name: str = "blob",
               expected: str | None = None) -> Path:
        path = self.tmp / name
        path.write_bytes(blob)
        result = unpack_layer(str(path), media_type, str(self.parent), DIGEST, expected)
        return Path(result.path)

    def reject(self, blob: bytes, media_type: str = TAR_ZSTD) -> InvalidArgument:
        with pytest.raises(InvalidArgument) as caught:
            self.unpack(blob, media_type)
        assert list(self.parent.iterdir()) == []  # no temp dir, no half layer
        return caught.value


@pytest.fixture
def layers(tmp_path: Path) -> Layers:
    return Layers(tmp_path)


# -- media types -------------------------------------------------------------------------


@pytest.mark.parametrize(("media_type", "expected"), [
    (TAR_ZSTD, "zstd"),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "zstd"),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar", "none"),
    (TAR_GZ, "gzip"),
    (TAR, "none"),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"),
])
def test_compression_of_media_types(media_type: str, expected: str) -> None:
    assert compression_of(media_type) == expected


def test_unknown_media_type_is_still_refused() -> None:
    with pytest.raises(Unsupported, match="unknown layer media type"):
        compression_of("application/vnd.oci.image.layer.v1.tar+lz4")


# -- good layers -------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["-1", "-19", "--long=27"])
def test_zstd_layer_unpacks_to_the_tree_of_its_gzip_twin(tmp_path: Path, level: str) -> None:
    raw = sample_tar()
    zstd_layers = Layers(tmp_path / "z")
    gzip_layers = Layers(tmp_path / "g")
    # two parents: in one, the second unpack would return the first's dir unchecked
    zstd_root = zstd_layers.unpack(compress(raw, level))
    gzip_root = gzip_layers.unpack(gzip.compress(raw), TAR_GZ)
    assert zstd_root.name == gzip_root.name == hashlib.sha256(raw).hexdigest()
    assert tree(zstd_root) == tree(gzip_root)
    assert (zstd_root / "etc/hostname").read_bytes() == b"box\n"
    assert (zstd_root / "usr/bin/big2").stat().st_ino == \
        (zstd_root / "usr/lib/big.bin").stat().st_ino


def test_expected_diff_id_is_checked_for_zstd(layers: Layers) -> None:
    raw = sample_tar()
    good = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    assert layers.unpack(compress(raw), expected=good).name == good[7:]
    with pytest.raises(InvalidArgument, match="diff_id is"):
        layers.unpack(compress(raw), expected="sha256:" + "0" * 64, name="other")


def test_concatenated_frames_are_one_stream(layers: Layers) -> None:
    raw = sample_tar()
    cuts = [0, 1000, 512 * 7 + 3, len(raw) // 2, len(raw)]  # frames need not end on blocks
    blob = b"".join(compress(raw[a:b]) for a, b in itertools.pairwise(cuts))
    root = layers.unpack(blob)
    assert root.name == hashlib.sha256(raw).hexdigest()
    # an empty frame and a skippable frame (magic 0x184D2A50, 4-byte size, payload) too
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!"
    blob = skippable + compress(raw[:4096]) + compress(b"") + compress(raw[4096:])
    assert Layers(layers.tmp / "again").unpack(blob).name == root.name


def test_media_type_plain_tar_but_content_compressed(layers: Layers) -> None:
    raw = sample_tar()
    name = hashlib.sha256(raw).hexdigest()
    assert layers.unpack(compress(raw), TAR).name == name
    other = Layers(layers.tmp / "gz")
    assert other.unpack(gzip.compress(raw), TAR, name="gz").name == name
    third = Layers(layers.tmp / "zg")
    # content decides over the media type both ways
    assert third.unpack(compress(raw), TAR_GZ, name="zg").name == name


# -- bad layers --------------------------------------------------------------------------


def test_corrupt_stream_is_rejected_naming_the_digest(layers: Layers) -> None:
    blob = bytearray(compress(sample_tar(), "-3"))
    middle = len(blob) // 2
    blob[middle:middle + 64] = bytes(64)
    error = layers.reject(bytes(blob))
    assert DIGEST in str(error)
    assert "corrupt or truncated layer: zstd corrupt" in str(error)


def test_garbage_after_the_last_frame_is_rejected(layers: Layers) -> None:
    error = layers.reject(compress(sample_tar()) + b"\x00" * 16)
    assert DIGEST in str(error) and "corrupt or truncated layer" in str(error)


@pytest.mark.parametrize("keep", [4, 100, -1])
def test_truncated_stream_is_rejected_naming_the_digest(layers: Layers, keep: int) -> None:
    blob = compress(sample_tar())
    error = layers.reject(blob[:keep])
    assert DIGEST in str(error)
    assert "corrupt or truncated layer: zstd truncated" in str(error)


def test_stream_cut_after_a_whole_frame_fails_as_a_short_tar(layers: Layers) -> None:
    raw = sample_tar()
    error = layers.reject(compress(raw[:len(raw) // 2]))  # valid zstd, half a tar
    assert DIGEST in str(error) and "corrupt or truncated layer" in str(error)


# -- the reader itself -------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 4095, 131_072, 1 << 20, -1])
def test_reader_returns_exactly_the_input(size: int) -> None:
    raw = sample_tar()
    with zstd.ZstdReader(io.BytesIO(compress(raw))) as reader:
        if size < 0:
            out = reader.read()
        else:
            parts = []
            while part := reader.read(size if size > 1 else 997):
                assert len(part) <= max(size, 997)
                parts.append(part)
            out = b"".join(parts)
        assert reader.read(10) == b""
    assert out == raw


def test_reader_rejects_empty_input() -> None:
    with zstd.ZstdReader(io.BytesIO(b"")) as reader, \
            pytest.raises(zstd.ZstdError, match="before the first frame"):
        reader.read(10)


def test_reader_after_close_raises() -> None:
    reader = zstd.ZstdReader(io.BytesIO(compress(b"x")))
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_is_zstd_magic() -> None:
    assert zstd.is_zstd(compress(b"x")[:4])
    assert zstd.is_zstd(b"\x5f\x2a\x4d\x18")
    assert not zstd.is_zstd(b"\x1f\x8b\x08\x00")
    assert not zstd.is_zstd(b"et")


def test_missing_library_is_unsupported_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zstd, "_library", None)
    monkeypatch.setattr(zstd, "LIBRARY", "libzstd-does-not-exist.so.9")
    with pytest.raises(Unsupported, match="install libzstd1"):
        zstd.ZstdReader(io.BytesIO(b""))
