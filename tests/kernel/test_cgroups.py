"""tsubo.kernel.cgroups against the real kernel (root only); resources are given as config
JSON, validated by tsubo.oci.runtime_spec as the runtime does.

Every test works below a parent named ``tsubo-test-cgroups-<random>`` that a fixture
removes; an autouse fixture fails the test if any ``*tsubo-test-cgroups*`` directory is left
in any hierarchy (it removes them first, so one failure does not leak onto the machine).
The prefix is narrower than ``tsubo-test`` on purpose: other suites running at the same
time on this machine make their own ``tsubo-test-*`` cgroups, which are not ours to judge
or remove. Only processes the test started are ever killed, through their Popen objects.

Enabling v2 controllers in the root's ``cgroup.subtree_control`` (which ``create`` does, as
runc does) is left in place: turning a controller off at the root would strip it from every
other cgroup on the machine.
"""

from __future__ import annotations

import glob
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from tsubo.errors import InvalidArgument, TsuboError, Unsupported
from tsubo.kernel.cgroups import Cgroup, CgroupLayout, resolve_cgroup_path
from tsubo.kernel.cgroups.plan import plan_resources
from tsubo.oci.runtime_spec import parse_resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root and cgroupfs"),
]

MIB = 1 << 20
PREFIX = "tsubo-test-cgroups"


def _layout() -> CgroupLayout:
    return CgroupLayout.detect()


def _bases() -> list[str]:
    """Every directory a test cgroup can be made in: hierarchy roots and our own cgroups."""
    layout = _layout()
    bases = set(layout.hierarchies.values())
    with open("/proc/self/cgroup") as file:
        own = {}
        for line in file:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            key = "unified" if number == "0" and not controllers else controllers
            for name in key.split(","):
                own[name] = path
    for key, mount_point in layout.hierarchies.items():
        if own.get(key, "/") != "/":
            bases.add(mount_point + own[key])
    return sorted(bases)


def _leftovers() -> list[str]:
    found = []
    for base in _bases():
        found.extend(glob.glob(f"{base}/*{PREFIX}*"))
    return sorted(found)


def _remove_tree(top: str) -> None:
    """rmdir ``top`` and everything below it, deepest first, retrying EBUSY briefly."""
    for directory, subdirs, _ in os.walk(top, topdown=False):
        del subdirs
        for _ in range(100):
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    assert not _leftovers(), "a previous run left test cgroups behind"
    yield
    leaks = _leftovers()
    for leak in leaks:
        _remove_tree(leak)
    assert not leaks, f"cgroup directories left behind: {leaks}"
    assert not _leftovers()


