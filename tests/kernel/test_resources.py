"""tsubo-runtime's `linux.resources` against the real kernel (root only).

Memory limit + OOM kill (exit 137, oomKilled), pids limit under a fork bomb, cpu quota,
cpu shares, cpuset, memory reservation, where the cgroup lives (`cgroupsPath`) and that it
is removed on delete. The cgroup directories are read from the container's state.json
("cgroup" map: controller -> directory), so the tests follow whatever layout the host has.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeBundle, RuntimeCLI

MIB = 1 << 20
POLL = 0.02

ALLOCATE_200MB = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'


# ---------------------------------------------------------------------------------------------
# helpers


def cgroup_record(runtime: RuntimeCLI, cid: str) -> dict[str, str]:
    record = json.loads((runtime.root / cid / "state.json").read_text())
    cgroups = record["cgroup"]
    assert isinstance(cgroups, dict) and "path" in cgroups, record
    return dict(cgroups)


def cgroup_dirs(runtime: RuntimeCLI, cid: str) -> dict[str, Path]:
    return {k: Path(v) for k, v in cgroup_record(runtime, cid).items() if k != "path"}


def controller_file(dirs: dict[str, Path], controller: str, name: str) -> Path:
    """The file `name` of `controller` (v1 dir of that controller, else the v2 dir)."""
    if controller in dirs:
        return dirs[controller] / name
    if "unified" in dirs:
        return dirs["unified"] / name
    pytest.skip(f"no {controller} controller in this container's cgroup: {dirs}")


def read(path: Path) -> str:
    return path.read_text().strip()


def keyed(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise AssertionError(f"no {key!r} in {text!r}")


def hierarchy_mounts() -> dict[str, Path]:
    """controller name -> cgroup mount point (v1: per controller; v2: 'unified')."""
    out: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3]
        if fstype == "cgroup":
            for opt in options.split(","):
                if opt in (
                    "cpu",
                    "cpuacct",
                    "cpuset",
                    "memory",
                    "pids",
                    "freezer",
                    "devices",
                    "blkio",
                ) or opt.startswith("name="):
                    out[opt] = Path(fields[4])
        elif fstype == "cgroup2":
            out["unified"] = Path(fields[4])
    return out


def own_cgroup(controller: str) -> str:
    """This process's cgroup path in the hierarchy of `controller`."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else ["unified"]
        if controller in names:
            return path
    raise AssertionError(f"no {controller} line in /proc/self/cgroup")


# ---------------------------------------------------------------------------------------------
# memory


def _oom_bundle(make_bundle: MakeBundle) -> Any:
    return make_bundle(
        ["sh", "-c", ALLOCATE_200MB],
        linux={"resources": {"memory": {"limit": 32 * MIB, "swap": 32 * MIB}}},
    )


