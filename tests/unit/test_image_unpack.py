"""Layer unpacking: normal content, diff_id, whiteouts and every escape of TESTING.md.

Each test writes a tarball with ``tarfile`` into a tmp dir, unpacks it into ``layers/``
and checks the result exactly. Rejected layers must name the layer digest and the entry,
leave ``sentinel/`` (next to ``layers/``) empty and leave no temp dir behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tsubo.errors import InvalidArgument, TsuboError
from tsubo.image import unpack
from tsubo.image.unpack import UnpackResult, unpack_layer

DIGEST = "sha256:" + "ab" * 32
TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MTIME = 1_600_000_000
IS_ROOT = os.geteuid() == 0


@dataclass
class Entry:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    pax: dict[str, str] | None = None
    devmajor: int = 0
    devminor: int = 0


def build_tar(entries: list[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.mode = entry.mode
            info.mtime = MTIME
            info.uid, info.gid = entry.uid, entry.gid
            info.linkname = entry.linkname
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            if entry.pax:
                info.pax_headers = dict(entry.pax)
            if entry.kind == tarfile.REGTYPE:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


class Layers:
    """A tmp dir with ``layers/`` (the target parent) and an empty ``sentinel/``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.parent = tmp_path / "layers"
        self.sentinel = tmp_path / "sentinel"
        self.parent.mkdir()
        self.sentinel.mkdir()

    def write(self, data: bytes, name: str = "blob") -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def unpack(self, entries: list[Entry], *, gz: bool = False,
               expected: str | None = None) -> UnpackResult:
        raw = build_tar(entries)
        blob = self.write(gzip.compress(raw) if gz else raw)
        return unpack_layer(str(blob), TAR_GZ if gz else TAR, str(self.parent), DIGEST,
                            expected_diff_id=expected)

    def assert_clean(self) -> None:
        """Nothing outside the layers, nothing left in ``layers/``."""
        assert list(self.sentinel.iterdir()) == []
        assert list(self.parent.iterdir()) == []


@pytest.fixture(params=["dir-meta-in-memory", "dir-meta-spilled"])
def layers(tmp_path: Path, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Layers:
    """Every test runs twice: with the directories' metadata in memory, and moved to the
    scratch SQLite file from the first directory on (what a layer of more than
    DIR_META_IN_MEMORY directories does)."""
    if request.param == "dir-meta-spilled":
        monkeypatch.setattr(unpack, "DIR_META_IN_MEMORY", 0)
    return Layers(tmp_path)


# -- normal content ------------------------------------------------------------------------


def test_files_dirs_symlinks_hardlinks_modes(layers: Layers) -> None:
    entries = [
        Entry("etc", tarfile.DIRTYPE, mode=0o755),
        Entry("etc/hostname", data=b"box\n", mode=0o640),
        Entry("bin/tool", data=b"#!x", mode=0o4755),  # parent made implicitly
        Entry("bin/sh", tarfile.SYMTYPE, linkname="/bin/tool"),
        Entry("bin/dangling", tarfile.SYMTYPE, linkname="../../../nowhere"),
        Entry("bin/tool2", tarfile.LNKTYPE, linkname="bin/tool"),
        Entry("ro", tarfile.DIRTYPE, mode=0o555),
        Entry("ro/inside", data=b"in", mode=0o444),
        Entry("fifo", tarfile.FIFOTYPE, mode=0o620),
    ]
    result = layers.unpack(entries)
    root = Path(result.path)
    assert root.parent == layers.parent
    assert root.name == result.diff_id.removeprefix("sha256:")
    assert sorted(p.name for p in layers.parent.iterdir()) == [root.name]
    assert (root / "etc/hostname").read_bytes() == b"box\n"
    assert stat.S_IMODE((root / "etc/hostname").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "bin").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o4755
    assert os.readlink(root / "bin/sh") == "/bin/tool"
    assert os.readlink(root / "bin/dangling") == "../../../nowhere"
    assert (root / "bin/tool2").stat().st_ino == (root / "bin/tool").stat().st_ino
    assert stat.S_IMODE((root / "ro").stat().st_mode) == 0o555
    assert (root / "ro/inside").read_bytes() == b"in"
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)
    assert stat.S_IMODE((root / "fifo").lstat().st_mode) == 0o620
    assert (root / "etc/hostname").stat().st_mtime == MTIME
    assert (root / "etc").stat().st_mtime == MTIME
    assert (root / "bin/sh").lstat().st_mtime == MTIME
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert list(layers.sentinel.iterdir()) == []


