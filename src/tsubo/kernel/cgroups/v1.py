"""cgroup v1: the files a v1 hierarchy has for each resource, and the order they need.

Pure planners (``plan.py`` routes a controller here when a v1 hierarchy holds it): each
turns one part of ``linux.resources`` into :class:`~tsubo.kernel.cgroups.CgroupWrite`
items for one cgroup directory, asking :class:`~tsubo.kernel.cgroups.HostFiles` what
the host has. Only v1 has ``net_cls`` and ``net_prio``, swappiness, kernel-memory limits and
the OOM killer switch (and device rules: see ``plan.py``).

Decisions
    * ``memory.memsw.limit_in_bytes`` (memory + swap) must stay >= the memory limit at every
      step: :func:`memsw_first` orders the two writes against the current limit.
    * ``kernel`` is written to ``memory.kmem.limit_in_bytes`` when the file exists and
      ignored when it does not or the kernel answers EOPNOTSUPP (modern kernels deprecated
      it and charge kernel memory to the memory limit anyway); ``kernelTCP`` must be
      honoured (Unsupported when absent).
    * ``-1`` for a limit with no swap given makes swap unlimited too (runc's rule).
"""

from __future__ import annotations

import errno

from tsubo.errors import InvalidArgument, Unsupported
from tsubo.kernel.cgroups import OP, CgroupWrite, first_existing, unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from tsubo.kernel.cgroups import HostFiles
    from tsubo.kernel.cgroups.resources import BlockIOSpec, NetworkSpec

_THROTTLE_FILES = (
    ("read_bps", "blkio.throttle.read_bps_device"),
    ("write_bps", "blkio.throttle.write_bps_device"),
    ("read_iops", "blkio.throttle.read_iops_device"),
    ("write_iops", "blkio.throttle.write_iops_device"),
)


def memsw_first(current_limit: int, swap: int) -> bool:
    """Whether v1 ``memory.memsw.limit_in_bytes`` must be written before the memory limit.

    The kernel keeps memsw >= limit at every step: when the new memsw is above the current
    memory limit (or unlimited), raise memsw first; otherwise lower the limit first.
    """
    return swap == -1 or current_limit < swap


def memory(directory: str, limit: int | None, swap: int | None, reservation: int | None,
           kernel: int | None, kernel_tcp: int | None, swappiness: int | None,
           disable_oom: bool, check: bool, host: HostFiles) -> list[CgroupWrite]:
    """The memory controller's writes (0 already turned into None: unset)."""
    limit_file = directory + "/memory.limit_in_bytes"
    memsw_file = directory + "/memory.memsw.limit_in_bytes"
    has_memsw = host.exists(memsw_file)
    if limit == -1 and swap is None and has_memsw:
        swap = -1
    if swap is not None and not has_memsw:
        if swap != -1:
            raise Unsupported(
                OP,
                memsw_file,
                errno=errno.ENOENT,
                detail="swap accounting is not available",
                hint="boot the kernel with swapaccount=1",
            )
        swap = None
    if check and limit is not None and limit != -1:
        usage = int(host.read(directory + "/memory.usage_in_bytes"))
        if limit < usage:
            raise InvalidArgument(OP, limit_file,
                                  detail=f"limit {limit} is below current usage {usage}")
    writes = []
    if limit is not None and swap is not None:
        pair = [CgroupWrite(memsw_file, str(swap)), CgroupWrite(limit_file, str(limit))]
        writes += pair if memsw_first(int(host.read(limit_file)), swap) else pair[::-1]
    elif limit is not None:
        writes.append(CgroupWrite(limit_file, str(limit)))
    elif swap is not None:
        writes.append(CgroupWrite(memsw_file, str(swap)))
    if reservation is not None:
        writes.append(CgroupWrite(directory + "/memory.soft_limit_in_bytes", str(reservation)))
    if kernel is not None:
        writes.append(CgroupWrite(directory + "/memory.kmem.limit_in_bytes", str(kernel),
                                  optional=True))
    if kernel_tcp is not None:
        writes.append(CgroupWrite(directory + "/memory.kmem.tcp.limit_in_bytes",
                                  str(kernel_tcp)))
    if swappiness is not None:
        writes.append(CgroupWrite(directory + "/memory.swappiness", str(swappiness)))
    if disable_oom:
        writes.append(CgroupWrite(directory + "/memory.oom_control", "1"))
    return writes


