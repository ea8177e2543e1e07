"""Layers with very many entries, and the peak memory of unpacking one.

Used by ``tests/unit/test_unpack_memory.py`` (a CI-sized check) and
``bench/unpack_memory.py`` (the 100k / 1M figures of ``docs/performance.md``).

- :func:`write_many_entry_layer`: a gzip layer of exactly *entries* entries, streamed to
  disk (a 1M-entry tar is 512 MB uncompressed, ~3 MB here): one group directory per 100
  directories, each directory followed by its empty files, as ``g0000/d0000001/f3``. The
  ustar headers are built from a template (tarfile's ``TarInfo.tobuf`` costs ~16 us an
  entry: 16 s for a million).
- :func:`unpack_in_child`: unpack a blob with tsubo's own :func:`unpack_layer` in a fresh
  interpreter and return its peak RSS, its time and its result.

Which peak RSS: ``ru_maxrss`` (``wait4``) of a child is at least the *parent's* RSS when it
was spawned (Linux folds the old address space's high-water mark into ``ru_maxrss`` at
``execve``, and ``subprocess`` spawns with ``vfork``, whose old address space is the
parent's), so a test process holding 60 MB reports 60 MB for any child. The child's own
``VmHWM`` (``/proc/self/status``: the high-water mark of the address space ``execve``
made) is read just before it exits and is the figure to compare; ``ru_maxrss`` is kept
for reference (it equals ``VmHWM`` when the parent is smaller than the child).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 512
MTIME = 1_600_000_000
GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DIRS_PER_GROUP = 100
FILES_PER_DIR = 9
#: headers written to the gzip stream at once
_BATCH = 4096


def _template(mode: int) -> bytearray:
    """A ustar header without name and type: mode, uid/gid 0, size 0, the fixed mtime,
    the checksum field blank (spaces, as the checksum is computed), magic and version."""
    header = bytearray(BLOCK)
    header[100:108] = b"%07o\0" % mode
    header[108:116] = b"%07o\0" % 0
    header[116:124] = b"%07o\0" % 0
    header[124:136] = b"%011o\0" % 0
    header[136:148] = b"%011o\0" % MTIME
    header[148:156] = b" " * 8
    header[257:265] = b"ustar\x0000"
    return header


_FILE = _template(0o644)
_DIR = _template(0o755)


def _header(name: str, is_dir: bool) -> bytes:
    header = bytearray(_DIR if is_dir else _FILE)
    raw = name.encode()
    header[0:len(raw)] = raw
    header[156] = ord("5") if is_dir else ord("0")
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def layer_names(entries: int) -> list[tuple[str, bool]]:
    """The first *entries* (name, is_dir) of the layer, in order (for checks)."""
    names: list[tuple[str, bool]] = []
    for name, is_dir in _names():
        if len(names) == entries:
            break
        names.append((name, is_dir))
    return names


def _names() -> Iterator[tuple[str, bool]]:
    directory = 0
    while True:
        if directory % DIRS_PER_GROUP == 0:
            yield f"g{directory // DIRS_PER_GROUP:04d}/", True
        prefix = f"g{directory // DIRS_PER_GROUP:04d}/d{directory:07d}"
        yield prefix + "/", True
        for index in range(FILES_PER_DIR):
            yield f"{prefix}/f{index}", False
        directory += 1


def write_many_entry_layer(path: str, entries: int) -> str:
    """Write a gzip layer of exactly *entries* entries to *path*; returns *path*."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1,
                                                mtime=0) as out:
        batch: list[bytes] = []
        for written, (name, is_dir) in enumerate(_names()):
            if written == entries:
                break
            batch.append(_header(name, is_dir))
            if len(batch) == _BATCH:
                out.write(b"".join(batch))
                batch.clear()
        batch.append(b"\0" * (2 * BLOCK))  # end of archive
        out.write(b"".join(batch))
    return path


_VM_HWM = """
def vm_hwm_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0
"""

_CHILD = _VM_HWM + """
import json, sys, time
from tsubo.image.unpack import unpack_layer
blob, parent, media = sys.argv[1:4]
start = time.perf_counter()
result = unpack_layer(blob, media, parent, "sha256:" + "0" * 64)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "path": result.path, "vm_hwm_kib": vm_hwm_kib()}))
"""

_CHILD_FLOOR = _VM_HWM + """
import json, gzip, hashlib, tarfile, zlib
import tsubo.image.unpack
print(json.dumps({"seconds": 0.0, "path": "", "vm_hwm_kib": vm_hwm_kib()}))
"""


@dataclass(frozen=True)
class ChildUnpack:
    """What one unpack in a fresh interpreter cost: its peak RSS in KiB (``VmHWM``, and
    ``ru_maxrss``, see the module docstring), the seconds inside unpack_layer, and the
    layer directory it made (empty for the floor run)."""

    peak_rss_kib: int
    max_rss_kib: int
    seconds: float
    path: str


def _run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run *argv*; (ru_maxrss in KiB, stdout). Raises RuntimeError if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env)
        try:
            # wait4 gives this one child's own rusage (RUSAGE_CHILDREN would be the
            # maximum over every child this process ever waited for)
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[:3]} exited {proc.returncode}: "
                               f"{err.read().decode(errors='replace')[-2000:]}")
        return usage.ru_maxrss, out.read().decode()


def unpack_in_child(blob: str, target_parent: str, media_type: str = GZIP_MEDIA_TYPE,
                    *, env: dict[str, str] | None = None) -> ChildUnpack:
    """Unpack *blob* into *target_parent* in a fresh ``sys.executable`` (with *env*: e.g.
    a PYTHONPATH naming another checkout's ``src``)."""
    return _child([sys.executable, "-c", _CHILD, blob, target_parent, media_type], env)


def floor_in_child(*, env: dict[str, str] | None = None) -> ChildUnpack:
    """The same interpreter importing the unpacker and nothing more: the RSS floor."""
    return _child([sys.executable, "-c", _CHILD_FLOOR], env)


def _child(argv: list[str], env: dict[str, str] | None) -> ChildUnpack:
    rss, out = _run_child(argv, env)
    report = json.loads(out)
    return ChildUnpack(int(report["vm_hwm_kib"]), rss, float(report["seconds"]),
                       str(report["path"]))