def test_later_entry_replaces_and_dir_entry_updates_metadata(layers: Layers) -> None:
    entries = [
        Entry("d", tarfile.DIRTYPE, mode=0o700),
        Entry("d/f", data=b"first"),
        Entry("d/f", data=b"second"),
        Entry("d", tarfile.DIRTYPE, mode=0o751),
        Entry("x", tarfile.DIRTYPE),
        Entry("x/y", data=b"y"),
        Entry("x", data=b"now a file"),
    ]
    root = Path(layers.unpack(entries).path)
    assert (root / "d/f").read_bytes() == b"second"
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o751
    assert (root / "x").read_bytes() == b"now a file"


@pytest.mark.parametrize("gz", [False, True])
def test_diff_id_is_sha256_of_uncompressed_tar(layers: Layers, gz: bool) -> None:
    entries = [Entry("big", data=os.urandom(3 << 20)), Entry("small", data=b"s")]
    raw = build_tar(entries)
    result = layers.unpack(entries, gz=gz)
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(raw)
    assert (Path(result.path) / "big").read_bytes() == entries[0].data


def test_docker_gzip_media_type(layers: Layers) -> None:
    raw = build_tar([Entry("a", data=b"a")])
    blob = layers.write(gzip.compress(raw))
    result = unpack_layer(str(blob), DOCKER_GZ, str(layers.parent), DIGEST)
    assert (Path(result.path) / "a").read_bytes() == b"a"


def test_truncated_zstd_is_rejected_with_a_clear_message(layers: Layers) -> None:
    blob = layers.write(b"(\xb5/\xfd")  # zstd layers: more in test_image_zstd.py
    with pytest.raises(InvalidArgument, match="corrupt or truncated layer: zstd truncated"):
        unpack_layer(str(blob), TAR.replace("tar", "tar+zstd"), str(layers.parent), DIGEST)
    layers.assert_clean()


def test_same_layer_twice_returns_the_same_dir(layers: Layers) -> None:
    entries = [Entry("ro", tarfile.DIRTYPE, mode=0o555), Entry("ro/f", data=b"f")]
    first = layers.unpack(entries)
    second = layers.unpack(entries)
    assert first == second
    assert [p.name for p in layers.parent.iterdir()] == [Path(first.path).name]


def test_expected_diff_id_matches(layers: Layers) -> None:
    entries = [Entry("a", data=b"a")]
    expected = "sha256:" + hashlib.sha256(build_tar(entries)).hexdigest()
    assert layers.unpack(entries, expected=expected).diff_id == expected


def test_wrong_expected_diff_id_keeps_nothing(layers: Layers) -> None:
    wrong = "sha256:" + "00" * 32
    with pytest.raises(InvalidArgument) as caught:
        layers.unpack([Entry("a", data=b"a")], expected=wrong)
    message = str(caught.value)
    assert DIGEST in message
    assert wrong in message
    assert "diff_id is sha256:" in message
    layers.assert_clean()