def cpu(directory: str, shares: int | None, quota: int | None, period: int | None,
        burst: int | None, rt_runtime: int | None, rt_period: int | None) -> list[CgroupWrite]:
    """The cpu controller's writes (CFS shares, quota and period, burst, real-time)."""
    writes = []
    if shares is not None:
        writes.append(CgroupWrite(directory + "/cpu.shares", str(shares)))
    quota_file = directory + "/cpu.cfs_quota_us"
    period_file = directory + "/cpu.cfs_period_us"
    if period is not None:
        # A shorter period can break the current quota's bandwidth rule against the
        # parent; runc retries with the quota first.
        retry = () if quota is None else (CgroupWrite(quota_file, str(quota)),
                                          CgroupWrite(period_file, str(period)))
        writes.append(CgroupWrite(period_file, str(period), on_einval=retry))
    if quota is not None:
        writes.append(CgroupWrite(quota_file, str(quota)))
    if burst is not None:
        writes.append(CgroupWrite(directory + "/cpu.cfs_burst_us", str(burst)))
    if rt_period is not None:
        writes.append(CgroupWrite(directory + "/cpu.rt_period_us", str(rt_period)))
    if rt_runtime is not None:
        writes.append(CgroupWrite(directory + "/cpu.rt_runtime_us", str(rt_runtime)))
    return writes


def block_io(directory: str, block_io: BlockIOSpec, host: HostFiles) -> list[CgroupWrite]:
    """The blkio controller's writes (CFQ or BFQ weight files, whichever the host has)."""
    where = "linux.resources.blockIO"
    writes = []
    if block_io.weight is not None:
        weight_file = first_existing(host, directory, ("blkio.weight", "blkio.bfq.weight"),
                                     where + ".weight")
        writes.append(CgroupWrite(weight_file, str(block_io.weight)))
    if block_io.leaf_weight is not None:
        leaf_file = first_existing(host, directory, ("blkio.leaf_weight",),
                                   where + ".leafWeight")
        writes.append(CgroupWrite(leaf_file, str(block_io.leaf_weight)))
    for index, device in enumerate(block_io.weight_devices):
        number = f"{device.major}:{device.minor}"
        if device.weight is not None:
            weight_file = first_existing(
                host, directory, ("blkio.weight_device", "blkio.bfq.weight_device"),
                f"{where}.weightDevice[{index}]")
            writes.append(CgroupWrite(weight_file, f"{number} {device.weight}"))
        if device.leaf_weight is not None:
            leaf_file = first_existing(host, directory, ("blkio.leaf_weight_device",),
                                       f"{where}.weightDevice[{index}].leafWeight")
            writes.append(CgroupWrite(leaf_file, f"{number} {device.leaf_weight}"))
    for attribute, name in _THROTTLE_FILES:
        for rate in getattr(block_io, attribute):
            writes.append(CgroupWrite(f"{directory}/{name}",
                                      f"{rate.major}:{rate.minor} {rate.rate}"))
    return writes


def hugetlb_file(directory: str, page_size: str) -> str:
    return f"{directory}/hugetlb.{page_size}.limit_in_bytes"


def network(paths: Mapping[str, str], network: NetworkSpec) -> list[CgroupWrite]:
    """``net_cls`` class id and ``net_prio`` priorities: v1-only controllers."""
    where = "linux.resources.network"
    writes = []
    if network.class_id is not None:
        directory = paths.get("net_cls")
        if directory is None:
            raise unsupported(where + ".classID", "no v1 net_cls controller mounted")
        writes.append(CgroupWrite(directory + "/net_cls.classid", str(network.class_id)))
    if network.priorities:
        directory = paths.get("net_prio")
        if directory is None:
            raise unsupported(where + ".priorities", "no v1 net_prio controller mounted")
        writes += [CgroupWrite(directory + "/net_prio.ifpriomap",
                               f"{item.name} {item.priority}") for item in network.priorities]
    return writes
