"""Pure tests of tsubo.kernel.cgroups: paths, layout parsing and value conversions (the
planner's writes are tested in test_cgroups_plan.py)."""

from __future__ import annotations

import pytest

from tsubo.errors import InvalidArgument
from tsubo.kernel.cgroups import Cgroup, CgroupLayout, resolve_cgroup_path
from tsubo.kernel.cgroups.plan import device_rules as v1_device_rules
from tsubo.kernel.cgroups.plan import pids_max
from tsubo.kernel.cgroups.v1 import memsw_first
from tsubo.kernel.cgroups.v2 import (
    blkio_weight_to_io_weight,
    cpu_max,
    memory_swap_v2,
    shares_to_weight,
)
from tsubo.oci.runtime_spec import parse_resources


def device_rules(rules: list[object]) -> list[tuple[str, str]]:
    """Config rules -> v1 writes, as the runtime gets there: validated, then planned."""
    devices = parse_resources({"devices": rules}).devices
    assert devices is not None
    return v1_device_rules(devices)

HYBRID_MOUNTINFO = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
90 80 0:32 /docker/abc /mnt/my\\040mem rw,relatime - cgroup cgroup rw,memory
"""

V2_MOUNTINFO = """\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
"""

KNOWN = frozenset({"cpu", "cpuacct", "cpuset", "memory", "hugetlb"})


# --- resolve_cgroup_path -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/tsubo/abc"),
        ("", "/tsubo/abc"),
        ("/machine/abc", "/machine/abc"),
        ("//machine/./abc/", "/machine/abc"),
        ("tsubo/abc", "tsubo/abc"),
        ("./a//b", "a/b"),
        ("/a:b/c", "/a:b/c"),
    ],
)
def test_resolve_cgroup_path(given: str | None, expected: str) -> None:
    assert resolve_cgroup_path(given, "abc") == expected


@pytest.mark.parametrize(
    "given",
    ["../escape", "/tsubo/../../x", "a/../../b", "system.slice:docker:abc", ":tsubo:abc", "/", "."],
)
def test_resolve_cgroup_path_rejects(given: str) -> None:
    with pytest.raises(InvalidArgument):
        resolve_cgroup_path(given, "abc")


@pytest.mark.parametrize("container_id", ["", "a/b", ".."])
def test_resolve_cgroup_path_rejects_bad_default_ids(container_id: str) -> None:
    with pytest.raises(InvalidArgument):
        resolve_cgroup_path(None, container_id)


def test_systemd_error_names_the_way_out() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_cgroup_path("system.slice:tsubo:abc", "abc")
    assert "systemd" in str(caught.value)
    assert caught.value.hint


# --- layout ------------------------------------------------------------------------------


def test_layout_hybrid() -> None:
    layout = CgroupLayout.from_mountinfo(HYBRID_MOUNTINFO, KNOWN, frozenset({"hugetlb"}))
    assert layout.kind == "hybrid"
    assert layout.hierarchies == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "cpuset": "/sys/fs/cgroup/cpuset",
        "memory": "/sys/fs/cgroup/memory",
        "name=systemd": "/sys/fs/cgroup/systemd",
        "unified": "/sys/fs/cgroup/unified",
    }
    assert layout.mount_options["cpu"] == "cpu,cpuacct"
    assert layout.mount_options["cpuset"] == "cpuset"
    assert layout.mount_options["name=systemd"] == "name=systemd"


def test_layout_without_proc_cgroups_skips_options() -> None:
    layout = CgroupLayout.from_mountinfo(HYBRID_MOUNTINFO)
    assert "clone_children" not in layout.hierarchies
    assert "xattr" not in layout.hierarchies
    assert layout.mount_options["cpuset"] == "cpuset"


def test_layout_v2_and_v1() -> None:
    assert CgroupLayout.from_mountinfo(V2_MOUNTINFO).kind == "v2"
    v1_only = "\n".join(line for line in HYBRID_MOUNTINFO.splitlines() if "cgroup2" not in line)
    assert CgroupLayout.from_mountinfo(v1_only, KNOWN).kind == "v1"


def test_layout_unescapes_and_keeps_first_mount() -> None:
    text = "90 80 0:32 /docker/abc /mnt/my\\040mem rw - cgroup cgroup rw,memory\n"
    layout = CgroupLayout.from_mountinfo(text, KNOWN)
    assert layout.hierarchies == {"memory": "/mnt/my mem"}
    assert layout.mount_roots["memory"] == "/docker/abc"


# --- Cgroup paths (no kernel access for absolute paths) -----------------------------------


def _hybrid() -> CgroupLayout:
    return CgroupLayout.from_mountinfo(HYBRID_MOUNTINFO, KNOWN, frozenset({"hugetlb"}))


def test_cgroup_paths_and_json_round_trip() -> None:
    cgroup = Cgroup(_hybrid(), "/tsubo/abc")
    assert cgroup.paths["memory"] == "/sys/fs/cgroup/memory/tsubo/abc"
    assert cgroup.paths["cpu"] == cgroup.paths["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/tsubo/abc"
    assert cgroup.paths["unified"] == "/sys/fs/cgroup/unified/tsubo/abc"
    data = cgroup.to_json()
    assert data["path"] == "/tsubo/abc"
    again = Cgroup.from_json(data)
    assert again.path == cgroup.path
    assert again.paths == cgroup.paths


@pytest.mark.parametrize(
    "bad", [{"path": "/x", "memory": "relative"}, {"path": "/x", "memory": "/sys/../etc"}, {}]
)
def test_cgroup_from_json_rejects(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        Cgroup.from_json(bad)


def test_cgroup_rejects_root_and_dotdot() -> None:
    for path in ("/", "", "/a/../b"):
        with pytest.raises(InvalidArgument):
            Cgroup(_hybrid(), path)


def test_mount_plan_hybrid_shapes() -> None:
    cgroup = Cgroup(_hybrid(), "/tsubo/abc")
    with_ns = cgroup.mount_plan(cgroupns=True)
    assert with_ns[0][:3] == ("tmpfs", "", "tmpfs")
    assert with_ns[1][:3] == ("cgroup", "cpu", "cgroup")
    assert with_ns[1][4] == "cpu,cpuacct"
    assert all(entry[3] & 1 for entry in with_ns[1:])  # MS_RDONLY everywhere but the tmpfs
    targets = [entry[1] for entry in with_ns]
    assert "systemd" in targets and "unified" in targets
    unified = next(entry for entry in with_ns if entry[1] == "unified")
    assert unified[2] == "cgroup2"
    # the tmpfs stays writable, as runc leaves it: mounted once, never remounted
    assert [entry for entry in with_ns if entry[2] == "tmpfs"] == [with_ns[0]]
    assert not with_ns[0][3] & 1
    without_ns = cgroup.mount_plan(cgroupns=False)
    binds = [entry for entry in without_ns if entry[0].startswith("/")]
    assert ("/sys/fs/cgroup/memory/tsubo/abc", "memory") in [(e[0], e[1]) for e in binds]
    remounts = [entry for entry in without_ns if entry[3] & 32 and entry[1] == "memory"]
    assert len(remounts) == 1 and remounts[0][3] & 1
    writable = cgroup.mount_plan(cgroupns=False, read_only=False)
    assert not any(entry[3] & 1 for entry in writable)


def test_mount_plan_v2() -> None:
    cgroup = Cgroup(CgroupLayout.from_mountinfo(V2_MOUNTINFO), "/tsubo/abc")
    assert cgroup.mount_plan(cgroupns=True) == [("cgroup2", "", "cgroup2", 15 | (1 << 21), "")]
    plan = cgroup.mount_plan(cgroupns=False)
    assert plan[0] == ("/sys/fs/cgroup/tsubo/abc", "", "", 4096 | 16384, "")
    assert plan[1][3] & 32 and plan[1][3] & 1


# --- conversions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (1024, 39), (262144, 10000), (1, 1), (10**9, 10000), (512, 20)],
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(("weight", "io"), [(10, 1), (1000, 10000), (500, 4950)])
def test_blkio_weight_to_io_weight(weight: int, io: int) -> None:
    assert blkio_weight_to_io_weight(weight) == io


@pytest.mark.parametrize(
    ("quota", "period", "current", "expected"),
    [
        (50000, 100000, "max", "50000 100000"),
        (-1, 100000, "max", "max 100000"),
        (50000, None, "max", "50000"),
        (None, 20000, "30000", "30000 20000"),
        (None, 20000, "max", "max 20000"),
        (-1, None, "max", "max"),
        (None, None, "max", None),
        (0, 0, "max", None),
    ],
)
def test_cpu_max(quota: int | None, period: int | None, current: str, expected: str | None) -> None:
    assert cpu_max(quota, period, current) == expected


@pytest.mark.parametrize(
    ("limit", "swap", "expected"),
    [
        (32 << 20, 64 << 20, str(32 << 20)),
        (32 << 20, 32 << 20, "0"),
        (32 << 20, -1, "max"),
        (-1, None, "max"),
        (-1, -1, "max"),
        (32 << 20, None, None),
        (None, None, None),
        (0, 0, None),
    ],
)
def test_memory_swap_v2(limit: int | None, swap: int | None, expected: str | None) -> None:
    assert memory_swap_v2(limit, swap) == expected


@pytest.mark.parametrize(
    ("limit", "swap"), [(64 << 20, 32 << 20), (None, 64 << 20), (-1, 64 << 20)]
)
def test_memory_swap_v2_rejects(limit: int | None, swap: int) -> None:
    with pytest.raises(InvalidArgument):
        memory_swap_v2(limit, swap)


def test_memsw_order() -> None:
    unlimited = 9223372036854771712
    # memsw must stay >= the limit: memsw goes first only when it rises above the current limit
    assert memsw_first(unlimited, 64 << 20) is False
    assert memsw_first(32 << 20, 256 << 20) is True
    assert memsw_first(128 << 20, 16 << 20) is False
    assert memsw_first(32 << 20, -1) is True


@pytest.mark.parametrize(("limit", "expected"), [(32, "32"), (0, "max"), (-1, "max")])
def test_pids_max(limit: int, expected: str) -> None:
    assert pids_max(limit) == expected


def test_device_rules() -> None:
    rules = device_rules(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "wr"},
            {"allow": True, "type": "b", "access": "m"},
            {"allow": False, "type": "c", "major": 5, "minor": 1},
            {"allow": True, "type": "a", "access": "r"},
            {"allow": True, "type": "p"},
            {"allow": True},
        ]
    )
    assert rules == [
        ("devices.deny", "a"),
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rw"),
        ("devices.allow", "b *:* m"),
        ("devices.deny", "c 5:1 rwm"),
        ("devices.allow", "c *:* r"),
        ("devices.allow", "b *:* r"),
        ("devices.allow", "a"),
    ]


@pytest.mark.parametrize(
    "rule",
    [
        {"type": "c"},
        {"allow": True, "type": "x"},
        {"allow": True, "access": "rwx"},
        {"allow": True, "major": -2},
        {"allow": True, "major": "1"},
        "c 1:3 rwm",
    ],
)
def test_device_rules_reject(rule: object) -> None:
    with pytest.raises(InvalidArgument):
        device_rules([rule])