def test_truncated_gzip_names_the_digest(layers: Layers) -> None:
    data = gzip.compress(build_tar([Entry("big", data=os.urandom(1 << 20))]))
    blob = layers.write(data[: len(data) // 2])
    with pytest.raises(TsuboError, match=DIGEST):
        unpack_layer(str(blob), TAR_GZ, str(layers.parent), DIGEST)
    layers.assert_clean()


def test_absolute_path_is_made_relative_and_confined(layers: Layers) -> None:
    root = Path(layers.unpack([Entry("/abs/path", data=b"x")]).path)
    assert (root / "abs/path").read_bytes() == b"x"
    assert not Path("/abs/path").exists()
    assert list(layers.sentinel.iterdir()) == []


def test_dot_dot_inside_the_root_is_allowed(layers: Layers) -> None:
    root = Path(layers.unpack([Entry("a/../b", data=b"b")]).path)
    assert (root / "b").read_bytes() == b"b"


# -- escapes: each rejected, naming digest and entry, nothing written ----------------------


def _escapes(sentinel: str) -> dict[str, tuple[list[Entry], str]]:
    """name -> (entries, the entry the error must name)."""
    return {
        "dotdot": ([Entry("../evil", data=b"x")], "../evil"),
        "sentinel-dotdot": ([Entry("../sentinel/evil", data=b"x")], "../sentinel/evil"),
        "nested-dotdot": ([Entry("a/../../evil", data=b"x")], "a/../../evil"),
        "symlink-to-root": (
            [Entry("link", tarfile.SYMTYPE, linkname="/"),
             Entry("link/etc/passwd", data=b"x")], "link/etc/passwd"),
        "symlink-to-parent": (
            [Entry("link", tarfile.SYMTYPE, linkname=".."), Entry("link/x", data=b"x")],
            "link/x"),
        "symlink-across-entries": (
            [Entry("d", tarfile.SYMTYPE, linkname="/tmp"), Entry("other", data=b"o"),
             Entry("d/x", data=b"x")], "d/x"),
        "symlink-to-sentinel": (
            [Entry("d", tarfile.SYMTYPE, linkname=sentinel), Entry("d/x", data=b"x")],
            "d/x"),
        "symlink-dir-to-sentinel": (
            [Entry("d", tarfile.SYMTYPE, linkname=sentinel),
             Entry("d/sub", tarfile.DIRTYPE)], "d/sub"),
        "hardlink-outside": (
            [Entry("h", tarfile.LNKTYPE, linkname="../outside")], "h"),
        "hardlink-etc-passwd": (
            [Entry("h", tarfile.LNKTYPE, linkname="/etc/passwd")], "h"),
        "hardlink-through-symlink": (
            [Entry("l", tarfile.SYMTYPE, linkname="/etc"),
             Entry("h", tarfile.LNKTYPE, linkname="l/passwd")], "h"),
        "hardlink-to-symlink": (
            [Entry("l", tarfile.SYMTYPE, linkname="/etc/passwd"),
             Entry("h", tarfile.LNKTYPE, linkname="l")], "h"),
        # a directory walked (and its fd cached) before a later entry turns it into a
        # symlink: the walk after that must see the symlink, not the cached directory
        "dir-then-symlink": (
            [Entry("d", tarfile.DIRTYPE), Entry("d/sub", tarfile.DIRTYPE),
             Entry("d/sub/a", data=b"a"), Entry("d", tarfile.SYMTYPE, linkname=sentinel),
             Entry("d/sub/b", data=b"x")], "d/sub/b"),
        "dir-then-symlink-hardlink": (
            [Entry("d/a", data=b"a"), Entry("d", tarfile.SYMTYPE, linkname="/etc"),
             Entry("h", tarfile.LNKTYPE, linkname="d/passwd")], "h"),
        "dir-whited-out-then-symlink": (
            [Entry("d/a", data=b"a"), Entry(".wh.d"),
             Entry("d", tarfile.SYMTYPE, linkname=sentinel), Entry("d/b", data=b"x")],
            "d/b"),
        "whiteout-dot": ([Entry(".wh..")], ".wh.."),
        "whiteout-dotdot": ([Entry(".wh...")], ".wh..."),
        "whiteout-empty": ([Entry("d/.wh.")], "d/.wh."),
        "whiteout-nested-prefix": ([Entry(".wh..wh.plnk")], ".wh..wh.plnk"),
        "whiteout-under-symlink": (
            [Entry("d", tarfile.SYMTYPE, linkname=sentinel),
             Entry("d/.wh.x")], "d/.wh.x"),
        "opaque-under-symlink": (
            [Entry("d", tarfile.SYMTYPE, linkname=sentinel),
             Entry("d/.wh..wh..opq")], "d/.wh..wh..opq"),
        # a pax path or linkpath may hold a NUL, which no system call takes
        "nul-in-name": ([Entry("x", pax={"path": "a\x00b"}, data=b"x")], "a\x00b"),
        "nul-in-link": (
            [Entry("s", tarfile.SYMTYPE, pax={"linkpath": f"{sentinel}\x00x"})], "s"),
    }


ESCAPE_NAMES = sorted(_escapes("/x"))


@pytest.mark.parametrize("case", ESCAPE_NAMES)
@pytest.mark.parametrize("gz", [False, True])
def test_escape_is_rejected_and_nothing_is_written(layers: Layers, case: str, gz: bool) -> None:
    entries, bad_entry = _escapes(str(layers.sentinel))[case]
    with pytest.raises(InvalidArgument) as caught:
        layers.unpack(entries, gz=gz)
    assert caught.value.object == f"{DIGEST}: {bad_entry}"
    assert DIGEST in str(caught.value)
    assert bad_entry in str(caught.value)
    layers.assert_clean()
    assert not (layers.tmp / "evil").exists()
    assert not (layers.tmp / "outside").exists()


def test_pax_trusted_overlay_xattr_is_dropped(layers: Layers) -> None:
    entries = [
        Entry("d", tarfile.DIRTYPE, mode=0o755, pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
        Entry("d/f", data=b"f", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
    ]
    root = Path(layers.unpack(entries).path)
    for path in (root / "d", root / "d/f"):
        assert not [n for n in os.listxattr(path) if n.startswith("trusted.overlay.")]
        if IS_ROOT:
            with pytest.raises(OSError, match="No data available"):
                os.getxattr(path, "trusted.overlay.opaque")


def test_pax_user_xattr_is_applied_where_allowed(layers: Layers) -> None:
    probe = layers.tmp / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.tsubo", b"1")
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    root = Path(layers.unpack(
        [Entry("f", data=b"f", pax={"SCHILY.xattr.user.colour": "blue"})]).path)
    assert os.getxattr(root / "f", "user.colour") == b"blue"


# -- root only: whiteouts, devices, owners -------------------------------------------------


def test_whiteout_becomes_a_0_0_char_device(layers: Layers) -> None:
    # Linux >= 5.8 lets anyone create a 0:0 whiteout device; older kernels need CAP_MKNOD
    try:
        os.mknod(layers.tmp / "probe", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except PermissionError:
        pytest.skip("this kernel needs CAP_MKNOD for whiteout devices")
    root = Path(layers.unpack([Entry("etc/.wh.gone", uid=0, gid=0)]).path)
    st = (root / "etc/gone").lstat()
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == os.makedev(0, 0)
    assert not (root / "etc/.wh.gone").exists()


@pytest.mark.root
def test_opaque_whiteout_sets_the_overlay_xattr(layers: Layers) -> None:
    entries = [
        Entry("d", tarfile.DIRTYPE, mode=0o755),
        Entry("d/.wh..wh..opq"),
        Entry("d/kept", data=b"k"),
    ]
    root = Path(layers.unpack(entries).path)
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    assert sorted(p.name for p in (root / "d").iterdir()) == ["kept"]


@pytest.mark.root
def test_devices_owners_and_setgid_are_kept(layers: Layers) -> None:
    entries = [
        Entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        Entry("dev/loop9", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=9, gid=6),
        Entry("srv", tarfile.DIRTYPE, mode=0o2775, uid=1000, gid=1001),
        Entry("srv/file", data=b"x", mode=0o2755, uid=1234, gid=5678),
        Entry("srv/link", tarfile.SYMTYPE, linkname="file", uid=42, gid=43),
    ]
    root = Path(layers.unpack(entries).path)
    null = (root / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode)
    assert null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (root / "dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode)
    assert (loop.st_rdev, loop.st_gid) == (os.makedev(7, 9), 6)
    srv = (root / "srv").stat()
    assert (srv.st_uid, srv.st_gid, stat.S_IMODE(srv.st_mode)) == (1000, 1001, 0o2775)
    f = (root / "srv/file").stat()
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1234, 5678, 0o2755)
    link = (root / "srv/link").lstat()
    assert (link.st_uid, link.st_gid) == (42, 43)


@pytest.mark.root
def test_security_capability_xattr_survives_chown(layers: Layers) -> None:
    # vfs_cap_data v2 (capability.h): magic 0x02000000 | effective, permitted = NET_BIND_SERVICE
    cap = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
    entry = Entry("ping", data=b"x", mode=0o755, uid=1000, gid=1000,
                  pax={"SCHILY.xattr.security.capability": cap.decode("latin-1")})
    root = Path(layers.unpack([entry]).path)
    assert os.getxattr(root / "ping", "security.capability") == cap
    assert (root / "ping").stat().st_uid == 1000


def test_replaced_directory_is_walked_afresh(layers: Layers) -> None:
    """A directory replaced by a new one: later entries land in the new one, none in the
    old (whose fd the writer had cached)."""
    result = layers.unpack([
        Entry("d/old", data=b"1"), Entry("d", tarfile.SYMTYPE, linkname="x"),
        Entry("d", tarfile.DIRTYPE), Entry("d/new", data=b"2"),
    ])
    assert sorted(os.listdir(Path(result.path) / "d")) == ["new"]
    assert layers.sentinel.exists() and list(layers.sentinel.iterdir()) == []


# -- the directory metadata store, in memory and spilled to its SQLite file ---------------


def _meta(mode: int, xattrs: tuple[tuple[str, bytes], ...] = ()) -> unpack.DirMeta:
    return (mode, 0, 0, MTIME * 1_000_000_000, xattrs)


@pytest.mark.parametrize("limit", [100, 3, 0])
def test_dir_metadata_replace_drop_tree_and_order(tmp_path: Path, limit: int) -> None:
    spill = tmp_path / ".tmp-x.dirs"
    store = unpack.DirMetadata(str(spill), limit=limit)
    names = ["a", "a/b", "a/b/c", "a-x", "a.b", "ab", "a0", "z", "z/y/x/w",
             "caf\u00e9", "bad\udcff"]  # a name that is not UTF-8 (surrogateescape)
    for mode, name in enumerate(names):
        store.set(tuple(name.split("/")), _meta(mode))
    store.set((), _meta(0o700))
    store.set(("z",), _meta(0o555, (("user.k", b"\x00\xffv"),)))  # a later entry wins
    assert spill.is_dir() == (limit < len(names))  # made only when it is needed
    store.drop_tree(("a",))  # "a" and below; not "a-x", "a.b", "ab", "a0"
    got = list(store.deepest_first())
    depths = [len(parts) for parts, _ in got]
    assert depths == sorted(depths, reverse=True)
    assert {"/".join(parts): meta for parts, meta in got} == {
        "a-x": _meta(3), "a.b": _meta(4), "ab": _meta(5), "a0": _meta(6),
        "z": _meta(0o555, (("user.k", b"\x00\xffv"),)), "z/y/x/w": _meta(8),
        "caf\u00e9": _meta(9), "bad\udcff": _meta(10)}
    assert store.root == _meta(0o700)
    store.discard()
    assert not spill.exists()
    assert list(tmp_path.iterdir()) == []


def test_many_directories_spill_and_keep_their_metadata(layers: Layers) -> None:
    """More directories than DIR_META_IN_MEMORY, nested, some read-only, one replaced by
    a file after its subtree was written: every kept directory gets its own metadata."""
    count = unpack.DIR_META_IN_MEMORY + 50
    entries = [Entry("top", tarfile.DIRTYPE, mode=0o555)]
    entries += [Entry(f"top/d{i:05d}", tarfile.DIRTYPE, mode=0o500 + i % 0o100)
                for i in range(count)]
    entries += [Entry("top/d00000/deeper", tarfile.DIRTYPE, mode=0o511),
                Entry("top/d00001/inner", tarfile.DIRTYPE, mode=0o700),
                Entry("top/d00001", data=b"now a file", mode=0o600)]
    root = Path(layers.unpack(entries).path)
    assert stat.S_IMODE((root / "top").stat().st_mode) == 0o555
    assert stat.S_IMODE((root / "top/d00000/deeper").stat().st_mode) == 0o511
    assert (root / "top/d00001").read_bytes() == b"now a file"
    for i in (0, 2, count // 2, count - 1):
        st = (root / f"top/d{i:05d}").stat()
        assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o500 + i % 0o100, MTIME)
    assert sorted(p.name for p in layers.parent.iterdir()) == [root.name]
