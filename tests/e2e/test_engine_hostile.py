"""Attacks on the engine by what a container controls: its root and its shared volumes.

Everything a container can write to is hostile to the host-privileged engine (TESTING.md,
"Everything a container can write to is hostile"): a symlink raced into a shared volume
while the engine copies an image's content in, a FIFO or a device node where the engine
reads ``/etc/passwd`` and ``/etc/group``. Each test checks that the host is unchanged and
that the engine keeps serving other containers.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from pathlib import Path

from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import EngineCLI, one_line, wait_for

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli

#: entries of the image's VOLUME /data that the attacker plants symlinks over
_FILES = [f"f{n}" for n in range(12)]
_DIRS = [f"d{n}" for n in range(6)]


def _image_tar(busybox_rootfs: Path, path: Path, extra: list[tarfile.TarInfo],
               contents: dict[str, bytes] | None = None) -> Path:
    """The busybox rootfs plus *extra* entries (files get *contents*), as a tar."""
    contents = contents or {}
    with tarfile.open(path, "w") as tar:
        tar.add(busybox_rootfs, arcname=".", filter=lambda info: None
                if info.name in {f"./{entry.name}" for entry in extra} else info)
        for info in extra:
            data = contents.get(info.name, b"")
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
           device: tuple[int, int] = (0, 0)) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    info.devmajor, info.devminor = device
    return info


def _tree_state(folder: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    """Every entry below *folder*: (mode, uid, gid, mtime_ns, content or link target)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        data = os.readlink(path).encode() if path.is_symlink() else \
            path.read_bytes() if path.is_file() else b""
        state[str(path.relative_to(folder))] = (info.st_mode, info.st_uid, info.st_gid,
                                                info.st_mtime_ns, data)
    return state


def test_a_container_racing_symlinks_into_a_shared_volume_never_redirects_copy_up(
        engine_cli: EngineCLI, busybox_rootfs: Path, tmp_path: Path) -> None:
    """200 starts of an image whose VOLUME has content, on a named volume that another
    running container keeps emptying and refilling with symlinks to a host folder under
    the very names the copy-up writes: the host folder is never written, chmodded or
    chowned through them, and every start works."""
    host = tmp_path / "host-target"
    host.mkdir()
    (host / "canary").write_text("untouched\n")
    (host / "canary").chmod(0o600)
    (host / "dir").mkdir()
    before = _tree_state(host)
    extra = [_entry("data", tarfile.DIRTYPE, 0o755)]
    extra += [_entry(f"data/{name}", mode=0o4777) for name in _FILES]
    for name in _DIRS:
        extra += [_entry(f"data/{name}", tarfile.DIRTYPE, 0o777),
                  _entry(f"data/{name}/inner", mode=0o666)]
    image = _image_tar(busybox_rootfs, tmp_path / "vol.tar", extra,
                       {f"data/{name}": b"from the image\n" for name in _FILES})
    engine_cli.ok("import", "-c", "VOLUME /data", str(image), "vol:1")
    engine_cli.ok("volume", "create", "shared")
    plant = " ".join(
        [f"ln -s {host}/canary /data/{name} 2>/dev/null;" for name in _FILES]
        + [f"ln -s {host}/dir /data/{name} 2>/dev/null;" for name in _DIRS])
    engine_cli.run_d(["sh", "-c", f"while :; do rm -rf /data/* 2>/dev/null; {plant} done"],
                     "--name", "attacker", "-v", "shared:/data")
    failures = []
    for _ in range(200):
        proc = engine_cli("run", "--rm", "-v", "shared:/data", "vol:1", "true")
        if proc.returncode != 0:
            failures.append(proc.stderr.strip())
    engine_cli.ok("rm", "-f", "attacker")
    assert _tree_state(host) == before, "the host folder changed through the shared volume"
    assert not failures, failures[:3]
    # copy-up still works when nobody races it
    engine_cli.ok("volume", "create", "fresh")
    listing = engine_cli.ok("run", "--rm", "-v", "fresh:/data", "vol:1", "sh", "-c",
                            "ls /data; stat -c %a /data/f0 /data/d0; cat /data/f1")
    assert listing.split() == [*sorted(_FILES + _DIRS), "4777", "777", "from", "the", "image"]
    engine_cli.ok("volume", "rm", "shared", "fresh")