@pytest.fixture
def parent() -> Iterator[str]:
    """A unique parent name; every directory of that name is removed afterwards."""
    name = f"{PREFIX}-{secrets.token_hex(4)}"
    yield name
    for base in _bases():
        _remove_tree(f"{base}/{name}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at the end are killed and reaped."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _sleep(processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["sleep", "100"])
    processes.append(process)
    return process


def _read(path: str) -> str:
    with open(path) as file:
        return file.read().strip()


def _file(cgroup: Cgroup, controller: str, v1_name: str, v2_name: str) -> str:
    """The path of a controller's file in whichever hierarchy holds it on this host."""
    if controller in cgroup.paths:
        return f"{cgroup.paths[controller]}/{v1_name}"
    return f"{cgroup.paths['unified']}/{v2_name}"


def apply(cgroup: Cgroup, resources: dict[str, object]) -> None:
    """As the runtime does it: the config's resources validated, planned, applied."""
    cgroup.apply(plan_resources(parse_resources(resources), cgroup))


def _all_dirs_exist(cgroup: Cgroup) -> bool:
    return all(os.path.isdir(directory) for directory in cgroup.paths.values())


def _no_dir_exists(cgroup: Cgroup) -> bool:
    return not any(os.path.exists(directory) for directory in cgroup.paths.values())


# --- tests --------------------------------------------------------------------------------


def test_create_apply_and_read_back(parent: str) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/c1")
    cgroup.create()
    assert _all_dirs_exist(cgroup)
    assert Cgroup.from_json(cgroup.to_json()).paths == cgroup.paths
    cpus = _read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus") if "cpuset" in cgroup.paths else "0"
    first_cpu = cpus.split(",")[0].split("-")[0]
    resources: dict[str, object] = {
        "memory": {"limit": 32 * MIB, "swap": 64 * MIB, "reservation": 16 * MIB},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": first_cpu, "mems": "0"},
        "pids": {"limit": 32},
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 136, "access": "rw"},
        ],
    }
    if os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        resources["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4 * MIB}]
    apply(cgroup, resources)

    assert _read(_file(cgroup, "memory", "memory.limit_in_bytes", "memory.max")) == str(32 * MIB)
    assert cgroup.memory_limit() == 32 * MIB
    if "memory" in cgroup.paths:
        assert _read(cgroup.paths["memory"] + "/memory.memsw.limit_in_bytes") == str(64 * MIB)
        assert _read(cgroup.paths["memory"] + "/memory.soft_limit_in_bytes") == str(16 * MIB)
        assert _read(cgroup.paths["cpu"] + "/cpu.cfs_quota_us") == "50000"
        assert _read(cgroup.paths["cpu"] + "/cpu.cfs_period_us") == "100000"
        assert _read(cgroup.paths["cpu"] + "/cpu.shares") == "512"
    else:
        assert _read(cgroup.paths["unified"] + "/memory.swap.max") == str(32 * MIB)
        assert _read(cgroup.paths["unified"] + "/cpu.max") == "50000 100000"
        assert _read(cgroup.paths["unified"] + "/cpu.weight") == "20"
    assert _read(_file(cgroup, "pids", "pids.max", "pids.max")) == "32"
    assert _read(_file(cgroup, "cpuset", "cpuset.cpus", "cpuset.cpus")) == first_cpu
    assert _read(_file(cgroup, "cpuset", "cpuset.mems", "cpuset.mems")) == "0"
    if cgroup.devices_enforced:
        rules = _read(cgroup.paths["devices"] + "/devices.list").splitlines()
        assert rules == ["c 1:3 rwm", "c 136:* rw"]
    if "hugepageLimits" in resources:
        limit_file = _file(cgroup, "hugetlb", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max")
        assert _read(limit_file) == str(4 * MIB)

    cgroup.destroy()
    assert _no_dir_exists(cgroup)
    assert os.path.isdir(cgroup.paths["memory"].rsplit("/", 1)[0])  # the parent stays


def test_memory_limits_move_both_ways(parent: str) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/mem")
    cgroup.create()
    try:
        for limit, swap in ((32, 64), (128, 256), (16, 16), (64, -1), (-1, None), (8, 8)):
            memory: dict[str, object] = {"limit": limit if limit < 0 else limit * MIB}
            if swap is not None:
                memory["swap"] = swap if swap < 0 else swap * MIB
            apply(cgroup, {"memory": memory})
            assert cgroup.memory_limit() == (None if limit < 0 else limit * MIB)
        with pytest.raises(InvalidArgument):
            apply(cgroup, {"memory": {"limit": 64 * MIB, "swap": 32 * MIB}})
    finally:
        cgroup.destroy()


def test_cpu_quota_without_period_and_pids_unlimited(parent: str) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/cpu")
    cgroup.create()
    try:
        apply(cgroup, {"cpu": {"quota": 20000, "period": 50000},
                                      "pids": {"limit": 10}})
        apply(cgroup, {"cpu": {"quota": 30000}, "pids": {"limit": 0}})
        if "cpu" in cgroup.paths:
            assert _read(cgroup.paths["cpu"] + "/cpu.cfs_quota_us") == "30000"
            assert _read(cgroup.paths["cpu"] + "/cpu.cfs_period_us") == "50000"
        else:
            assert _read(cgroup.paths["unified"] + "/cpu.max") == "30000 50000"
        assert _read(_file(cgroup, "pids", "pids.max", "pids.max")) == "max"
    finally:
        cgroup.destroy()


def test_unsupported_and_unified_routing(parent: str) -> None:
    layout = _layout()
    cgroup = Cgroup(layout, f"/{parent}/u")
    cgroup.create()
    try:
        if layout.kind != "v2":
            # memory lives in v1 here: a v2 memory key must be refused, naming the key
            with pytest.raises(Unsupported) as caught:
                apply(cgroup, {"unified": {"memory.high": "1000000"}})
            assert "memory.high" in str(caught.value)
        if "hugetlb" in layout.unified_controllers and os.path.isdir(
            "/sys/kernel/mm/hugepages/hugepages-2048kB"
        ):
            apply(cgroup, {"unified": {"hugetlb.2MB.max": str(2 * MIB)}})
            assert _read(cgroup.paths["unified"] + "/hugetlb.2MB.max") == str(2 * MIB)
        with pytest.raises(InvalidArgument):
            apply(cgroup, {"unified": {"../escape": "1"}})
        with pytest.raises(InvalidArgument):
            apply(cgroup, {"pids": {"limit": "many"}})
        with pytest.raises(Unsupported):
            apply(cgroup, {"hugepageLimits": [{"pageSize": "3MB", "limit": MIB}]})
        with pytest.raises(TsuboError) as failed:
            apply(cgroup, {"cpu": {"cpus": "4096"}})
        assert failed.value.operation == "set cgroup"
        assert failed.value.object.endswith("cpuset.cpus")
        assert failed.value.errno
    finally:
        cgroup.destroy()


def test_join_pids_kill_destroy(parent: str, processes: list[subprocess.Popen[bytes]]) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/join")
    cgroup.create()
    process = _sleep(processes)
    cgroup.join(process.pid)
    assert cgroup.pids() == [process.pid]
    for directory in set(cgroup.paths.values()):
        assert str(process.pid) in _read(directory + "/cgroup.procs").split()
    # a sub-cgroup the container made is listed and removed too
    sub = cgroup.paths.get("pids", cgroup.paths["unified"]) + "/inner"
    os.mkdir(sub)
    assert cgroup.pids() == [process.pid]
    process.kill()  # not reaped yet: destroy must ride out EBUSY while it exits
    cgroup.destroy()
    process.wait(timeout=10)
    assert not os.path.exists(sub)
    assert _no_dir_exists(cgroup)
    cgroup.destroy()  # already gone is success


def test_destroy_reports_busy(parent: str, processes: list[subprocess.Popen[bytes]]) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/busy")
    cgroup.create()
    process = _sleep(processes)
    cgroup.join(process.pid)
    with pytest.raises(TsuboError) as caught:
        cgroup.destroy()
    assert "EBUSY" in str(caught.value)
    process.kill()
    process.wait(timeout=10)
    cgroup.destroy()
    assert _no_dir_exists(cgroup)


def _cpu_ticks(pid: int) -> int:
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _state(pid: int) -> str:
    return _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]


def test_freeze_thaw(parent: str, processes: list[subprocess.Popen[bytes]]) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/freeze")
    cgroup.create()
    spinner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    processes.append(spinner)
    cgroup.join(spinner.pid)
    time.sleep(0.05)
    assert not cgroup.is_frozen()
    cgroup.freeze()
    assert cgroup.is_frozen()
    assert _state(spinner.pid) != "R"
    ticks = _cpu_ticks(spinner.pid)
    time.sleep(0.3)
    assert _cpu_ticks(spinner.pid) == ticks  # frozen: no cpu time at all
    cgroup.thaw()
    assert not cgroup.is_frozen()
    deadline = time.monotonic() + 5
    while _cpu_ticks(spinner.pid) == ticks and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _cpu_ticks(spinner.pid) > ticks
    spinner.kill()
    spinner.wait(timeout=10)
    cgroup.destroy()


def test_oom_kill_count(parent: str, processes: list[subprocess.Popen[bytes]]) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/oom")
    cgroup.create()
    apply(cgroup, {"memory": {"limit": 16 * MIB, "swap": 16 * MIB}})
    assert cgroup.oom_kill_count() == 0
    hog = "b = []\nwhile True:\n    b.append(b'x' * (1 << 20))\n"
    process = subprocess.Popen(
        ["sh", "-c", 'read x; exec "$0" -I -S -c "$1"', sys.executable, hog],
        stdin=subprocess.PIPE,
    )
    processes.append(process)
    cgroup.join(process.pid)  # before it allocates anything
    assert process.stdin is not None
    process.stdin.write(b"go\n")
    process.stdin.close()
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert cgroup.oom_kill_count() >= 1
    cgroup.destroy()


def test_create_undoes_on_failure(parent: str) -> None:
    real = _layout()
    hierarchies = dict(real.hierarchies)
    hierarchies["broken"] = "/proc/no-such-cgroup-mount"  # mkdir fails: ENOENT, last
    layout = CgroupLayout(
        real.kind, hierarchies, real.unified_controllers, real.mount_roots, real.mount_options
    )
    cgroup = Cgroup(layout, f"/{parent}/undo")
    with pytest.raises(TsuboError):
        cgroup.create()
    assert _no_dir_exists(cgroup)
    for base in real.hierarchies.values():
        assert not os.path.exists(f"{base}/{parent}")  # the new parent went too


def test_relative_path_lands_under_own_cgroup(parent: str) -> None:
    layout = _layout()
    path = resolve_cgroup_path(f"{parent}/rel", "ignored")
    cgroup = Cgroup(layout, path)
    with open("/proc/self/cgroup") as file:
        lines = [line.rstrip("\n").split(":", 2) for line in file]
    memory_own = next((p for _, c, p in lines if "memory" in c.split(",")), None)
    if memory_own is not None and "memory" in cgroup.paths:
        expected = layout.hierarchies["memory"] + memory_own.rstrip("/") + f"/{parent}/rel"
        assert cgroup.paths["memory"] == expected
    cgroup.create()
    assert _all_dirs_exist(cgroup)
    restored = Cgroup.from_json(cgroup.to_json())
    restored.destroy()
    assert _no_dir_exists(cgroup)


def test_join_self_in_child(parent: str) -> None:
    cgroup = Cgroup(_layout(), f"/{parent}/self")
    cgroup.create()
    pid = os.fork()
    if pid == 0:  # child: join with pid 0 and report through the exit code
        try:
            cgroup.join(0)
            code = 0 if os.getpid() in cgroup.pids() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    cgroup.destroy()
