"""Unpack memory does not grow with a layer's entry count (issue 15, item 8).

tarfile keeps every TarInfo it reads (``TarFile.members``), and the unpacker kept every
directory's TarInfo until the end: ~0.5 KB an entry, 424 MB of RSS for a 900k-file layer.
Here two layers, of 10k and of 150k entries (10% directories: 15k of them, past
``DIR_META_IN_MEMORY``, so the directory metadata goes through the scratch SQLite file),
are unpacked by ``unpack_layer`` in fresh interpreters, and their peak RSS (each child's
own ``VmHWM``: ``ru_maxrss`` would include this test process's RSS, see
``tests/big_layers.py``) compared: the old code grew by ~70 MB between the two, the bound
here is 12 MiB. The figures for 100k and 1M entries are ``bench/unpack_memory.py``'s
(docs/performance.md).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.big_layers import MTIME, layer_names, unpack_in_child, write_many_entry_layer
from tsubo.image import unpack

SHM = "/dev/shm"
SMALL = 10_000
LARGE = 150_000
#: growth of the peak RSS allowed between SMALL and LARGE entries (SQLite's page cache is
#: 4 MiB of it); the old code grew ~70 MB
GROWTH_LIMIT_KIB = 12 * 1024


def _unpack(scratch: Path, entries: int) -> tuple[int, Path]:
    blob = write_many_entry_layer(str(scratch / f"layer-{entries}.tar.gz"), entries)
    parent = scratch / f"layers-{entries}"
    parent.mkdir()
    child = unpack_in_child(blob, str(parent))
    assert sorted(os.listdir(parent)) == [Path(child.path).name]  # no scratch dir left
    return child.peak_rss_kib, Path(child.path)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A temp dir on tmpfs (/dev/shm) when there is one with room: the test measures
    memory, not the disk, and ext4 under load makes 160k creations take 10-40 s; else
    *tmp_path*. Emptied afterwards (160k entries: not for pytest's kept tmp dirs)."""
    base = tmp_path
    try:
        shm = os.statvfs(SHM)
        if shm.f_favail > 4 * LARGE and shm.f_bavail * shm.f_frsize > 1 << 30:
            base = Path(tempfile.mkdtemp(prefix="tsubo-test-unpack-", dir=SHM))
    except OSError:
        pass
    try:
        yield base
    finally:
        for entry in base.iterdir():
            if entry.is_dir():
                unpack.remove_tree(str(entry))
            else:
                entry.unlink()
        if base != tmp_path:
            base.rmdir()


def test_peak_rss_does_not_grow_with_the_entry_count(scratch: Path) -> None:
    expected = layer_names(LARGE)
    expected_dirs = [name.rstrip("/") for name, is_dir in expected if is_dir]
    assert len(expected_dirs) > unpack.DIR_META_IN_MEMORY  # the spilled path is taken
    small_rss, _ = _unpack(scratch, SMALL)
    large_rss, root = _unpack(scratch, LARGE)

    # the large layer is complete, with its directories' metadata applied
    directories = files = 0
    for _path, dirnames, filenames in os.walk(root):
        directories += len(dirnames)
        files += len(filenames)
    assert (directories, files) == (len(expected_dirs), LARGE - len(expected_dirs))
    for name in (expected_dirs[0], expected_dirs[1], expected_dirs[-1]):
        st = (root / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o755, MTIME), name

    growth = large_rss - small_rss
    assert growth < GROWTH_LIMIT_KIB, (
        f"peak RSS {small_rss} KiB at {SMALL} entries, {large_rss} KiB at {LARGE}: "
        f"+{growth} KiB")