def _host_block_device() -> tuple[int, int]:
    """The (major, minor) of the block device holding /: what a hostile layer would name
    to read the host's disk."""
    device = os.stat("/").st_dev
    return os.major(device), os.minor(device)


def test_fifos_and_device_nodes_at_passwd_and_group_neither_hang_nor_get_read(
        engine_cli: EngineCLI, busybox_rootfs: Path, tmp_path: Path) -> None:
    """Images whose /etc/passwd or /etc/group is a FIFO, a block device node of the host's
    disk or a character device: `run` as the default user works at once, `-u NAME` fails in
    one line naming the file, and the engine keeps serving other commands."""
    major, minor = _host_block_device()
    cases = {
        "fifo-passwd": [_entry("etc/passwd", tarfile.FIFOTYPE)],
        "fifo-group": [_entry("etc/group", tarfile.FIFOTYPE)],
        "block-passwd": [_entry("etc/passwd", tarfile.BLKTYPE, 0o644, (major, minor))],
        "char-group": [_entry("etc/group", tarfile.CHRTYPE, 0o644, (1, 5))],  # /dev/zero
    }
    for name, extra in cases.items():
        tarball = _image_tar(busybox_rootfs, tmp_path / f"{name}.tar", extra)
        engine_cli.ok("import", str(tarball), f"{name}:1")
    for name in cases:
        started = time.monotonic()
        assert engine_cli.ok("run", "--rm", f"{name}:1", "echo", "ran") == "ran\n"
        proc = engine_cli("run", "--rm", "-u", "nobody:nogroup", f"{name}:1", "true",
                          timeout=20)
        assert proc.returncode == 125, (name, proc.returncode, proc.stderr)
        line = one_line(proc.stderr)
        assert "not a regular file" in line and "/etc/" in line, (name, line)
        assert time.monotonic() - started < 10, f"{name}: the engine stalled"
    assert engine_cli.ok("run", "--rm", "--rootfs", str(busybox_rootfs), "-u", "nobody",
                         "id", "-un") == "nobody\n"


def test_a_container_turning_its_own_passwd_into_a_fifo_or_device_cannot_stall_exec(
        engine_cli: EngineCLI) -> None:
    """A running container replaces its /etc/passwd with a FIFO and its /etc/group with a
    block device node (CAP_MKNOD is a default capability): `exec -u NAME` fails in one
    line, at once, and the monitor goes on serving the container and new ones."""
    major, minor = _host_block_device()
    engine_cli.run_d(["sleep", "600"], "--name", "swapper")
    engine_cli.ok("exec", "swapper", "sh", "-c",
                  f"rm /etc/passwd /etc/group && mkfifo /etc/passwd && "
                  f"mknod /etc/group b {major} {minor}")
    for user in ("nobody", "0:nogroup"):
        started = time.monotonic()
        proc = engine_cli("exec", "-u", user, "swapper", "true", timeout=20)
        assert proc.returncode != 0 and "not a regular file" in one_line(proc.stderr), \
            (user, proc.stderr)
        assert time.monotonic() - started < 10
    # the root is mounted nodev: the node it made cannot be opened, even by the host
    mountinfo = engine_cli.ok("exec", "swapper", "cat", "/proc/self/mountinfo")
    root_line = next(line for line in mountinfo.splitlines() if line.split()[4] == "/")
    assert "nodev" in root_line.split()[5].split(","), root_line
    merged = engine_cli.root / "containers" / engine_cli.inspect("swapper")["Id"] / "merged"
    assert stat.S_ISBLK((merged / "etc" / "group").lstat().st_mode)
    try:
        os.close(os.open(merged / "etc" / "group", os.O_RDONLY | os.O_NONBLOCK))
        opened = True
    except PermissionError:
        opened = False
    assert not opened, "a device node in a container root opened on the host"
    assert engine_cli.ok("exec", "swapper", "echo", "alive") == "alive\n"
    assert engine_cli.run_fg(["echo", "other"], "--rm").stdout == "other\n"
    engine_cli.ok("rm", "-f", "swapper")
    assert wait_for(lambda: not engine_cli.ids(), 10)
