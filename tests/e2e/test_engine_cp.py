"""``tsubo cp`` (and ``Engine.copy_from``/``copy_to``): Docker's rules for where a copy
lands, tar streams on ``-``, owners, and safety against a container that controls the
paths we copy through (CVE-2018-15664): symlinks planted anywhere, a path swapped between a
directory and a symlink to ``/`` while we copy, device nodes and FIFOs. Nothing outside the
container is ever read or written.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

import tsubo
from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import EngineCLI, engine_env, one_line, wait_for
from tsubo.errors import TsuboError

engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli

DOCKER_CLI_ERROR = 1


def _tree(root: Path) -> dict[str, str]:
    """relative path -> file content, ``->target`` for a symlink, ``/`` for a folder."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "->" + os.readlink(path)
        elif path.is_dir():
            found[name] = "/"
        else:
            found[name] = path.read_text()
    return found


def _source_tree(folder: Path) -> Path:
    src = folder / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("hello\n")
    (src / "sub" / "b").write_text("sub\n")
    (src / "link").symlink_to("/etc/passwd")
    return src


def test_cp_follows_dockers_rules(engine_cli: EngineCLI, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cli = engine_cli
    monkeypatch.chdir(tmp_path)
    _source_tree(tmp_path)
    cli.run_d(["sh", "-c", "mkdir -p /data && echo in > /data/f && sleep 100"], "--name", "web")
    assert wait_for(lambda: cli("exec", "web", "test", "-f", "/data/f").returncode == 0, 5)
    copied = {"a": "hello\n", "link": "->/etc/passwd", "sub": "/", "sub/b": "sub\n"}

    # into the container: a directory onto a directory goes into it; the symlink is copied
    # as a symlink (its target is the container's business), never followed
    assert cli.ok("cp", "src", "web:/data/") == ""
    listing = cli.ok("exec", "web", "sh", "-c", "cd /data/src && find . | sort")
    assert listing.split() == [".", "./a", "./link", "./sub", "./sub/b"]
    assert cli.ok("exec", "web", "readlink", "/data/src/link") == "/etc/passwd\n"
    # a file onto a missing name takes it; onto a file replaces it
    cli.ok("cp", "src/a", "web:/data/copy")
    cli.ok("cp", "src/sub/b", "web:/data/copy")
    assert cli.ok("exec", "web", "cat", "/data/copy") == "sub\n"
    # a relative container path is relative to its root
    cli.ok("cp", "src/a", "web:data/rel")
    assert cli.ok("exec", "web", "cat", "/data/rel") == "hello\n"

    # out of the container: a directory onto nothing becomes it; /. copies the contents
    cli.ok("cp", "web:/data/src", "out")
    assert _tree(tmp_path / "out") == copied
    (tmp_path / "into").mkdir()
    cli.ok("cp", "web:/data/src", "into")
    assert _tree(tmp_path / "into" / "src") == copied
    (tmp_path / "contents").mkdir()
    cli.ok("cp", "web:/data/src/.", "contents")
    assert _tree(tmp_path / "contents") == copied
    cli.ok("cp", "web:/data/f", "single")
    assert (tmp_path / "single").read_text() == "in\n"

    # refusals, one line each, as Docker's
    for args, words in (
            (("web:/nope", "x"), "no such file or directory"),
            (("src", "web:/data/f"), "cannot copy a directory to a file"),
            (("src/a", "web:/data/newdir/"), "must exist"),
            (("src/a", "web:/nodir/x"), "no such directory"),
            (("web:/proc/1/environ", "x"), "kernel interface"),
            (("src", "web2:/x"), "no such container"),
            (("src", "out"), "at least one container"),
            (("web:/data", "web:/tmp"), "between containers"),
    ):
        proc = cli("cp", *args)
        assert (proc.returncode, proc.stdout) == (DOCKER_CLI_ERROR, ""), args
        assert words in one_line(proc.stderr), (args, proc.stderr)
    assert not (tmp_path / "x").exists()


def test_cp_tar_streams(engine_cli: EngineCLI, tmp_path: Path) -> None:
    cli = engine_cli
    src = _source_tree(tmp_path)
    cli.run_d(["sleep", "100"], "--name", "web")
    cli.ok("cp", str(src), "web:/")

    # out: a tar of the path (members named from its last component)
    out = subprocess.run(cli.argv("cp", "web:/src", "-"), capture_output=True, check=True,
                         env=engine_env(), timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert sorted(members) == ["src", "src/a", "src/link", "src/sub", "src/sub/b"]
        assert members["src/link"].issym() and members["src/link"].linkname == "/etc/passwd"
        reader = archive.extractfile(members["src/a"])
        assert reader is not None and reader.read() == b"hello\n"

    # in: extracted below an existing directory; members that leave it are refused
    def archive_of(*entries: tuple[str, bytes | str]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, content in entries:
                member = tarfile.TarInfo(name)
                if isinstance(content, str):  # a symlink
                    member.type, member.linkname = tarfile.SYMTYPE, content
                    tar.addfile(member)
                else:
                    member.size = len(content)
                    tar.addfile(member, io.BytesIO(content))
        return buffer.getvalue()

    proc = cli("cp", "-", "web:/tmp", input=None)
    assert proc.returncode == DOCKER_CLI_ERROR  # stdin is /dev/null: not a tar archive
    good = archive_of(("dir/file", b"payload\n"), ("dir/ln", "../file"))
    run = subprocess.run(cli.argv("cp", "-", "web:/tmp"), input=good, capture_output=True,
                         env=engine_env(), timeout=60, check=False)
    assert (run.returncode, run.stderr) == (0, b"")
    assert cli.ok("exec", "web", "cat", "/tmp/dir/file") == "payload\n"
    token = secrets.token_hex(4)
    for evil in (archive_of((f"../../../tmp/tsubo-cp-{token}", b"out\n")),
                 archive_of(("esc", "/"), (f"esc/tmp/tsubo-cp-{token}", b"out\n"))):
        run = subprocess.run(cli.argv("cp", "-", "web:/tmp"), input=evil, capture_output=True,
                             env=engine_env(), timeout=60, check=False)
        assert run.returncode == DOCKER_CLI_ERROR, run
        assert len(run.stderr.decode().splitlines()) == 1, run.stderr
        assert not Path(f"/tmp/tsubo-cp-{token}").exists()
        assert cli("exec", "web", "test", "-e", f"/tmp/tsubo-cp-{token}").returncode == 1


def test_cp_archives_keep_hard_links(engine_cli: EngineCLI) -> None:
    """docker cp: a file linked twice is one file and a hard link member in the archive out,
    and a hard link member is a link again on the way in; a link member naming a path out
    of the destination, or through a symlink, is refused in one line."""
    cli = engine_cli
    cli.run_d(["sh", "-c", "mkdir /src && echo one > /src/a && ln /src/a /src/h && "
               "ln -s / /tmp/esc && sleep 100"], "--name", "web")
    assert wait_for(lambda: cli("exec", "web", "test", "-e", "/tmp/esc").returncode == 0, 10)
    out = subprocess.run(cli.argv("cp", "web:/src", "-"), capture_output=True, check=True,
                         env=engine_env(), timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        members = {member.name: member for member in archive.getmembers()}
    assert members["src/a"].isreg() and members["src/a"].size == 4
    assert members["src/h"].islnk() and members["src/h"].linkname == "src/a"

    run = subprocess.run(cli.argv("cp", "-", "web:/tmp"), input=out, capture_output=True,
                         env=engine_env(), timeout=60, check=False)
    assert (run.returncode, run.stderr) == (0, b"")
    inodes = cli.ok("exec", "web", "stat", "-c", "%i %h", "/tmp/src/a", "/tmp/src/h")
    first, second = inodes.splitlines()
    assert first == second and first.endswith(" 2"), inodes

    for target in ("../etc/passwd", "esc/etc/passwd", "/etc/passwd"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            member = tarfile.TarInfo("stolen")
            member.type, member.linkname = tarfile.LNKTYPE, target
            tar.addfile(member)
        run = subprocess.run(cli.argv("cp", "-", "web:/tmp"), input=buffer.getvalue(),
                             capture_output=True, env=engine_env(), timeout=60, check=False)
        # (tar names are relative: /etc/passwd is /tmp/etc/passwd here, which is not there)
        assert run.returncode == DOCKER_CLI_ERROR, run
        assert len(run.stderr.decode().splitlines()) == 1, run.stderr
        assert cli("exec", "web", "test", "-e", "/tmp/stolen").returncode == 1, target


def test_cp_owners_and_modes(engine_cli: EngineCLI, tmp_path: Path) -> None:
    cli = engine_cli
    (tmp_path / "owned").write_text("x\n")
    os.chown(tmp_path / "owned", 1000, 1000)
    os.chmod(tmp_path / "owned", 0o640)
    cli.run_d(["sh", "-c", "cp /bin/busybox /tmp/suid && chown 1000:1000 /tmp/suid && "
               "chmod 4755 /tmp/suid && sleep 100"], "--name", "web")
    assert wait_for(lambda: cli("exec", "web", "test", "-u", "/tmp/suid").returncode == 0, 5)
    # into the container: root's unless -a; the mode is kept
    cli.ok("cp", str(tmp_path / "owned"), "web:/tmp/plain")
    cli.ok("cp", "-a", str(tmp_path / "owned"), "web:/tmp/kept")
    assert cli.ok("exec", "web", "stat", "-c", "%u:%g %a", "/tmp/plain", "/tmp/kept") == \
        "0:0 640\n1000:1000 640\n"
    # onto the host: ours, without the set-user-ID bit, unless -a
    cli.ok("cp", "web:/tmp/suid", str(tmp_path / "suid"))
    info = os.stat(tmp_path / "suid")
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    cli.ok("cp", "-a", "web:/tmp/suid", str(tmp_path / "suid-a"))
    info = os.stat(tmp_path / "suid-a")
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (1000, 0o4755)


def test_cp_of_a_stopped_container(engine_cli: EngineCLI, tmp_path: Path) -> None:
    cli = engine_cli
    cli.run_d(["sh", "-c", "echo result > /result"], "--name", "job")
    assert cli.ok("wait", "job") == "0\n"
    cli.ok("cp", "job:/result", str(tmp_path / "result"))
    assert (tmp_path / "result").read_text() == "result\n"
    (tmp_path / "input").write_text("given\n")
    cli.ok("cp", str(tmp_path / "input"), "job:/input")
    assert engine_fixtures.mounts_under(cli.root) == []  # the root was mounted for the copy
    cli.ok("start", "job")
    assert cli.ok("wait", "job") == "0\n"
    cli.ok("cp", "job:/input", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "given\n"


def test_cp_of_a_stopped_containers_volumes(engine_cli: EngineCLI, tmp_path: Path) -> None:
    """docker cp sees a stopped container's volumes and binds (it mounts them for the
    copy): both ways, through a named volume and a bind, and a symlink the container left
    in the volume stays inside it."""
    cli = engine_cli
    bound = tmp_path / "bound"
    bound.mkdir()
    cli.run_d(["sh", "-c", "echo in-volume > /data/v && echo in-bind > /bind/b && "
               "{ [ -L /data/esc ] || ln -s / /data/esc; }"], "--name", "job",
              "-v", "jobdata:/data", "-v", f"{bound}:/bind")
    assert cli.ok("wait", "job") == "0\n"
    cli.ok("cp", "job:/data/v", str(tmp_path / "v"))
    assert (tmp_path / "v").read_text() == "in-volume\n"
    cli.ok("cp", "job:/bind/b", str(tmp_path / "b"))
    assert (tmp_path / "b").read_text() == "in-bind\n"
    out = subprocess.run(cli.argv("cp", "job:/data", "-"), capture_output=True, check=True,
                         env=engine_env(), timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        assert {"data", "data/v", "data/esc"} <= set(archive.getnames())
    (tmp_path / "given").write_text("given\n")
    cli.ok("cp", str(tmp_path / "given"), "job:/data/given")
    cli.ok("cp", str(tmp_path / "given"), "job:/data/esc/tsubo-cp-escape")
    assert not Path("/tsubo-cp-escape").exists()
    assert engine_fixtures.mounts_under(cli.root) == []
    cli.ok("start", "job")  # sh again: the files are where the container sees them
    assert cli.ok("wait", "job") == "0\n"
    # the symlink to / resolved inside the volume: the file is at the volume's top
    shown = cli.ok("run", "--rm", "-v", "jobdata:/data", "--rootfs", str(cli.rootfs),
                   "cat", "/data/given", "/data/tsubo-cp-escape")
    assert shown == "given\ngiven\n"
    cli.ok("rm", "job")
    cli.ok("volume", "rm", "jobdata")


def test_cp_never_leaves_the_container(engine_cli: EngineCLI, tmp_path: Path) -> None:
    """Symlinks the container planted (absolute, relative with .., at the last component,
    in a middle one), device nodes and FIFOs: resolved inside its root, never followed out
    of it, never opened."""
    cli = engine_cli
    token = secrets.token_hex(4)
    setup = (
        "mkdir -p /data/real && echo container-passwd > /data/real/passwd && "
        "ln -s /etc /data/abs && ln -s ../../../../../../etc /data/rel && "
        "ln -s /etc/passwd /data/lastlink && "
        "mknod /data/zero c 1 5 && mkfifo /data/fifo && sleep 100")
    cli.run_d(["sh", "-c", setup], "--name", "web")
    assert wait_for(lambda: cli("exec", "web", "test", "-p", "/data/fifo").returncode == 0, 5)
    container_passwd = cli.ok("exec", "web", "cat", "/etc/passwd")
    host_passwd = Path("/etc/passwd").read_text()
    assert container_passwd != host_passwd

    for path in ("/data/abs/passwd", "/data/rel/passwd"):
        target = tmp_path / f"out-{path.split('/')[2]}"
        cli.ok("cp", f"web:{path}", str(target))
        assert target.read_text() == container_passwd
    cli.ok("cp", "-L", "web:/data/lastlink", str(tmp_path / "followed"))
    assert (tmp_path / "followed").read_text() == container_passwd
    cli.ok("cp", "web:/data/lastlink", str(tmp_path / "asis"))
    assert os.readlink(tmp_path / "asis") == "/etc/passwd"  # the link, not the host's file

    (tmp_path / "new").write_text("new\n")
    for path in ("/data/abs/", "/data/rel/"):
        cli.ok("cp", str(tmp_path / "new"), f"web:{path}tsubo-cp-{token}")
    assert not Path(f"/etc/tsubo-cp-{token}").exists()
    assert cli.ok("exec", "web", "cat", f"/etc/tsubo-cp-{token}") == "new\n"
    # onto a symlink: the link is replaced inside the container, its target untouched
    cli.ok("cp", str(tmp_path / "new"), "web:/data/lastlink")
    assert cli.ok("exec", "web", "cat", "/data/lastlink") == "new\n"
    assert cli.ok("exec", "web", "cat", "/etc/passwd") == container_passwd
    assert Path("/etc/passwd").read_text() == host_passwd

    for special in ("/data/zero", "/data/fifo"):  # never opened: no endless read, no hang
        proc = cli("cp", f"web:{special}", str(tmp_path / "special"), timeout=20)
        assert proc.returncode == DOCKER_CLI_ERROR
        assert "device, FIFO or socket" in one_line(proc.stderr)
    out = subprocess.run(cli.argv("cp", "web:/data", "-"), capture_output=True, check=True,
                         env=engine_env(), timeout=30).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        names = set(archive.getnames())
    assert "data/zero" not in names and "data/fifo" not in names and "data/abs" in names


def test_cp_race_with_a_path_swapped_for_a_symlink_to_root(engine_cli: EngineCLI,
                                                          tmp_path: Path) -> None:
    """500 copies out of and 500 into ``/swap/...`` while the container swaps ``/swap``
    between a directory and a symlink to ``/`` as fast as it can: every copy reads or
    writes inside the container (its /swap or its own root), never the host's."""
    cli = engine_cli
    token = secrets.token_hex(4)
    swapper = ("while :; do rm -rf /swap; mkdir /swap; echo in-swap > /swap/f; "
               "mkdir /swap/etc; echo swap-passwd > /swap/etc/passwd; "
               "rm -rf /swap; ln -s / /swap; done")
    container_id = cli.run_d(["sh", "-c", swapper], "--name", "swapper")
    host_passwd = Path("/etc/passwd").read_text()
    container_passwd = (cli.rootfs / "etc" / "passwd").read_text()
    (tmp_path / "payload").write_text("payload\n")
    outcomes = {"read": 0, "missing": 0, "written": 0, "refused": 0}
    with tsubo.Engine(str(cli.root)) as engine:
        for index in range(500):
            target = tmp_path / f"out{index % 4}"
            target.unlink(missing_ok=True)
            try:
                engine.copy_from(container_id, "/swap/etc/passwd", str(target))
            except TsuboError:
                outcomes["missing"] += 1
            else:
                # the swapper's file (empty between its creation and its write), or the
                # container's own /etc/passwd: never the host's
                assert target.read_text() in ("", "swap-passwd\n", container_passwd)
                outcomes["read"] += 1
            # a host-only file: never found through the swapped path
            try:
                engine.copy_from(container_id, "/swap/etc/os-release", str(target))
            except TsuboError:
                pass
            else:
                raise AssertionError("read the host's /etc/os-release through /swap")
            try:
                engine.copy_to(container_id, str(tmp_path / "payload"),
                               f"/swap/tsubo-race-{token}")
                outcomes["written"] += 1
            except TsuboError:
                outcomes["refused"] += 1
            assert not Path(f"/tsubo-race-{token}").exists()
        stream = io.BytesIO()
        engine.copy_from(container_id, "/", stream=stream)  # the whole root, as a tar
    assert not Path(f"/tsubo-race-{token}").exists()
    assert Path("/etc/passwd").read_text() == host_passwd
    assert outcomes["read"] > 0 and outcomes["written"] > 0, outcomes
    with tarfile.open(fileobj=io.BytesIO(stream.getvalue())) as archive:
        names = archive.getnames()
    assert "./bin/busybox" in names and not any(name.startswith("./proc/") for name in names)


def test_cp_through_the_python_api(engine_cli: EngineCLI, tmp_path: Path) -> None:
    with tsubo.Engine(str(engine_cli.root)) as engine, \
            engine.run(rootfs=str(engine_cli.rootfs), command=["sleep", "100"]) as container:
        (tmp_path / "in").write_text("api\n")
        container.copy_to(str(tmp_path / "in"), "/tmp/in")
        assert container.exec(["cat", "/tmp/in"]).stdout == b"api\n"
        container.copy_from("/tmp/in", str(tmp_path / "out"))
        assert (tmp_path / "out").read_text() == "api\n"
        stream = io.BytesIO()
        container.copy_from("/tmp", stream=stream)
        stream.seek(0)
        with tarfile.open(fileobj=stream) as archive:
            assert "tmp/in" in archive.getnames()
        stream.seek(0)
        container.copy_to("", "/root", stream=stream)
        assert container.exec(["cat", "/root/tmp/in"]).stdout == b"api\n"
