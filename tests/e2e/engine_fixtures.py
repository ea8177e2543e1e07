"""Fixtures and helpers for the engine's end-to-end tests (``tsubo`` CLI and Python API).

    engine_cli    EngineCLI on a fresh per-test data root (``--root``) in tmp_path; teardown
                  removes every container (``rm -f $(ps -aq)``), waits until every monitor
                  process is gone and fails on an overlay mount left under the root
    engine_root   the same per-test root, for the Python API (same teardown)
    cli           Cli: ``tsubo --root tmp_path/root ARGV`` with ``run(*args, check=True)``;
                  teardown removes the containers and waits for the monitor and keeper to go
    rootfs_tar    the busybox rootfs as a gzip tarball, for ``tsubo import``

The CLI under test is ``$TSUBO_TEST_ENGINE`` (a path), default the venv's ``tsubo``. Its
containers given no ``--network`` get ``none``, not the default bridge: the session sets the
engine setting ``$TSUBO_DEFAULT_NETWORK=none`` (tests/conftest.py, engine_default_network),
which these fixtures pass on to every engine they start.

Monitors are forked (setsid, double fork) by the CLI, or by us through the API: they are
not our children, unless this process is a child subreaper, which the e2e leak check makes
it. The teardown waits for the monitors the database names (``containers.monitor_pid``)
and for every other process that names the root in its arguments or holds a file under it
open (a monitor keeps the database open; a shared monitor exits after an idle delay). It
only waits, by pid: it never kills anything, and never by name. A process still alive after
the wait is reported as a leak.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck

#: how long teardown waits for monitors to exit after the last container went away (a
#: shared monitor exits after an idle delay; a per-container one at once)
MONITOR_EXIT_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def engine_binary() -> Path:
    chosen = os.environ.get("TSUBO_TEST_ENGINE")
    return Path(chosen) if chosen else Path(sys.executable).parent / "tsubo"


def engine_env() -> dict[str, str]:
    """Our environment without the engine's root overrides (a test touches nothing global)."""
    return {k: v for k, v in os.environ.items() if k not in ("TSUBO_ROOT", "TSUBO_RUNROOT")}


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# processes, mounts


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the comm, or None if gone (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_alive(pid: int, start_time: int = 0) -> bool:
    """Alive (not a zombie), and the process started at *start_time* when that is given."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return not start_time or int(fields[19]) == start_time


def processes_using(root: Path) -> list[int]:
    """Live processes (not us) with *root* in an argument or an open fd under *root*: the
    CLI (``--root ROOT``) and the monitors, forked from it or from us (the API), which keep
    the engine database under the root open."""
    prefix = str(root)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            targets = [
                os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")
            ]
        except OSError:
            continue
        using = any(prefix.encode() in arg for arg in args) or any(
            t == prefix or t.startswith(prefix + "/") for t in targets
        )
        if using and process_alive(int(entry)):
            found.append(int(entry))
    return found


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def monitors_in_db(root: Path) -> set[tuple[int, int]]:
    """(monitor_pid, monitor_start_time) of every container row that names a monitor."""
    database = root / "tsubo.db"
    if not database.exists():
        return set()
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        rows = connection.execute(
            "SELECT monitor_pid, monitor_start_time FROM containers WHERE monitor_pid > 0"
        ).fetchall()
    finally:
        connection.close()
    return {(int(pid), int(start)) for pid, start in rows}


# ---------------------------------------------------------------------------------------------
# the CLI


@dataclass
class EngineCLI:
    """``tsubo --root ROOT ARGV...``; ``rootfs`` is the busybox rootfs for ``--rootfs``."""

    binary: Path
    root: Path
    rootfs: Path

    def argv(self, *args: str) -> list[str]:
        return [str(self.binary), "--root", str(self.root), *args]

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI; stdout/stderr captured as text; stdin is *input* or /dev/null.
        Output goes to temp files, not pipes: nothing the CLI starts can hold them open."""
        cmd = self.argv(*args)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                cmd,
                input=None if input is None else input.encode(),
                stdin=subprocess.DEVNULL if input is None else None,
                stdout=out,
                stderr=err,
                timeout=timeout,
                env=engine_env(),
                check=False,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                cmd,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )

    def ok(self, *args: str, input: str | None = None, timeout: float = CLI_TIMEOUT) -> str:
        """Run; assert exit 0 and an empty stderr; return stdout."""
        proc = self(*args, input=input, timeout=timeout)
        assert proc.returncode == 0, f"{args}: exit {proc.returncode}, stderr {proc.stderr!r}"
        assert proc.stderr == "", f"{args}: stderr {proc.stderr!r}"
        return proc.stdout

    def run_d(self, command: list[str], *options: str) -> str:
        """``run -d OPTIONS --rootfs ROOTFS COMMAND...``; asserts success; the full ID."""
        out = self.ok("run", "-d", *options, "--rootfs", str(self.rootfs), *command)
        container_id = out.strip()
        assert HEX64.match(container_id), f"run -d printed {out!r}, not a 64-hex ID"
        return container_id

    def run_fg(
        self,
        command: list[str],
        *options: str,
        input: str | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``run OPTIONS --rootfs ROOTFS COMMAND...`` attached."""
        return self(
            "run", *options, "--rootfs", str(self.rootfs), *command, input=input, timeout=timeout
        )

    def inspect(self, ref: str) -> dict[str, Any]:
        records = json.loads(self.ok("inspect", ref))
        assert isinstance(records, list) and len(records) == 1, records
        record = records[0]
        assert isinstance(record, dict)
        return record

    def status(self, ref: str) -> str:
        return str(self.inspect(ref)["State"]["Status"])

    def ids(self, *, all_states: bool = True) -> list[str]:
        out = self.ok("ps", "-q", *(["-a"] if all_states else []))
        return out.split()

    def wait_status(self, ref: str, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll inspect until State.Status is *wanted*; the record."""
        record: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal record
            record = self.inspect(ref)
            return bool(record["State"]["Status"] == wanted)

        assert wait_for(reached, timeout, 0.1), (
            f"{ref}: status {record.get('State', {}).get('Status')!r}, wanted {wanted!r}"
        )
        return record

    def container_dirs(self) -> list[str]:
        folder = self.root / "containers"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def one_line(text: str) -> str:
    """Assert *text* is exactly one non-empty line; return it."""
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line, got {text!r}"
    return lines[0]


# ---------------------------------------------------------------------------------------------
# teardown


def teardown_root(cli: EngineCLI) -> list[str]:
    """rm -f every container, wait for every monitor to exit, look for mounts left.
    Returns the problems found (never kills a process)."""
    root = cli.root
    problems: list[str] = []
    # Processes orphaned by a CLI that died (e.g. an exec'd process) are re-parented to us
    # (a child subreaper): a zombie of them keeps its pid namespace, and so the container's
    # init, from dying until it is reaped.
    leakcheck.reap_zombie_children()
    monitors = monitors_in_db(root)
    try:
        ids = cli.ids()
    except (AssertionError, subprocess.SubprocessError, OSError) as error:
        problems.append(f"ps -aq failed: {error}")
        ids = []
    if ids:
        try:
            proc = cli("rm", "-f", *ids)
            if proc.returncode != 0:
                problems.append(f"rm -f {' '.join(ids)}: exit {proc.returncode}: {proc.stderr}")
        except subprocess.SubprocessError as error:
            problems.append(f"rm -f: {error}")
    monitors |= monitors_in_db(root)

    def all_gone() -> bool:
        leakcheck.reap_zombie_children()
        return not any(process_alive(pid, start) for pid, start in monitors) and not (
            processes_using(root)
        )

    if not wait_for(all_gone, MONITOR_EXIT_TIMEOUT, 0.05):
        alive = sorted(pid for pid, start in monitors if process_alive(pid, start))
        others = processes_using(root)
        problems.append(
            f"monitor processes still alive {MONITOR_EXIT_TIMEOUT:.0f} s after rm -f: "
            f"db monitors {alive}, processes using the root {others}"
        )
    left = mounts_under(root)
    if left:
        problems.append(f"mounts left under the engine root: {left}")
    return problems


@pytest.fixture(scope="session")
def engine_cgroup_parents(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run one container before any test, so the runtime's shared cgroup parents (/tsubo in
    every hierarchy, never removed, like runc's) exist before the leak check's first
    snapshot; its monitor is waited for."""
    binary = engine_binary()
    if os.geteuid() != 0 or not binary.exists():
        return
    cli = EngineCLI(binary, tmp_path_factory.mktemp("engine-warmup") / "root", busybox_rootfs)
    cli("run", "--rm", "--rootfs", str(busybox_rootfs), "true")
    problems = teardown_root(cli)
    if problems:
        pytest.fail("engine warm-up teardown:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def engine_cli(
    tmp_path: Path,
    busybox_rootfs: Path,
    engine_cgroup_parents: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EngineCLI]:
    """EngineCLI on a fresh data root ``tmp_path/engine``; see the module docstring."""
    binary = engine_binary()
    if not binary.exists():
        pytest.skip(f"engine CLI not found: {binary} (set TSUBO_TEST_ENGINE)")
    monkeypatch.delenv("TSUBO_ROOT", raising=False)
    monkeypatch.delenv("TSUBO_RUNROOT", raising=False)
    cli = EngineCLI(binary, tmp_path / "engine", busybox_rootfs)
    yield cli
    problems = teardown_root(cli)
    if problems:
        pytest.fail("engine teardown:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def engine_root(engine_cli: EngineCLI) -> Path:
    """The per-test engine data root, for the Python API (engine_cli's teardown applies)."""
    return engine_cli.root


# ---------------------------------------------------------------------------------------------
# the image tests' CLI (test_engine_images.py, test_engine_archive.py, ...)


class Cli:
    """``tsubo --root ROOT ARGV...`` with text output; *check* asserts exit 0."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(engine_binary()), "--root", str(self.root), *args],
                              capture_output=True, text=True, timeout=CLI_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    engine = Cli(tmp_path / "root")
    try:
        yield engine
    finally:
        ids = engine.run("ps", "-aq", check=False).stdout.split()
        if ids:
            engine.run("rm", "-f", *ids, check=False)
        wait_engine_gone(engine.root)


def wait_engine_gone(root: Path, timeout: float = 10.0) -> bool:
    """Wait until the root's monitor (it idles out ~2 s after its last container) and its
    keeper (which leaves with it) are gone: by the socket and the pid file they own."""
    return wait_for(lambda: not (root / "run" / "monitor.sock").exists()
                    and not (root / "run" / "keeper.pid").exists(), timeout, 0.05)


@pytest.fixture
def rootfs_tar(busybox_rootfs: Path, tmp_path: Path) -> Path:
    path = tmp_path / "busybox.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(busybox_rootfs, arcname=".")
    return path
