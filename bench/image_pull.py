"""Benchmark: image pull, layer unpack and per-container overlay cost, tsubo vs the others.

Three tables, all from one run, everything inside a temp dir and a throwaway network
namespace with its own registry (Debian's docker-registry on 127.0.0.1:5000 of that netns,
tests/e2e/registry_fixtures.py); no traffic leaves it:

1. **pull**: a ~100 MB, 5-layer image (random incompressible data, compressible text, many
   small files; gzip layers; built once per run) pulled N times, interleaved rounds, each
   from an empty store:
   - ``tsubo --root FRESH pull -q REF`` (download, verify, unpack);
   - ``podman --root FRESH --runroot FRESH --storage-driver overlay pull --tls-verify=false
     REF`` (download, verify, unpack; the baseline of the ratio column);
   - ``skopeo copy docker://REF oci:FRESH:tag`` (download and verify only: the floor).
   podman and skopeo get a private /var/lib/containers, HOME, TMPDIR and config files.
2. **unpack**: the biggest layer blob, unpacked by tsubo's ``unpack_layer`` (in-process)
   and by ``tar -xzf`` (GNU tar + gzip, as root: owners kept), MB/s of uncompressed tar.
3. **overlay per container**: ``tsubo create`` of 100 containers of the pulled image, one
   after the other; median time of the 1st-10th vs the 91st-100th (O(1) wants ~1).

Leaves nothing behind, checked at the end (bench/common.py ``Sandbox``; exit 1 and a
PROBLEMS list otherwise): the registry and proxy processes are stopped by pid, the netns is
deleted, containers are removed, the temp dir goes.

    sudo .venv/bin/python bench/image_pull.py [--rounds 5] [--warmup 1] [--containers 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common import (
    TSUBO,
    BenchError,
    Case,
    Sandbox,
    Timings,
    interleaved,
    make_busybox_rootfs,
    markdown_table,
    median_p90,
    require,
    run_command,
    tool_version,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.registry_fixtures import (  # noqa: E402
    FixtureError,
    LayerTar,
    OciLayout,
    Registry,
    start_registry,
)

BASELINE = "podman"
IMAGE_REPO = "bench/big:1"
MB = 1_000_000
PULL_TIMEOUT = 600.0

PODMAN_RUNROOT_PREFIX = "pr"

#: (digest, compressed size) of one layer blob
Layer = tuple[str, int]

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}"
runroot = "{runroot}"
"""


# ---------------------------------------------------------------------------------------------
# the image


def _text(size: int, seed: int) -> bytes:
    """Compressible, not trivially so: log-like lines with counters."""
    lines = []
    total = 0
    n = 0
    while total < size:
        line = (f"{seed:04d} {n:09d} INFO request handled path=/api/v1/items/{n % 977} "
                f"status={200 + n % 7} bytes={n * 31 % 65536}\n")
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode()[:size]


def bench_layers(busybox: Path) -> list[bytes]:
    """Five layers, ~100 MB uncompressed in all (about 75 MB of it incompressible)."""
    rng = os.urandom
    first = LayerTar().tree(busybox).dir("opt").file("opt/random-a.bin", rng(30 * MB)).bytes()
    second = LayerTar().dir("opt").file("opt/random-b.bin", rng(30 * MB)).bytes()
    third = LayerTar().dir("var").dir("var/log").file("var/log/app.log", _text(25 * MB, 3)) \
        .bytes()
    fourth = LayerTar().dir("usr").dir("usr/share").dir("usr/share/data")
    for index in range(2000):  # many small files: per-entry costs
        body = rng(2048) if index % 2 else _text(2048, index)
        fourth.file(f"usr/share/data/f{index:04d}", body)
    fifth = LayerTar().dir("srv").file("srv/random-c.bin", rng(10 * MB)).bytes()
    return [first, second, third, fourth.bytes(), fifth]


# ---------------------------------------------------------------------------------------------
# commands inside the registry's netns


