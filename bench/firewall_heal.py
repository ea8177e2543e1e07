"""Benchmark: how long tsubo's firewall stays broken after a host tool wipes it.

Inside a throwaway network namespace: one bridge network, two running containers (so the
monitor watches nftables), and a host forward chain with a drop policy. Each round runs
``nft flush ruleset`` (what a firewall service's restart does), puts the host's drop chain
back at once, and times until tsubo's table and its accept rule in the host chain are there
again — polling ``nft -j list ruleset`` as fast as it answers (~3 ms a look, part of the
figure). Rounds are spaced so the monitor never takes them for a fight (it backs off after
5 repairs within 10 s). Reports median and p90; podman/netavark have no equivalent (their
rules stay gone until `podman network reload`), so there is no side-by-side row.

    sudo .venv/bin/python bench/firewall_heal.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from common import (
    NetnsEngine,
    markdown_table,
    median_p90,
    run_command,
)

SPACING = 2.6  # seconds between rounds: at most 4 repairs in any 10 s


def _whole(prefix: list[str]) -> bool:
    listed = run_command([*prefix, "nft", "-j", "list", "ruleset"])
    if not listed.ok:
        return False
    items = json.loads(listed.stdout)["nftables"]
    has_table = any(item.get("table", {}).get("name") == "tsubo" for item in items)
    accepted = any(item.get("rule", {}).get("table") == "hostfilter" for item in items)
    return has_table and accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    bench = NetnsEngine("firewall-heal")
    prefix, tsubo = bench.prefix, bench.tsubo
    host_chain = [["nft", "add", "table", "inet", "hostfilter"],
                  ["nft", "add", "chain", "inet", "hostfilter", "forward",
                   "{ type filter hook forward priority 0; policy drop; }"]]
    problems: list[str] = []
    times: list[float] = []
    try:
        rootfs = bench.open()
        for argv in host_chain:
            run_command([*prefix, *argv])
        run_command([*tsubo, "network", "create", "heal", "--subnet", "10.89.40.0/24"])
        for name in ("h1", "h2"):
            started = run_command([*tsubo, "run", "-d", "--name", name, "--network", "heal",
                                   "--rootfs", str(rootfs), "sleep", "600"])
            if not started.ok:
                problems.append(f"run {name}: {started.error()}")
                return 1
        for _ in range(args.rounds):
            time.sleep(SPACING)
            run_command([*prefix, "nft", "flush", "ruleset"])
            begin = time.monotonic()
            for argv in host_chain:
                run_command([*prefix, *argv])
            while not _whole(prefix):
                if time.monotonic() - begin > 10:
                    problems.append("not restored within 10 s")
                    break
            times.append((time.monotonic() - begin) * 1000)
    finally:
        problems += bench.close(["heal"])
    if times:
        median, p90 = median_p90(times)
        print(f"time from `nft flush ruleset` to tsubo's firewall whole again, {len(times)} "
              f"rounds, {os.cpu_count()} cores\n")
        print(markdown_table(["median ms", "p90 ms", "max ms"],
                             [[f"{median:.0f}", f"{p90:.0f}", f"{max(times):.0f}"]]))
        print(f"\n(mean {statistics.mean(times):.0f} ms)")
    if problems:
        print("PROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
