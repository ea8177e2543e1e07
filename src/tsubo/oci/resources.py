"""The parts of ``linux.resources`` beyond its device rules, as frozen values.

Memory, cpu, pids, blockIO, huge pages, network classes and priorities, rdma and unified
settings, validated once when ``runtime_spec.parse_resources`` reads a config that has any
of them (it imports this module only then: see :mod:`tsubo.oci`). Values are kept as the
config gives them (``0`` for "unset", ``-1`` for "unlimited"); what they mean on a given
host is ``kernel/cgroups``' business. Every error is an InvalidArgument naming the JSON
path of the bad value.
"""

from __future__ import annotations

from tsubo.oci import Frozen, as_bool, as_int, fail, objects_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.oci import JSONObject

_init = object.__setattr__


def _limit(data: JSONObject, key: str, path: str) -> int | None:
    """An optional integer of ``linux.resources``: -1 (unlimited) or more."""
    value = data.get(key)
    return None if value is None else as_int(value, f"{path}.{key}", minimum=-1)


def _text(data: JSONObject, key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "\n" in value:
        raise fail(f"{path}.{key}", "must be a string (one line)")
    return value


class MemoryResources(Frozen):
    """``linux.resources.memory``, as given (0: unset, -1: unlimited); ``swap`` is memory
    plus swap, as in cgroup v1; ``swappiness`` None when unset (Docker writes -1)."""

    __slots__ = ("check_before_update", "disable_oom_killer", "kernel", "kernel_tcp",
                 "limit", "reservation", "swap", "swappiness")
    limit: int | None
    reservation: int | None
    swap: int | None
    kernel: int | None
    kernel_tcp: int | None
    swappiness: int | None
    disable_oom_killer: bool
    check_before_update: bool

    def __init__(self, data: JSONObject, path: str = "linux.resources.memory") -> None:
        _init(self, "limit", _limit(data, "limit", path))
        _init(self, "reservation", _limit(data, "reservation", path))
        _init(self, "swap", _limit(data, "swap", path))
        _init(self, "kernel", _limit(data, "kernel", path))
        _init(self, "kernel_tcp", _limit(data, "kernelTCP", path))
        swappiness = _limit(data, "swappiness", path)
        if swappiness is not None and swappiness > 100:
            raise fail(f"{path}.swappiness", "must be 0..100")
        _init(self, "swappiness", None if swappiness == -1 else swappiness)
        _init(self, "disable_oom_killer",
              as_bool(data.get("disableOOMKiller"), f"{path}.disableOOMKiller"))
        _init(self, "check_before_update",
              as_bool(data.get("checkBeforeUpdate"), f"{path}.checkBeforeUpdate"))
        limit, swap = self.limit or -1, self.swap or -1
        if swap != -1 and limit != -1 and swap < limit:
            raise fail(f"{path}.swap",
                        f"memory+swap limit {swap} is below the memory limit {limit}")


class CpuResources(Frozen):
    """``linux.resources.cpu``, as given (0 or unset: None after the kernel code's rules)."""

    __slots__ = ("burst", "cpus", "idle", "mems", "period", "quota", "realtime_period",
                 "realtime_runtime", "shares")
    shares: int | None
    quota: int | None
    burst: int | None
    period: int | None
    realtime_runtime: int | None
    realtime_period: int | None
    cpus: str | None
    mems: str | None
    idle: int | None

    def __init__(self, data: JSONObject, path: str = "linux.resources.cpu") -> None:
        _init(self, "shares", _limit(data, "shares", path))
        _init(self, "quota", _limit(data, "quota", path))
        _init(self, "burst", _limit(data, "burst", path))
        period = _limit(data, "period", path)
        if period == -1:
            raise fail(f"{path}.period", "must be positive")
        _init(self, "period", period)
        _init(self, "realtime_runtime", _limit(data, "realtimeRuntime", path))
        _init(self, "realtime_period", _limit(data, "realtimePeriod", path))
        _init(self, "cpus", _text(data, "cpus", path))
        _init(self, "mems", _text(data, "mems", path))
        _init(self, "idle", _limit(data, "idle", path))


def _block_device(data: JSONObject, path: str) -> tuple[int, int]:
    major = as_int(data.get("major"), f"{path}.major", -1, minimum=0)
    minor = as_int(data.get("minor"), f"{path}.minor", -1, minimum=0)
    if major < 0 or minor < 0:
        raise fail(path, "needs major and minor numbers")
    return major, minor


class DeviceWeight(Frozen):
    """``blockIO.weightDevice[]``: a block device's weight and leaf weight."""

    __slots__ = ("leaf_weight", "major", "minor", "weight")
    major: int
    minor: int
    weight: int | None
    leaf_weight: int | None

    def __init__(self, data: JSONObject, path: str) -> None:
        major, minor = _block_device(data, path)
        _init(self, "major", major)
        _init(self, "minor", minor)
        _init(self, "weight", _limit(data, "weight", path))
        _init(self, "leaf_weight", _limit(data, "leafWeight", path))


class DeviceRate(Frozen):
    """``blockIO.throttle*Device[]``: a block device's bytes or I/O operations per second."""

    __slots__ = ("major", "minor", "rate")
    major: int
    minor: int
    rate: int

    def __init__(self, data: JSONObject, path: str) -> None:
        major, minor = _block_device(data, path)
        _init(self, "major", major)
        _init(self, "minor", minor)
        rate = data.get("rate")
        if rate is None:
            raise fail(f"{path}.rate", "is required")
        _init(self, "rate", as_int(rate, f"{path}.rate", minimum=0))


#: ``blockIO`` throttle lists -> attribute names
_THROTTLE_KEYS = (("throttleReadBpsDevice", "read_bps"), ("throttleWriteBpsDevice", "write_bps"),
                 ("throttleReadIOPSDevice", "read_iops"),
                 ("throttleWriteIOPSDevice", "write_iops"))


class BlockIO(Frozen):
    """``linux.resources.blockIO``."""

    __slots__ = ("leaf_weight", "read_bps", "read_iops", "weight", "weight_devices",
                 "write_bps", "write_iops")
    weight: int | None
    leaf_weight: int | None
    weight_devices: tuple[DeviceWeight, ...]
    read_bps: tuple[DeviceRate, ...]
    write_bps: tuple[DeviceRate, ...]
    read_iops: tuple[DeviceRate, ...]
    write_iops: tuple[DeviceRate, ...]

    def __init__(self, data: JSONObject, path: str = "linux.resources.blockIO") -> None:
        _init(self, "weight", _limit(data, "weight", path))
        _init(self, "leaf_weight", _limit(data, "leafWeight", path))
        _init(self, "weight_devices", tuple(
            DeviceWeight(item, where) for item, where in objects_at(data, "weightDevice", path)))
        for key, name in _THROTTLE_KEYS:
            _init(self, name, tuple(DeviceRate(item, where)
                                    for item, where in objects_at(data, key, path)))


class HugepageLimit(Frozen):
    """``linux.resources.hugepageLimits[]``: ``page_size`` like ``2MB``, ``limit`` in bytes."""

    __slots__ = ("limit", "page_size")
    page_size: str
    limit: int

    def __init__(self, data: JSONObject, path: str) -> None:
        size = _text(data, "pageSize", path)
        limit = _limit(data, "limit", path)
        if not size or not size.isalnum() or limit is None:
            raise fail(path, "needs pageSize (like 2MB) and limit")
        _init(self, "page_size", size)
        _init(self, "limit", limit)


class InterfacePriority(Frozen):
    """``linux.resources.network.priorities[]``."""

    __slots__ = ("name", "priority")
    name: str
    priority: int

    def __init__(self, data: JSONObject, path: str) -> None:
        name = _text(data, "name", path)
        priority = _limit(data, "priority", path)
        if not name or " " in name or priority is None:
            raise fail(path, "needs name and priority")
        _init(self, "name", name)
        _init(self, "priority", priority)


class NetworkResources(Frozen):
    """``linux.resources.network`` (cgroup v1's net_cls and net_prio)."""

    __slots__ = ("class_id", "priorities")
    class_id: int | None
    priorities: tuple[InterfacePriority, ...]

    def __init__(self, data: JSONObject, path: str = "linux.resources.network") -> None:
        _init(self, "class_id", _limit(data, "classID", path))
        _init(self, "priorities", tuple(InterfacePriority(item, where)
                                        for item, where in objects_at(data, "priorities", path)))


class RdmaLimit(Frozen):
    """One device of ``linux.resources.rdma``."""

    __slots__ = ("device", "hca_handles", "hca_objects")
    device: str
    hca_handles: int | None
    hca_objects: int | None

    def __init__(self, device: str, data: object, path: str) -> None:
        if not isinstance(data, dict) or not device or " " in device:
            raise fail(f"{path}.{device}", "must be an object named by a device")
        _init(self, "device", device)
        _init(self, "hca_handles", _limit(data, "hcaHandles", f"{path}.{device}"))
        _init(self, "hca_objects", _limit(data, "hcaObjects", f"{path}.{device}"))


def _section(data: JSONObject, key: str, path: str) -> JSONObject | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail(f"{path}.{key}", "must be an object")
    return value


def parse_sections(data: JSONObject, path: str) -> tuple[
        MemoryResources | None, CpuResources | None, int | None, BlockIO | None,
        tuple[HugepageLimit, ...], NetworkResources | None, tuple[RdmaLimit, ...],
        tuple[tuple[str, str], ...]]:
    """Everything of a ``linux.resources`` object but its device rules, in the order of
    :class:`~tsubo.oci.runtime_spec.Resources`' fields (memory, cpu, pids limit, blockIO,
    huge pages, network, rdma, unified)."""
    memory = _section(data, "memory", path)
    cpu = _section(data, "cpu", path)
    pids = _section(data, "pids", path)
    block_io = _section(data, "blockIO", path)
    network = _section(data, "network", path)
    rdma = _section(data, "rdma", path) or {}
    unified = _section(data, "unified", path) or {}
    for key, value in unified.items():
        where = f"{path}.unified.{key}"
        if not isinstance(value, str):
            raise fail(where, "must be a string")
        if not key or "/" in key or key.startswith(".") or "." not in key:
            raise fail(where, "not a cgroup v2 file name")
    return (
        None if memory is None else MemoryResources(memory, f"{path}.memory"),
        None if cpu is None else CpuResources(cpu, f"{path}.cpu"),
        None if pids is None else _limit(pids, "limit", f"{path}.pids"),
        None if block_io is None else BlockIO(block_io, f"{path}.blockIO"),
        tuple(HugepageLimit(item, where)
              for item, where in objects_at(data, "hugepageLimits", path)),
        None if network is None else NetworkResources(network, f"{path}.network"),
        tuple(RdmaLimit(device, limits, f"{path}.rdma") for device, limits in rdma.items()),
        tuple(unified.items()),
    )
