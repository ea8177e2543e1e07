"""Escapes and bad input against the runtime, on the real kernel.

Masked and read-only paths, /dev, leaked fds (CVE-2016-9962), a cwd through a leaked fd
(CVE-2024-21626), images whose /proc, /sys, /dev, /dev/null or a mount's parent are symlinks
(CVE-2019-19921, CVE-2025-31133 class), a non-dumpable init (CVE-2019-5736), bad container
IDs, lifecycle misuse and a corrupt state record. These are `root` tests (tests/kernel).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import leakcheck
from tests.bundles import MASKED_PATHS, READONLY_PATHS
from tests.conftest import Bundle, MakeBundle, RuntimeCLI
from tests.probe import fds, mounts, one, parse_probe

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")

# what the probe checks (tests/probe.sh probe_masked / probe_rofs)
PROBED_MASKED = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/interrupts",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/proc/asound",
    "/sys/firmware",
)
PROBED_READONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")

DEFAULT_DEVICES = {
    "null": "1:3",
    "zero": "1:5",
    "full": "1:7",
    "random": "1:8",
    "urandom": "1:9",
    "tty": "5:0",
}


# ---------------------------------------------------------------------------------------------
# helpers


def run_ok(runtime: RuntimeCLI, bundle: Bundle) -> subprocess.CompletedProcess[str]:
    proc = runtime.run("run", "--bundle", str(bundle.path), runtime.container_id())
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\n{proc.stderr}"
    return proc


def probe(runtime: RuntimeCLI, bundle: Bundle) -> dict[str, list[str]]:
    proc = run_ok(runtime, bundle)
    facts = parse_probe(proc.stdout)
    assert facts.get("probe.done") == ["1"], f"probe did not finish:\n{proc.stdout}\n{proc.stderr}"
    return facts


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 1 and exactly one line on stderr; that line."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].strip(), "empty error line"
    return lines[0]


def cgroup_dirs(cgroups_path: str) -> list[Path]:
    rel = cgroups_path.lstrip("/")
    return [h / rel for h in leakcheck.cgroup_hierarchies() if (h / rel).exists()]


def assert_nothing_left(runtime: RuntimeCLI, bundle: Bundle | None = None) -> None:
    assert runtime.list_ids() == []
    left = sorted(p.name for p in runtime.root.iterdir()) if runtime.root.exists() else []
    assert left == [], f"state root not empty: {left}"
    if bundle is not None:
        assert cgroup_dirs(bundle.cgroups_path) == []


def create(runtime: RuntimeCLI, bundle: Bundle, cid: str) -> int:
    """`create`; returns the init's pid."""
    proc = runtime.run("create", "--bundle", str(bundle.path), cid)
    assert proc.returncode == 0, proc.stderr
    return int(str(runtime.state(cid)["pid"]))


# ---------------------------------------------------------------------------------------------
# masked and read-only paths


