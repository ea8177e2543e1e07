"""Resources -> the plan of cgroupfs writes, each controller routed to the hierarchy that
holds it: the hybrid logic.

:func:`plan_resources` is pure but for what it asks
:class:`~tsubo.kernel.cgroups.HostFiles` (which files exist, the current memory
limit...): given a validated ``linux.resources`` and a cgroup (its directories, the host's
layout), it returns the writes, in order, as a tuple of
:class:`~tsubo.kernel.cgroups.CgroupWrite`; :meth:`~tsubo.kernel.cgroups.Cgroup.apply`
carries them out.
Fields this host cannot honour raise ``Unsupported`` naming the field or file, before
anything is written.

Routing (:class:`~tsubo.kernel.cgroups.Route`): a controller goes to its v1 hierarchy
when one has it mounted, else to the v2 hierarchy when that holds it (``cgroup.controllers``
of its root), else the field is Unsupported. On a hybrid host (v1 hierarchies plus a
cgroup2 mount, which holds what v1 lacks: hugetlb on the machine this was written on) each
controller thus lands where the kernel enforces it; crun refuses such hosts. Files named
alike in both versions (``cpuset.*``, ``pids.max``, ``rdma.max``, ``cpu.idle``, huge pages
but for the suffix) and the device rules every container carries (only v1 enforces them)
are planned here; the rest in ``v1.py`` and ``v2.py``, imported only when a controller is
routed to them.
"""

from __future__ import annotations

import errno

from tsubo.errors import Unsupported
from tsubo.kernel.cgroups import HOST, OP, UNIFIED, CgroupWrite, Route, limit_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.kernel.cgroups import Cgroup, HostFiles
    from tsubo.kernel.cgroups.resources import (
        CpuSpec,
        DeviceRuleSpec,
        HugepageSpec,
        MemorySpec,
        RdmaSpec,
        ResourcesSpec,
    )


def plan_resources(resources: ResourcesSpec, cgroup: Cgroup,
                   host: HostFiles = HOST) -> tuple[CgroupWrite, ...]:
    """The writes that apply *resources* to *cgroup* (its directories and the host's
    layout), in the order the kernel needs them: :meth:`Cgroup.apply` takes them."""
    paths, layout = cgroup.paths, cgroup.layout
    route = Route(paths, layout)
    writes: list[CgroupWrite] = []
    cpu = resources.cpu
    if cpu is not None and (cpu.cpus or cpu.mems):
        directory, _ = route.require("cpuset", "linux.resources.cpu.cpus")
        if cpu.cpus:
            writes.append(CgroupWrite(directory + "/cpuset.cpus", cpu.cpus))
        if cpu.mems:
            writes.append(CgroupWrite(directory + "/cpuset.mems", cpu.mems))
    if resources.memory is not None:
        writes += _memory(resources.memory, route, host)
    if cpu is not None:
        writes += _cpu(cpu, route, host)
    if resources.pids_limit is not None:
        directory, _ = route.require("pids", "linux.resources.pids")
        writes.append(CgroupWrite(directory + "/pids.max", pids_max(resources.pids_limit)))
    block_io = resources.block_io
    if block_io is not None and (block_io.weight is not None or block_io.leaf_weight is not None
                                 or block_io.weight_devices or block_io.read_bps
                                 or block_io.write_bps or block_io.read_iops
                                 or block_io.write_iops):
        controller = "blkio" if route.target("blkio") else "io"
        directory, version = route.require(controller, "linux.resources.blockIO")
        if version == 1:
            from tsubo.kernel.cgroups import v1

            writes += v1.block_io(directory, block_io, host)
        else:
            from tsubo.kernel.cgroups import v2

            writes += v2.block_io(directory, block_io, host)
    if resources.hugepage_limits:
        writes += _hugepages(resources.hugepage_limits, route, host)
    if resources.network is not None:
        from tsubo.kernel.cgroups import v1

        writes += v1.network(paths, resources.network)
    if resources.rdma:
        writes += _rdma(resources.rdma, route)
    devices_dir = paths.get("devices")
    if resources.devices is not None and devices_dir is not None:
        # v1 only: cgroup v2 has no device files (see v2.py); nothing is written there
        writes += [CgroupWrite(f"{devices_dir}/{name}", line)
                   for name, line in device_rules(resources.devices)]
    if resources.unified:
        from tsubo.kernel.cgroups import v2

        writes += v2.unified(paths.get(UNIFIED), resources.unified, layout)
    return tuple(writes)


def pids_max(limit: int) -> str:
    """``pids.max``: a positive limit, or ``max`` for 0 and below (OCI: unlimited)."""
    return str(limit) if limit > 0 else "max"


