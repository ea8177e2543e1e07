"""Benchmark: ``build`` of a 6-step Dockerfile on busybox, tsubo vs podman, side by side.

Rows (interleaved in one run: each round runs every row once, in rotating order):

- ``cold``: ``build --no-cache`` (every step runs: two RUN containers, two COPY layers);
- ``rebuild``: ``build`` after one COPY'd file changed (a new line each round): the steps
  before that COPY come from the cache, the COPY and the RUN after it run again.

Both engines build the same Dockerfile from their own copy of the same context, on the same
busybox image (podman: imported with ``podman import``; tsubo: ``tsubo import``), RUN steps
without a network (``--network none``), podman with runc. podman is fully isolated from the
host's podman state (everything under one temp dir, its blob-info cache shadowed; see
bench/common.py), and pays for that shadow mount (``unshare`` + ``sh``, a few ms). Reports medians,
p90 and the ratio to podman's row of the same kind. Leaves nothing behind (checked).

    sudo .venv/bin/python bench/build.py [--rounds 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from common import (
    IMAGE,
    TSUBO,
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

DOCKERFILE = f"""\
FROM {IMAGE}
ENV APP=/app
COPY data/ /app/data/
RUN mkdir -p /app/out && cp -r /app/data /app/out/ && echo built > /app/out/stamp
COPY app.txt /app/
RUN cat /app/app.txt > /app/out/app && ls -l /app > /app/out/listing
"""


def make_context(directory: Path) -> Path:
    (directory / "data").mkdir(parents=True)
    for number in range(50):
        (directory / "data" / f"file-{number}.txt").write_text(f"data {number}\n" * 100)
    (directory / "app.txt").write_text("version 0\n")
    (directory / "Dockerfile").write_text(DOCKERFILE)
    return directory


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                     epilog="Needs root, podman, conmon, runc and busybox.")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default 2)")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    return args


def main() -> int:
    args = _parse_args()
    try:
        tools = require("podman", "conmon", "runc", "unshare", "tar")
    except BenchError as error:
        print(f"build: {error}", file=sys.stderr)
        return 2
    sandbox = Sandbox("tsubo-bench-build-")
    root = sandbox.tmp / "tsubo"
    problems: list[str] = []
    podman: Podman | None = None
    timings: Timings | None = None
    try:
        rootfs = make_busybox_rootfs(sandbox.tmp / "rootfs")
        tar = make_tar(rootfs, sandbox.tmp / "busybox.tar")
        podman = Podman(tools["podman"], tools["runc"], sandbox.tmp)
        podman.setup(tar)
        sandbox.expected_mounts |= podman.expected_mounts
        imported = run_command([str(TSUBO), "--root", str(root), "import", str(tar), IMAGE])
        if not imported.ok:
            raise BenchError(f"tsubo import: {imported.error()}")
        cases = _cases(podman, root, sandbox.tmp)
        timings = interleaved(cases, args.rounds, args.warmup, settle=sandbox.settle)
        versions = [tool_version([tools["podman"], "--version"]),
                    tool_version([str(TSUBO), "--version"])]
        driver = podman.driver
    except BenchError as error:
        problems.append(str(error))
    finally:
        if podman is not None and podman.driver:
            problems += podman.teardown()
        sandbox.settle()
        shutil.rmtree(root, ignore_errors=True)
        problems += sandbox.close()
    if timings is not None:
        print(f"`ENGINE build` of a 6-step Dockerfile (2 RUN, 2 COPY of 51 files) on busybox, "
              f"{args.rounds} interleaved rounds (+{args.warmup} warmup), {os.cpu_count()} "
              f"cores; podman storage: {driver}\n")
        print(f"versions: {'; '.join(versions)}\n")
        _report(timings)
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def _cases(podman: Podman, root: Path, tmp: Path) -> list[Case]:
    contexts = {name: make_context(tmp / f"ctx-{name}") for name in
                ("tsubo-cold", "tsubo-rebuild", "podman-cold", "podman-rebuild")}

    def tsubo(name: str, *flags: str) -> Case:
        def argv(round_number: int) -> list[str]:
            if "rebuild" in name:
                (contexts[name] / "app.txt").write_text(f"version {round_number + 1}\n")
            return [str(TSUBO), "--root", str(root), "build", "-q", "--network", "none",
                    *flags, "-t", name, str(contexts[name])]
        return Case(name.replace("-", " "), argv, cwd=tmp)

    def podman_case(name: str, *flags: str) -> Case:
        def argv(round_number: int) -> list[str]:
            if "rebuild" in name:
                (contexts[name] / "app.txt").write_text(f"version {round_number + 1}\n")
            return [*podman.shadow_wrap(), *podman.argv(
                "build", "-q", "--pull=never", "--network", "none", "--runtime", podman.runc,
                *flags, "-t", name, str(contexts[name]))]
        return Case(name.replace("-", " "), argv, podman.env, tmp)

    return [tsubo("tsubo-cold", "--no-cache"), podman_case("podman-cold", "--no-cache"),
            tsubo("tsubo-rebuild"), podman_case("podman-rebuild")]


def _report(timings: Timings) -> None:
    rows: list[list[object]] = []
    for kind in ("cold", "rebuild"):
        base = timings.samples.get(f"podman {kind}") or []
        base_median = median_p90(base)[0] if base else None
        for engine in ("tsubo", "podman"):
            name = f"{engine} {kind}"
            if name in timings.errors:
                rows.append([name, f"fails here: {timings.errors[name]}", "", ""])
                continue
            median, p90 = median_p90(timings.samples[name])
            ratio = f"{median / base_median:.2f}" if base_median else "-"
            rows.append([name, f"{median:.1f}", f"{p90:.1f}", ratio])
    print(markdown_table(["build", "median ms", "p90 ms", "/ podman same kind"], rows))


if __name__ == "__main__":
    sys.exit(main())
