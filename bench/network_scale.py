"""Benchmark: does the Nth container on a network start as fast as the first?

Starts N (default 200) detached `sleep` containers one after the other on one bridge
network (`tsubo run -d --network`), timing each start, inside a throwaway network namespace;
reports the median start time of the first ten and of the last ten, and their ratio (the
networking issue asks for no per-container rebuild of rules and no scan of all endpoints,
so the ratio should stay near 1). Removes everything afterwards.

    sudo .venv/bin/python bench/network_scale.py [--count 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from common import (
    NetnsEngine,
    markdown_table,
    run_command,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    bench = NetnsEngine("network-scale")
    tsubo = bench.tsubo
    problems: list[str] = []
    times: list[float] = []
    try:
        rootfs = bench.open()
        made = run_command([*tsubo, "network", "create", "scale", "--subnet", "10.89.0.0/16"])
        if not made.ok:
            problems.append(f"network create: {made.error()}")
            return 1
        for index in range(args.count):
            result = run_command([*tsubo, "run", "-d", "--name", f"s{index}", "--network",
                                  "scale", "--rootfs", str(rootfs), "sleep", "600"])
            if not result.ok:
                problems.append(f"container {index}: {result.error()}")
                break
            times.append(result.seconds * 1000)
    finally:
        problems += bench.close(["scale"])
    if len(times) >= 20:
        first = statistics.median(times[:10])
        last = statistics.median(times[-10:])
        print(f"`tsubo run -d --network` of {len(times)} containers on one network, "
              f"{os.cpu_count()} cores\n")
        print(markdown_table(["containers", "median start ms"], [
            ["1st-10th", f"{first:.1f}"], [f"{len(times) - 9}th-{len(times)}th", f"{last:.1f}"],
            ["last / first", f"{last / first:.2f}"]]))
    if problems:
        print("PROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
