"""Benchmark: engine `run --rm --network none ... true` of busybox, tsubo vs podman.

Rows (interleaved in one run: each round runs every row once, in rotating order):

- ``tsubo --root R run --rm --network none --rootfs ROOTFS true`` (an overlay over ROOTFS);
- ``podman run --rm --network none --runtime runc IMAGE true`` (podman's default runtime,
  crun, refuses hybrid cgroup hosts; runc is the baseline of the ratio column);
- ``podman run ... --runtime <venv>/bin/tsubo-runtime IMAGE true``.

ROOTFS and IMAGE hold the same busybox tree. podman is fully isolated from the host's podman
state (everything under one temp dir, cgroupfs, file events; overlay storage when it works
there, else vfs: the output says which); see bench/common.py. The "command" columns time the
CLI from spawn to exit; the "+ helpers" column times until the engine's detached helpers
(tsubo's monitor finishing the `--rm` removal; conmon and `podman container cleanup`) are
gone too; each run waits for them before the next starts. Reports medians, p90 and the ratio
of medians to podman (runc).

Leaves nothing behind, checked at the end (exit 1 and a PROBLEMS list if something was):
processes, mounts and files under the temp dir, tsubo containers and container folders,
podman containers, and the cgroups / runc state entries of every container in podman's event
log. (tsubo's `--rm` containers print no id, and other users of this host may be creating
`tsubo/<id>` cgroups meanwhile, so their cgroups are not attributed here; bench/engine_memory.py
checks them by id.)

    sudo .venv/bin/python bench/engine_run.py [--rounds 30] [--warmup 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import (
    IMAGE,
    TSUBO,
    TSUBO_RUNTIME,
    BenchError,
    Case,
    Podman,
    Sandbox,
    interleaved,
    make_busybox_rootfs,
    make_tar,
    markdown_table,
    median_p90,
    require,
    run_command,
    tool_version,
)

BASELINE = "podman (runc)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Needs root, podman, conmon, runc, unshare and busybox-static.",
    )
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    parser.add_argument("--cold-monitor", action="store_true",
                        help="wait for tsubo's monitor to exit after each run, so every run "
                        "starts a new one (default: runs find it up, as back-to-back "
                        "commands do; the --rm removal is still awaited)")
    parser.add_argument("--network", choices=("none", "bridge"), default="none",
                        help="bridge: every run attached to a bridge network (tsubo: one "
                        "made with `tsubo network create`; podman: its default), all of it "
                        "inside a throwaway network namespace")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    try:
        tools = require("podman", "conmon", "runc", "unshare", "tar")
    except BenchError as error:
        print(f"engine_run: {error}", file=sys.stderr)
        return 2

    sandbox = Sandbox("tsubo-bench-engine-run-")
    problems: list[str] = []
    podman: Podman | None = None
    tsubo_root = sandbox.tmp / "tsubo"
    netns_made: list[str] = []
    try:
        rootfs = make_busybox_rootfs(sandbox.tmp / "rootfs")
        tar = make_tar(rootfs, sandbox.tmp / "busybox.tar")
        podman = Podman(tools["podman"], tools["runc"], sandbox.tmp)
        podman.setup(tar)
        sandbox.expected_mounts |= podman.expected_mounts
        pm = podman

        prefix: list[str] = []
        tsubo_network = podman_network = "none"
        if args.network == "bridge":
            netns = f"tsubo-bench-{os.getpid()}"
            run_command(["ip", "netns", "add", netns])
            netns_made.append(netns)
            prefix = ["nsenter", f"--net=/run/netns/{netns}"]
            run_command([*prefix, "ip", "link", "set", "lo", "up"])
            made = run_command([*prefix, str(TSUBO), "--root", str(tsubo_root), "network",
                                "create", "benchnet", "--subnet", "10.89.200.0/24"])
            if not made.ok:
                raise BenchError(f"tsubo network create: {made.error()}")
            tsubo_network, podman_network = "benchnet", "bridge"

        def tsubo_argv(_round: int) -> list[str]:
            return [*prefix, str(TSUBO), "--root", str(tsubo_root), "run", "--rm",
                    "--network", tsubo_network, "--rootfs", str(rootfs), "true"]

        def podman_argv(runtime: str) -> Case:
            def argv(_round: int) -> list[str]:
                return [*prefix, *pm.argv("--runtime", runtime, "run", "--rm", "--pull",
                                          "never", "--network", podman_network, IMAGE, "true")]
            return Case(f"podman ({os.path.basename(runtime)})", argv, pm.env, sandbox.tmp)

        cases = [
            Case("tsubo", tsubo_argv, cwd=sandbox.tmp),
            podman_argv(tools["runc"]),
            podman_argv(str(TSUBO_RUNTIME)),
        ]
        containers_dir = tsubo_root / "containers"

        def settle() -> None:
            if args.cold_monitor:
                sandbox.settle()
                return
            # The monitor stays up between runs (it exits ~2 s after its last container);
            # wait for everything else, and for the --rm removal to be done.
            sandbox.settle(keep=lambda argv: str(tsubo_root) in argv)
            deadline = time.monotonic() + 10
            while containers_dir.is_dir() and os.listdir(containers_dir) and \
                    time.monotonic() < deadline:
                time.sleep(0.002)

        timings = interleaved(cases, args.rounds, args.warmup, settle=settle)
        driver, driver_note = podman.driver, podman.driver_note
        versions = {
            "podman": tool_version([tools["podman"], "--version"]),
            "runc": tool_version([tools["runc"], "--version"]),
            "conmon": tool_version([tools["conmon"], "--version"]),
            "tsubo": tool_version([str(TSUBO), "--version"]),
        }
    except BenchError as error:
        problems.append(str(error))
        timings = None
    finally:
        if tsubo_root.exists():
            left = run_command([str(TSUBO), "--root", str(tsubo_root), "ps", "-aq"])
            ids = left.stdout.split()
            if ids:
                problems.append(f"tsubo containers left (removed): {ids}")
                run_command([str(TSUBO), "--root", str(tsubo_root), "rm", "-f", *ids])
            sandbox.settle()
            containers_dir = tsubo_root / "containers"
            dirs = sorted(os.listdir(containers_dir)) if containers_dir.is_dir() else []
            if dirs:
                problems.append(f"tsubo container folders left in {containers_dir}: {dirs}")
        for netns in netns_made:
            run_command(["nsenter", f"--net=/run/netns/{netns}", str(TSUBO), "--root",
                         str(tsubo_root), "network", "rm", "benchnet"])
        if podman is not None and podman.driver:
            sandbox.container_ids |= podman.container_ids()  # its cgroups are ours to check
            problems += podman.teardown()
        for netns in netns_made:
            sandbox.settle()
            run_command(["ip", "netns", "del", netns])
        problems += sandbox.close()

    if timings is not None:
        print(f"`ENGINE run --rm --network {args.network} busybox true`, {args.rounds} "
              f"interleaved rounds "
              f"(+{args.warmup} warmup), {os.cpu_count()} cores; tsubo's monitor "
              f"{'started for every run' if args.cold_monitor else 'already up'}; "
              f"podman storage: {driver}"
              + (f" ({driver_note})" if driver_note else "") + "\n")
        print(f"versions: {'; '.join(versions.values())}\n")
        base = timings.samples[BASELINE]
        base_median = median_p90(base)[0] if base else None
        rows: list[list[object]] = []
        for case in cases:
            if case.name in timings.errors:
                rows.append([case.name, f"fails here: {timings.errors[case.name]}", "", "", ""])
                continue
            median, p90 = median_p90(timings.samples[case.name])
            settled, _ = median_p90(timings.settled[case.name])
            ratio = f"{median / base_median:.2f}" if base_median else "-"
            rows.append([case.name, f"{median:.1f}", f"{p90:.1f}", ratio, f"{settled:.1f}"])
        print(markdown_table(
            ["engine", "command median ms", "p90 ms", f"/ {BASELINE}", "+ helpers median ms"],
            rows,
        ))
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
