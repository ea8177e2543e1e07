"""Benchmark: host memory per idle detached container, tsubo vs podman (runc).

Starts N (``--count``, default 50) busybox ``sleep 600`` containers with
``tsubo run -d --network none --rootfs ROOTFS``, measures, removes them all; then the same
with ``podman run -d --network none --runtime runc IMAGE`` (isolated podman, see
bench/common.py). Each engine's own processes are then summed from
``/proc/PID/smaps_rollup`` and divided by N:

- tsubo: the monitors (``monitor_pid`` of the running rows of ``R/tsubo.db``) plus any other
  live process whose argv mentions the engine root R;
- podman: the ``conmon`` whose argv has ``-c <id>`` for each container id podman printed,
  plus any other live process whose argv mentions podman's temp dir.

PSS (proportional set size: shared pages divided among their sharers) is the figure to read;
RSS and USS (private pages only) bracket it. Shared pages are split among all their users,
so PSS per container falls slowly as N grows (the interpreter's and libc's text is shared by
every monitor, and a little with this benchmark's own interpreter); USS does not. The
containers' own processes (the same busybox ``sleep``) are reported for reference.
Everything is removed afterwards and checked: no monitor or conmon of ours, mount, cgroup
(of one of our container ids) or temp dir remains (exit 1 and a PROBLEMS list if one did).

    sudo .venv/bin/python bench/engine_memory.py [--count 50]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    IMAGE,
    TSUBO,
    BenchError,
    Memory,
    Podman,
    Sandbox,
    alive,
    conmon_pids,
    live_processes_where,
    make_busybox_rootfs,
    make_tar,
    markdown_table,
    reap_zombie_children,
    require,
    run_command,
    tool_version,
    total_memory,
)

REMOVE_TIMEOUT = 120.0


@dataclass
class Measurement:
    engine: str
    helper: str  # what the engine's per-container processes are
    count: int
    engine_memory: Memory = field(default_factory=Memory)
    container_memory: Memory = field(default_factory=Memory)
    start_ms: list[float] = field(default_factory=list)
    others: dict[int, str] = field(default_factory=dict)  # engine processes besides helpers


class Phase:
    """Start/measure/remove for one engine; :meth:`cleanup` must leave none of its
    helpers alive."""

    def __init__(self, sandbox: Sandbox, count: int, settle: float) -> None:
        self.sandbox = sandbox
        self.count = count
        self.settle = settle
        self.ids: list[str] = []

    def start_all(self, start: Callable[[int], list[str]], env: dict[str, str] | None,
                  measurement: Measurement) -> None:
        for number in range(self.count):
            result = run_command(start(number), env=env, cwd=self.sandbox.tmp)
            if not result.ok:
                raise BenchError(f"{measurement.engine}: start failed:\n{result.describe()}")
            container_id = result.stdout.strip().splitlines()[-1]
            self.ids.append(container_id)
            self.sandbox.container_ids.add(container_id)
            measurement.start_ms.append(result.seconds * 1000)
        time.sleep(self.settle)


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Reap until none of *pids* is alive; returns those still alive after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        reap_zombie_children()
        left = {pid for pid in pids if alive(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


class TsuboPhase(Phase):
    def __init__(self, sandbox: Sandbox, count: int, settle: float, rootfs: Path) -> None:
        super().__init__(sandbox, count, settle)
        self.root = sandbox.tmp / "tsubo"
        self.rootfs = rootfs
        self.helpers: set[int] = set()

    def cli(self, *args: str) -> list[str]:
        return [str(TSUBO), "--root", str(self.root), *args]

    def measure(self) -> Measurement:
        measurement = Measurement("tsubo", "monitor (python)", self.count)
        self.start_all(
            lambda _n: self.cli("run", "-d", "--network", "none", "--rootfs", str(self.rootfs),
                                "sleep", "600"),
            None, measurement,
        )
        uri = f"file:{self.root / 'tsubo.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            rows = db.execute(
                "SELECT id, pid, monitor_pid FROM containers WHERE state = 'running'"
            ).fetchall()
        running = {row[0]: (int(row[1]), int(row[2])) for row in rows}
        if set(running) != set(self.ids):
            raise BenchError(f"tsubo: running rows {sorted(running)} != started {self.ids}")
        containers = {pid for pid, _monitor in running.values()}
        monitors = {monitor for _pid, monitor in running.values()}
        self.helpers |= monitors
        dead = sorted(pid for pid in monitors | containers if not alive(pid))
        if dead:
            raise BenchError(f"tsubo: recorded pids not alive: {dead}")
        root = str(self.root)
        measurement.others = live_processes_where(
            lambda pid, argv: pid not in monitors | containers
            and any(root in arg for arg in argv)
        )
        self.helpers |= set(measurement.others)
        measurement.engine_memory = total_memory(monitors | set(measurement.others))
        measurement.container_memory = total_memory(containers)
        return measurement

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        if self.root.exists():
            ids = run_command(self.cli("ps", "-aq")).stdout.split()
            if ids:
                result = run_command(self.cli("rm", "-f", *ids), timeout=REMOVE_TIMEOUT)
                if not result.ok:
                    problems.append(f"tsubo rm -f: {result.describe()}")
            left = run_command(self.cli("ps", "-aq")).stdout.split()
            if left:
                problems.append(f"tsubo containers left after rm -f: {left}")
        root = str(self.root)
        survivors = wait_gone(self.helpers, 15.0) | set(
            live_processes_where(lambda _pid, argv: any(root in arg for arg in argv))
        )
        if survivors:
            problems.append(f"tsubo processes of ours still alive: {sorted(survivors)}")
        return problems


class PodmanPhase(Phase):
    def __init__(self, sandbox: Sandbox, count: int, settle: float, podman: Podman) -> None:
        super().__init__(sandbox, count, settle)
        self.podman = podman
        self.helpers: set[int] = set()

    def measure(self) -> Measurement:
        pm = self.podman
        measurement = Measurement("podman (runc)", "conmon (C)", self.count)
        self.start_all(
            lambda _n: pm.argv("run", "-d", "--pull", "never", "--network", "none",
                               "--runtime", pm.runc, IMAGE, "sleep", "600"),
            pm.env, measurement,
        )
        conmons = conmon_pids(self.ids)
        self.helpers |= set(conmons.values())
        missing = sorted(set(self.ids) - set(conmons))
        if missing:
            raise BenchError(f"podman: no conmon found for {missing}")
        pids = pm.ok("inspect", "--format", "{{.State.Pid}}", *self.ids).split()
        containers = {int(pid) for pid in pids}
        if len(containers) != self.count or 0 in containers:
            raise BenchError(f"podman: container pids {pids}")
        tmp = str(self.sandbox.tmp)
        known = set(conmons.values()) | containers
        measurement.others = live_processes_where(
            lambda pid, argv: pid not in known and any(tmp in arg for arg in argv)
        )
        self.helpers |= set(measurement.others)
        measurement.engine_memory = total_memory(set(conmons.values()) | set(measurement.others))
        measurement.container_memory = total_memory(containers)
        return measurement

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        if self.ids:
            result = self.podman.run("rm", "-f", "-t", "0", "--ignore", *self.ids,
                                     timeout=REMOVE_TIMEOUT)
            if not result.ok:
                problems.append(f"podman rm -f: {result.describe()}")
        survivors = wait_gone(self.helpers, 15.0) | set(conmon_pids(self.ids).values())
        if survivors:
            problems.append(f"conmon/podman processes of ours still alive: {sorted(survivors)}")
        return problems


def kib(value: float) -> str:
    return f"{value:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Needs root, podman, conmon, runc, unshare and busybox-static.",
    )
    parser.add_argument("--count", type=int, default=50,
                        help="detached containers per engine (default 50)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait after the last start before measuring (default 2)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be >= 1")
    try:
        tools = require("podman", "conmon", "runc", "unshare", "tar")
    except BenchError as error:
        print(f"engine_memory: {error}", file=sys.stderr)
        return 2

    sandbox = Sandbox("tsubo-bench-engine-memory-")
    problems: list[str] = []
    results: list[Measurement] = []
    podman: Podman | None = None
    phases: list[TsuboPhase | PodmanPhase] = []
    try:
        rootfs = make_busybox_rootfs(sandbox.tmp / "rootfs")
        tar = make_tar(rootfs, sandbox.tmp / "busybox.tar")
        podman = Podman(tools["podman"], tools["runc"], sandbox.tmp)
        podman.setup(tar)
        sandbox.expected_mounts |= podman.expected_mounts
        phases = [TsuboPhase(sandbox, args.count, args.settle, rootfs),
                  PodmanPhase(sandbox, args.count, args.settle, podman)]
        for phase in phases:
            print(f"{type(phase).__name__}: starting {args.count} containers", file=sys.stderr)
            try:
                results.append(phase.measure())
            finally:
                problems += phase.cleanup()
        versions = [tool_version([tools[name], "--version"])
                    for name in ("podman", "runc", "conmon")]
        versions.append(tool_version([str(TSUBO), "--version"]))
    except BenchError as error:
        problems.append(str(error))
    finally:
        if podman is not None and podman.driver:
            sandbox.container_ids |= podman.container_ids()  # its cgroups are ours to check
            problems += podman.teardown()
        problems += sandbox.close()

    if len(results) == 2:
        n = args.count
        driver = podman.driver if podman else "?"
        print(f"Host memory per idle detached container (`sleep 600`, busybox), {n} containers "
              f"per engine, {os.cpu_count()} cores; podman storage: {driver}; kB from "
              "/proc/PID/smaps_rollup, summed over the engine's processes, divided by the "
              "count\n")
        print(f"versions: {'; '.join(versions)}\n")
        podman_pss = results[1].engine_memory.pss / n
        rows = []
        for m in results:
            engine = m.engine_memory
            rows.append([
                m.engine,
                f"{m.helper} x{engine.processes - len(m.others)}"
                + (f" + {len(m.others)} other" if m.others else ""),
                kib(engine.pss / n),
                kib(engine.rss / n),
                kib(engine.uss / n),
                f"{(engine.pss / n) / podman_pss:.2f}" if podman_pss else "-",
                kib(m.container_memory.pss / n),
                f"{statistics.median(m.start_ms):.0f}",
            ])
        print(markdown_table(
            ["engine", "engine processes", "PSS / container", "RSS / container",
             "USS / container", "PSS / podman's", "container (`sleep`) PSS", "run -d median ms"],
            rows,
        ))
        for m in results:
            if m.others:
                print(f"\n{m.engine}: other engine processes counted: {m.others}")
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
