"""Benchmark: real OCI clients running busybox `true` through tsubo-runtime and through runc.

Rows (interleaved in one run: each round runs every row once, in rotating order):

- ``podman run --rm --network none --runtime runc IMAGE true`` and the same with
  ``--runtime <venv>/bin/tsubo-runtime`` (podman isolated as in bench/common.py);
- ``ctr run --rm --rootfs ROOTFS --runc-binary runc ID /bin/true`` (no image config, so no
  PATH: runc would not find a bare `true`) and the same with
  ``--runc-binary tsubo-runtime``: containerd 1.6's runc shim (the one its CRI plugin uses
  for every Kubernetes pod) against a containerd of our own (root, state, sockets and `opt`
  in the temp dir, CRI plugin off), started here and stopped by its pid.

containerd's shim keeps its sockets and runc root in /run/containerd (hard-wired in 1.6): a
tmpfs is mounted there, so this must run in a private mount namespace:

    sudo unshare --mount --propagation private .venv/bin/python bench/clients_run.py [--rounds 20]
        [--also LABEL=PATH]...

The "command" column times the client from spawn to exit; "+ helpers" until its detached
helpers (conmon, `podman container cleanup`, the shim) are gone. Ratios are of medians, to
the same client with runc. Leaves nothing behind (checked; exit 1 and PROBLEMS otherwise).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import (
    IMAGE,
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

SHIM_STATE = Path("/run/containerd")
NAMESPACE = "tsubo-bench"
CONTAINERD_CONFIG = """\
version = 2
root = "{tmp}/containerd/root"
state = "{tmp}/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{tmp}/containerd/containerd.sock"

[ttrpc]
  address = "{tmp}/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/containerd/opt"
"""


class Containerd:
    """A containerd of our own under *tmp*/containerd; see the module docstring."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "containerd"
        self.home.mkdir(mode=0o700)
        self.socket = self.home / "containerd.sock"
        (self.home / "config.toml").write_text(CONTAINERD_CONFIG.format(tmp=tmp))
        self.made_shim_dir = False
        self.mounted = False
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        private = os.stat("/proc/self/ns/mnt").st_ino != os.stat(
            f"/proc/{os.getppid()}/ns/mnt").st_ino
        if not private:
            raise BenchError("containerd's shim writes /run/containerd: run under "
                             "`unshare --mount --propagation private` (a private mount "
                             "namespace)")
        if not SHIM_STATE.exists():
            SHIM_STATE.mkdir(mode=0o711)
            self.made_shim_dir = True
        run_command(["mount", "-t", "tmpfs", "-o", "mode=0711", "tsubo-bench",
                     str(SHIM_STATE)])
        self.mounted = True
        log = (self.home / "containerd.log").open("wb")
        self.process = subprocess.Popen(["containerd", "--config",
                                         str(self.home / "config.toml")],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while not run_command(self.argv("version")).ok:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError("containerd did not start: see its log in the temp dir")
            time.sleep(0.05)

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args]

    def stop(self) -> list[str]:
        problems: list[str] = []
        if self.process is not None and self.process.poll() is None:
            left = run_command(self.argv("containers", "list", "-q")).stdout.split()
            if left:
                problems.append(f"ctr containers left (removed): {left}")
                run_command(self.argv("containers", "delete", *left))
            run_command(self.argv("namespaces", "remove", NAMESPACE))
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append("containerd did not stop on SIGTERM: killed (by pid)")
                self.process.kill()
                self.process.wait()
        if self.mounted:
            leftovers = [str(p) for p in SHIM_STATE.rglob("*") if not p.is_dir()]
            if leftovers:
                problems.append(f"left under {SHIM_STATE}: {leftovers[:5]}")
            result = run_command(["umount", str(SHIM_STATE)])
            if not result.ok:
                problems.append(f"umount {SHIM_STATE}: {result.error()}")
        if self.made_shim_dir:
            SHIM_STATE.rmdir()
        return problems


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another tsubo-runtime to run both clients with (e.g. one from "
                        "`pip install .` into a plain venv, or an older commit); repeatable")
    return parser.parse_args()


