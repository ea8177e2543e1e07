"""Benchmark: each runtime command a client's shim calls, tsubo-runtime vs runc, one by one.

containerd's runc shim (and conmon) run the runtime once per step of a container's life:
``create``, ``start``, ``state`` now and then, ``kill``, ``delete``, and ``delete`` again of
the then-missing container (containerd 1.6's shim, on ``ctr run --rm``). Each is a process
start, so the thin commands are mostly the interpreter's start and the imports. This times
every step on its own, per runtime, interleaved (each round runs every runtime's whole
sequence once, in rotating order), on ``runc spec``'s default bundle running ``sleep 10``:

    create, start, state, kill KILL, (wait until stopped), delete, delete (missing: fails)

and reports each step's median, the sum of the medians and the ratio to runc's, and the
interpreter's floor timed in the same rounds: ``python -c pass`` as the launchers start it
(site imported) and ``python -I -S -c pass``.

    sudo /work/tools/isolated .venv/bin/python bench/runtime_commands.py [--rounds 30]
        [--also LABEL=PATH]... [--instructions]

``--instructions`` runs the sequence once more per tsubo-runtime, each step but ``create``
under ``valgrind --tool=callgrind``, and prints the instruction counts (independent of the
machine's load; runc is left out: Go binaries do not run under valgrind here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from runtime_run import make_bundle

STEPS = ("create", "start", "state", "kill", "delete", "delete (missing)")


CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def _timed(argv: list[str], cwd: Path, expect_ok: bool = True) -> float:
    """The command's time in ms. Its output goes to files: a created container keeps the
    runtime's stdio, so a pipe would not see EOF until the container ends."""
    with open(cwd / "out.log", "w+b") as out:
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out)
        elapsed = (time.perf_counter() - start) * 1000
        out.seek(0)
        output = out.read().decode(errors="replace")
        if (result.returncode == 0) != expect_ok:
            raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {output.strip()}")
    if argv[0] == CALLGRIND[0]:  # the count replaces the time: "==pid== Collected : N"
        return float(output.rsplit("Collected : ", 1)[1].split()[0])
    return elapsed


def one_round(binary: str, root: Path, bundle: Path, container_id: str,
              wrap: Sequence[str] = ()) -> dict[str, float]:
    """Run the sequence once; the time of each step in ms (the instructions under
    callgrind when *wrap* is :data:`CALLGRIND`; not of ``create``, whose fork chain makes
    calls valgrind does not emulate: it is run unwrapped, and its count is NaN)."""
    base = [binary, "--root", str(root)]
    created = _timed([*base, "create", "--bundle", str(bundle), container_id], bundle)
    times = {
        "create": float("nan") if wrap else created,
        "start": _timed([*wrap, *base, "start", container_id], bundle),
        "state": _timed([*wrap, *base, "state", container_id], bundle),
        "kill": _timed([*wrap, *base, "kill", container_id, "KILL"], bundle),
    }
    _wait_stopped(base, container_id, bundle)
    times["delete"] = _timed([*wrap, *base, "delete", container_id], bundle)
    times["delete (missing)"] = _timed([*wrap, *base, "delete", container_id], bundle,
                                       expect_ok=False)
    return times


def _wait_stopped(base: list[str], container_id: str, cwd: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        result = subprocess.run([*base, "state", container_id], cwd=cwd,
                                capture_output=True, text=True)
        if '"stopped"' in result.stdout:
            return
        time.sleep(0.005)
    raise RuntimeError(f"{base[0]}: {container_id} did not stop after kill")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another tsubo-runtime to time beside the venv's; repeatable")
    parser.add_argument("--instructions", action="store_true",
                        help="also count each step's instructions under callgrind")
    args = parser.parse_args()
    runtimes = {"tsubo-runtime": str(Path(sys.executable).parent / "tsubo-runtime"),
                "runc": "runc"}
    for also in args.also:
        label, _, path = also.partition("=")
        runtimes[label] = path
    samples: dict[str, dict[str, list[float]]] = {
        name: {step: [] for step in STEPS} for name in runtimes}
    names = list(runtimes)
    floors = {"python -c pass": [sys.executable, "-c", "pass"],
              "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"]}
    floor_samples: dict[str, list[float]] = {name: [] for name in floors}
    with tempfile.TemporaryDirectory(prefix="tsubo-bench-") as temp:
        work = Path(temp)
        bundle = make_bundle(work)
        (bundle / "rootfs" / "bin" / "sleep").symlink_to("busybox")
        config = bundle / "config.json"
        config.write_text(config.read_text().replace('"true"', '"sleep", "10"'))
        for round_number in range(args.warmup + args.rounds):
            order = names[round_number % len(names):] + names[:round_number % len(names)]
            for index, name in enumerate(order):
                root = work / "state" / str(names.index(name))
                times = one_round(runtimes[name], root, bundle,
                                  f"tsubo-bench-{round_number}-{index}")
                if round_number >= args.warmup:
                    for step, elapsed in times.items():
                        samples[name][step].append(elapsed)
            for floor, argv in floors.items():
                elapsed = _timed(argv, work)
                if round_number >= args.warmup:
                    floor_samples[floor].append(elapsed)
        counts = {name: one_round(path, work / "state" / "callgrind", bundle,
                                  f"tsubo-bench-callgrind-{index}", CALLGRIND)
                  for index, (name, path) in enumerate(runtimes.items())
                  if name != "runc" and args.instructions}
        floor_count = _timed([*CALLGRIND, *floors["python -c pass"]], work) if counts else 0.0
    _print_times(args.rounds, names, samples, floor_samples)
    if counts:
        print("\nM instructions (callgrind, one sequence):\n")
        print("| step | " + " | ".join(counts) + " |")
        print("|---|" + "---|" * len(counts))
        for step in STEPS:
            print(f"| {step} | " + " | ".join(f"{counts[name][step] / 1e6:.1f}"
                                            for name in counts).replace("nan", "-") + " |")
        print(f"\n`python -c pass`: {floor_count / 1e6:.1f} M instructions")
    return 0


def _print_times(rounds: int, names: list[str], samples: dict[str, dict[str, list[float]]],
                 floor_samples: dict[str, list[float]]) -> None:
    medians = {name: {step: statistics.median(samples[name][step]) for step in STEPS}
               for name in names}
    print(f"runtime commands on busybox `sleep 10`, {rounds} interleaved rounds, "
          f"{os.cpu_count()} cores; medians in ms\n")
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for step in (*STEPS, "sum"):
        cells = []
        for name in names:
            value = (sum(medians[name].values()) if step == "sum" else medians[name][step])
            runc = (sum(medians["runc"].values()) if step == "sum"
                    else medians["runc"][step])
            cells.append(f"{value:.1f}" + ("" if name == "runc" else f" ({value / runc:.2f}x)"))
        print(f"| {step} | " + " | ".join(cells) + " |")
    print("\ninterpreter floor (same rounds): " + "; ".join(
        f"`{floor}` {statistics.median(values):.1f} ms" for floor, values in floor_samples.items()))


if __name__ == "__main__":
    sys.exit(main())