def test_masked_paths_read_empty(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    masked = [*MASKED_PATHS, "/proc/interrupts"]
    b = make_bundle(["/probe"], linux={"maskedPaths": masked})
    facts = probe(runtime, b)
    for path in PROBED_MASKED:
        assert path in masked, path
        expected = "empty" if os.path.lexists(path) else "missing"
        assert one(facts, f"masked.{path}") == expected, path


def test_masked_paths_read_empty_for_non_root(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["/probe"], process={"user": {"uid": 1000, "gid": 1000}})
    facts = probe(runtime, b)
    for path in MASKED_PATHS:
        expected = "empty" if os.path.lexists(path) else "missing"
        assert one(facts, f"masked.{path}") == expected, path


def test_unmasked_interrupts_is_visible(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """Control: the probe does notice an unmasked path (runc spec does not mask it)."""
    if not Path("/proc/interrupts").exists():
        pytest.skip("no /proc/interrupts")
    facts = probe(runtime, make_bundle(["/probe"]))
    assert one(facts, "masked./proc/interrupts") == "nonempty"


def test_readonly_paths_give_erofs(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    facts = probe(runtime, make_bundle(["/probe"]))
    for path in PROBED_READONLY:
        assert path in READONLY_PATHS
        expected = "yes" if os.path.exists(path) else "missing"
        assert one(facts, f"rofs.{path}") == expected, path
    # the read-only bind mounts themselves
    for path in ("/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"):
        opts = [v.split(" ")[1] for v in facts["mountopts"] if v.split(" ")[0] == path]
        assert opts and "ro" in opts[-1].split(","), (path, opts)


# ---------------------------------------------------------------------------------------------
# /dev


def test_dev_contents(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    facts = probe(runtime, make_bundle(["/probe"]))
    entries = {v.split(" ", 1)[0]: v.split(" ", 1)[1] for v in facts["dev"]}
    for name, majmin in DEFAULT_DEVICES.items():
        assert entries.get(name) == f"crw-rw-rw- 666 {majmin}", name
    links = {v.split(" ", 1)[0]: v.split(" ", 1)[1] for v in facts.get("devlink", [])}
    assert links == {
        "ptmx": "pts/ptmx",
        "fd": "/proc/self/fd",
        "stdin": "/proc/self/fd/0",
        "stdout": "/proc/self/fd/1",
        "stderr": "/proc/self/fd/2",
    }
    # nothing else: no host device, no console without a terminal
    non_links = {n for n in entries if n not in links}
    assert non_links == {*DEFAULT_DEVICES, "pts", "shm", "mqueue"}
    assert one(facts, "ptmx.link") == "pts/ptmx"
    assert one(facts, "pts.ptmx") == "crw-rw-rw- 666 5:2"  # ptmxmode=0666
    assert one(facts, "shm.mode") == "1777"
    ms = mounts(facts)
    assert ("/dev", "tmpfs") in ms
    assert ("/dev/pts", "devpts") in ms
    assert ("/dev/shm", "tmpfs") in ms
    assert ("/dev/mqueue", "mqueue") in ms


def test_dev_pts_is_a_new_instance(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    host_dev = os.stat("/dev/pts").st_dev
    b = make_bundle(["/bin/sh", "-c", "stat -c %d /dev/pts; echo ==; ls -1A /dev/pts"])
    out = run_ok(runtime, b).stdout
    dev, _, listing = out.partition("==\n")
    assert int(dev.strip()) != host_dev
    assert listing.split() == ["ptmx"]  # no host pty is visible


# ---------------------------------------------------------------------------------------------
# leaked fds (CVE-2016-9962)


def test_only_stdio_open_in_container_process(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    facts = probe(runtime, make_bundle(["/probe"]))
    assert sorted(fds(facts)) == [0, 1, 2]
    assert one(facts, "fd.script").endswith(" /probe")


def test_created_init_holds_only_stdio_and_exec_fifo(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    pid = create(runtime, b, cid)
    fifo = runtime.root / cid / "exec.fifo"
    held = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            held[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
    extra = {fd: target for fd, target in held.items() if fd > 2}
    assert set(extra.values()) <= {str(fifo)}, f"init holds more than the exec fifo: {held}"
    assert len(extra) <= 1, held


def test_exec_process_has_only_stdio(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    create(runtime, b, cid)
    assert runtime.run("start", cid).returncode == 0
    proc = runtime.run("exec", cid, "/probe")
    assert proc.returncode == 0, proc.stderr
    facts = parse_probe(proc.stdout)
    assert sorted(fds(facts)) == [0, 1, 2]
    assert one(facts, "pid") != "1"


# ---------------------------------------------------------------------------------------------
# cwd through a leaked fd (CVE-2024-21626)


def _escape_script(marker: Path) -> str:
    up = "../" * 40
    return (
        "echo ran; pwd -P; echo ==;"
        f" cat {up}{str(marker).lstrip('/')} 2>/dev/null;"
        f" cat {up}etc/hostname 2>/dev/null; ls -1A {up} 2>/dev/null; exit 0"
    )


@pytest.fixture
def host_marker(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "host-secret"
    d.mkdir()
    secret = f"HOST-SECRET-{secrets.token_hex(8)}"
    (d / "secret").write_text(secret + "\n")
    return d / "secret", secret


def _host_hostname_file() -> str:
    try:
        return Path("/etc/hostname").read_text().strip()
    except OSError:
        return ""


def _check_no_host_view(proc: subprocess.CompletedProcess[str], secret: str, rootfs: Path) -> None:
    text = proc.stdout + proc.stderr
    assert secret not in text
    host_hostname = _host_hostname_file()
    if host_hostname:
        assert host_hostname not in proc.stdout.splitlines()
    if "ran" in proc.stdout.splitlines():
        assert proc.returncode == 0, proc.stderr
        cwd, _, rest = proc.stdout.partition("==\n")
        cwd_line = cwd.splitlines()[1] if len(cwd.splitlines()) > 1 else ""
        assert cwd_line.startswith("/") and "unreachable" not in cwd_line, cwd
        # `ls ../../..` from the cwd lists the container root, not the host's
        assert sorted(rest.split()) == sorted(os.listdir(rootfs)), rest
    else:
        one_line_error(proc)


@pytest.mark.parametrize("fd", range(3, 11))
def test_cwd_proc_self_fd_run(
    runtime: RuntimeCLI, make_bundle: MakeBundle, host_marker: tuple[Path, str], fd: int
) -> None:
    marker, secret = host_marker
    b = make_bundle(
        ["/bin/sh", "-c", _escape_script(marker)], process={"cwd": f"/proc/self/fd/{fd}"}
    )
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    _check_no_host_view(proc, secret, b.rootfs)
    assert runtime.list_ids() == []


@pytest.mark.parametrize("fd", range(3, 11))
def test_cwd_proc_self_fd_exec(
    runtime: RuntimeCLI, make_bundle: MakeBundle, host_marker: tuple[Path, str], fd: int
) -> None:
    marker, secret = host_marker
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    create(runtime, b, cid)
    assert runtime.run("start", cid).returncode == 0
    proc = runtime.run(
        "exec", "--cwd", f"/proc/self/fd/{fd}", cid, "/bin/sh", "-c", _escape_script(marker)
    )
    _check_no_host_view(proc, secret, b.rootfs)
    assert runtime.state(cid)["status"] == "running"


# ---------------------------------------------------------------------------------------------
# symlinks in the image (CVE-2019-19921, CVE-2025-31133 class)


def _replace_with_symlink(rootfs: Path, name: str, target: str) -> None:
    path = rootfs / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


SymlinkSetup = Callable[[Bundle, str, Path], list[Path]]


def _proc_to_tmp(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    _replace_with_symlink(b.rootfs, "proc", f"/tmp/tsubo-esc-{u}")
    return [Path(f"/tmp/tsubo-esc-{u}")]


def _proc_to_dotdot(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    _replace_with_symlink(b.rootfs, "proc", "/../../..")
    return []


def _sys_to_tmp(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    _replace_with_symlink(b.rootfs, "sys", f"../../../../../../tmp/tsubo-esc-{u}")
    return [Path(f"/tmp/tsubo-esc-{u}")]


def _dev_to_tmp(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    _replace_with_symlink(b.rootfs, "dev", f"/tmp/tsubo-esc-{u}")
    return [Path(f"/tmp/tsubo-esc-{u}")]


def _dev_null_to_core_pattern(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    _replace_with_symlink(b.rootfs, "dev/null", str(CORE_PATTERN))
    return []


def _dev_null_to_core_pattern_no_dev_tmpfs(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    """The image's own /dev is used (no tmpfs on /dev): its null is the symlink."""
    _replace_with_symlink(b.rootfs, "dev/null", str(CORE_PATTERN))
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/dev"]
    b.write()
    return []


def _mnt_to_root_bind(b: Bundle, u: str, tmp: Path) -> list[Path]:
    src = tmp / f"bind-src-{u}"
    src.mkdir()
    (src / "f").write_text("bind source\n")
    _replace_with_symlink(b.rootfs, "mnt", "/")
    b.config["mounts"].append(
        {
            "destination": f"/mnt/escape-{u}",
            "type": "bind",
            "source": str(src),
            "options": ["rbind"],
        }
    )
    b.write()
    return [Path(f"/escape-{u}")]


def _mnt_to_dotdot_tmpfs(b: Bundle, u: str, _tmp: Path) -> list[Path]:
    _replace_with_symlink(b.rootfs, "mnt", "../../../../../../../../tmp")
    b.config["mounts"].append(
        {
            "destination": f"/mnt/tsubo-esc-{u}",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["size=64k"],
        }
    )
    b.write()
    return [Path(f"/tmp/tsubo-esc-{u}")]


SYMLINK_CASES: dict[str, SymlinkSetup] = {
    "proc->/tmp/x": _proc_to_tmp,
    "proc->/../../..": _proc_to_dotdot,
    "sys->../../tmp/x": _sys_to_tmp,
    "dev->/tmp/x": _dev_to_tmp,
    "dev/null->core_pattern": _dev_null_to_core_pattern,
    "dev/null->core_pattern,image /dev": _dev_null_to_core_pattern_no_dev_tmpfs,
    "mnt->/,bind /mnt/escape": _mnt_to_root_bind,
    "mnt->../../tmp,tmpfs /mnt/x": _mnt_to_dotdot_tmpfs,
}


@pytest.mark.parametrize("case", list(SYMLINK_CASES))
def test_symlinked_image_paths_confined(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path, case: str
) -> None:
    u = secrets.token_hex(4)
    core_before = CORE_PATTERN.read_text()
    b = make_bundle(["/probe"], root={"readonly": False})
    must_not_exist = SYMLINK_CASES[case](b, u, tmp_path)
    for p in must_not_exist:
        assert not os.path.lexists(p), f"{p} exists before the test"
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    try:
        if proc.returncode == 0:
            facts = parse_probe(proc.stdout)
            assert facts.get("probe.done") == ["1"], proc.stdout
            # confinement must not have broken the masking
            assert one(facts, "masked./proc/keys") == "empty"
            assert one(facts, "masked./proc/timer_list") == "empty"
            assert one(facts, "rofs./proc/sys") == "yes"
            devs = {v.split(" ", 1)[0]: v.split(" ", 1)[1] for v in facts.get("dev", [])}
            assert devs.get("null") == "crw-rw-rw- 666 1:3", devs.get("null")
            if case.startswith("proc"):
                assert one(facts, "pid") == "1"
                assert one(facts, "nprocs") == "1"
            if case.startswith("mnt"):
                # the mount happened, inside the root
                inside = f"/escape-{u}" if "escape" in case else f"/tmp/tsubo-esc-{u}"
                assert inside in [mp for mp, _ in mounts(facts)], facts.get("mount")
                assert (b.rootfs / inside.lstrip("/")).is_dir()
        else:
            line = one_line_error(proc)
            top = "/" + case.split("->", 1)[0]
            if "/" not in top[1:]:
                # /proc, /sys or /dev is itself the symlink: the error must name it
                assert re.search(re.escape(top) + r"(?![\w/])", line), (
                    f"does not name {top}: {line}"
                )
            assert cgroup_dirs(b.cgroups_path) == []
    finally:
        for p in must_not_exist:
            assert not os.path.lexists(p), f"{case}: created on the host: {p}"
        assert CORE_PATTERN.read_text() == core_before
    assert runtime.list_ids() == []


# ---------------------------------------------------------------------------------------------
# the init is not dumpable before exec (CVE-2019-5736)


@pytest.mark.parametrize("user", ["1000:1000", "0:0"])
def test_created_init_exe_not_readable_from_container(
    runtime: RuntimeCLI, make_bundle: MakeBundle, user: str
) -> None:
    """While `created`, PID 1 is still the runtime's (host) Python: it must be
    non-dumpable, so /proc/1/exe is unreachable even for the container's root (which lacks
    CAP_SYS_PTRACE)."""
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    pid = create(runtime, b, cid)
    host_exe = os.readlink(f"/proc/{pid}/exe")
    assert "python" in Path(host_exe).name, host_exe
    proc = runtime.run(
        "exec",
        "--user",
        user,
        cid,
        "/bin/sh",
        "-c",
        "readlink /proc/1/exe; echo rc=$?; ls /proc/1/root/ >/dev/null; echo root.rc=$?",
    )
    assert proc.returncode == 0, proc.stderr
    assert host_exe not in proc.stdout
    assert "rc=1" in proc.stdout.splitlines()
    assert "root.rc=1" in proc.stdout.splitlines()
    assert runtime.state(cid)["status"] == "created"


def test_started_init_exe_readable_control(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """Control for the test above: once PID 1 has exec'd (busybox sleep, dumpable again),
    the same readlink works, so the denial above is the non-dumpable flag."""
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    create(runtime, b, cid)
    assert runtime.run("start", cid).returncode == 0
    proc = runtime.run("exec", "--user", "0:0", cid, "readlink", "/proc/1/exe")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "/bin/busybox"


# ---------------------------------------------------------------------------------------------
# bad container ids


BAD_IDS = {
    "dotdot-slash": "../x",
    "slash": "a/b",
    "empty": "",
    "long": "a" * 1024,
    "dot": ".",
    "dotdot": "..",
    "newline": "a\nb",
}


@pytest.mark.parametrize("name", list(BAD_IDS))
def test_bad_container_id_rejected(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path, name: str
) -> None:
    bad = BAD_IDS[name]
    b = make_bundle(["/bin/true"])
    around = sorted(os.listdir(tmp_path))
    for argv in (
        ("create", "--bundle", str(b.path), bad),
        ("run", "--bundle", str(b.path), bad),
        ("state", bad),
        ("start", bad),
        ("kill", bad, "KILL"),
        ("delete", bad),
        ("delete", "--force", bad),
        ("exec", bad, "true"),
    ):
        proc = runtime.run(*argv)
        one_line_error(proc)
        assert sorted(os.listdir(tmp_path)) == around, argv
        assert_nothing_left(runtime, b)
    assert not (tmp_path / "x").exists()
    assert not (b.path / "a").exists()


# ---------------------------------------------------------------------------------------------
# lifecycle misuse


def test_duplicate_create_leaves_first_untouched(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    b1 = make_bundle(["sleep", "300"])
    b2 = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    pid = create(runtime, b1, cid)
    before = runtime.state(cid)
    state_file = (runtime.root / cid / "state.json").read_bytes()
    line = one_line_error(runtime.run("create", "--bundle", str(b2.path), cid))
    assert cid in line
    assert runtime.state(cid) == before
    assert (runtime.root / cid / "state.json").read_bytes() == state_file
    assert (runtime.root / cid / "exec.fifo").exists()
    assert cgroup_dirs(b2.cgroups_path) == []
    assert pid in leakcheck.child_processes()
    # still usable
    assert runtime.run("start", cid).returncode == 0
    assert runtime.state(cid)["status"] == "running"


def test_start_twice(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    create(runtime, b, cid)
    assert runtime.run("start", cid).returncode == 0
    line = one_line_error(runtime.run("start", cid))
    assert cid in line
    assert runtime.state(cid)["status"] == "running"


def test_kill_stopped(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["/bin/true"])
    cid = runtime.container_id()
    create(runtime, b, cid)
    assert runtime.run("start", cid).returncode == 0
    runtime.wait_status(cid, "stopped")
    line = one_line_error(runtime.run("kill", cid, "KILL"))
    assert cid in line
    assert runtime.state(cid)["status"] == "stopped"
    assert runtime.run("delete", cid).returncode == 0
    assert_nothing_left(runtime, b)


def test_delete_running_without_force(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    pid = create(runtime, b, cid)
    assert runtime.run("start", cid).returncode == 0
    line = one_line_error(runtime.run("delete", cid))
    assert cid in line
    assert runtime.state(cid)["status"] == "running"
    assert pid in leakcheck.child_processes()
    assert cgroup_dirs(b.cgroups_path) != []
    assert runtime.run("delete", "--force", cid).returncode == 0
    assert_nothing_left(runtime, b)


@pytest.mark.parametrize("command", ["state", "start", "kill", "delete", "pause", "ps"])
def test_missing_container(runtime: RuntimeCLI, command: str) -> None:
    cid = f"t-missing-{secrets.token_hex(4)}"
    line = one_line_error(runtime.run(command, cid))
    assert cid in line
    assert_nothing_left(runtime)


# ---------------------------------------------------------------------------------------------
# a corrupt state record


def test_corrupt_state_record(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "300"])
    good = runtime.container_id()
    pid = create(runtime, b, good)
    bad = runtime.container_id()
    (runtime.root / bad).mkdir(mode=0o711)
    (runtime.root / bad / "state.json").write_text('{"id": "truncated", "pid": ')

    assert sorted(runtime.list_ids()) == sorted([good, bad])
    table = runtime.run("list")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows[good][1:3] == [str(pid), "created"]
    assert rows[bad][2] == "unknown"
    listed = runtime.run("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    by_id = {s["id"]: s for s in json.loads(listed.stdout)}
    assert by_id[good]["status"] == "created"
    assert by_id[bad]["status"] == "unknown"

    assert runtime.state(good)["status"] == "created"
    ps = runtime.run("ps", "--format", "json", good)
    assert ps.returncode == 0 and json.loads(ps.stdout) == [pid], ps.stderr
    assert bad in one_line_error(runtime.run("state", bad))

    assert runtime.run("delete", "--force", bad).returncode == 0
    assert not (runtime.root / bad).exists()
    assert runtime.list_ids() == [good]
    assert runtime.run("start", good).returncode == 0
    assert runtime.state(good)["status"] == "running"
