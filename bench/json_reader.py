"""Benchmark: the JSON reader (``tsubo.jsonwire.loads``, with its depth and size limits)
against the bare C parser it drives, on the documents of the runtime's hot path.

Documents: ``tsubo-runtime spec``'s default config.json; the config.json the engine writes
for ``tsubo run busybox sh`` (Docker's seccomp profile, converted: the realistic one); and a
runtime state record holding that config. Each is parsed compact and indented; for each the
best of several rounds of many parses is reported (the minimum is the least disturbed by
other work on the machine), with the depth check's share.

    .venv/bin/python bench/json_reader.py [--parses 20000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from tsubo import jsonwire
from tsubo.engine.ocispec import ImageConfig, build_config
from tsubo.engine.options import RunOptions
from tsubo.oci.default_spec import default_spec


def documents() -> dict[str, bytes]:
    engine_config = build_config(
        RunOptions(command=["sh"]), ImageConfig(), container_id="c0ffee",
        rootfs="/var/lib/tsubo/containers/c0ffee/merged", etc_files={}, volume_mounts=[],
        init_path=None, passwd_lookup=None, host_nofile_hard=1048576,
        host_nproc_hard=4194304)
    state = {"id": "c0ffee", "pid": 4242, "startTime": 123456, "bundle": "/b",
             "rootfs": "/b/rootfs", "created": "2024-01-02T03:04:05.000000006Z", "owner": "",
             "cgroup": {"path": "/tsubo/c0ffee"}, "config": engine_config}
    found: dict[str, bytes] = {}
    for name, value in (("default spec", default_spec()), ("engine config", engine_config),
                        ("runtime state", state)):
        found[f"{name}, compact"] = json.dumps(value, separators=(",", ":")).encode()
        found[f"{name}, indented"] = json.dumps(value, indent=2).encode()
    return found


def best_of(rounds: int, parses: int, call: Callable[[], object]) -> float:
    """Microseconds a call, the best round of *rounds*."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(parses):
            call()
        best = min(best, (time.perf_counter() - start) / parses)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parses", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    decoder = json.JSONDecoder()
    print("| document | bytes | C parser | jsonwire.loads | overhead | depth check |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, raw in documents().items():
        assert jsonwire.loads(raw) == json.loads(raw)

        def bare(raw: bytes = raw) -> object:
            return decoder.raw_decode(raw.decode())  # the C scanner, no checks

        def ours(raw: bytes = raw) -> object:
            return jsonwire.loads(raw)

        def depth_check(raw: bytes = raw) -> object:
            return jsonwire.nested_deeper_than(raw, jsonwire.MAX_DEPTH)

        base = best_of(args.rounds, args.parses, bare)
        loads = best_of(args.rounds, args.parses, ours)
        depth = best_of(args.rounds, args.parses, depth_check)
        print(f"| {name} | {len(raw)} | {base:.1f} us | {loads:.1f} us | "
              f"{loads - base:+.1f} us ({100 * (loads - base) / base:+.0f}%) | {depth:.1f} us |")


if __name__ == "__main__":
    main()
