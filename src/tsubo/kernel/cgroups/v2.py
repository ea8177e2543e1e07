"""cgroup v2: the files the unified hierarchy has for each resource, and v1 values turned
into v2 ones.

Pure planners (``plan.py`` routes a controller here when the v2 hierarchy holds it, on v2
and on hybrid hosts): each turns one part of ``linux.resources`` into
:class:`~tsubo.kernel.cgroups.CgroupWrite` items for the container's v2 directory.
The OCI values are v1's (``cpu.shares``, ``blkio.weight``, memory+swap), converted as runc
and crun do. v2 has no device files (they need an eBPF program, which tsubo does not load),
no per-cgroup swappiness, kernel-memory limits, real-time limits or leaf weights, and
cannot disable the OOM killer: asking for those is Unsupported, never ignored (``kernel``
and ``kernelTCP`` of 0 or -1 count as unset).
"""

from __future__ import annotations

import errno

from tsubo.errors import InvalidArgument, Unsupported
from tsubo.kernel.cgroups import OP, CgroupWrite, first_existing, limit_text, unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.kernel.cgroups import CgroupLayout, HostFiles
    from tsubo.kernel.cgroups.resources import BlockIOSpec

_THROTTLE_KEYS = (("read_bps", "rbps"), ("write_bps", "wbps"), ("read_iops", "riops"),
                  ("write_iops", "wiops"))


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` (2..262144) -> v2 ``cpu.weight`` (1..10000), as runc and crun do."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 ``blkio.weight`` (10..1000) -> v2 ``io.weight`` (1..10000), as runc does."""
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def cpu_max(quota: int | None, period: int | None, current_quota: str = "max") -> str | None:
    """The v2 ``cpu.max`` line: ``"<quota|max> [<period>]"``, or None when nothing is set.

    ``quota`` -1 (any negative) is unlimited (``max``); 0/None means unset. Without a period
    the kernel keeps the current one; without a quota we keep ``current_quota`` (the first
    field of the current ``cpu.max``) rather than silently lifting the limit.
    """
    if not quota:
        quota = None
    if not period:
        period = None
    if quota is None and period is None:
        return None
    quota_text = current_quota if quota is None else ("max" if quota < 0 else str(quota))
    return quota_text if period is None else f"{quota_text} {period}"


def memory_swap_v2(limit: int | None, swap: int | None) -> str | None:
    """v2 ``memory.swap.max`` from OCI values (``swap`` is memory+swap, as in v1 memsw).

    Returns None when nothing is to be written, ``"max"`` for unlimited, else
    ``swap - limit``. ``limit`` -1 with no swap makes swap unlimited too (runc's rule).
    """
    limit = limit or None
    swap = swap or None
    if swap is None:
        return "max" if limit == -1 else None
    if swap == -1:
        return "max"
    if limit is None or limit == -1:
        raise InvalidArgument(
            OP, "linux.resources.memory.swap", detail="a swap limit needs a memory limit"
        )
    if swap < limit:
        raise InvalidArgument(
            OP,
            "linux.resources.memory.swap",
            detail=f"memory+swap limit {swap} is below the memory limit {limit}",
        )
    return str(swap - limit)


def memory(directory: str, limit: int | None, swap: int | None, reservation: int | None,
           kernel: int | None, kernel_tcp: int | None, swappiness: int | None,
           disable_oom: bool, check: bool, host: HostFiles) -> list[CgroupWrite]:
    """The memory controller's writes (0 already turned into None: unset)."""
    where = "linux.resources.memory"
    for name, value in (("kernel", kernel), ("kernelTCP", kernel_tcp)):
        if value is not None and value > 0:
            raise unsupported(f"{where}.{name}", "kernel memory limits do not exist in cgroup v2")
    if swappiness is not None:
        raise unsupported(f"{where}.swappiness", "cgroup v2 has no per-cgroup swappiness")
    if disable_oom:
        raise unsupported(f"{where}.disableOOMKiller", "cgroup v2 cannot disable the OOM killer")
    swap_value = memory_swap_v2(limit, swap)
    if check and limit is not None and limit != -1:
        usage = int(host.read(directory + "/memory.current"))
        if limit < usage:
            raise InvalidArgument(OP, directory + "/memory.max",
                                  detail=f"limit {limit} is below current usage {usage}")
    writes = []
    if limit is not None:
        writes.append(CgroupWrite(directory + "/memory.max", limit_text(limit)))
    if swap_value is not None:
        swap_file = directory + "/memory.swap.max"
        if host.exists(swap_file):
            writes.append(CgroupWrite(swap_file, swap_value))
        elif swap_value not in ("max", "0"):
            raise Unsupported(
                OP,
                swap_file,
                errno=errno.ENOENT,
                detail="swap accounting is not available",
                hint="boot the kernel with swapaccount=1",
            )
    if reservation is not None:
        writes.append(CgroupWrite(directory + "/memory.low", limit_text(reservation)))
    return writes


def cpu(directory: str, shares: int | None, quota: int | None, period: int | None,
        burst: int | None, rt_runtime: int | None, rt_period: int | None,
        host: HostFiles) -> list[CgroupWrite]:
    """The cpu controller's writes (``cpu.weight``, ``cpu.max``, ``cpu.max.burst``)."""
    if rt_runtime is not None or rt_period is not None:
        raise unsupported("linux.resources.cpu.realtimeRuntime",
                          "cgroup v2 has no real-time cpu limits")
    writes = []
    if shares is not None:
        writes.append(CgroupWrite(directory + "/cpu.weight", str(shares_to_weight(shares))))
    current = "max"
    if quota is None and period is not None:
        current = host.read(directory + "/cpu.max").split()[0]
    line = cpu_max(quota, period, current)
    if line is not None:
        writes.append(CgroupWrite(directory + "/cpu.max", line))
    if burst is not None:
        writes.append(CgroupWrite(directory + "/cpu.max.burst", str(burst)))
    return writes


def block_io(directory: str, block_io: BlockIOSpec, host: HostFiles) -> list[CgroupWrite]:
    """The io controller's writes: ``io.bfq.weight`` takes blkio's 1..1000 scale,
    ``io.weight`` its own 1..10000; throttles go to ``io.max`` (0 is ``max``)."""
    where = "linux.resources.blockIO"
    if block_io.leaf_weight is not None:
        raise unsupported(where + ".leafWeight", "cgroup v2 has no leaf weights")
    bfq = host.exists(directory + "/io.bfq.weight")
    writes = []
    if block_io.weight is not None:
        if bfq:
            writes.append(CgroupWrite(directory + "/io.bfq.weight", str(block_io.weight)))
        else:
            weight_file = first_existing(host, directory, ("io.weight",), where + ".weight")
            writes.append(CgroupWrite(weight_file,
                                      f"default {blkio_weight_to_io_weight(block_io.weight)}"))
    for index, device in enumerate(block_io.weight_devices):
        number = f"{device.major}:{device.minor}"
        if device.leaf_weight is not None:
            raise unsupported(f"{where}.weightDevice[{index}].leafWeight",
                              "cgroup v2 has no leaf weights")
        if device.weight is not None:
            if bfq:
                writes.append(CgroupWrite(directory + "/io.bfq.weight",
                                          f"{number} {device.weight}"))
            else:
                writes.append(CgroupWrite(
                    directory + "/io.weight",
                    f"{number} {blkio_weight_to_io_weight(device.weight)}"))
    for attribute, key in _THROTTLE_KEYS:
        for rate in getattr(block_io, attribute):
            writes.append(CgroupWrite(directory + "/io.max",
                                      f"{rate.major}:{rate.minor} {key}={rate.rate or 'max'}"))
    return writes


def hugetlb_file(directory: str, page_size: str) -> str:
    return f"{directory}/hugetlb.{page_size}.max"


def unified(directory: str | None, entries: Sequence[tuple[str, str]],
            layout: CgroupLayout) -> list[CgroupWrite]:
    """``linux.resources.unified``: v2 file -> value, written as given, only to a controller
    the v2 hierarchy holds here (``cgroup.*`` core files always)."""
    writes = []
    for key, value in entries:
        controller = key.split(".", 1)[0]
        if directory is None or (
            controller != "cgroup" and controller not in layout.unified_controllers
        ):
            raise unsupported(
                key,
                f"no cgroup v2 hierarchy holds the {controller} controller here "
                f"({layout.kind} cgroups)",
            )
        writes.append(CgroupWrite(directory + "/" + key, value))
    return writes
