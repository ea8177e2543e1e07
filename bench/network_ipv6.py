"""Benchmark: what dual stack costs a container's start, side by side in one run.

Inside a throwaway network namespace, two bridge networks: IPv4 only, and dual stack
(``--ipv6``). ``run -d`` on each, in interleaved rounds (the order flips every round; each
container removed untimed after its round); medians and their difference. The IPv6 address
is added with ``nodad`` and the container's ``accept_dad`` is off, so nothing waits for
duplicate address detection: the difference is one more lease, two more ``ip`` batch lines
and one sysctl write. A dual-stack container is also checked to answer ping6 (the figure is
of a working network).

    sudo .venv/bin/python bench/network_ipv6.py [--rounds 30]
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
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    bench = NetnsEngine("network-ipv6")
    tsubo = bench.tsubo
    problems: list[str] = []
    rows: list[list[str]] = []
    try:
        rootfs = bench.open()
        for argv in (["network", "create", "four", "--subnet", "10.89.0.0/16"],
                     ["network", "create", "dual", "--ipv6", "--subnet", "10.90.0.0/16",
                      "--subnet", "fd00:90::/64"]):
            made = run_command([*tsubo, *argv])
            if not made.ok:
                raise RuntimeError(f"{' '.join(argv)}: {made.error()}")

        def start(name: str, network: str) -> float:
            result = run_command([*tsubo, "run", "-d", "--name", name, "--network", network,
                                  "--rootfs", str(rootfs), "sleep", "600"])
            if not result.ok:
                raise RuntimeError(f"{name}: {result.error()}")
            return result.seconds * 1000

        times: dict[str, list[float]] = {"four": [], "dual": []}
        for round_number in range(args.rounds + 2):
            order = ["four", "dual"] if round_number % 2 else ["dual", "four"]
            for network in order:
                name = f"{network}{round_number}"
                took = start(name, network)
                if round_number >= 2:  # two warm-up rounds
                    times[network].append(took)
                if round_number == 2 and network == "dual":
                    ping = run_command([*tsubo, "exec", name, "ping", "-6", "-c", "1", "-W",
                                        "2", "fd00:90::1"])
                    if not ping.ok:
                        raise RuntimeError(f"ping6 from {name}: {ping.error()}")
                run_command([*tsubo, "rm", "-f", name])
        four, dual = statistics.median(times["four"]), statistics.median(times["dual"])
        rows += [["`run -d`, IPv4-only network (median ms)", f"{four:.1f}"],
                 ["`run -d`, dual-stack network (median ms)", f"{dual:.1f}"],
                 ["difference (ms)", f"{dual - four:+.1f}"]]
    except RuntimeError as error:
        problems.append(str(error))
    finally:
        problems += bench.close(["four", "dual"])
    if rows:
        print(f"dual stack, {os.cpu_count()} cores, {args.rounds} rounds\n")
        print(markdown_table(["what", "value"], rows))
    if problems:
        print("PROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
