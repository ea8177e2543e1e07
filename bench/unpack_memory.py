"""Benchmark: peak memory and speed of unpacking layers of very many entries.

For each size (``--entries``, default 100 000 and 1 000 000) a gzip layer of exactly that
many entries is written (``tests/big_layers.py``: a group directory per 100 directories,
each directory followed by 9 empty files, so 10% directories), then, in interleaved rounds
(each round runs every case once, in rotating order):

- **tsubo**: ``unpack_layer`` (tsubo's own API, as ``pull`` and ``load`` call it) in a fresh
  interpreter; its peak RSS is the child's own ``VmHWM`` (read just before it exits) and
  ``ru_maxrss`` from ``wait4`` on it (the same figure unless this process was bigger when
  it spawned the child: see tests/big_layers.py), the time is measured inside it around
  the call;
- **tsubo (--compare-src)**: the same with ``PYTHONPATH=DIR``: another checkout's ``src``
  (e.g. ``git worktree add /tmp/old main``), for a before/after comparison in one run;
- **tar -xzf**: GNU tar of the same blob (as root: owners and modes kept), timed from
  spawn to exit; the reference for speed.

The floor row is the same interpreter importing the unpacker and nothing else. Between two
runs the unpacked tree is removed and the file system synced, so one run's write-back does
not land on the next. Everything is made in one temp dir (``--tmp``, default the system's
temp dir; a 1M-entry layer needs ~1.1M free inodes and ~4 GB of metadata writes) and
removed at the end.

    sudo .venv/bin/python bench/unpack_memory.py [--entries 100000 1000000] [--rounds 3]
        [--tmp DIR] [--compare-src DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BenchError, markdown_table, run_command, tool_version

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.big_layers import (  # noqa: E402
    ChildUnpack,
    floor_in_child,
    unpack_in_child,
    write_many_entry_layer,
)

MIB = 1024 * 1024
TAR_TIMEOUT = 1800.0


@dataclass
class Unpacker:
    """One row of the table: a tsubo child with *env* (None: this checkout), or tar when
    *tar*; its figures of every round."""

    name: str
    env: dict[str, str] | None = None
    tar: bool = False
    peak_kib: list[int] = field(default_factory=list)
    maxrss_kib: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def run_case(case: Unpacker, blob: Path, work: Path) -> None:
    target = work / "target"
    target.mkdir()
    try:
        if case.tar:
            result = run_command(["tar", "-xzf", str(blob), "-C", str(target)],
                                 timeout=TAR_TIMEOUT)
            if not result.ok:
                raise BenchError(f"tar -xzf {blob}: {result.error()}")
            case.seconds.append(result.seconds)
        else:
            child: ChildUnpack = unpack_in_child(str(blob), str(target), env=case.env)
            case.peak_kib.append(child.peak_rss_kib)
            case.maxrss_kib.append(child.max_rss_kib)
            case.seconds.append(child.seconds)
    finally:
        shutil.rmtree(target)
        os.sync()


def measure(entries: int, rounds: int, cases: list[Unpacker], work: Path) -> Path:
    blob = work / f"layer-{entries}.tar.gz"
    start = time.perf_counter()
    write_many_entry_layer(str(blob), entries)
    print(f"{entries} entries: layer written in {time.perf_counter() - start:.1f} s "
          f"({blob.stat().st_size / MIB:.1f} MiB gzip)", file=sys.stderr)
    os.sync()
    for round_number in range(rounds):
        shift = round_number % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            run_case(case, blob, work)
        print(f"  round {round_number + 1}/{rounds}", file=sys.stderr)
    return blob


def rows_for(entries: int, cases: list[Unpacker], floor_kib: int) -> list[list[str]]:
    tar_seconds = next(statistics.median(c.seconds) for c in cases if c.tar)
    rows = []
    for case in cases:
        seconds = statistics.median(case.seconds)
        if case.tar:
            peak = maxrss = above = "-"
        else:
            peak = f"{max(case.peak_kib) / 1024:.1f}"
            maxrss = f"{max(case.maxrss_kib) / 1024:.1f}"
            above = f"{(max(case.peak_kib) - floor_kib) / 1024:.1f}"
        rows.append([f"{entries:,}", case.name, peak, maxrss, above, f"{seconds:.2f}",
                     f"{entries / seconds:,.0f}", f"{seconds / tar_seconds:.2f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="layer sizes in entries (default 100000 1000000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--tmp", default=None,
                        help="where the temp dir goes (default the system's temp dir)")
    parser.add_argument("--compare-src", default=None, metavar="DIR",
                        help="also unpack with the tsubo package under DIR "
                        "(another checkout's src)")
    args = parser.parse_args()
    if args.rounds < 1 or any(n < 1 for n in args.entries):
        parser.error("--rounds and --entries must be >= 1")
    if shutil.which("tar") is None:
        print("unpack_memory: tar not installed (Debian package tar)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="tsubo-bench-unpack-", dir=args.tmp))
    table: list[list[str]] = []
    floors: list[str] = []
    problems: list[str] = []
    try:
        for entries in args.entries:
            cases = [Unpacker("tsubo unpack_layer")]
            env = None
            if args.compare_src:
                env = {**os.environ, "PYTHONPATH": os.path.abspath(args.compare_src)}
                cases.append(Unpacker(f"tsubo unpack_layer ({args.compare_src})", env=env))
            cases.append(Unpacker("tar -xzf", tar=True))
            blob = measure(entries, args.rounds, cases, work)
            blob.unlink()
            floor = floor_in_child().peak_rss_kib
            floors.append(f"{floor / 1024:.1f}")
            table += rows_for(entries, cases, floor)
    except BenchError as error:
        problems.append(str(error))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if work.exists():
            problems.append(f"could not remove {work}")

    if table:
        print(f"Unpack of a gzip layer of N entries (10% directories, 90% empty files), "
              f"{os.cpu_count()} cores, euid {os.geteuid()}, medians of {args.rounds} "
              f"(peak RSS: the highest), file system of {work.parent}\n")
        print(f"versions: {tool_version(['tar', '--version'])}; "
              f"python {sys.version.split()[0]}\n")
        print(markdown_table(
            ["entries", "unpacker", "peak RSS (VmHWM) MiB", "ru_maxrss MiB",
             "above floor MiB", "median s", "entries/s", "time / tar"], table))
        print(f"\nfloor (interpreter + unpacker imported): {' / '.join(floors)} MiB")
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
