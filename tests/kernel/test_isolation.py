"""Isolation of a container under the runtime, against the real kernel.

What a container sees of itself (pid 1, hostname, root, mounts, capabilities, identity,
limits, sysctls, environment, a user namespace, read-only root, mount options) and that the
host does not change. Every container runs the probe (tests/probe.sh) or a one-line shell
command; see tests/conftest.py for the fixtures. These are `root` tests (tests/kernel).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck
from tests.bundles import RUNC_SPEC_CAPS
from tests.conftest import Bundle, MakeBundle, RuntimeCLI
from tests.probe import caps, env, mounts, one, parse_probe

DOCKER_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

USERNS_HOST_ID = 100000
USERNS_SIZE = 65536


# ---------------------------------------------------------------------------------------------
# helpers


def run_ok(runtime: RuntimeCLI, bundle: Bundle) -> subprocess.CompletedProcess[str]:
    """`run` the bundle to completion; it must exit 0."""
    proc = runtime.run("run", "--bundle", str(bundle.path), runtime.container_id())
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\n{proc.stderr}"
    return proc


def probe(runtime: RuntimeCLI, bundle: Bundle) -> dict[str, list[str]]:
    """`run` the bundle (whose args run /probe) and return the parsed facts."""
    proc = run_ok(runtime, bundle)
    facts = parse_probe(proc.stdout)
    assert facts.get("probe.done") == ["1"], f"probe did not finish:\n{proc.stdout}\n{proc.stderr}"
    return facts


def mountopts(facts: dict[str, list[str]], mountpoint: str) -> tuple[set[str], set[str]]:
    """(per-mount options, super-block options) of the last mount at `mountpoint`."""
    found = [v for v in facts.get("mountopts", []) if v.split(" ", 1)[0] == mountpoint]
    assert found, f"no mount at {mountpoint}: {facts.get('mount')}"
    _mp, opts, *superopts = found[-1].split(" ")
    return set(opts.split(",")), set(",".join(superopts).split(","))


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The runtime failed with exit 1 and exactly one line on stderr; return that line."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    return lines[0]


def cgroup_dirs(cgroups_path: str) -> list[Path]:
    """The cgroup directories of `cgroups_path` that exist, in any hierarchy."""
    rel = cgroups_path.lstrip("/")
    return [h / rel for h in leakcheck.cgroup_hierarchies() if (h / rel).exists()]


def assert_nothing_left(runtime: RuntimeCLI, bundle: Bundle) -> None:
    assert runtime.list_ids() == []
    left = sorted(p.name for p in runtime.root.iterdir()) if runtime.root.exists() else []
    assert left == [], f"state root not empty: {left}"
    assert cgroup_dirs(bundle.cgroups_path) == []


def host_status_field(pid: int, name: str) -> list[str]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == name:
            return rest.split()
    raise AssertionError(f"/proc/{pid}/status has no {name}")


def mountinfo_lines() -> list[str]:
    """Host /proc/self/mountinfo lines, without /run/netns (see leakcheck.IGNORED_MOUNTPOINTS)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] in leakcheck.IGNORED_MOUNTPOINTS:
            continue
        out.append(line)
    return out


def shift_ownership(root: Path, offset: int) -> None:
    """chown every file under `root` (and root) to uid+offset, gid+offset (no symlink follow)."""
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath) / n for n in dirnames + filenames]
    for p in paths:
        st = p.lstat()
        mode = st.st_mode
        os.lchown(p, st.st_uid + offset, st.st_gid + offset)
        if not p.is_symlink():
            os.chmod(p, mode & 0o7777)  # chown may clear set-id bits: keep the mode exact


# ---------------------------------------------------------------------------------------------
# processes, hostname, root