def in_netns(registry: Registry, argv: list[str], *, private_containers: bool) -> list[str]:
    """``ip netns exec NS [sh -c 'mount --bind SHADOW /var/lib/containers' ...] ARGV``."""
    command = list(argv)
    if private_containers:
        shadow = registry.workdir / "var-lib-containers"
        shadow.mkdir(exist_ok=True)
        target = "/var/lib/containers" if Path("/var/lib/containers").is_dir() else "/var/lib"
        command = ["sh", "-c", f'mount --bind "$0" {target} && exec "$@"', str(shadow),
                   *command]
    return ["ip", "netns", "exec", registry.netns, *command]


def tsubo_pull_available() -> str:
    """"" if ``tsubo pull`` exists, else why not."""
    result = run_command([str(TSUBO), "pull", "--help"])
    return "" if result.ok else f"`tsubo pull --help` failed: {result.error()}"


@contextlib.contextmanager
def registry_with_image(tmp: Path) -> Iterator[tuple[Registry, OciLayout, list[Layer]]]:
    """The registry, with the bench image built and pushed; (registry, layout, layers)."""
    try:
        with start_registry(tmp / "registry") as registry:
            busybox = make_busybox_rootfs(tmp / "busybox")
            layout = OciLayout(tmp / "layout")
            started = time.perf_counter()
            built = layout.image(bench_layers(busybox))
            layout.tag(built.manifest, "1")
            registry.push_layout(layout.path, "1", IMAGE_REPO)
            print(f"image: {len(built.layer_digests)} layers, "
                  f"{sum(built.layer_sizes) / MB:.1f} MB compressed, built and pushed in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            layers = list(zip(built.layer_digests, built.layer_sizes, strict=True))
            yield registry, layout, layers
    except FixtureError as error:
        raise BenchError(str(error)) from error


# ---------------------------------------------------------------------------------------------
# 1. pull


def pull_cases(registry: Registry, tmp: Path, tsubo_problem: str) -> list[Case]:
    ref = f"{registry.address}/{IMAGE_REPO}"
    rounds = tmp / "rounds"
    rounds.mkdir()
    env = registry.env()

    def tsubo(round_number: int) -> list[str]:
        return in_netns(registry, [str(TSUBO), "--root", str(rounds / f"tsubo-{round_number}"),
                                   "pull", "-q", ref], private_containers=False)

    def podman(round_number: int) -> list[str]:
        base = rounds / f"podman-{round_number}"
        base.mkdir()
        runroot = tmp / f"{PODMAN_RUNROOT_PREFIX}{round_number}"  # podman wants <= 50 chars
        (base / "storage.conf").write_text(STORAGE_CONF.format(root=base / "root",
                                                               runroot=runroot))
        (base / "containers.conf").write_text("[engine]\nevents_logger = \"none\"\n")
        return in_netns(registry, [
            "env", f"CONTAINERS_STORAGE_CONF={base / 'storage.conf'}",
            f"CONTAINERS_CONF={base / 'containers.conf'}",
            "podman", "--root", str(base / "root"), "--runroot", str(runroot),
            "--tmpdir", str(base / "tmp"), "--storage-driver", "overlay",
            "--events-backend", "none", "--network-config-dir", str(base / "networks"),
            "pull", "-q", "--tls-verify=false", ref,
        ], private_containers=True)

    def skopeo(round_number: int) -> list[str]:
        return in_netns(registry, [
            "skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
            f"oci:{rounds / f'skopeo-{round_number}'}:tag",
        ], private_containers=True)

    cases = [Case(BASELINE, podman, env, tmp), Case("skopeo copy (download only)", skopeo,
                                                     env, tmp)]
    if not tsubo_problem:
        cases.insert(0, Case("tsubo", tsubo, env, tmp))
    return cases


def clear_rounds(tmp: Path) -> None:
    """Every round's store goes once its round is over (the mounts podman made lived in
    the `ip netns exec` mount namespace and died with it)."""
    rounds = tmp / "rounds"
    for entry in rounds.iterdir() if rounds.is_dir() else ():
        shutil.rmtree(entry, ignore_errors=True)
    for entry in tmp.glob(f"{PODMAN_RUNROOT_PREFIX}*"):
        shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 2. unpack


def unpack_rates(layout: OciLayout, layers: list[Layer], tmp: Path,
                 rounds: int) -> tuple[float, list[float], list[float], str]:
    """(uncompressed MB, tsubo seconds, tar seconds, digest) for the biggest layer."""
    from tsubo.image.unpack import unpack_layer

    digest = max(layers, key=lambda layer: layer[1])[0]
    blob = layout.path / "blobs" / "sha256" / digest.removeprefix("sha256:")
    media = "application/vnd.oci.image.layer.v1.tar+gzip"
    size = 0
    tsubo_times: list[float] = []
    tar_times: list[float] = []
    for index in range(rounds):
        target = tmp / f"unpack-tsubo-{index}"
        target.mkdir()
        start = time.perf_counter()
        result = unpack_layer(str(blob), media, str(target), digest)
        tsubo_times.append(time.perf_counter() - start)
        size = result.size
        shutil.rmtree(target)

        target = tmp / f"unpack-tar-{index}"
        target.mkdir()
        done = run_command(["tar", "-xzf", str(blob), "-C", str(target)], timeout=PULL_TIMEOUT)
        if not done.ok:
            raise BenchError(f"tar -xzf {blob}: {done.error()}")
        tar_times.append(done.seconds)
        shutil.rmtree(target)
    return size / MB, tsubo_times, tar_times, digest


# ---------------------------------------------------------------------------------------------
# 3. overlay per container


def create_times(registry: Registry, tmp: Path, count: int) -> tuple[list[float], list[str]]:
    """Pull once into a root of its own, then `tsubo create` COUNT containers, timed."""
    root = tmp / "create-root"
    ref = f"{registry.address}/{IMAGE_REPO}"
    pulled = run_command(in_netns(registry, [str(TSUBO), "--root", str(root), "pull", "-q",
                                             ref], private_containers=False),
                         timeout=PULL_TIMEOUT)
    if not pulled.ok:
        raise BenchError(f"tsubo pull for the create test: {pulled.error()}")
    problems: list[str] = []
    times: list[float] = []
    tsubo = [str(TSUBO), "--root", str(root)]
    try:
        for index in range(count):
            result = run_command([*tsubo, "create", "--name", f"c{index}", "--network", "none",
                                  ref, "true"])
            if not result.ok:
                problems.append(f"create {index}: {result.error()}")
                break
            times.append(result.seconds * 1000)
    finally:
        ids = run_command([*tsubo, "ps", "-aq"]).stdout.split()
        for start in range(0, len(ids), 50):
            removed = run_command([*tsubo, "rm", "-f", *ids[start:start + 50]], timeout=300)
            if not removed.ok:
                problems.append(f"rm -f: {removed.error()}")
        deadline = time.monotonic() + 15
        while (root / "run" / "monitor.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    return times, problems


def ordinal(number: int) -> str:
    suffix = "th" if number % 100 in (11, 12, 13) else \
        {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed pull rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds (default 1)")
    parser.add_argument("--unpack-rounds", type=int, default=3)
    parser.add_argument("--containers", type=int, default=100,
                        help="containers for the overlay-per-container test (default 100)")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0 or args.containers < 20:
        parser.error("--rounds >= 1, --warmup >= 0, --containers >= 20")
    try:
        tools = require("podman", "skopeo", "docker-registry", "umoci", "tar", "ip")
    except BenchError as error:
        print(f"image_pull: {error}", file=sys.stderr)
        return 2

    sandbox = Sandbox("tsubo-bench-image-pull-")
    problems: list[str] = []
    tsubo_problem = tsubo_pull_available()
    if tsubo_problem:
        problems.append(f"tsubo not measured: {tsubo_problem}")
    output: list[str] = []
    try:
        with registry_with_image(sandbox.tmp) as (registry, layout, layers):
            keep_registry = str(registry.workdir)

            def settle() -> None:
                sandbox.settle(keep=lambda argv: keep_registry in argv)
                clear_rounds(sandbox.tmp)

            cases = pull_cases(registry, sandbox.tmp, tsubo_problem)
            timings = interleaved(cases, args.rounds, args.warmup, settle=settle)
            total_mb = sum(size for _, size in layers) / MB
            output.append(f"## pull of a {len(layers)}-layer image, {total_mb:.0f} MB of gzip "
                          f"blobs, {args.rounds} interleaved rounds (+{args.warmup} warmup), "
                          f"fresh store each round, {os.cpu_count()} cores\n")
            output.append(_pull_table(cases, timings, total_mb, tsubo_problem, problems))

            output += _unpack_section(layout, layers, sandbox.tmp, args.unpack_rounds)

            if tsubo_problem:
                output.append("\n## overlay per container: not measured (no tsubo pull)")
            else:
                output += _create_section(registry, sandbox.tmp, args.containers, len(layers),
                                          problems)
            versions = [tool_version([tools["podman"], "--version"]),
                        tool_version([tools["skopeo"], "--version"]),
                        tool_version([str(TSUBO), "--version"])]
            output.append(f"\nversions: {'; '.join(versions)}")
    except BenchError as error:
        problems.append(str(error))
    finally:
        problems += sandbox.close()
    if output:
        print("\n".join(output))
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def _pull_table(cases: list[Case], timings: Timings, total_mb: float, tsubo_problem: str,
                problems: list[str]) -> str:
    base = timings.samples.get(BASELINE)
    base_median = median_p90(base)[0] if base else None
    rows: list[list[object]] = []
    for case in cases:
        if case.name in timings.errors:
            rows.append([case.name, f"fails: {timings.errors[case.name]}", "", "", ""])
            problems.append(f"{case.name}: {timings.errors[case.name]}")
            continue
        median, p90 = median_p90(timings.samples[case.name])
        ratio = f"{median / base_median:.2f}" if base_median else "-"
        rows.append([case.name, f"{median / 1000:.2f}", f"{p90 / 1000:.2f}", ratio,
                     f"{total_mb / (median / 1000):.0f}"])
    if tsubo_problem:
        rows.insert(0, ["tsubo", f"not measured: {tsubo_problem}", "", "", ""])
    return markdown_table(["client", "median s", "p90 s", f"/ {BASELINE}", "MB/s (compressed)"],
                          rows)


def _unpack_section(layout: OciLayout, layers: list[Layer], tmp: Path,
                    rounds: int) -> list[str]:
    size_mb, tsubo_times, tar_times, digest = unpack_rates(layout, layers, tmp, rounds)
    tsubo_s, tar_s = statistics.median(tsubo_times), statistics.median(tar_times)
    return [f"\n## unpack of the biggest layer ({digest[:19]}..., {size_mb:.0f} MB "
            f"uncompressed, gzip), median of {rounds}\n",
            markdown_table(["unpacker", "median s", "MB/s", "time / tar"], [
                ["tsubo unpack_layer (in-process)", f"{tsubo_s:.2f}",
                 f"{size_mb / tsubo_s:.0f}", f"{tsubo_s / tar_s:.2f}"],
                ["tar -xzf", f"{tar_s:.2f}", f"{size_mb / tar_s:.0f}", "1.00"]])]


def _create_section(registry: Registry, tmp: Path, containers: int, layer_count: int,
                    problems: list[str]) -> list[str]:
    times, create_problems = create_times(registry, tmp, containers)
    problems += create_problems
    if len(times) < 20:
        return []
    first, last = statistics.median(times[:10]), statistics.median(times[-10:])
    return [f"\n## `tsubo create IMAGE true` of {len(times)} containers "
            f"of the {layer_count}-layer image\n",
            markdown_table(["containers", "median ms"], [
                ["1st-10th", f"{first:.1f}"],
                [f"{ordinal(len(times) - 9)}-{ordinal(len(times))}", f"{last:.1f}"],
                ["last / first", f"{last / first:.2f}"]])]


if __name__ == "__main__":
    sys.exit(main())
