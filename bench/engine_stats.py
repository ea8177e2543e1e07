"""Benchmark: one frame of ``tsubo stats`` with N (``--count``, default 50) running
containers — the cgroup and ``/proc/PID/net/dev`` readings of every container plus the
rendered table — against the issue's budget of 100 ms per frame.

Starts N busybox ``sleep 600`` containers through the Python API (``--network none``,
``--rootfs``), then times ``--frames`` (default 30) frames as the live view draws them
(``StatsSampler.sample`` of the listed rows, then ``render_stats``), and the whole CLI
``tsubo stats --no-stream`` (which also lists the rows and sleeps its half-second CPU
window: reported without that sleep). Everything is removed and checked afterwards (exit 1
and a PROBLEMS list if anything was left).

    sudo .venv/bin/python bench/engine_stats.py [--count 50] [--frames 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import TSUBO, BenchError, Sandbox, make_busybox_rootfs, markdown_table

BUDGET_MS = 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()

    import tsubo
    from tsubo.cli.monitoring import render_stats, stats_record

    sandbox = Sandbox("tsubo-bench-stats-")
    problems: list[str] = []
    try:
        rootfs = make_busybox_rootfs(sandbox.tmp / "rootfs")
        root = sandbox.tmp / "root"
        with tsubo.Engine(str(root)) as engine:
            started = time.monotonic()
            ids = []
            for _ in range(args.count):
                container = engine.run(rootfs=str(rootfs), command=["sleep", "600"],
                                       network="none")
                ids.append(container.id)
                sandbox.container_ids.add(container.id)
            start_seconds = time.monotonic() - started
            try:
                sampler = engine.stats_sampler()
                sampler.sample(engine.container_records())
                frames = []
                for _ in range(args.frames):
                    begin = time.perf_counter()
                    rows = engine.container_records()
                    text = render_stats([stats_record(entry) for entry in sampler.sample(rows)],
                                        "")
                    frames.append((time.perf_counter() - begin) * 1000)
                    if text.count("\n") != args.count + 1:
                        raise BenchError(f"a frame had {text.count(chr(10))} lines")
                cli_ms = []
                for _ in range(5):
                    begin = time.perf_counter()
                    subprocess.run([str(TSUBO), "--root", str(root), "stats", "--no-stream"],
                                   check=True, capture_output=True, timeout=60)
                    cli_ms.append((time.perf_counter() - begin) * 1000 - 500)  # its CPU window
            finally:
                for container_id in ids:
                    engine.remove(container_id, force=True)
        median = statistics.median(frames)
        worst = max(frames)
        print(f"{args.count} containers started in {start_seconds:.1f} s\n")
        print(markdown_table(
            ["what", "median ms", "max ms"],
            [[f"one frame, {args.count} containers (sample + table)", f"{median:.1f}",
              f"{worst:.1f}"],
             ["`tsubo stats --no-stream` (minus its 0.5 s CPU window)",
              f"{statistics.median(cli_ms):.1f}", f"{max(cli_ms):.1f}"]]))
        verdict = "within" if median <= BUDGET_MS else "OVER"
        print(f"\nframe median {median:.1f} ms: {verdict} the {BUDGET_MS:.0f} ms budget")
        if median > BUDGET_MS:
            problems.append(f"frame median {median:.1f} ms > {BUDGET_MS:.0f} ms")
    finally:
        problems += sandbox.close()
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
