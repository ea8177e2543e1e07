"""Benchmark: engine `run --rm --network none ... true` of busybox, tsubo vs podman.

Rows (interleaved in one run: each round runs every row once, in rotating order):

- ``tsubo --root R run --rm --network none --rootfs ROOTFS true`` (an overlay over ROOTFS);
- ``podman run --rm --network none --runtime runc IMAGE true`` (podman's default runtime,
  crun, refuses hybrid cgroup hosts; runc is the baseline of the ratio column);
- ``podman run ... --runtime <venv>/bin/tsubo-runtime IMAGE true``.

``--network bridge`` attaches every run to a network made for it (``tsubo network create``;
podman: its default); ``--network default`` gives no ``--network`` flag at all, so each
engine uses its default network (tsubo: ``bridge``, made by the first run, the engine
setting ``$TSUBO_DEFAULT_NETWORK`` unset; podman: ``podman``), with a row of tsubo's
``--network none`` beside it for what the network costs. Both run inside a throwaway
network namespace with IPv4 forwarding on (podman turns it on; tsubo would warn).

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

With ``--also LABEL=PATH`` (repeatable), another install's ``tsubo`` (e.g. one made by
``pip install .`` into a plain venv) gets a row of its own, with its own root, side by side.

    sudo .venv/bin/python bench/engine_run.py [--rounds 30] [--warmup 3] [--also LABEL=PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import (
    IMAGE,
    TSUBO,
    TSUBO_RUNTIME,
    BenchError,
    Case,
    Podman,
    Sandbox,
    Timings,
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
DEFAULT_NETWORK_SETTING = "TSUBO_DEFAULT_NETWORK"
SUBNET = "10.89.{}.0/24"  # one per tsubo install, inside the throwaway netns


class TsuboInstall:
    """One tsubo binary and the engine root it runs with in this benchmark."""

    def __init__(self, label: str, binary: Path, root: Path) -> None:
        self.label = label
        self.binary = binary
        self.root = root

    def argv(self, *args: str) -> list[str]:
        return [str(self.binary), "--root", str(self.root), *args]


def _parse_args() -> argparse.Namespace:
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
    parser.add_argument("--network", choices=("none", "bridge", "default"), default="none",
                        help="bridge: every run attached to a bridge network (tsubo: one "
                        "made with `tsubo network create`; podman: its default); default: "
                        "no --network flag (each engine's default network); both inside "
                        "a throwaway network namespace")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another tsubo binary to time beside the venv's (repeatable)")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    for also in args.also:
        label, _, path = also.partition("=")
        if not label or not os.access(path, os.X_OK):
            parser.error(f"--also {also}: expected LABEL=PATH of an executable")
    return args


def main() -> int:
    args = _parse_args()
    try:
        tools = require("podman", "conmon", "runc", "unshare", "tar")
    except BenchError as error:
        print(f"engine_run: {error}", file=sys.stderr)
        return 2

    sandbox = Sandbox("tsubo-bench-engine-run-")
    installs = [TsuboInstall("tsubo", TSUBO, sandbox.tmp / "tsubo")]
    for number, also in enumerate(args.also, start=1):
        label, _, path = also.partition("=")
        installs.append(TsuboInstall(f"tsubo ({label})", Path(path),
                                     sandbox.tmp / f"tsubo-{number}"))
    problems: list[str] = []
    podman: Podman | None = None
    netns_made: list[str] = []
    try:
        rootfs = make_busybox_rootfs(sandbox.tmp / "rootfs")
        tar = make_tar(rootfs, sandbox.tmp / "busybox.tar")
        podman = Podman(tools["podman"], tools["runc"], sandbox.tmp)
        podman.setup(tar)
        sandbox.expected_mounts |= podman.expected_mounts
        prefix: list[str] = []
        if args.network != "none":
            netns = f"tsubo-bench-{os.getpid()}"
            run_command(["ip", "netns", "add", netns])
            netns_made.append(netns)
            prefix = ["nsenter", f"--net=/run/netns/{netns}"]
            run_command([*prefix, "ip", "link", "set", "lo", "up"])
            run_command([*prefix, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        if args.network == "bridge":
            for number, install in enumerate(installs):
                made = run_command([*prefix, *install.argv(
                    "network", "create", "benchnet", "--subnet", SUBNET.format(200 + number))])
                if not made.ok:
                    raise BenchError(f"tsubo network create: {made.error()}")
        cases = _cases(installs, podman, tools["runc"], prefix, args.network, rootfs,
                       sandbox.tmp)

        def settle() -> None:
            _settle(sandbox, installs, args.cold_monitor)

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
        problems += _teardown(sandbox, installs, podman, netns_made)

    if timings is not None:
        shown = "" if args.network == "default" else f" --network {args.network}"
        print(f"`ENGINE run --rm{shown} busybox true`, {args.rounds} "
              f"interleaved rounds "
              f"(+{args.warmup} warmup), {os.cpu_count()} cores; tsubo's monitor "
              f"{'started for every run' if args.cold_monitor else 'already up'}; "
              f"podman storage: {driver}"
              + (f" ({driver_note})" if driver_note else "") + "\n")
        print(f"versions: {'; '.join(versions.values())}\n")
        _report(cases, timings)
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def _cases(installs: list[TsuboInstall], podman: Podman, runc: str, prefix: list[str],
           network: str, rootfs: Path, cwd: Path) -> list[Case]:
    tsubo_flags = {"bridge": ["--network", "benchnet"], "none": ["--network", "none"],
                   "default": []}[network]
    podman_flags = {"bridge": ["--network", "bridge"], "none": ["--network", "none"],
                    "default": []}[network]
    # the default network: the engine setting unset, whatever this shell has
    tsubo_env = {key: value for key, value in os.environ.items()
                 if key != DEFAULT_NETWORK_SETTING} if network == "default" else None

    def tsubo_case(install: TsuboInstall) -> Case:
        def argv(_round: int) -> list[str]:
            return [*prefix, *install.argv("run", "--rm", *tsubo_flags,
                                           "--rootfs", str(rootfs), "true")]
        return Case(install.label, argv, tsubo_env, cwd=cwd)

    def podman_case(runtime: str) -> Case:
        def argv(_round: int) -> list[str]:
            return [*prefix, *podman.argv("--runtime", runtime, "run", "--rm", "--pull",
                                          "never", *podman_flags, IMAGE, "true")]
        return Case(f"podman ({os.path.basename(runtime)})", argv, podman.env, cwd)

    cases = [*(tsubo_case(install) for install in installs), podman_case(runc),
             podman_case(str(TSUBO_RUNTIME))]
    if network == "default":  # what the default network costs, side by side
        install = installs[0]
        cases.insert(1, Case(f"{install.label} --network none", lambda _round: [
            *prefix, *install.argv("run", "--rm", "--network", "none", "--rootfs", str(rootfs),
                                   "true")], cwd=cwd))
    return cases


def _settle(sandbox: Sandbox, installs: list[TsuboInstall], cold_monitor: bool) -> None:
    if cold_monitor:
        sandbox.settle()
        return
    # The monitors stay up between runs (each exits ~2 s after its last container); wait
    # for everything else, and for the --rm removals to be done.
    roots = [str(install.root) for install in installs]
    sandbox.settle(keep=lambda argv: any(root in argv for root in roots))
    deadline = time.monotonic() + 10
    for install in installs:
        containers_dir = install.root / "containers"
        while containers_dir.is_dir() and os.listdir(containers_dir) and \
                time.monotonic() < deadline:
            time.sleep(0.002)


def _teardown(sandbox: Sandbox, installs: list[TsuboInstall], podman: Podman | None,
              netns_made: list[str]) -> list[str]:
    problems: list[str] = []
    for install in installs:
        if not install.root.exists():
            continue
        left = run_command(install.argv("ps", "-aq"))
        ids = left.stdout.split()
        if ids:
            problems.append(f"{install.label} containers left (removed): {ids}")
            run_command(install.argv("rm", "-f", *ids))
        sandbox.settle()
        containers_dir = install.root / "containers"
        dirs = sorted(os.listdir(containers_dir)) if containers_dir.is_dir() else []
        if dirs:
            problems.append(f"tsubo container folders left in {containers_dir}: {dirs}")
        for netns in netns_made:
            # benchnet, or the default network (removable once it is not the default)
            for network in ("benchnet", "bridge"):
                run_command(["nsenter", f"--net=/run/netns/{netns}",
                             *install.argv("network", "rm", network)],
                            env={**os.environ, DEFAULT_NETWORK_SETTING: "none"})
    if podman is not None and podman.driver:
        sandbox.container_ids |= podman.container_ids()  # its cgroups are ours to check
        problems += podman.teardown()
    for netns in netns_made:
        sandbox.settle()
        run_command(["ip", "netns", "del", netns])
    return problems + sandbox.close()


def _report(cases: list[Case], timings: Timings) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