def main() -> int:
    args = _parse_args()
    try:
        tools = require("podman", "conmon", "runc", "containerd", "ctr", "unshare", "tar")
    except BenchError as error:
        print(f"clients_run: {error}", file=sys.stderr)
        return 2
    sandbox = Sandbox("tsubo-bench-clients-")
    podman: Podman | None = None
    containerd = Containerd(sandbox.tmp)
    problems: list[str] = []
    timings = None
    cases: list[Case] = []
    try:
        rootfs = make_busybox_rootfs(sandbox.tmp / "rootfs")
        podman = Podman(tools["podman"], tools["runc"], sandbox.tmp)
        podman.setup(make_tar(rootfs, sandbox.tmp / "busybox.tar"))
        sandbox.expected_mounts |= podman.expected_mounts
        containerd.start()
        also = dict(item.partition("=")[::2] for item in args.also)
        cases = _cases(podman, containerd, tools["runc"], rootfs, sandbox, also)
        config = str(containerd.home / "config.toml")

        def settle() -> None:  # every helper gone but our containerd itself
            sandbox.settle(keep=lambda argv: config in argv)

        timings = interleaved(cases, args.rounds, args.warmup, settle=settle)
        versions = [tool_version([tools[name], "--version"])
                    for name in ("podman", "runc", "containerd")]
    except BenchError as error:
        problems.append(str(error))
    finally:
        problems += containerd.stop()
        if podman is not None and podman.driver:
            sandbox.container_ids |= podman.container_ids()
            problems += podman.teardown()
        problems += sandbox.close()
    if timings is not None:
        print(f"`CLIENT run --rm busybox true`, {args.rounds} interleaved rounds "
              f"(+{args.warmup} warmup), {os.cpu_count()} cores; podman storage: "
              f"{podman.driver if podman else '?'}; ctr: --rootfs (no snapshotter)\n")
        print(f"versions: {'; '.join(versions)}\n")
        rows = []
        for case in cases:
            if case.name in timings.errors:
                rows.append([case.name, f"failed: {timings.errors[case.name]}", "", "", ""])
                continue
            median, p90 = median_p90(timings.samples[case.name])
            settled, _ = median_p90(timings.settled[case.name])
            baseline = case.name.split(" (")[0] + " (runc)"
            base_samples = timings.samples.get(baseline)
            ratio = f"{median / median_p90(base_samples)[0]:.2f}x" if base_samples else ""
            rows.append([case.name, f"{median:.1f}", f"{p90:.1f}", f"{settled:.1f}", ratio])
        print(markdown_table(["client (runtime)", "command ms (median)", "p90", "+ helpers",
                              "vs runc"], rows))
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def _cases(podman: Podman, containerd: Containerd, runc: str, rootfs: Path,
           sandbox: Sandbox, also: dict[str, str]) -> list[Case]:
    """Each client with runc, the venv's tsubo-runtime and each of *also* (label -> path)."""
    def label(runtime: str) -> str:
        names = {path: name for name, path in also.items()}
        return f"tsubo-runtime {names[runtime]}" if runtime in names else \
            os.path.basename(runtime)

    def podman_case(runtime: str) -> Case:
        def argv(_round: int) -> list[str]:
            return podman.argv("--runtime", runtime, "run", "--rm", "--pull", "never",
                               "--network", "none", IMAGE, "true")
        return Case(f"podman ({label(runtime)})", argv, podman.env, sandbox.tmp)

    def ctr_case(runtime: str) -> Case:
        def argv(_round: int) -> list[str]:
            cid = f"tsubo-bench-{secrets.token_hex(4)}"
            sandbox.container_ids.add(cid)
            return containerd.argv("run", "--rm", "--rootfs", "--runc-binary", runtime,
                                   "--cgroup", f"/{sandbox.cgroup_parent}/{cid}",
                                   str(rootfs), cid, "/bin/true")
        return Case(f"ctr ({label(runtime)})", argv, cwd=sandbox.tmp)

    runtimes = [runc, str(TSUBO_RUNTIME), *also.values()]
    return [*(podman_case(runtime) for runtime in runtimes),
            *(ctr_case(runtime) for runtime in runtimes)]


if __name__ == "__main__":
    sys.exit(main())
