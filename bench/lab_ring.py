"""Benchmark: a ring of N nodes (N point-to-point links, a check per link) with `tsubo lab`.

For each size (default 25, 50, 100) writes a ring topology (node i's eth1 to node i+1's
eth2, a /30 per link, busybox `sleep` nodes from a rootfs folder), then times
`tsubo lab deploy`, `tsubo lab validate` (one ICMP check per link, over the link) and
`tsubo lab destroy`, inside a throwaway network namespace. The issue's bar: 100 nodes
deploy in <= 15 s and destroy in <= 5 s, growing linearly from 25 to 100.

    sudo .venv/bin/python bench/lab_ring.py [--sizes 25,50,100] [--mgmt] [--podman]

`--mgmt` gives every node containerlab's management network as well (one more veth
and an address per node, on an engine bridge network). `--podman` builds the same ring
with podman (runc) beside it, as containerlab would have to without its own veth
plumbing: a network per link (`podman network create`, a /29 each), every container on
its two networks (`podman run -d --network A --network B`), a check per link as
`podman exec NODE ping -c 1` over that link, then `podman rm -f` and `podman network rm`;
podman's storage and network configs are kept in the sandbox.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from common import (
    IMAGE,
    NetnsEngine,
    Podman,
    Result,
    make_tar,
    markdown_table,
    require,
    run_command,
)


def ring_file(path: Path, size: int, rootfs: Path, mgmt: bool) -> Path:
    lines = [f"name: ring{size}", *([] if mgmt else ["mgmt: {network: none}"]),
             "topology:", f"  defaults: {{tsubo: {{rootfs: {rootfs}}}, cmd: sleep 3600}}",
             "  nodes:"]
    lines += [f"    r{i}: {{}}" for i in range(size)]
    lines += ["  links:"]
    lines += [f'    - endpoints: ["r{i}:eth1", "r{(i + 1) % size}:eth2"]' for i in range(size)]
    lines += ["tsubo:", "  addresses:"]
    for i in range(size):
        base = 4 * i  # 10.77.<hi>.<lo>/30 per link
        a, b = base + 1, base + 2
        lines += [f"    r{i}:eth1: 10.77.{a >> 8}.{a & 255}/30",
                  f"    r{(i + 1) % size}:eth2: 10.77.{b >> 8}.{b & 255}/30"]
    lines += ["  checks:"]
    lines += [f"    - {{from: r{i}:eth1, to: r{(i + 1) % size}:eth2}}" for i in range(size)]
    path.write_text("\n".join(lines) + "\n")
    return path


def podman_ring(podman: Podman, wrap: list[str], size: int) -> tuple[list[object], list[str]]:
    """The ring with podman: (table row, problems)."""
    problems: list[str] = []
    # containers/image writes a cache under /var/lib/containers for root whatever --root
    # says: shadow it in a private mount namespace per command, as common.Podman's import
    target = "/var/lib/containers" if Path("/var/lib/containers").is_dir() else "/var/lib"
    shadow = f'mount --bind {shlex.quote(str(podman.tmp / "shadow"))} {target} && exec "$@"'
    wrap = [*wrap, "unshare", "--mount", "--propagation", "private", "sh", "-c", shadow, "sh"]

    def timed(commands: list[list[str]]) -> tuple[float, list[Result]]:
        results = [podman.run(*argv, wrap=wrap, timeout=120) for argv in commands]
        for result in results:
            if not result.ok:
                problems.append(result.describe().splitlines()[-1])
        return sum(result.seconds for result in results), results

    def subnet(link: int) -> tuple[str, str, str]:
        """A /29 per link: (subnet, address of the link's first node, of its second)."""
        base = 8 * link
        octets = f"10.78.{base >> 8}"
        return (f"{octets}.{base & 255}/29", f"{octets}.{(base & 255) + 2}",
                f"{octets}.{(base & 255) + 3}")

    networks = [["network", "create", "--subnet", subnet(i)[0], f"ring{size}-{i}"]
                for i in range(size)]
    runs = [["run", "-d", "--pull", "never", "--runtime", podman.runc, "--name", f"p{i}",
             "--network", f"ring{size}-{i}:ip={subnet(i)[1]}",
             "--network", f"ring{size}-{(i - 1) % size}:ip={subnet((i - 1) % size)[2]}",
             IMAGE, "sleep", "3600"] for i in range(size)]
    checks = [["exec", f"p{i}", "ping", "-c", "1", "-W", "1", subnet(i)[2]]
              for i in range(size)]
    deploy_seconds = timed(networks)[0] + timed(runs)[0]
    check_seconds, check_results = timed(checks)
    passed = sum(result.ok for result in check_results)
    destroy_seconds = timed([["rm", "-f", "-t", "0", *[f"p{i}" for i in range(size)]]])[0]
    destroy_seconds += timed([["network", "rm", *[f"ring{size}-{i}" for i in range(size)]]])[0]
    return ([f"{size} podman", f"{deploy_seconds:.2f}", f"{deploy_seconds / size * 1000:.0f}",
             f"{check_seconds:.2f}", f"{destroy_seconds:.2f}",
             f"{passed} passed, {size - passed} failed"], problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--sizes", default="25,50,100")
    parser.add_argument("--mgmt", action="store_true")
    parser.add_argument("--podman", action="store_true")
    args = parser.parse_args()
    sizes = [int(text) for text in args.sizes.split(",")]
    bench = NetnsEngine("lab-ring")
    prefix, tsubo = bench.prefix, bench.tsubo
    problems: list[str] = []
    rows: list[list[object]] = []
    podman: Podman | None = None
    try:
        rootfs = bench.open()
        if args.podman:
            tools = require("podman", "conmon", "runc", "unshare", "tar")
            podman = Podman(tools["podman"], tools["runc"], bench.sandbox.tmp / "podman")
            (bench.sandbox.tmp / "podman").mkdir()
            podman.setup(make_tar(rootfs, bench.sandbox.tmp / "rootfs.tar"))
            bench.sandbox.expected_mounts |= podman.expected_mounts
        for size in sizes:
            topology = ring_file(bench.sandbox.tmp / f"ring{size}.clab.yml", size, rootfs,
                                 args.mgmt)
            deploy = run_command([*tsubo, "lab", "deploy", "-t", str(topology)], timeout=600)
            if not deploy.ok:
                problems.append(f"deploy {size}: {deploy.error()}")
                run_command([*tsubo, "lab", "destroy", "-t", str(topology)], timeout=600)
                break
            validate = run_command([*tsubo, "lab", "validate", "-t", str(topology)],
                                   timeout=600)
            passed = validate.stdout.strip().splitlines()[-1] if validate.stdout else ""
            if not validate.ok:
                problems.append(f"validate {size}: {passed or validate.error()}")
            destroy = run_command([*tsubo, "lab", "destroy", "-t", str(topology)],
                                  timeout=600)
            if not destroy.ok:
                problems.append(f"destroy {size}: {destroy.error()}")
            rows.append([f"{size} tsubo", f"{deploy.seconds:.2f}",
                         f"{deploy.seconds / size * 1000:.0f}", f"{validate.seconds:.2f}",
                         f"{destroy.seconds:.2f}", passed])
            if podman is not None:
                row, found = podman_ring(podman, prefix, size)
                rows.append(row)
                problems += found
    finally:
        if podman is not None and podman.driver:
            bench.sandbox.container_ids |= podman.container_ids()
            problems += podman.teardown()
        problems += bench.close([])
    print(f"`tsubo lab` ring of N nodes ({'with' if args.mgmt else 'no'} management "
          f"network), {os.cpu_count()} cores\n")
    print(markdown_table(["nodes, engine", "deploy s", "deploy ms/node", "validate s", "destroy s",
                          "checks"], rows))
    if problems:
        print("PROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
