"""``stats``: what running containers use, read from their cgroup files, and ``top``:
their processes as the host's ``ps`` shows them.

A reading costs a few small file reads per container (cgroup files, the init's
``/proc/PID/net/dev``), no helper process: 50 containers refresh well within a frame.
CPU % is the CPU time used between two readings over the wall time between them, as
Docker's (its ``cpuDelta / systemDelta * onlineCPUs``): 100 % is one whole CPU.
"""

from __future__ import annotations

import time

from tsubo.engine import status
from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.core import EngineCore
    from tsubo.state.db import ContainerRow


class ContainerStats:
    """One row of ``stats``: sizes in bytes, CPU and memory in percent."""

    __slots__ = ("block_read", "block_write", "cpu_percent", "id", "memory", "memory_limit",
                 "memory_percent", "name", "net_rx", "net_tx", "pids")

    def __init__(self, container_id: str, name: str) -> None:
        self.id = container_id
        self.name = name
        self.cpu_percent = 0.0
        self.memory = 0
        self.memory_limit = 0
        self.memory_percent = 0.0
        self.net_rx = 0
        self.net_tx = 0
        self.block_read = 0
        self.block_write = 0
        self.pids = 0

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


class StatsSampler:
    """Readings of the running containers; each :meth:`sample` after the first gives CPU
    % since the one before (the first, since the container started)."""

    def __init__(self, engine: EngineCore) -> None:
        self.engine = engine
        self._previous: dict[str, tuple[int, float]] = {}
        self._host_memory = host_memory()

    def sample(self, rows: list[ContainerRow]) -> list[ContainerStats]:
        stats = []
        now = time.monotonic()
        for row in rows:
            if row.state not in (status.RUNNING, status.PAUSED):
                stats.append(ContainerStats(row.id, row.name))
                continue
            try:
                pid, usage = self.engine.runtime.usage(row.id)
            except (TsuboError, OSError):
                stats.append(ContainerStats(row.id, row.name))  # it exited meanwhile
                continue
            entry = ContainerStats(row.id, row.name)
            previous = self._previous.get(row.id)
            if previous is not None and now > previous[1]:
                spent = max(0, usage.cpu_ns - previous[0]) / 1e9
                entry.cpu_percent = spent / (now - previous[1]) * 100
            elif row.started_at:
                entry.cpu_percent = _since_start(usage.cpu_ns, row.started_at)
            self._previous[row.id] = (usage.cpu_ns, now)
            entry.memory = usage.memory
            entry.memory_limit = usage.memory_limit or self._host_memory
            if entry.memory_limit:
                entry.memory_percent = usage.memory * 100 / entry.memory_limit
            entry.pids = usage.pids
            entry.block_read, entry.block_write = usage.block_read, usage.block_write
            if '"network": "host"' not in row.options:
                entry.net_rx, entry.net_tx = _net_bytes(pid)
            stats.append(entry)
        return stats


def _since_start(cpu_ns: int, started_at: str) -> float:
    import calendar

    main, _, fraction = started_at.rstrip("Z").partition(".")
    try:
        started = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) \
            + float(f"0.{fraction or 0}")
    except ValueError:
        return 0.0
    elapsed = time.time() - started
    return cpu_ns / 1e9 / elapsed * 100 if elapsed > 0 else 0.0


def _net_bytes(pid: int) -> tuple[int, int]:
    """(received, sent) bytes over the interfaces of *pid*'s network namespace but lo."""
    try:
        with open(f"/proc/{pid}/net/dev", "rb") as dev:
            lines = dev.read().decode().splitlines()[2:]
    except OSError:
        return 0, 0
    received = sent = 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        received += int(fields[0])
        sent += int(fields[8])
    return received, sent


def host_memory() -> int:
    """MemTotal of the host, in bytes (0 if unreadable)."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo.read().decode().splitlines():
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# --- top ------------------------------------------------------------------------------------

def top(engine: EngineCore, ref: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """``top CONTAINER [ps OPTIONS]``: the host's ``ps`` (default ``-ef``) limited to the
    container's processes; (titles, rows), the last column holding the rest of the line."""
    from tsubo.kernel import helpers

    row = engine.refresh(engine.db.resolve_container(ref))
    status.check("top", row.name, row.state)
    pids = set(engine.runtime.pids(row.id))
    result = helpers.run(["ps", *(ps_args or ["-ef"])], operation="run ps",
                         obj=" ".join(["ps", *ps_args]))
    if not result.ok:
        raise InvalidArgument("top", " ".join(ps_args) or "-ef",
                              detail=f"ps failed: {helpers.error_line(result.stderr.decode())}")
    lines = result.stdout.decode(errors="replace").splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("top", " ".join(ps_args),
                              detail="couldn't find the PID field in ps output")
    column = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            rows.append(fields)
    return titles, rows


