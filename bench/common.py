"""Shared helpers for the engine benchmarks (``bench/engine_*.py``).

- :func:`make_busybox_rootfs` / :func:`make_tar`: a busybox rootfs (static busybox, one
  symlink per applet, /etc/passwd + group) and a tarball of it for ``podman import``;
- :class:`Podman`: podman fully isolated from the host's podman state (config, storage,
  run root, tmp dirs, network config and image-copy dir all in one temp dir; cgroupfs, file
  events; overlay storage, or vfs when overlay does not work there), with the busybox image
  imported in a private mount namespace that shadows /var/lib/containers (the only place
  podman writes outside ``--root`` for root: containers/image's blob-info cache);
- :class:`Sandbox`: the temp dir, the host-state snapshot taken before anything runs and the
  teardown check after (processes, mounts, cgroups, runtime state entries: nothing of ours
  may remain); the benchmark process is made a child subreaper, so the engines' detached
  helpers (tsubo monitors, conmon) become its children and are reaped by it;
- :func:`run_command`, :func:`interleaved`: one timed command; interleaved rounds (each
  round runs every case once, in rotating order, so machine drift hits all alike);
- :func:`smaps_rollup`: a process's Rss / Pss / USS in kB;
- :func:`markdown_table`, :func:`median_p90`: output.

Nothing here kills or removes anything by name: only pids this process started (or that were
reparented to it) and mounts / cgroups / files under the temp dir or named by a container id
the benchmark created.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_WALK_DEPTH = 3
CGROUP_MARKERS = ("tsubo", "libpod")
# default state roots of the OCI runtimes podman calls (podman passes them no --root)
RUNTIME_STATE_ROOTS = (Path("/run/runc"), Path("/run/tsubo-runtime"))
HOST_BLOB_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
TIMEOUT = 60.0
SETTLE_TIMEOUT = 20.0
PR_SET_CHILD_SUBREAPER = 36

VENV_BIN = Path(sys.executable).parent
TSUBO = VENV_BIN / "tsubo"
TSUBO_RUNTIME = VENV_BIN / "tsubo-runtime"


class BenchError(Exception):
    """A precondition or setup step failed; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# preconditions


def require(*tools: str) -> dict[str, str]:
    """Root, a static busybox, the venv's tsubo binaries and *tools* on PATH: name -> path."""
    if os.geteuid() != 0:
        raise BenchError("needs root (run with sudo)")
    if not BUSYBOX.is_file() or b"/ld-linux" in BUSYBOX.read_bytes()[:4096]:
        raise BenchError(f"{BUSYBOX} missing or not static: install busybox-static")
    for binary in (TSUBO, TSUBO_RUNTIME):
        if not os.access(binary, os.X_OK):
            raise BenchError(f"{binary} not found: run with the venv's python")
    found = {}
    for tool in tools:
        path = shutil.which(tool)
        if path is None:
            raise BenchError(f"{tool} not installed (Debian package {tool})")
        found[tool] = path
    return found


def tool_version(argv: Sequence[str]) -> str:
    """First line of `argv` (a --version call), or "?"."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = proc.stdout.strip().splitlines()
    return lines[0] if lines else "?"


# ---------------------------------------------------------------------------------------------
# rootfs / image


def make_busybox_rootfs(root: Path) -> Path:
    """A busybox rootfs at *root*: /bin/busybox + one symlink per applet, /etc/passwd+group."""
    for name in ("bin", "proc", "sys", "dev", "etc", "root", "tmp"):
        (root / name).mkdir(parents=True, mode=0o755)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True, timeout=TIMEOUT
    ).stdout.split()
    for applet in applets:
        if "/" not in applet and applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def make_tar(root: Path, tar: Path) -> Path:
    subprocess.run(
        ["tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), "."],
        check=True,
        timeout=TIMEOUT,
    )
    return tar


# ---------------------------------------------------------------------------------------------
# running commands


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error(self) -> str:
        """The last line of stderr (or the exit status) when it failed, else ""."""
        if self.ok:
            return ""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit {self.returncode}"

    def describe(self) -> str:
        return (
            f"{shlex.join(self.argv)}\n  exit {self.returncode}\n  stdout: {self.stdout!r}"
            f"\n  stderr: {self.stderr!r}"
        )


def run_command(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = TIMEOUT,
) -> Result:
    """Run *argv* (stdin /dev/null), timing it from spawn to exit. stdout/stderr go to
    unlinked temp files, not pipes, so a detached helper (monitor, conmon) that keeps an fd
    cannot hold us up. Zombies reparented to us are reaped afterwards (never during: the
    child's own status must reach subprocess)."""
    import threading

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
        )  # fmt: skip
        # A blocking wait, not Popen.wait(timeout): with a timeout it polls, sleeping
        # 0.5, 1, 2, ... 32, 50 ms, which rounds every measured time up to 31.5, 63.5,
        # 113.5 ms... The timeout is a timer that kills the child instead.
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        if expired.is_set():
            raise subprocess.TimeoutExpired(list(argv), timeout)
        out.seek(0)
        err.seek(0)
        result = Result(
            list(argv),
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
        )
    reap_zombie_children()
    return result


