"""tsubo.kernel.cgroups.plan: linux.resources -> cgroupfs writes on v1, v2 and hybrid hosts,
without root. The host's cgroupfs is a dict of the files that exist (and what they hold);
the resources are config JSON, validated by tsubo.oci.runtime_spec as the runtime does."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from tsubo.errors import InvalidArgument, TsuboError, Unsupported
from tsubo.kernel.cgroups import Cgroup, CgroupLayout, CgroupWrite, HostFiles, apply_writes
from tsubo.kernel.cgroups.plan import plan_resources
from tsubo.oci.runtime_spec import parse_resources

MIB = 1 << 20
HYBRID_MOUNTINFO = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
38 31 0:35 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
KNOWN = frozenset({"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "blkio",
                   "hugetlb"})
V2_CONTROLLERS = frozenset({"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"})
MEM = "/sys/fs/cgroup/memory/tsubo/c1"
CPU = "/sys/fs/cgroup/cpu,cpuacct/tsubo/c1"
V2 = "/sys/fs/cgroup/tsubo/c1"
UNIFIED = "/sys/fs/cgroup/unified/tsubo/c1"


class FakeHost(HostFiles):
    """The files that exist, and what they hold."""

    __slots__ = ("files",)

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def exists(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> str:
        return self.files[path]


def hybrid(*, with_unified: bool = True) -> Cgroup:
    layout = CgroupLayout.from_mountinfo(HYBRID_MOUNTINFO, KNOWN, frozenset({"hugetlb"}))
    return Cgroup(layout, "/tsubo/c1", with_unified=with_unified)


def v2() -> Cgroup:
    return Cgroup(CgroupLayout.from_mountinfo(V2_MOUNTINFO, None, V2_CONTROLLERS), "/tsubo/c1")


def plan(cgroup: Cgroup, config: dict[str, Any],
         files: dict[str, str] | None = None) -> list[tuple[str, str]]:
    writes = plan_resources(parse_resources(config), cgroup, FakeHost(files or {}))
    return [(write.path, write.value) for write in writes]


# --- hybrid (v1 controllers, hugetlb in v2) -------------------------------------------------


def test_hybrid_memory_cpu_pids_go_to_v1_in_the_kernel_s_order() -> None:
    files = {f"{MEM}/memory.memsw.limit_in_bytes": "", f"{MEM}/memory.limit_in_bytes":
             "9223372036854771712"}
    writes = plan(hybrid(), {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "memory": {"limit": 32 * MIB, "swap": 64 * MIB, "reservation": 16 * MIB},
        "pids": {"limit": 32},
    }, files)
    assert writes == [
        ("/sys/fs/cgroup/cpuset/tsubo/c1/cpuset.cpus", "0"),
        ("/sys/fs/cgroup/cpuset/tsubo/c1/cpuset.mems", "0"),
        # lowering from unlimited: the limit first, then memsw (which must stay >= it)
        (f"{MEM}/memory.limit_in_bytes", str(32 * MIB)),
        (f"{MEM}/memory.memsw.limit_in_bytes", str(64 * MIB)),
        (f"{MEM}/memory.soft_limit_in_bytes", str(16 * MIB)),
        (f"{CPU}/cpu.shares", "512"),
        (f"{CPU}/cpu.cfs_period_us", "100000"),
        (f"{CPU}/cpu.cfs_quota_us", "50000"),
        ("/sys/fs/cgroup/pids/tsubo/c1/pids.max", "32"),
    ]


def test_raising_memory_writes_memsw_first() -> None:
    files = {f"{MEM}/memory.memsw.limit_in_bytes": "",
             f"{MEM}/memory.limit_in_bytes": str(32 * MIB)}
    writes = plan(hybrid(), {"memory": {"limit": 128 * MIB, "swap": 256 * MIB}}, files)
    assert [path.rsplit("/", 1)[1] for path, _ in writes] == [
        "memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_swap_without_swap_accounting_is_unsupported() -> None:
    with pytest.raises(Unsupported, match="swapaccount"):
        plan(hybrid(), {"memory": {"limit": 32 * MIB, "swap": 64 * MIB}})
    # unlimited swap needs no accounting: the limit alone is written
    assert plan(hybrid(), {"memory": {"limit": -1}}) == [(f"{MEM}/memory.limit_in_bytes", "-1")]


def test_v1_kernel_memory_is_optional_and_the_period_retries_on_einval() -> None:
    cgroup = hybrid()
    writes = plan_resources(parse_resources({"memory": {"kernel": MIB},
                                             "cpu": {"quota": 2000, "period": 5000}}),
                            cgroup, FakeHost({}))
    kmem, period, quota = writes
    assert kmem == CgroupWrite(f"{MEM}/memory.kmem.limit_in_bytes", str(MIB), optional=True)
    assert period.on_einval == (CgroupWrite(f"{CPU}/cpu.cfs_quota_us", "2000"),
                                CgroupWrite(f"{CPU}/cpu.cfs_period_us", "5000"))
    assert quota == CgroupWrite(f"{CPU}/cpu.cfs_quota_us", "2000")


def test_hybrid_hugetlb_goes_to_v2_only_when_the_container_joins_it() -> None:
    files = {f"{UNIFIED}/hugetlb.2MB.max": "max", f"{UNIFIED}/hugetlb.2MB.rsvd.max": "max"}
    assert plan(hybrid(), {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MIB}]},
                files) == [(f"{UNIFIED}/hugetlb.2MB.max", str(4 * MIB)),
                           (f"{UNIFIED}/hugetlb.2MB.rsvd.max", str(4 * MIB))]
    with pytest.raises(Unsupported, match="hugetlb"):
        plan(hybrid(with_unified=False),
             {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MIB}]}, files)
    with pytest.raises(Unsupported, match="no 1GB huge pages"):
        plan(hybrid(), {"hugepageLimits": [{"pageSize": "1GB", "limit": 0}]}, files)


def test_hybrid_unified_keys_only_for_controllers_v2_holds() -> None:
    assert plan(hybrid(), {"unified": {"hugetlb.2MB.max": "1024"}}) == [
        (f"{UNIFIED}/hugetlb.2MB.max", "1024")]
    with pytest.raises(Unsupported, match=r"memory\.high"):
        plan(hybrid(), {"unified": {"memory.high": "1000000"}})


def test_v1_device_rules_and_blkio() -> None:
    devices = "/sys/fs/cgroup/devices/tsubo/c1"
    blkio = "/sys/fs/cgroup/blkio/tsubo/c1"
    files = {f"{blkio}/blkio.bfq.weight": "", f"{blkio}/blkio.bfq.weight_device": ""}
    writes = plan(hybrid(), {
        "devices": [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
        "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}]},
    }, files)
    assert writes == [
        (f"{blkio}/blkio.bfq.weight", "300"),
        (f"{blkio}/blkio.bfq.weight_device", "8:0 50"),
        (f"{blkio}/blkio.throttle.read_bps_device", "8:0 1024"),
        (f"{devices}/devices.deny", "a"),
        (f"{devices}/devices.allow", "c 1:3 rw"),
    ]


def test_v1_only_controllers_must_be_mounted() -> None:
    with pytest.raises(Unsupported, match="net_cls"):
        plan(hybrid(), {"network": {"classID": 1}})
    with pytest.raises(Unsupported, match="rdma"):
        plan(hybrid(), {"rdma": {"mlx5_0": {"hcaHandles": 3}}})


# --- v2 ---------------------------------------------------------------------------------------


def test_v2_converts_v1_values() -> None:
    files = {f"{V2}/memory.swap.max": "max", f"{V2}/io.weight": "default 100"}
    writes = plan(v2(), {
        "memory": {"limit": 32 * MIB, "swap": 64 * MIB, "reservation": -1},
        "cpu": {"shares": 1024, "quota": -1, "period": 100000},
        "blockIO": {"weight": 500,
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]},
        "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": -1}},
        "devices": [{"allow": False, "access": "rwm"}],
    }, files)
    assert writes == [
        (f"{V2}/memory.max", str(32 * MIB)),
        (f"{V2}/memory.swap.max", str(32 * MIB)),
        (f"{V2}/memory.low", "max"),
        (f"{V2}/cpu.weight", "39"),
        (f"{V2}/cpu.max", "max 100000"),
        (f"{V2}/io.weight", "default 4950"),
        (f"{V2}/io.max", "8:0 wiops=max"),
        (f"{V2}/rdma.max", "mlx5_0 hca_handle=3 hca_object=max"),
        # no device files in v2: nothing is written for the rules (the runtime keeps /dev
        # minimal instead)
    ]


def test_v2_keeps_the_current_quota_when_only_the_period_changes() -> None:
    writes = plan(v2(), {"cpu": {"period": 20000}}, {f"{V2}/cpu.max": "30000 100000\n"})
    assert writes == [(f"{V2}/cpu.max", "30000 20000")]


@pytest.mark.parametrize(
    ("memory", "field"),
    [({"swappiness": 10}, "swappiness"), ({"kernel": MIB}, "kernel"),
     ({"disableOOMKiller": True}, "disableOOMKiller")],
)
def test_v2_refuses_what_it_cannot_do(memory: dict[str, Any], field: str) -> None:
    with pytest.raises(Unsupported) as caught:
        plan(v2(), {"memory": memory})
    assert caught.value.object == f"linux.resources.memory.{field}"


def test_v2_swap_needs_a_memory_limit() -> None:
    with pytest.raises(InvalidArgument, match="needs a memory limit"):
        plan(v2(), {"memory": {"swap": 64 * MIB}})


# --- the applier ------------------------------------------------------------------------------


def test_apply_writes_in_order_skipping_only_optional_missing_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("")
    second.write_text("")
    apply_writes([CgroupWrite(str(first), "1"),
                  CgroupWrite(str(tmp_path / "gone"), "2", optional=True),
                  CgroupWrite(str(second), "3")])
    assert (first.read_text(), second.read_text()) == ("1", "3")
    with pytest.raises(Unsupported) as caught:
        apply_writes([CgroupWrite(str(tmp_path / "gone"), "2")])
    assert caught.value.errno == errno.ENOENT
    assert caught.value.operation == "set cgroup"
    assert caught.value.object == str(tmp_path / "gone")


def test_plans_are_read_only_values() -> None:
    write = CgroupWrite("/x", "1")
    with pytest.raises(AttributeError):
        write.value = "2"
    assert write == CgroupWrite("/x", "1") and write != CgroupWrite("/x", "1", optional=True)
    assert plan_resources(parse_resources({}), hybrid()) == ()


def test_apply_errors_are_tsubo_errors_with_a_hint(tmp_path: Path) -> None:
    directory = tmp_path / "memory.limit_in_bytes"
    directory.mkdir()  # writing a directory: EISDIR
    with pytest.raises(TsuboError) as caught:
        apply_writes([CgroupWrite(str(directory), "1")])
    assert caught.value.errno == errno.EISDIR
    assert "\n" not in str(caught.value)


def test_create_path_modules_import_nothing_slow() -> None:
    """The typed values and the planners stay off typing, dataclasses, enum, re, json and
    subprocess (docs/runtime.md: each is several ms of a ~20 ms container start)."""
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    code = ("import sys; import tsubo.kernel.cgroups, tsubo.kernel.cgroups.plan, "
            "tsubo.kernel.cgroups.v1, tsubo.kernel.cgroups.v2, tsubo.oci.runtime_spec, "
            "tsubo.oci.resources, tsubo.oci.seccomp, tsubo.kernel.procfs; "
            "print(sorted({'typing', 'dataclasses', 'enum', 're', 'json', 'subprocess'}"
            " & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path[:0] = [{src!r}]; "
                          + code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