def _memory(memory: MemorySpec, route: Route, host: HostFiles) -> list[CgroupWrite]:
    # 0 means "unset" for these (as in runc); swappiness 0 is a value
    limit = memory.limit or None
    swap = memory.swap or None
    reservation = memory.reservation or None
    kernel = memory.kernel or None
    kernel_tcp = memory.kernel_tcp or None
    swappiness = memory.swappiness
    disable_oom = memory.disable_oom_killer
    if (limit is None and swap is None and reservation is None and kernel is None
            and kernel_tcp is None and swappiness is None and not disable_oom):
        return []
    directory, version = route.require("memory", "linux.resources.memory")
    if version == 1:
        from tsubo.kernel.cgroups import v1

        return v1.memory(directory, limit, swap, reservation, kernel, kernel_tcp, swappiness,
                         disable_oom, memory.check_before_update, host)
    from tsubo.kernel.cgroups import v2

    return v2.memory(directory, limit, swap, reservation, kernel, kernel_tcp, swappiness,
                     disable_oom, memory.check_before_update, host)


def _cpu(cpu: CpuSpec, route: Route, host: HostFiles) -> list[CgroupWrite]:
    shares = cpu.shares or None
    quota = cpu.quota or None
    period = cpu.period or None
    rt_runtime = cpu.realtime_runtime or None
    rt_period = cpu.realtime_period or None
    if (shares is None and quota is None and period is None and cpu.burst is None
            and rt_runtime is None and rt_period is None and cpu.idle is None):
        return []
    directory, version = route.require("cpu", "linux.resources.cpu")
    if version == 1:
        from tsubo.kernel.cgroups import v1

        writes = v1.cpu(directory, shares, quota, period, cpu.burst, rt_runtime, rt_period)
    else:
        from tsubo.kernel.cgroups import v2

        writes = v2.cpu(directory, shares, quota, period, cpu.burst, rt_runtime, rt_period,
                        host)
    if cpu.idle is not None:
        writes.append(CgroupWrite(directory + "/cpu.idle", str(cpu.idle)))
    return writes


def _hugepages(limits: Sequence[HugepageSpec], route: Route,
               host: HostFiles) -> list[CgroupWrite]:
    directory, version = route.require("hugetlb", "linux.resources.hugepageLimits")
    writes = []
    for item in limits:
        if version == 1:
            from tsubo.kernel.cgroups.v1 import hugetlb_file

            value = str(item.limit)
        else:
            from tsubo.kernel.cgroups.v2 import hugetlb_file

            value = limit_text(item.limit)
        limit_file = hugetlb_file(directory, item.page_size)
        if not host.exists(limit_file):
            raise Unsupported(OP, limit_file, errno=errno.ENOENT,
                              detail=f"no {item.page_size} huge pages on this host")
        writes.append(CgroupWrite(limit_file, value))
        # the reservation counter (kernel >= 5.7) gets the same limit, as runc does
        rsvd_file = hugetlb_file(directory, f"{item.page_size}.rsvd")
        if host.exists(rsvd_file):
            writes.append(CgroupWrite(rsvd_file, value))
    return writes


def _rdma(limits: Sequence[RdmaSpec], route: Route) -> list[CgroupWrite]:
    directory, _ = route.require("rdma", "linux.resources.rdma")
    writes = []
    for item in limits:
        parts = [item.device]
        if item.hca_handles is not None:
            parts.append(f"hca_handle={limit_text(item.hca_handles)}")
        if item.hca_objects is not None:
            parts.append(f"hca_object={limit_text(item.hca_objects)}")
        if len(parts) > 1:
            writes.append(CgroupWrite(directory + "/rdma.max", " ".join(parts)))
    return writes


def device_rules(devices: Sequence[DeviceRuleSpec]) -> list[tuple[str, str]]:
    """v1 device-cgroup writes for the ``linux.resources.devices`` rules, in order. (Here
    rather than in ``v1.py``, the only version with device files, because every container
    has rules: the create path then needs no ``v1.py`` unless it limits v1 resources.)

    Returns ``(file, line)`` pairs, starting with ``("devices.deny", "a")`` so that only the
    listed rules apply. A major/minor of None is ``*``. The kernel treats any line starting
    with ``a`` as "all devices, all access", so an ``a`` rule with partial access is spelt
    as ``c`` and ``b`` wildcard rules instead (never widening what was asked). The device
    cgroup knows only a/b/c: ``u`` (unbuffered character) is ``c``, ``p`` (a fifo) needs
    no rule.
    """
    writes = [("devices.deny", "a")]
    for rule in devices:
        dev_type = rule.type
        if dev_type == "p":
            continue
        if dev_type == "u":
            dev_type = "c"
        access = "".join(c for c in "rwm" if c in rule.access)
        major = "*" if rule.major is None else str(rule.major)
        minor = "*" if rule.minor is None else str(rule.minor)
        target = "devices.allow" if rule.allow else "devices.deny"
        if dev_type == "a":
            if access == "rwm" and major == "*" and minor == "*":
                writes.append((target, "a"))
                continue
            for kind in ("c", "b"):
                writes.append((target, f"{kind} {major}:{minor} {access}"))
            continue
        writes.append((target, f"{dev_type} {major}:{minor} {access}"))
    return writes
