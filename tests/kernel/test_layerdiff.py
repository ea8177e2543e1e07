"""``image/layerdiff.py`` on hand-made upper directories (root: whiteouts are device nodes,
opaque and overlay xattrs live in ``trusted.``): the layer tar it writes, and ``diff``."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from tsubo.errors import Unsupported
from tsubo.image.layerdiff import changes, write_upper_layer


def _upper(tmp_path: Path) -> Path:
    upper = tmp_path / "upper"
    (upper / "dir" / "sub").mkdir(parents=True)
    (upper / "dir" / "sub" / "file").write_text("content")
    os.link(upper / "dir" / "sub" / "file", upper / "dir" / "hardlink")
    (upper / "dir" / "link").symlink_to("/etc/shadow")  # read, never followed
    os.mkfifo(upper / "fifo")  # a reader would block: recorded, never opened
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "new").write_text("n")
    os.setxattr(upper / "dir", "trusted.overlay.origin", b"\x00")  # overlay's: dropped
    os.setxattr(upper / "dir" / "sub" / "file", "user.note", b"kept")
    with socket.socket(socket.AF_UNIX) as sock:  # sockets have no tar form: skipped
        sock.bind(str(upper / "socket"))
    return upper


def test_an_upper_directory_becomes_an_oci_layer(tmp_path: Path) -> None:
    upper = _upper(tmp_path)
    out = io.BytesIO()
    write_upper_layer(str(upper), out, timestamp=1234567890)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = tar.getmembers()
        names = [member.name for member in members]
        by_name = {member.name: member for member in members}
        assert names == ["dir", "dir/hardlink", "dir/link", "dir/sub", "dir/sub/file", "fifo",
                         ".wh.gone", "opaque", "opaque/.wh..wh..opq", "opaque/new"]
        assert by_name["dir/hardlink"].isfile()
        assert by_name["dir/sub/file"].islnk() and by_name["dir/sub/file"].linkname == \
            "dir/hardlink"  # the first seen holds the data, the other links to it
        assert by_name["dir/link"].issym() and by_name["dir/link"].linkname == "/etc/shadow"
        assert by_name["fifo"].isfifo()
        assert by_name[".wh.gone"].isfile() and by_name[".wh.gone"].size == 0
        assert {member.mtime for member in members} == {1234567890}
        assert all(member.uname == "" and member.gname == "" for member in members)
        assert "SCHILY.xattr.trusted.overlay.origin" not in by_name["dir"].pax_headers
        extracted = tar.extractfile("dir/hardlink")
        assert extracted is not None and extracted.read() == b"content"
    again = io.BytesIO()
    write_upper_layer(str(upper), again, timestamp=1234567890)
    assert again.getvalue() == out.getvalue()  # reproducible, byte for byte


def test_a_redirected_directory_is_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "renamed").mkdir(parents=True)
    os.setxattr(upper / "renamed", "trusted.overlay.redirect", b"/old")
    with pytest.raises(Unsupported, match="redirect"):
        write_upper_layer(str(upper), io.BytesIO())


def test_changes_against_lower_layers(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "opaque" / "old").mkdir(parents=True)
    (lower / "opaque" / "kept-name").write_text("x")
    (lower / "gone").write_text("x")
    (lower / "dir").mkdir()
    upper = _upper(tmp_path)
    (upper / "opaque" / "kept-name").write_text("y")
    found = changes(str(upper), [str(lower)])
    assert found == [
        ("C", "/dir"), ("A", "/dir/hardlink"), ("A", "/dir/link"), ("A", "/dir/sub"),
        ("A", "/dir/sub/file"), ("A", "/fifo"), ("D", "/gone"), ("C", "/opaque"),
        ("C", "/opaque/kept-name"), ("A", "/opaque/new"), ("D", "/opaque/old"),
        ("A", "/socket")]