@dataclass
class Case:
    """One row of a timing table: *argv(round_number)* is the command to time."""

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] | None = None
    cwd: Path | None = None


@dataclass
class Timings:
    """Per case, in ms, warmup excluded: the command's own time and the time until *settle*
    returned (the engine's background helpers done), and the first error of a failed case."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    settled: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def interleaved(cases: Sequence[Case], rounds: int, warmup: int, *,
                settle: Callable[[], object] | None = None, progress: bool | None = None,
                ) -> Timings:
    """Each round runs every case once, in rotating order, then *settle()* (untimed in
    `samples`, so one engine's background work does not land on the next command); a case
    that fails once is reported with its error and not run again. *progress* (default: when
    stderr is a terminal) shows the round number on stderr."""
    if progress is None:
        progress = sys.stderr.isatty()
    timings = Timings(samples={case.name: [] for case in cases},
                      settled={case.name: [] for case in cases})
    total = warmup + rounds
    for round_number in range(total):
        shift = round_number % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            if case.name in timings.errors:
                continue
            start = time.perf_counter()
            result = run_command(case.argv(round_number), env=case.env, cwd=case.cwd)
            if settle is not None:
                settle()
            settled = time.perf_counter() - start
            if not result.ok:
                timings.errors[case.name] = result.error()
            elif round_number >= warmup:
                timings.samples[case.name].append(result.seconds * 1000)
                timings.settled[case.name].append(settled * 1000)
        if progress:
            print(f"\rround {round_number + 1}/{total}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return timings


# ---------------------------------------------------------------------------------------------
# output


def median_p90(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(int(len(ordered) * 0.9) - 1, 0)]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# processes


def set_child_subreaper() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_zombie_children() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return raw[raw.index("(") + 1 : raw.rindex(")")], rest[0], int(rest[1])


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def live_processes_where(predicate: Callable[[int, list[str]], bool]) -> dict[int, str]:
    """Live processes (not us) for which predicate(pid, argv) holds: pid -> cmdline."""
    out = {}
    for pid in all_pids():
        if pid == os.getpid():
            continue
        argv = cmdline(pid)
        if argv and alive(pid) and predicate(pid, argv):
            out[pid] = shlex.join(argv)
    return out


def live_children() -> dict[int, str]:
    """Our live (non-zombie) children: pid -> "comm: cmdline"."""
    out = {}
    me = os.getpid()
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is not None and stat[2] == me and stat[1] not in ("Z", "X"):
            out[pid] = f"{stat[0]}: {shlex.join(cmdline(pid))}"
    return out


def kill_and_reap(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGKILL exactly these pids (each one ours), then wait for them to go."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        reap_zombie_children()
        time.sleep(0.05)
    reap_zombie_children()


@dataclass
class Memory:
    """From /proc/PID/smaps_rollup, in kB. USS = Private_Clean + Private_Dirty."""

    rss: int = 0
    pss: int = 0
    uss: int = 0
    processes: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss,
                      self.processes + other.processes)


def smaps_rollup(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return Memory(
        rss=fields["Rss"],
        pss=fields["Pss"],
        uss=fields["Private_Clean"] + fields["Private_Dirty"],
        processes=1,
    )


def total_memory(pids: Iterable[int]) -> Memory:
    total = Memory()
    for pid in pids:
        total += smaps_rollup(pid)
    return total


# ---------------------------------------------------------------------------------------------
# host state: the snapshot before, the check (and cleanup of what is provably ours) after


def mountpoints() -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            out.append(fields[4].replace("\\040", " "))
    return out


def cgroup_hierarchies() -> list[Path]:
    roots = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        fstype = fields[fields.index("-") + 1]
        mountpoint = Path(fields[4])
        if fstype in ("cgroup", "cgroup2") and (
            mountpoint == CGROUP_ROOT or CGROUP_ROOT in mountpoint.parents
        ):
            roots.add(mountpoint)
    return sorted(roots)


def engine_cgroups() -> set[Path]:
    """Cgroup directories (depth <= CGROUP_WALK_DEPTH) whose path mentions tsubo or libpod."""
    found: set[Path] = set()

    def walk(directory: Path, level: int, marked: bool) -> None:
        if level > CGROUP_WALK_DEPTH:
            return
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sub = Path(entry.path)
                sub_marked = marked or any(m in entry.name for m in CGROUP_MARKERS)
                if sub_marked:
                    found.add(sub)
                walk(sub, level + 1, sub_marked)

    for hierarchy in cgroup_hierarchies():
        walk(hierarchy, 1, False)
    return found


def runtime_state_entries() -> set[Path]:
    out: set[Path] = set()
    for root in RUNTIME_STATE_ROOTS:
        if root.is_dir():
            out |= set(root.iterdir())
    return out


def _blob_cache_mtime() -> int | None:
    return HOST_BLOB_CACHE.stat().st_mtime_ns if HOST_BLOB_CACHE.exists() else None


class NetnsEngine:
    """tsubo with a root of its own inside a throwaway network namespace, for the network
    benchmarks: :attr:`tsubo` is its argv (``nsenter --net`` and ``--root`` included),
    :attr:`prefix` runs any command in the namespace. :meth:`open` makes the namespace
    (``lo`` up) and a busybox rootfs; :meth:`close` undoes everything, also after a failed
    :meth:`open`."""

    def __init__(self, name: str) -> None:
        self.sandbox = Sandbox(f"tsubo-bench-{name}-")
        self.netns = f"tsubo-bench-{os.getpid()}"
        self.prefix = ["nsenter", f"--net=/run/netns/{self.netns}"]
        self.root = self.sandbox.tmp / "tsubo"
        self.tsubo = [*self.prefix, str(TSUBO), "--root", str(self.root)]

    def open(self) -> Path:
        """Make the namespace; the rootfs for ``--rootfs``."""
        run_command(["ip", "netns", "add", self.netns])
        run_command([*self.prefix, "ip", "link", "set", "lo", "up"])
        return make_busybox_rootfs(self.sandbox.tmp / "rootfs")

    def close(self, networks: Sequence[str]) -> list[str]:
        """Remove every container and the *networks*, wait for the monitor to go, delete
        the namespace; the sandbox's problems after that (what was left behind)."""
        ids = run_command([*self.tsubo, "ps", "-aq"]).stdout.split()
        for start in range(0, len(ids), 50):
            run_command([*self.tsubo, "rm", "-f", *ids[start:start + 50]], timeout=300)
        for network in networks:
            run_command([*self.tsubo, "network", "rm", network])
        deadline = time.monotonic() + 10
        while (self.root / "run" / "monitor.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.sandbox.settle()
        run_command(["ip", "netns", "del", self.netns])
        return self.sandbox.close()


class Sandbox:
    """A temp dir and the host state before the benchmark; :meth:`close` checks (and, for
    what is provably ours, undoes) everything the benchmark might leave behind."""

    def __init__(self, prefix: str) -> None:
        set_child_subreaper()
        # tsubo's containers go under a cgroup parent of the benchmark's own, removed in close()
        self.cgroup_parent = f"tsubo-bench-{os.getpid()}"
        os.environ["TSUBO_CGROUP_PARENT"] = self.cgroup_parent
        self.cgroups_before = engine_cgroups()
        self.states_before = runtime_state_entries()
        self.blob_cache_before = _blob_cache_mtime()
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.tmp.chmod(0o700)
        # every id an engine printed (or listed): its cgroups and state entries are ours
        self.container_ids: set[str] = set()
        self.expected_mounts: set[str] = set()  # unmounted at close without complaint

    def mounts_under_tmp(self) -> list[str]:
        tmp = str(self.tmp)
        return [mp for mp in mountpoints() if mp == tmp or mp.startswith(f"{tmp}/")]

    def processes_mentioning_tmp(self) -> dict[int, str]:
        tmp = str(self.tmp)
        return live_processes_where(lambda _pid, argv: any(tmp in arg for arg in argv))

    def settle(self, timeout: float = SETTLE_TIMEOUT,
               keep: Callable[[str], bool] | None = None) -> dict[int, str]:
        """Reap zombies until no helper of ours runs (no live child, no process whose argv
        mentions the temp dir: monitors, conmon, `podman container cleanup`); helpers whose
        command line *keep* accepts may stay (a long-lived monitor). Returns the survivors
        after *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            reap_zombie_children()
            left = {**live_children(), **self.processes_mentioning_tmp()}
            if keep is not None:
                left = {pid: argv for pid, argv in left.items() if not keep(argv)}
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.005)

    def _ours(self, path: Path) -> bool:
        return any(cid in path.name for cid in self.container_ids)

    def close(self) -> list[str]:
        """Teardown check; returns the problems (empty: nothing left behind)."""
        problems: list[str] = []
        self.settle()
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            parent = hierarchy / self.cgroup_parent
            if parent.is_dir():
                try:
                    parent.rmdir()
                except OSError as error:
                    problems.append(f"cgroup {parent} left: {error.strerror}")
        children = live_children()
        if children:
            problems.append(f"helpers still running, killed (ours, by pid): {children}")
            kill_and_reap(children)
        strays = self.processes_mentioning_tmp()
        if strays:  # not our descendants: reported, never killed
            problems.append(f"processes mentioning {self.tmp} remain: {strays}")
        # Mounts under the temp dir are ours: unmount, deepest first. Only the expected ones
        # (podman's overlay driver leaves its home bind-mounted on itself) are not a leak.
        for mountpoint in sorted(self.mounts_under_tmp(), key=len, reverse=True):
            if mountpoint not in self.expected_mounts:
                problems.append(f"mount left (unmounted now): {mountpoint}")
            proc = subprocess.run(["umount", mountpoint], capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"umount {mountpoint}: {proc.stderr.strip()}")
        mounts = self.mounts_under_tmp()
        if mounts:
            problems.append(f"mounts left under {self.tmp} (temp dir NOT removed): {mounts}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.tmp.exists():
                problems.append(f"could not remove {self.tmp}")
        # Other users of this host (tests) may create and remove tsubo/libpod cgroups and
        # runtime state at the same time: only those named by one of our container ids count.
        new_cgroups = [path for path in engine_cgroups() - self.cgroups_before if self._ours(path)]
        for path in sorted(new_cgroups, key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()
                problems.append(f"cgroup left (removed now): {path}")
            except OSError as error:
                problems.append(f"cgroup left: {path} ({error.strerror})")
        states = sorted(
            str(p) for p in runtime_state_entries() - self.states_before if self._ours(p)
        )
        if states:
            problems.append(f"runtime state entries left: {states}")
        if _blob_cache_mtime() != self.blob_cache_before:
            problems.append(f"the host's {HOST_BLOB_CACHE} was written")
        reap_zombie_children()
        return problems


# ---------------------------------------------------------------------------------------------
# isolated podman


CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
image_copy_tmp_dir = "{tmp}/vartmp"

[engine.runtimes]
runc = ["{runc}"]
tsubo = ["{tsubo_runtime}"]
"""

STORAGE_CONF = """\
[storage]
driver = "{driver}"
graphroot = "{tmp}/graph"
runroot = "{tmp}/run"
"""

PODMAN_DIRS = ("graph", "run", "libpod-tmp", "networks", "vartmp", "shadow")
IMAGE = "localhost/tsubo-bench-busybox:latest"


class Podman:
    """`podman <root flags> ARGV...`, everything kept under *tmp* (see the module docstring).
    The default runtime is runc; pass ``--runtime`` to choose."""

    def __init__(self, binary: str, runc: str, tmp: Path) -> None:
        self.binary = binary
        self.runc = runc
        self.tmp = tmp
        self.driver = ""
        self.driver_note = ""
        self.expected_mounts: set[str] = set()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONTAINER", "PODMAN", "REGISTRY_AUTH"))
        }
        self.env["CONTAINERS_CONF"] = str(tmp / "containers.conf")
        self.env["CONTAINERS_STORAGE_CONF"] = str(tmp / "storage.conf")
        self.env["TMPDIR"] = str(tmp / "vartmp")

    def argv(self, *args: str) -> list[str]:
        t = self.tmp
        return [
            self.binary,
            "--root", str(t / "graph"),
            "--runroot", str(t / "run"),
            "--tmpdir", str(t / "libpod-tmp"),
            "--network-config-dir", str(t / "networks"),
            "--storage-driver", self.driver,
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            *args,
        ]  # fmt: skip

    def run(self, *args: str, wrap: Sequence[str] = (), timeout: float = TIMEOUT) -> Result:
        # cwd: conmon writes files (e.g. `oom`) into its working directory
        return run_command([*wrap, *self.argv(*args)], env=self.env, cwd=self.tmp,
                           timeout=timeout)

    def ok(self, *args: str, timeout: float = TIMEOUT) -> str:
        result = self.run(*args, timeout=timeout)
        if not result.ok:
            raise BenchError(f"podman failed:\n{result.describe()}")
        return result.stdout

    def setup(self, tar: Path, drivers: Sequence[str] = ("overlay", "vfs")) -> None:
        """Import *tar* as IMAGE with the first storage driver for which import and a
        `run --rm true` work; a failed driver's storage is wiped before the next."""
        failures: list[str] = []
        for driver in drivers:
            self._configure(driver)
            problem = self._import(tar)
            if not problem:
                trial = self.run("run", "--rm", "--pull", "never", "--network", "none",
                                 "--runtime", self.runc, IMAGE, "true")
                problem = "" if trial.ok else trial.describe()
            if not problem:
                if failures:
                    self.driver_note = "; ".join(failures)
                if driver == "overlay":
                    self.expected_mounts.add(str(self.tmp / "graph" / "overlay"))
                return
            failures.append(f"{driver} failed: {problem.splitlines()[-1]}")
            self._reset()
        raise BenchError("podman works with no storage driver here:\n" + "\n".join(failures))

    def _configure(self, driver: str) -> None:
        self.driver = driver
        for name in PODMAN_DIRS:
            (self.tmp / name).mkdir(mode=0o700, exist_ok=True)
        (self.tmp / "containers.conf").write_text(
            CONTAINERS_CONF.format(tmp=self.tmp, runc=self.runc, tsubo_runtime=TSUBO_RUNTIME)
        )
        (self.tmp / "storage.conf").write_text(STORAGE_CONF.format(driver=driver, tmp=self.tmp))

    def shadow_wrap(self) -> list[str]:
        """A command prefix for podman commands that copy images (import, build):
        containers/image writes its blob-info cache to /var/lib/containers/cache for root,
        whatever --root says: shadow that (or /var/lib if it is absent) in a private mount
        namespace that dies with the command."""
        target = "/var/lib/containers" if Path("/var/lib/containers").is_dir() else "/var/lib"
        shadow = f'mount --bind {shlex.quote(str(self.tmp / "shadow"))} {target} && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", shadow, "sh"]

    def _import(self, tar: Path) -> str:
        result = self.run("import", str(tar), IMAGE, wrap=self.shadow_wrap())
        return "" if result.ok else result.describe()

    def _reset(self) -> None:
        self.run("rm", "-af", "-t", "0")
        self.run("rmi", "-af")
        tmp = str(self.tmp)
        for mountpoint in sorted(mountpoints(), key=len, reverse=True):
            if mountpoint.startswith(f"{tmp}/"):
                subprocess.run(["umount", mountpoint], capture_output=True)
        for name in PODMAN_DIRS:
            shutil.rmtree(self.tmp / name, ignore_errors=True)

    def container_ids(self) -> set[str]:
        """Every container id in this podman's event log (containers already removed too)."""
        result = self.run("events", "--stream=false", "--filter", "type=container",
                          "--format", "{{.ID}}")
        return {line for line in result.stdout.split() if len(line) == 64} if result.ok else set()

    def teardown(self) -> list[str]:
        """Remove every container and image; returns problems."""
        problems = []
        for args in (("rm", "-af", "-t", "0"), ("rmi", "-af")):
            try:
                result = self.run(*args)
                if not result.ok:
                    problems.append(result.describe())
            except subprocess.TimeoutExpired:
                problems.append(f"podman {' '.join(args)} timed out")
        try:
            left = self.run("ps", "-aq").stdout.split()
            if left:
                problems.append(f"podman containers left after rm -af: {left}")
        except subprocess.TimeoutExpired:
            problems.append("podman ps -aq timed out")
        return problems


def conmon_pids(container_ids: Iterable[str]) -> dict[str, int]:
    """Container id -> pid of the live conmon whose argv has `-c <id>` (or `--cid <id>`)."""
    wanted = set(container_ids)
    out: dict[str, int] = {}
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is None or stat[0] != "conmon" or stat[1] in ("Z", "X"):
            continue
        argv = cmdline(pid)
        for flag, value in itertools.pairwise(argv):
            if flag in ("-c", "--cid") and value in wanted:
                out[value] = pid
    return out
