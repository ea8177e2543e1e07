"""Benchmark: ``RUNTIME run`` of a busybox bundle running ``true``, tsubo-runtime vs runc and crun.

Interleaved in one run (each round runs every runtime once, in rotating order, so drift in
the machine's state hits all of them alike); reports medians, p90 and the ratio to runc.
The bundle is ``runc spec``'s default config (pid, network, ipc, uts and mount namespaces,
the default mounts, masked and read-only paths) with ``args: ["true"]``, on a rootfs made
from Debian's busybox-static. A runtime that cannot run here (crun 1.8 refuses hybrid cgroup
hosts) is reported with its error instead of a time.

    sudo .venv/bin/python bench/runtime_run.py [--rounds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def make_bundle(directory: Path) -> Path:
    bundle = directory / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for name in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / name).mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "true"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    config_path.write_text(json.dumps(config, indent=2))
    return bundle


def time_once(argv: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, "" if result.returncode == 0 else (result.stderr.strip() or
                                                       f"exit {result.returncode}")


def _also_argv(path: str, root: Path) -> Callable[[int], list[str]]:
    return lambda n: [path, "--root", str(root), "run", f"b{n}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another tsubo-runtime to time beside the venv's (e.g. one "
                        "from `pip install .` into a plain venv); repeatable")
    args = parser.parse_args()
    venv_bin = Path(sys.executable).parent
    tsubo = str(venv_bin / "tsubo-runtime")
    with tempfile.TemporaryDirectory(prefix="tsubo-bench-") as temp:
        work = Path(temp)
        bundle = make_bundle(work)
        state = work / "state"
        runtimes = {
            "tsubo-runtime": lambda n: [tsubo, "--root", str(state / "tsubo"), "run", f"b{n}"],
            "runc": lambda n: ["runc", "--root", str(state / "runc"), "run", f"b{n}"],
            "crun": lambda n: ["crun", "--root", str(state / "crun"), "run", f"b{n}"],
            "python -IS -c pass (floor)": lambda n: [sys.executable, "-IS", "-c", "pass"],
        }
        for also in args.also:
            label, _, path = also.partition("=")
            runtimes[label] = _also_argv(path, state / label.replace("/", "_"))
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        errors: dict[str, str] = {}
        names = list(runtimes)
        for round_number in range(args.warmup + args.rounds):
            order = names[round_number % len(names):] + names[:round_number % len(names)]
            for name in order:
                if name in errors:
                    continue
                elapsed, error = time_once(runtimes[name](round_number), bundle)
                if error:
                    errors[name] = error.splitlines()[-1]
                elif round_number >= args.warmup:
                    times[name].append(elapsed)
    runc_median = statistics.median(times["runc"]) if times["runc"] else None
    print(f"`RUNTIME run` of busybox `true`, {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} cores\n")
    print("| runtime | median ms | p90 ms | / runc |")
    print("|---|---|---|---|")
    for name in names:
        if name in errors:
            print(f"| {name} | fails here: {errors[name]} | | |")
            continue
        samples = sorted(times[name])
        median = statistics.median(samples)
        p90 = samples[int(len(samples) * 0.9) - 1]
        ratio = f"{median / runc_median:.2f}" if runc_median else "-"
        print(f"| {name} | {median:.1f} | {p90:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
