"""Images with long layer chains run: 64 and 130 layers, through the CLI.

The full ``lowerdir=`` of such images is far over the one page mount(2) copies, so the
engine mounts them through short links in ``<root>/l`` with relative names (the path a
Debian 12 kernel 6.1 needs: there is no ``lowerdir+`` there; the engine takes this path on
every kernel, so these tests cover it on the test host's kernel too).

Layer 0 is the busybox rootfs; layer N (N >= 1) adds ``/layers/N`` and rewrites ``/top``;
every fifth layer also deletes ``/layers/N-2`` with a whiteout. The container lists
``/layers`` and prints ``/top``: exact equality checks both the order of the layers (top
first) and that whiteouts in any layer hide lower files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.e2e import engine_fixtures

Cli = engine_fixtures.Cli
cli = engine_fixtures.cli

TAR = "application/vnd.oci.image.layer.v1.tar"
MTIME = 1_600_000_000


def layer_tar(number: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.size = 0o644, MTIME, len(data)
            archive.addfile(info, io.BytesIO(data))

        add(f"layers/{number}", f"{number}\n".encode())
        add("top", f"{number}\n".encode())
        if number % 5 == 0:
            add(f"layers/.wh.{number - 2}", b"")
    return buffer.getvalue()


def expected_output(count: int) -> str:
    """What ``ls /layers; cat /top`` prints in an image of layers 0..count-1."""
    present = set(range(1, count)) - {n - 2 for n in range(5, count, 5)}
    return "".join(f"{name}\n" for name in sorted(str(n) for n in present)) + \
        f"{count - 1}\n"


def add_image(root: Path, rootfs_tar: bytes, count: int) -> str:
    """Tag ``many:<count>`` an image of layers 0..count-1 (a shared prefix of blobs)."""
    from tsubo.engine.containers import Engine
    from tsubo.image.blobs import BlobStore
    from tsubo.image.store import ImageStore

    tars = [rootfs_tar, *(layer_tar(n) for n in range(1, count))]
    with Engine(str(root)) as engine:
        blobs = BlobStore(engine.paths.data)
        layers = [(blobs.ingest_bytes(data), TAR) for data in tars]
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [
                      f"sha256:{hashlib.sha256(data).hexdigest()}" for data in tars]}}
        ImageStore(engine.db, engine.paths.data).add_image(
            json.dumps(config).encode(), layers, [f"many:{count}"])
    return f"many:{count}"


@pytest.fixture(scope="module")
def rootfs_tar(busybox_rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    return buffer.getvalue()


def links(root: Path) -> dict[str, str]:
    folder = root / "l"
    return {entry.name: os.readlink(entry) for entry in folder.iterdir()} \
        if folder.is_dir() else {}


@pytest.mark.parametrize("count", [64, 130])
def test_long_layer_chain_runs(cli: Cli, rootfs_tar: bytes, count: int) -> None:
    image = add_image(cli.root, rootfs_tar, count)
    assert count * len(f"{cli.root}/layers/{'0' * 64}:") > 4096  # plain would not fit
    out = cli.run("run", "--rm", image, "sh", "-c", "ls /layers; cat /top").stdout
    assert out == expected_output(count)
    made = links(cli.root)
    assert len(made) == count
    assert sorted(made.values()) == sorted(f"../layers/{entry.name}"
                                           for entry in (cli.root / "layers").iterdir())
    assert all(len(name) == 12 for name in made)
    # a second container reuses the links; the root is mounted with the short names
    cli.run("run", "-d", "--name", "second", image, "sleep", "300")
    container_id = cli.run("inspect", "second").stdout
    merged = json.loads(container_id)[0]["GraphDriver"]["Data"]["MergedDir"]
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        [line] = [entry for entry in mountinfo if f" {merged} " in entry]
    lowerdir = line.split("lowerdir=", 1)[1].split(",", 1)[0]
    assert lowerdir.split(":")[0] in made and len(lowerdir.split(":")) == count
    assert links(cli.root) == made
    cli.run("rm", "-f", "second")


def test_short_chain_keeps_full_paths_and_gc_prunes_dead_links(
        cli: Cli, rootfs_tar: bytes) -> None:
    add_image(cli.root, rootfs_tar, 3)
    assert cli.run("run", "--rm", "many:3", "sh", "-c", "ls /layers; cat /top").stdout == \
        expected_output(3)
    assert links(cli.root) == {}  # fits one page: no links, a plain mount
    add_image(cli.root, rootfs_tar, 64)
    cli.run("run", "--rm", "many:64", "true")
    assert len(links(cli.root)) == 64
    made = links(cli.root)
    cli.run("rmi", "many:64")  # layers 3..63 go, and their links; 0..2 stay for many:3
    assert len(links(cli.root)) == 3 and links(cli.root).items() <= made.items()
    (cli.root / "l" / "deadbeef0000").symlink_to("../layers/" + "0" * 64)  # a crash's leftover
    gc = cli.run("system", "gc").stdout
    assert gc.count("removed the link") == 1
    assert sorted(links(cli.root).values()) == sorted(
        f"../layers/{entry.name}" for entry in (cli.root / "layers").iterdir())
    assert cli.run("run", "--rm", "many:3", "cat", "/top").stdout == "2\n"


def test_more_layers_than_overlay_stacks_is_refused_at_create(
        cli: Cli, rootfs_tar: bytes) -> None:
    add_image(cli.root, rootfs_tar, 501)
    proc = cli.run("create", "many:501", "true", check=False)
    assert proc.returncode != 0, proc.stdout
    assert "use image many:501: 501 layers, overlayfs stacks at most 500" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_exec_user_is_resolved_in_the_running_container(cli: Cli, rootfs_tar: bytes) -> None:
    """`exec -u NAME` reads the container's own /etc/passwd (its merged root, writes
    included), not one layer directory: a multi-layer image resolves too."""
    add_image(cli.root, rootfs_tar, 3)
    cli.run("run", "-d", "--name", "users", "many:3", "sleep", "300")
    assert cli.run("exec", "-u", "tsubotest", "users", "id", "-u").stdout == "1000\n"
    cli.run("exec", "users", "sh", "-c", "echo late:x:4242:4242::/:/bin/sh >> /etc/passwd")
    assert cli.run("exec", "-u", "late", "users", "id", "-u").stdout == "4242\n"
    cli.run("rm", "-f", "users")
