"""Images offline: `tsubo import` a root filesystem tarball, run it, list and remove it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.e2e import engine_fixtures

Cli = engine_fixtures.Cli
cli = engine_fixtures.cli
wait_engine_gone = engine_fixtures.wait_engine_gone
rootfs_tar = engine_fixtures.rootfs_tar


def test_import_run_and_remove(cli: Cli, rootfs_tar: Path) -> None:
    image_id = cli.run("import", "-c", 'CMD ["sh", "-c", "echo default command"]',
                       "-c", "ENV GREETING=hello", str(rootfs_tar), "busybox:1").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    listing = cli.run("images").stdout
    assert "docker.io/library/busybox" in listing and "1" in listing
    assert cli.run("run", "--rm", "busybox:1").stdout == "default command\n"
    cli.run("create", "--name", "defaults", "busybox:1")
    config = json.loads(cli.run("inspect", "defaults").stdout)[0]["Config"]
    assert config["Cmd"] == ["sh", "-c", "echo default command"]  # the image's, as Docker
    assert config["Entrypoint"] is None and config["Volumes"] is None
    cli.run("rm", "defaults")
    out = cli.run("run", "--rm", "busybox:1", "sh", "-c", "echo $GREETING; id -u").stdout
    assert out == "hello\n0\n"
    # unknown images are one clear line, exit 125
    missing = cli.run("run", "--rm", "--pull", "never", "nosuchimage", "true", check=False)
    assert missing.returncode == 125 and "nosuchimage" in missing.stderr


def test_containers_of_one_image_do_not_see_each_others_writes(
        cli: Cli, rootfs_tar: Path) -> None:
    cli.run("import", str(rootfs_tar), "base")
    layer_dirs = list((cli.root / "layers").iterdir())
    before = {p: p.stat().st_mtime_ns for d in layer_dirs for p in d.rglob("*")
              if not p.is_symlink()}
    cli.run("run", "-d", "--name", "one", "base", "sh", "-c",
            "echo one > /tmp/shared; sleep 300")
    cli.run("run", "-d", "--name", "two", "base", "sh", "-c",
            "echo two > /tmp/shared; sleep 300")
    time.sleep(0.3)
    assert cli.run("exec", "one", "cat", "/tmp/shared").stdout == "one\n"
    assert cli.run("exec", "two", "cat", "/tmp/shared").stdout == "two\n"
    after = {p: p.stat().st_mtime_ns for d in layer_dirs for p in d.rglob("*")
             if not p.is_symlink()}
    assert after == before  # the image's layer is never written
    busy = cli.run("rmi", "base", check=False)
    assert busy.returncode == 1 and "one" in busy.stderr
    cli.run("rm", "-f", "one", "two")
    cli.run("rmi", "base")
    assert cli.run("images", "-q").stdout == ""
    assert not any(os.scandir(cli.root / "layers"))


def test_tag_adds_a_name_and_rmi_of_one_name_only_untags(cli: Cli, rootfs_tar: Path) -> None:
    image_id = cli.run("import", str(rootfs_tar), "base").stdout.strip()
    cli.run("tag", "base", "registry.local:5000/team/base:v2")
    [inspected] = json.loads(cli.run("inspect", "base").stdout)
    assert inspected["Id"] == image_id
    assert inspected["RepoTags"] == ["docker.io/library/base:latest",
                                     "registry.local:5000/team/base:v2"]
    assert len(inspected["RootFS"]["Layers"]) == 1 and inspected["Os"] == "linux"
    listing = cli.run("images").stdout
    assert "registry.local:5000/team/base" in listing and "v2" in listing
    assert cli.run("run", "--rm", "registry.local:5000/team/base:v2", "echo", "ok").stdout == "ok\n"
    bad = cli.run("tag", "base", "UPPER/Case", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    missing = cli.run("tag", "nosuchimage", "other", check=False)
    assert missing.returncode != 0 and "nosuchimage" in missing.stderr
    cli.run("rmi", "base")  # one of two names: untag only
    assert cli.run("images", "-q").stdout.strip() == image_id.removeprefix("sha256:")[:12]
    cli.run("rmi", "registry.local:5000/team/base:v2")
    assert cli.run("images", "-q").stdout == ""


def test_run_rm_returns_once_the_container_is_gone(cli: Cli, rootfs_tar: Path) -> None:
    """`run --rm` then `rmi` at once (scripts do this): the image has no user left."""
    for _ in range(5):
        cli.run("import", str(rootfs_tar), "gone:1")
        assert cli.run("run", "--rm", "gone:1", "echo", "hi").stdout == "hi\n"
        assert cli.run("ps", "-aq").stdout == ""
        cli.run("rmi", "gone:1")


def _rootfs_with(busybox_rootfs: Path, tmp_path: Path, extra: dict[str, tuple[str, int]],
                 links: dict[str, str]) -> Path:
    """The busybox rootfs plus files ``{path: (content, uid)}`` and symlinks, as a tar."""
    import io
    import tarfile

    path = tmp_path / "with-extra.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
        for name, (content, uid) in extra.items():
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                info = tarfile.TarInfo("/".join(parts[:depth]))
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            data = content.encode()
            info = tarfile.TarInfo(name.strip("/"))
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, 0o640
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name.strip("/"))
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def test_image_volumes_stop_signal_and_ports_apply_as_docker(
        cli: Cli, busybox_rootfs: Path, tmp_path: Path) -> None:
    tarball = _rootfs_with(busybox_rootfs, tmp_path, {"/data/seed": ("from the image\n", 1000)},
                           {"/escape": "/etc"})
    cli.run("import", "-c", "VOLUME /data /empty", "-c", "VOLUME /escape",
            "-c", "STOPSIGNAL SIGUSR1", "-c", "EXPOSE 8080 53/udp",
            str(tarball), "withvol:1")
    config = json.loads(cli.run("inspect", "withvol:1").stdout)[0]["Config"]
    assert config["Volumes"] == {"/data": {}, "/empty": {}, "/escape": {}}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["StopSignal"] == "SIGUSR1"
    # each declared path gets an anonymous volume; /data starts with the image's content
    cli.run("run", "-d", "--name", "v1", "withvol:1", "sh", "-c",
            'trap "exit 42" USR1; trap "exit 43" TERM; while :; do sleep 0.1; done')
    inspected = json.loads(cli.run("inspect", "v1").stdout)[0]
    assert inspected["Config"]["StopSignal"] == "SIGUSR1"
    assert inspected["Config"]["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert set(inspected["Config"]["Volumes"]) == {"/data", "/empty", "/escape"}
    assert inspected["Config"]["Cmd"][:2] == ["sh", "-c"]
    out = cli.run("exec", "v1", "sh", "-c", "cat /data/seed; stat -c '%u %a' /data/seed; "
                  "ls -A /empty; echo mine > /data/new").stdout
    assert out == "from the image\n1000 640\n", out
    volumes = cli.run("volume", "ls", "-q").stdout.split()
    assert len(volumes) == 3
    # /escape is a symlink to /etc: nothing was copied through it (host or image /etc)
    copied = sorted(entry.name for volume in (cli.root / "volumes").iterdir()
                    for entry in (volume / "_data").iterdir())
    assert "passwd" not in copied and "group" not in copied, copied
    # the stop signal is the image's (the trap for USR1 ends it with 42, TERM's with 43)
    cli.run("stop", "-t", "5", "v1")
    assert json.loads(cli.run("inspect", "v1").stdout)[0]["State"]["ExitCode"] == 42
    # --stop-signal and -v still win; a named volume that is not empty is not overwritten
    cli.run("volume", "create", "kept")
    cli.run("run", "--rm", "-v", "kept:/data", "withvol:1", "sh", "-c", "echo old > /data/x")
    out = cli.run("run", "--rm", "-v", "kept:/data", "--stop-signal", "TERM", "withvol:1",
                  "ls", "/data").stdout
    assert out == "seed\nx\n"  # copied once, when the volume was new and empty
    cli.run("rm", "-v", "v1")
    cli.run("volume", "rm", "kept")
    assert cli.run("volume", "ls", "-q").stdout.split() == []


def test_disk_full_during_import_registers_nothing_and_works_once_space_returns(
        cli: Cli, busybox_rootfs: Path, tmp_path: Path) -> None:
    import subprocess
    import tarfile

    tarball = tmp_path / "big.tar"
    (tmp_path / "payload").write_bytes(os.urandom(5_000_000))
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
        tar.add(tmp_path / "payload", arcname="payload")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(small)], check=True)
    try:
        engine = Cli(small / "root")
        for _ in range(2):  # the blob does not fit, then (blob kept out) again the same
            failed = engine.run("import", str(tarball), "full:1", check=False)
            # the errno in words, as Docker prints it (issue 13), not ENOSPC
            assert failed.returncode == 1 and "no space left on device" in failed.stderr, \
                failed.stderr
            assert len(failed.stderr.strip().splitlines()) == 1
            assert engine.run("images", "-q").stdout == ""
            leftovers = [p for sub in ("ingest", "blobs", "layers")
                         for p in (small / "root" / sub).rglob("*") if not p.is_dir()]
            assert leftovers == []
        subprocess.run(["mount", "-o", "remount,size=9m", str(small)], check=True)
        failed = engine.run("import", str(tarball), "full:1", check=False)  # blob fits now,
        assert "unpack layer" in failed.stderr and \
            "no space left on device" in failed.stderr  # layer not
        assert engine.run("images", "-q").stdout == ""
        assert not any((small / "root" / "layers").iterdir())
        subprocess.run(["mount", "-o", "remount,size=24m", str(small)], check=True)
        engine.run("import", str(tarball), "full:1")
        assert engine.run("run", "--rm", "full:1", "wc", "-c", "/payload").stdout.split()[0] \
            == "5000000"
    finally:
        wait_engine_gone(small / "root")  # the monitor idles out (it holds the root open)
        subprocess.run(["umount", str(small)], check=True)


def test_image_prune_removes_what_failed_pulls_left_unless_one_is_running(
        cli: Cli, rootfs_tar: Path) -> None:
    from tsubo.engine.containers import Engine
    from tsubo.image.blobs import BlobStore
    from tsubo.image.store import ImageStore

    cli.run("import", str(rootfs_tar), "kept:1")
    with Engine(str(cli.root)) as engine:
        blobs = BlobStore(engine.paths.data)
        store = ImageStore(engine.db, engine.paths.data)
        before = set(blobs.list())
        orphan = blobs.ingest_bytes(b"x" * 1000)  # verified, never recorded
        partial = blobs.writer("sha256:" + "ab" * 32, 5000)
        partial.write(b"y" * 700)
        partial.abort()  # kept for a resume that never comes
        layers = Path(engine.paths.data) / "layers"
        recorded = sorted(entry.name for entry in layers.iterdir())
        (layers / ".tmp-0123456789abcdef" / "etc").mkdir(parents=True)  # a killed unpack
        (layers / ("cd" * 32)).mkdir()  # unpacked, never recorded (a killed pull)
        (layers / ("cd" * 32) / "f").write_bytes(b"z" * 300)
        with store.adding():  # a pull in progress: nothing is pruned under it
            out = cli.run("image", "prune", "-f").stdout
            assert "Total reclaimed space: 0B" in out, out
            assert orphan in blobs.list()
        out = cli.run("image", "prune", "-f").stdout
        assert "Total reclaimed space: 2kB" in out, out
        assert set(blobs.list()) == before and not os.listdir(blobs.ingest_dir)
        assert sorted(entry.name for entry in layers.iterdir()) == recorded
    assert cli.run("run", "--rm", "kept:1", "true").returncode == 0
