"""Benchmark: what publishing ports costs (issue 10's figures), side by side in one run.

Inside a throwaway network namespace, on one bridge network:

1. ``run -d`` with 32 published ports against none (interleaved rounds, each container
   removed untimed after its round): the median difference should be small (the ports are
   one nft transaction of a fixed shape, not a rewrite per port);
2. N containers (default 200) with 8 published ports each, started one after the other
   (and, interleaved, N with none, for the engine's own growth): the median start of the
   last ten against the first ten (no cost growing with the rules already there);
3. iperf3 throughput from the host to a container through a published port (the host's
   gateway address, DNAT in the output hook) against straight to the container's address
   (the server runs in the container's network namespace); three alternated runs each,
   medians.

    sudo .venv/bin/python bench/network_ports.py [--rounds 15] [--count 200] [--seconds 5]
        [--parts many,scale,iperf]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import (
    NetnsEngine,
    markdown_table,
    require,
    run_command,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--parts", default="many,scale,iperf",
                        help="which of the three to run (comma-separated)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    require("iperf3")
    bench = NetnsEngine("network-ports")
    prefix, tsubo = bench.prefix, bench.tsubo
    problems: list[str] = []
    rows: list[list[str]] = []
    try:
        rootfs = bench.open()
        made = run_command([*tsubo, "network", "create", "bench", "--subnet", "10.89.0.0/16",
                            "--gateway", "10.89.0.1"])
        if not made.ok:
            problems.append(f"network create: {made.error()}")
            return 1

        def start(name: str, *flags: str) -> float:
            result = run_command([*tsubo, "run", "-d", "--name", name, "--network", "bench",
                                  *flags, "--rootfs", str(rootfs), "sleep", "600"])
            if not result.ok:
                raise RuntimeError(f"{name}: {result.error()}")
            return result.seconds * 1000

        # 1. 32 ports against none
        none: list[float] = []
        many: list[float] = []
        for round_number in range(args.rounds + 2 if "many" in parts else 0):
            cases = [("n", ()), ("p", ("-p", "20000-20031:1000-1031"))]
            if round_number % 2:
                cases.reverse()
            for kind, flags in cases:
                took = start(f"{kind}{round_number}", *flags)
                if round_number >= 2:  # two warm-up rounds
                    (none if kind == "n" else many).append(took)
                run_command([*tsubo, "rm", "-f", f"{kind}{round_number}"])
        if many:
            rows += [["`run -d`, no published port (median ms)",
                      f"{statistics.median(none):.1f}"],
                     ["`run -d`, 32 published ports (median ms)",
                      f"{statistics.median(many):.1f}"],
                     ["difference (ms)",
                      f"{statistics.median(many) - statistics.median(none):+.1f}"]]

        # 2. the Nth container with 8 ports each, beside as many with none (interleaved:
        # what the engine's own growth is, and what publishing adds to it)
        with_ports: list[float] = []
        without: list[float] = []
        for i in range(args.count if "scale" in parts else 0):
            with_ports.append(start(f"s{i}", "-p", f"{21000 + 8 * i}-{21007 + 8 * i}:80-87"))
            without.append(start(f"z{i}"))
        for label, times in (("8 published ports", with_ports), ("no port", without)):
            if not times:
                continue
            first, last = statistics.median(times[:10]), statistics.median(times[-10:])
            rows += [[f"{label}: 1st-10th of {args.count} (median ms)", f"{first:.1f}"],
                     [f"{label}: {args.count - 9}th-{args.count}th (median ms)",
                      f"{last:.1f}"],
                     [f"{label}: last / first", f"{last / first:.2f}"]]

        # 3. throughput through the published port against straight to the container
        if "iperf" in parts:
            start("perf", "-p", "5201:5201")
            address = _address(tsubo, "perf")
            direct_runs: list[float] = []
            published_runs: list[float] = []
            for _ in range(3):  # alternated, medians: one run is at the mercy of the load
                direct_runs.append(_iperf(prefix, "perf", address, args.seconds))
                published_runs.append(_iperf(prefix, "perf", "10.89.0.1", args.seconds))
            direct = statistics.median(direct_runs)
            published = statistics.median(published_runs)
            rows += [["iperf3 host -> container address (Gbit/s)", f"{direct / 1e9:.2f}"],
                     ["iperf3 host -> published port (Gbit/s)", f"{published / 1e9:.2f}"],
                     ["published / direct", f"{published / direct:.3f}"]]
    except RuntimeError as error:
        problems.append(str(error))
    finally:
        problems += bench.close(["bench"])
    if rows:
        print(f"published ports, {os.cpu_count()} cores, {args.rounds} rounds\n")
        print(markdown_table(["what", "value"], rows))
    if problems:
        print("PROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


def _address(tsubo: list[str], name: str) -> str:
    info = json.loads(run_command([*tsubo, "network", "inspect", "bench"]).stdout)
    record = info[0] if isinstance(info, list) else info
    for container in record["Containers"].values():
        if container["Name"] == name:
            return str(container["IPv4Address"].split("/")[0])
    raise RuntimeError(f"{name} is not on the network")


def _iperf(prefix: list[str], container: str, address: str, seconds: int) -> float:
    """Bits per second received by an iperf3 server in *container*'s netns, the client
    in the host namespace connecting to *address*:5201."""
    server = subprocess.Popen(["ip", "netns", "exec", container, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        client = run_command([*prefix, "iperf3", "-J", "-c", address, "-t", str(seconds)],
                             timeout=seconds + 30)
        if not client.ok:
            raise RuntimeError(f"iperf3 to {address}: {client.error()} {client.stdout[-300:]}")
        return float(json.loads(client.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