def test_memory_limit_oom_kill_on_run(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = _oom_bundle(make_bundle)
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 137, (proc.stdout, proc.stderr)
    assert "survived" not in proc.stdout
    assert "OOM" in proc.stderr
    assert runtime.list_ids() == []


def test_memory_limit_oom_killed_in_state(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = _oom_bundle(make_bundle)
    cid = runtime.container_id()
    assert runtime.run("create", "--bundle", str(b.path), cid).returncode == 0
    dirs = cgroup_dirs(runtime, cid)
    assert int(read(controller_file(dirs, "memory", "memory.limit_in_bytes"))) == 32 * MIB
    memsw = dirs.get("memory", Path("/nonexistent")) / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        assert int(read(memsw)) == 32 * MIB
    before = runtime.state(cid)
    assert "oomKilled" not in before
    assert runtime.run("start", cid).returncode == 0
    state = runtime.wait_status(cid, "stopped", timeout=10)
    assert state["oomKilled"] is True
    assert keyed(read(controller_file(dirs, "memory", "memory.oom_control")), "oom_kill") >= 1
    assert runtime.run("delete", cid).returncode == 0
    for directory in dirs.values():
        assert not directory.exists(), directory


def test_no_oom_flag_without_oom(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["true"], linux={"resources": {"memory": {"limit": 32 * MIB}}})
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    state = runtime.wait_status(cid, "stopped")
    assert "oomKilled" not in state
    assert runtime.run("delete", cid).returncode == 0


# ---------------------------------------------------------------------------------------------
# pids


FORK_BOMB = "f(){ f | f & }; f; exec sleep 100"


def test_pids_limit_caps_fork_bomb(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", FORK_BOMB], linux={"resources": {"pids": {"limit": 32}}})
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    dirs = cgroup_dirs(runtime, cid)
    current = controller_file(dirs, "pids", "pids.current")
    events = controller_file(dirs, "pids", "pids.events")
    assert read(controller_file(dirs, "pids", "pids.max")) == "32"

    samples: list[int] = []
    slowest = 0.0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        samples.append(int(read(current)))
        started = time.monotonic()
        subprocess.run(["true"], check=True)  # the host still forks and runs programs
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    assert max(samples) <= 32, samples
    assert max(samples) >= 24, samples  # the bomb really pushed against the limit
    assert keyed(read(events), "max") >= 1  # forks were refused by the limit
    assert slowest < 1.0, f"host command took {slowest:.2f} s under the fork bomb"
    assert runtime.state(cid)["status"] == "running"

    started = time.monotonic()
    deleted = runtime.run("delete", "--force", cid, timeout=15)
    elapsed = time.monotonic() - started
    assert deleted.returncode == 0, deleted.stderr
    assert elapsed < 5, f"delete --force took {elapsed:.1f} s"
    for directory in dirs.values():
        assert not directory.exists(), directory


# ---------------------------------------------------------------------------------------------
# cpu


def test_cpu_quota_holds_busy_loop_near_half_a_core(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    b = make_bundle(
        ["sh", "-c", "while :; do :; done"],
        linux={"resources": {"cpu": {"quota": 50000, "period": 100000}}},
    )
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    dirs = cgroup_dirs(runtime, cid)
    if "cpu" in dirs:
        assert read(dirs["cpu"] / "cpu.cfs_quota_us") == "50000"
        assert read(dirs["cpu"] / "cpu.cfs_period_us") == "100000"
    else:
        assert read(controller_file(dirs, "cpu", "cpu.max")) == "50000 100000"
    usage = controller_file(dirs, "cpuacct", "cpuacct.usage")

    time.sleep(0.3)  # past the first period
    used0, wall0 = int(read(usage)), time.monotonic()
    time.sleep(2.0)
    used1, wall1 = int(read(usage)), time.monotonic()
    share = (used1 - used0) / 1e9 / (wall1 - wall0)
    assert 0.35 <= share <= 0.65, f"busy loop got {share:.0%} of a core under a 50% quota"
    throttled = keyed(read(controller_file(dirs, "cpu", "cpu.stat")), "nr_throttled")
    assert throttled >= 10
    assert runtime.run("delete", "--force", cid).returncode == 0


def test_cpu_shares_cpuset_and_memory_reservation(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    script = "grep Cpus_allowed_list /proc/self/status; exec sleep 30"
    b = make_bundle(
        ["sh", "-c", script],
        linux={
            "resources": {
                "cpu": {"shares": 512, "cpus": "0", "mems": "0"},
                "memory": {"limit": 64 * MIB, "reservation": 16 * MIB},
            }
        },
    )
    cid = runtime.container_id()
    out = b.path / "out"
    # stdout of a detached run is the runtime's stdout: send it to a file we can read
    err = b.path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.run(
            [
                str(runtime.binary),
                "--root",
                str(runtime.root),
                "run",
                "-d",
                "--bundle",
                str(b.path),
                cid,
            ],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 0, err.read_text()
    pid = int(runtime.state(cid)["pid"])
    deadline = time.monotonic() + 5
    while "Cpus_allowed_list" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(POLL)
    assert out.read_text().split() == ["Cpus_allowed_list:", "0"]
    # the init (now sleep) on the host side too
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Cpus_allowed_list:\t0\n" in status

    dirs = cgroup_dirs(runtime, cid)
    assert read(controller_file(dirs, "cpu", "cpu.shares")) == "512"
    assert read(controller_file(dirs, "cpuset", "cpuset.cpus")) == "0"
    assert read(controller_file(dirs, "cpuset", "cpuset.mems")) == "0"
    assert int(read(controller_file(dirs, "memory", "memory.limit_in_bytes"))) == 64 * MIB
    assert int(read(controller_file(dirs, "memory", "memory.soft_limit_in_bytes"))) == 16 * MIB
    assert runtime.run("delete", "--force", cid).returncode == 0
    for directory in dirs.values():
        assert not directory.exists(), directory


# ---------------------------------------------------------------------------------------------
# where the cgroup is


def _assert_in_cgroup(pid: int, dirs: dict[str, Path], mounts: dict[str, Path]) -> None:
    """/proc/PID/cgroup names, for each v1 controller, the directory the state recorded."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            if name in dirs and name in mounts:
                assert dirs[name] == mounts[name] / path.lstrip("/"), (name, path, dirs[name])


def test_absolute_cgroups_path_honoured(
    runtime: RuntimeCLI, make_bundle: MakeBundle, test_tag: str
) -> None:
    leaf = f"c-{secrets.token_hex(4)}"
    cgroups_path = f"/tsubo-test-{test_tag}/nested/{leaf}"
    b = make_bundle(["sleep", "30"], linux={"cgroupsPath": cgroups_path})
    cid = runtime.container_id()
    mounts = hierarchy_mounts()
    try:
        assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
        record = cgroup_record(runtime, cid)
        assert record["path"] == cgroups_path
        dirs = cgroup_dirs(runtime, cid)
        assert "memory" in dirs and "pids" in dirs, dirs
        for key, directory in dirs.items():
            assert key in mounts, key
            assert directory == mounts[key] / cgroups_path.lstrip("/"), (key, directory)
            assert directory.is_dir(), directory
        pid = int(runtime.state(cid)["pid"])
        _assert_in_cgroup(pid, dirs, mounts)
        assert str(pid) in read(dirs["pids"] / "cgroup.procs").split()

        assert runtime.run("delete", "--force", cid).returncode == 0
        for directory in dirs.values():
            assert not directory.exists(), directory
            assert directory.parent.is_dir()  # only the leaf is the container's
    finally:
        for hier in mounts.values():
            nested = hier / f"tsubo-test-{test_tag}" / "nested"
            with contextlib.suppress(OSError):  # a leftover is reported by the leak check
                nested.rmdir()


def test_relative_cgroups_path_is_below_own_cgroup(
    runtime: RuntimeCLI, make_bundle: MakeBundle, test_tag: str
) -> None:
    parent = f"tsubo-test-{test_tag}-rel"
    cgroups_path = f"{parent}/c-{secrets.token_hex(4)}"
    b = make_bundle(["sleep", "30"], linux={"cgroupsPath": cgroups_path})
    cid = runtime.container_id()
    mounts = hierarchy_mounts()
    expected = {
        key: hier / own_cgroup(key).lstrip("/") / cgroups_path
        for key, hier in mounts.items()
        if key != "unified"
    }
    try:
        assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
        dirs = cgroup_dirs(runtime, cid)
        assert cgroup_record(runtime, cid)["path"] == cgroups_path
        for key, directory in dirs.items():
            if key in expected:
                assert directory == expected[key], (key, directory)
            assert directory.is_dir(), directory
        pid = int(runtime.state(cid)["pid"])
        _assert_in_cgroup(pid, dirs, mounts)
        assert runtime.run("delete", "--force", cid).returncode == 0
        for directory in dirs.values():
            assert not directory.exists(), directory
    finally:
        for directory in expected.values():
            with contextlib.suppress(OSError):  # a leftover is reported by the leak check
                directory.parent.rmdir()


def test_cgroup_removed_after_run(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "cat /proc/self/cgroup"])
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 0, proc.stderr
    mounts = hierarchy_mounts()
    # the container's own view: the read-only cgroup mount is namespaced or not, but the
    # directories the runtime made for cgroupsPath are gone once `run` returns
    for key, hier in mounts.items():
        assert not (hier / b.cgroups_path.lstrip("/")).exists(), key
    assert "pids" in proc.stdout


def test_cgroup_tree_in_the_container_is_its_own_and_read_only(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    """The config's `cgroup` mount: each hierarchy's view is the container's own cgroup
    (its pids limit shows), and neither a hierarchy nor a controller file can be written
    (on a v1 host the tmpfs holding the hierarchies stays writable, as runc leaves it:
    tests/kernel/test_client_parity.py)."""
    script = (
        "d=/sys/fs/cgroup/pids; [ -d $d ] || d=/sys/fs/cgroup; f=$d/pids.max; "
        "echo limit=$(cat $f); "
        "echo 1 > $f 2>/dev/null || echo file-read-only; "
        "mkdir $d/new 2>/dev/null || echo tree-read-only; "
        "ls /sys/fs/cgroup"
    )
    b = make_bundle(["sh", "-c", script], linux={"resources": {"pids": {"limit": 42}}})
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[:3] == ["limit=42", "file-read-only", "tree-read-only"], proc.stdout
    v1 = {key.removeprefix("name=") for key in hierarchy_mounts() if key != "unified"}
    assert v1 <= set(words[3:]) or "pids.max" in words[3:], proc.stdout