def test_probe_is_pid1_and_sees_only_itself(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    facts = probe(runtime, make_bundle(["/probe"]))
    assert one(facts, "pid") == "1"
    assert one(facts, "ppid") == "0"
    assert facts["proc"] == ["1"]
    assert one(facts, "nprocs") == "1"
    host_pid_ns = os.readlink("/proc/self/ns/pid")
    assert one(facts, "ns.pid") != host_pid_ns


def test_hostname_is_the_bundles_and_host_unchanged(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    host_before = socket.gethostname()
    name = f"tsubo-h-{secrets.token_hex(4)}"
    facts = probe(runtime, make_bundle(["/probe"], hostname=name))
    assert one(facts, "hostname") == name
    assert one(facts, "ns.uts") != os.readlink("/proc/self/ns/uts")
    assert socket.gethostname() == host_before
    assert host_before != name


def test_sees_only_the_rootfs(runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-only"
    host_dir.mkdir()
    marker = host_dir / f"marker-{secrets.token_hex(4)}"
    marker.write_text("host secret\n")
    b = make_bundle(
        [
            "/bin/sh",
            "-c",
            f"ls -1A /; echo ==; if [ -e {marker} ] || [ -e {host_dir} ]; then echo VISIBLE;"
            " else echo HIDDEN; fi",
        ]
    )
    out = run_ok(runtime, b).stdout
    listing, _, verdict = out.partition("==\n")
    assert verdict.strip() == "HIDDEN"
    assert sorted(listing.split()) == sorted(os.listdir(b.rootfs))


# ---------------------------------------------------------------------------------------------
# mounts stay in the container


def test_host_mountinfo_identical_after_20_runs(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    """Mounts the runtime makes (bind, tmpfs, proc, sys, cgroup ...) and mounts the container
    makes itself (CAP_SYS_ADMIN: `mount -t tmpfs`) never reach the host (rslave)."""
    src = tmp_path / "bind-src"
    src.mkdir()
    (src / "f").write_text("x")
    all_caps = [*RUNC_SPEC_CAPS, "CAP_SYS_ADMIN"]
    b = make_bundle(
        [
            "/bin/sh",
            "-c",
            "mount -t tmpfs inner /mnt/data && grep -q ' /mnt/data ' /proc/self/mountinfo"
            " && echo inner-mounted",
        ],
        process={
            "capabilities": {"bounding": all_caps, "effective": all_caps, "permitted": all_caps}
        },
    )
    b.config["mounts"] += [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/mnt/data", "type": "bind", "source": str(src), "options": ["rbind"]},
    ]
    b.write()
    before = mountinfo_lines()
    for _ in range(20):
        assert run_ok(runtime, b).stdout.strip() == "inner-mounted"
    after = mountinfo_lines()
    assert after == before
    assert sorted(os.listdir(src)) == ["f"]


# ---------------------------------------------------------------------------------------------
# capabilities and no_new_privs


def test_capabilities_equal_default_config(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    facts = probe(runtime, make_bundle(["/probe"]))
    for which in ("CapBnd", "CapEff", "CapPrm"):
        assert caps(facts, which) == set(RUNC_SPEC_CAPS), which
    assert caps(facts, "CapInh") == set()
    # ambient caps must also be inheritable and permitted: with inheritable empty the
    # config's ambient list cannot be raised (runc ignores it the same way)
    assert caps(facts, "CapAmb") == set()


def test_capabilities_docker_default_14(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    docker = list(DOCKER_CAPS)
    b = make_bundle(
        ["/probe"],
        process={
            "capabilities": {
                "bounding": docker,
                "effective": docker,
                "permitted": docker,
                "ambient": None,
            }
        },
    )
    facts = probe(runtime, b)
    for which in ("CapBnd", "CapEff", "CapPrm"):
        assert caps(facts, which) == set(DOCKER_CAPS), which
    assert len(DOCKER_CAPS) == 14
    assert one(facts, "CapInh") == "0000000000000000"
    assert one(facts, "CapAmb") == "0000000000000000"


def test_capabilities_inheritable_and_ambient_honoured(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    sets = {
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
        "effective": ["CAP_KILL", "CAP_CHOWN"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"],
    }
    b = make_bundle(["/probe"], process={"user": {"uid": 1000, "gid": 1000}, "capabilities": sets})
    facts = probe(runtime, b)
    assert one(facts, "uid") == "1000"
    assert caps(facts, "CapBnd") == {"CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"}
    # a non-root exec keeps only the ambient set in permitted/effective
    assert caps(facts, "CapAmb") == {"CAP_KILL"}
    assert caps(facts, "CapInh") == {"CAP_KILL"}
    assert caps(facts, "CapEff") == {"CAP_KILL"}
    assert caps(facts, "CapPrm") == {"CAP_KILL"}


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(runtime: RuntimeCLI, make_bundle: MakeBundle, nnp: bool) -> None:
    facts = probe(runtime, make_bundle(["/probe"], process={"noNewPrivileges": nnp}))
    assert one(facts, "NoNewPrivs") == ("1" if nnp else "0")


# ---------------------------------------------------------------------------------------------
# identity, limits, sysctls, environment


def test_user_uid_gid_groups_umask(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(
        ["/probe"],
        process={"user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 65534], "umask": 0o027}},
    )
    facts = probe(runtime, b)
    assert (one(facts, "uid"), one(facts, "euid")) == ("1000", "1000")
    assert (one(facts, "gid"), one(facts, "egid")) == ("1000", "1000")
    assert sorted(facts.get("group", []), key=int) == ["10", "65534"]
    assert one(facts, "umask") == "0027"


def test_user_root_without_additional_gids_has_no_groups(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    """The host's supplementary groups must not leak into the container."""
    facts = probe(runtime, make_bundle(["/probe"]))
    assert facts.get("group", []) == []
    assert one(facts, "umask") == "0022"


def test_rlimits_lower_than_host(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    host_soft, host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = min(512, host_hard - 1)
    soft = hard // 2
    b = make_bundle(
        ["/probe"],
        process={
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            ]
        },
    )
    facts = probe(runtime, b)
    assert one(facts, "rlimit.RLIMIT_NOFILE") == f"{soft} {hard}"
    assert one(facts, "rlimit.RLIMIT_CORE") == "0 0"
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (host_soft, host_hard)


def test_rlimit_above_host_hard_fails_cleanly(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """This host's root lacks CAP_SYS_RESOURCE: raising the hard limit must fail clearly."""
    status = Path("/proc/self/status").read_text()
    capeff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff"))
    if int(capeff, 16) >> 24 & 1:
        pytest.skip("this host's root has CAP_SYS_RESOURCE: the limit could be raised")
    _soft, host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    b = make_bundle(
        ["/probe"],
        process={"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": host_hard + 1000}]},
    )
    cid = runtime.container_id()
    line = one_line_error(runtime.run("run", "--bundle", str(b.path), cid))
    assert "CAP_SYS_RESOURCE" in line
    assert "RLIMIT_NOFILE" in line
    assert_nothing_left(runtime, b)


def test_sysctl_namespaced_visible_inside_host_unchanged(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    host_before = path.read_text()
    b = make_bundle(
        ["/bin/cat", "/proc/sys/net/ipv4/ip_forward"],
        linux={"sysctl": {"net.ipv4.ip_forward": "1"}},
    )
    assert run_ok(runtime, b).stdout.strip() == "1"
    assert path.read_text() == host_before


def test_sysctl_not_namespaced_refused(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    path = Path("/proc/sys/vm/swappiness")
    host_before = path.read_text()
    value = "11" if host_before.strip() != "11" else "12"
    b = make_bundle(["/bin/true"], linux={"sysctl": {"vm.swappiness": value}})
    line = one_line_error(runtime.run("run", "--bundle", str(b.path), runtime.container_id()))
    assert "vm.swappiness" in line
    assert path.read_text() == host_before
    assert_nothing_left(runtime, b)


def test_env_and_cwd(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    env_list = ["PATH=/bin", "FOO=bar baz", "EMPTY=", "TSUBO_X=1=2"]
    b = make_bundle(["/probe"], process={"env": env_list, "cwd": "/home/tsubotest"})
    facts = probe(runtime, b)
    assert env(facts) == {"PATH": "/bin", "FOO": "bar baz", "EMPTY": "", "TSUBO_X": "1=2"}
    assert one(facts, "cwd") == "/home/tsubotest"
    assert one(facts, "cwd.link") == "/home/tsubotest"


def test_cwd_missing_is_created_inside(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """A cwd that does not exist in the image: runc creates it (in the root, never on the
    host); an error naming it would also be acceptable."""
    top = f"cwd-{secrets.token_hex(4)}"
    b = make_bundle(
        ["/bin/sh", "-c", "pwd -P"], process={"cwd": f"/{top}/dir"}, root={"readonly": False}
    )
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    if proc.returncode == 0:
        assert proc.stdout.strip() == f"/{top}/dir"
        assert (b.rootfs / top / "dir").is_dir()
    else:
        assert f"/{top}/dir" in one_line_error(proc)
    assert not Path(f"/{top}").exists()


# ---------------------------------------------------------------------------------------------
# user namespace


def userns_overrides() -> dict[str, Any]:
    return {
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")],
            "uidMappings": [{"containerID": 0, "hostID": USERNS_HOST_ID, "size": USERNS_SIZE}],
            "gidMappings": [{"containerID": 0, "hostID": USERNS_HOST_ID, "size": USERNS_SIZE}],
        }
    }


@pytest.fixture
def userns_area(runtime: RuntimeCLI) -> Iterator[tuple[Path, RuntimeCLI]]:
    """A dir under /tmp (mode 0711: the mapped root, host uid 100000, must be able to reach
    the rootfs) and a RuntimeCLI whose state root (0711) lies in it; cleaned up after."""
    area = Path(tempfile.mkdtemp(prefix="tsubo-userns-", dir="/tmp"))
    area.chmod(0o711)
    state = area / "state"
    state.mkdir(mode=0o711)
    state.chmod(0o711)
    cli = RuntimeCLI(binary=runtime.binary, root=state)
    try:
        yield area, cli
        problems = cli.cleanup()
        assert problems == [], problems
    finally:
        shutil.rmtree(area, ignore_errors=True)


def userns_bundle(make_bundle: MakeBundle, args: list[str], area: Path) -> Bundle:
    """A user-namespace bundle (0 -> 100000, 65536 ids) moved into `area`, its rootfs
    chowned to the mapped ids."""
    b = make_bundle(args, **userns_overrides())
    shift_ownership(b.rootfs, USERNS_HOST_ID)
    dest = area / b.path.name
    shutil.move(str(b.path), str(dest))
    return Bundle(path=dest, config=b.config)


def test_user_namespace_probe_is_root_inside(
    make_bundle: MakeBundle, userns_area: tuple[Path, RuntimeCLI]
) -> None:
    area, cli = userns_area
    facts = probe(cli, userns_bundle(make_bundle, ["/probe"], area))
    assert one(facts, "uid") == "0"
    assert one(facts, "gid") == "0"
    assert one(facts, "ns.user") != os.readlink("/proc/self/ns/user")
    assert one(facts, "pid") == "1"
    # a new user namespace grants a full capability set there; the config's sets still apply
    assert caps(facts, "CapEff") == set(RUNC_SPEC_CAPS)


def test_user_namespace_host_uid_is_mapped(
    make_bundle: MakeBundle, userns_area: tuple[Path, RuntimeCLI]
) -> None:
    area, cli = userns_area
    b = userns_bundle(make_bundle, ["sleep", "300"], area)
    cid = cli.container_id()
    created = cli.run("create", "--bundle", str(b.path), cid)
    assert created.returncode == 0, created.stderr
    state = json.loads(cli.run("state", cid, check=True).stdout)
    assert state["status"] == "created"
    pid = int(state["pid"])
    host_id = str(USERNS_HOST_ID)
    assert host_status_field(pid, "Uid") == [host_id] * 4
    assert host_status_field(pid, "Gid") == [host_id] * 4
    expected_map = ["0", host_id, str(USERNS_SIZE)]
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == expected_map
    assert Path(f"/proc/{pid}/gid_map").read_text().split() == expected_map
    assert cli.run("start", cid).returncode == 0
    assert json.loads(cli.run("state", cid, check=True).stdout)["status"] == "running"
    assert host_status_field(pid, "Uid") == [host_id] * 4
    assert cli.run("delete", "--force", cid).returncode == 0


def test_user_namespace_with_private_state_root(
    runtime: RuntimeCLI, make_bundle: MakeBundle, userns_area: tuple[Path, RuntimeCLI]
) -> None:
    """runc opens the exec fifo in the parent (O_PATH) and hands the init the fd, so a
    state root only root can enter (runc's /run/runc is 0700; here the fixture's --root,
    inside pytest's 0700 tmp dir) works with a user namespace whose root is not host root."""
    area, _cli = userns_area
    assert runtime.root.stat().st_mode & 0o777 == 0o700
    b = userns_bundle(make_bundle, ["/bin/sh", "-c", "id -u"], area)
    assert run_ok(runtime, b).stdout.strip() == "0"
    # create + start: the init waits on the exec fifo in the state root
    b2 = userns_bundle(make_bundle, ["sleep", "300"], area)
    cid = runtime.container_id()
    created = runtime.run("create", "--bundle", str(b2.path), cid)
    assert created.returncode == 0, created.stderr
    assert json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "created"
    assert runtime.run("start", cid).returncode == 0
    assert json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "running"


# ---------------------------------------------------------------------------------------------
# read-only root and mounts with options


def test_readonly_root_with_tmpfs_tmp(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    name = f"w-{secrets.token_hex(4)}"
    b = make_bundle(
        [
            "/bin/sh",
            "-c",
            f"touch /{name} 2>&1; echo root.rc=$?;"
            f" echo hi > /tmp/{name} && cat /tmp/{name}; echo tmp.rc=$?",
        ],
        root={"readonly": True},
    )
    b.config["mounts"].append(
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}
    )
    b.write()
    out = run_ok(runtime, b).stdout
    assert "Read-only file system" in out
    assert "root.rc=1" in out
    assert "hi\ntmp.rc=0" in out
    assert not (b.rootfs / name).exists()
    assert not (b.rootfs / "tmp" / name).exists()


def test_readonly_root_false_is_writable(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    name = f"w-{secrets.token_hex(4)}"
    b = make_bundle(["/bin/sh", "-c", f"echo data > /{name}"], root={"readonly": False})
    run_ok(runtime, b)
    assert (b.rootfs / name).read_text() == "data\n"


def test_bind_mount_readonly(runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path) -> None:
    src = tmp_path / "ro-src"
    src.mkdir()
    content = f"content-{secrets.token_hex(4)}"
    (src / "file").write_text(content)
    b = make_bundle(
        [
            "/bin/sh",
            "-c",
            "/probe; cat /mnt/ro/file; echo; echo x > /mnt/ro/new 2>&1; echo write.rc=$?;"
            " echo y >> /mnt/ro/file; echo append.rc=$?",
        ]
    )
    b.config["mounts"].append(
        {"destination": "/mnt/ro", "type": "bind", "source": str(src), "options": ["bind", "ro"]}
    )
    b.write()
    proc = run_ok(runtime, b)
    facts = parse_probe(proc.stdout)
    opts, _super = mountopts(facts, "/mnt/ro")
    assert "ro" in opts
    assert content in proc.stdout.splitlines()
    assert "write.rc=1" in proc.stdout and "append.rc=1" in proc.stdout
    assert "Read-only file system" in proc.stderr + proc.stdout
    assert sorted(os.listdir(src)) == ["file"]
    assert (src / "file").read_text() == content


@pytest.mark.parametrize("recursive", [True, False])
def test_bind_vs_rbind_submounts(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path, recursive: bool
) -> None:
    src = tmp_path / "rbind-src"
    sub = src / "sub"
    sub.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tsubo-test", str(sub)], check=True)
    try:
        (sub / "in-submount").write_text("s")
        b = make_bundle(["/bin/sh", "-c", "ls -1A /mnt/src/sub; echo ==; /probe"])
        b.config["mounts"].append(
            {
                "destination": "/mnt/src",
                "type": "bind",
                "source": str(src),
                "options": ["rbind" if recursive else "bind"],
            }
        )
        b.write()
        out = run_ok(runtime, b).stdout
        listing, _, probe_out = out.partition("==\n")
        facts = parse_probe(probe_out)
        points = [mp for mp, _ in mounts(facts)]
        if recursive:
            assert listing.split() == ["in-submount"]
            assert ("/mnt/src/sub", "tmpfs") in mounts(facts)
        else:
            assert listing.split() == []
            assert "/mnt/src/sub" not in points
        assert "/mnt/src" in points
    finally:
        subprocess.run(["umount", str(sub)], check=True)


def test_tmpfs_size_mode_and_flags(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(
        [
            "/bin/sh",
            "-c",
            "/probe; stat -c 'data.mode=%a' /data;"
            " cp /bin/busybox /data/bb && /data/bb true; echo noexec.rc=$?",
        ]
    )
    b.config["mounts"].append(
        {
            "destination": "/data",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=2m", "mode=0710"],
        }
    )
    b.write()
    facts = probe(runtime, b)
    assert ("/data", "tmpfs") in mounts(facts)
    opts, superopts = mountopts(facts, "/data")
    assert {"rw", "nosuid", "nodev", "noexec"} <= opts
    assert {"size=2048k", "mode=710"} <= superopts
    assert one(facts, "data.mode") == "710"
    assert one(facts, "noexec.rc") == "126"  # Permission denied: noexec


def test_bind_mount_nosuid_nodev_noexec(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    src = tmp_path / "exec-src"
    src.mkdir()
    subprocess.run(["cp", "/bin/busybox", str(src / "bb")], check=True)
    b = make_bundle(["/bin/sh", "-c", "/probe; /mnt/x/bb true; echo noexec.rc=$?"])
    b.config["mounts"].append(
        {
            "destination": "/mnt/x",
            "type": "bind",
            "source": str(src),
            "options": ["rbind", "nosuid", "nodev", "noexec", "ro"],
        }
    )
    b.write()
    facts = probe(runtime, b)
    opts, _ = mountopts(facts, "/mnt/x")
    assert {"ro", "nosuid", "nodev", "noexec"} <= opts
    assert one(facts, "noexec.rc") == "126"
