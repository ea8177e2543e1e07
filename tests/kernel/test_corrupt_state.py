"""Attacks on tsubo-runtime's state records, on the real kernel (issue 15, item 5).

A running container's ``state.json`` is replaced by garbage, nothing, a symlink (to another
container's valid record), a document nested 100,000 deep, or one larger than the limit
(whitespace, or one huge string); the container is running or paused. Then:

- ``list`` still lists every other container (the broken one as ``unknown``, its problem
  on stderr in one line), table and JSON;
- ``state`` of it is one line on stderr and exit 1, never a traceback;
- ``delete --force`` kills its init and removes its cgroup through the cleanup record, exits
  0 and leaves nothing (the autouse leak check also compares processes, mounts and cgroups);
  the other container, even the one a symlink pointed at, is untouched.

The cleanup record is attacked too: a reused pid (right pid, wrong start time) is never
signalled; with both records destroyed the folder goes and the error says what is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import leakcheck
from tests.conftest import Bundle, MakeBundle, RuntimeCLI

STATE = "state.json"
CLEANUP = "cleanup.json"
#: tsubo-runtime's limit on a state record (runtime/store.py MAX_STATE_BYTES)
STATE_LIMIT = (16 << 20) + (64 << 10)


def cgroup_dirs(cgroups_path: str) -> list[Path]:
    rel = cgroups_path.lstrip("/")
    return [h / rel for h in leakcheck.cgroup_hierarchies() if (h / rel).exists()]


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a killed init waits for us, its subreaper, as a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Error:" not in proc.stderr.split(":", 1)[0], \
        proc.stderr


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    no_traceback(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    return lines[0]


def start_sleeper(runtime: RuntimeCLI, bundle: Bundle, cid: str) -> int:
    """create + start ``sleep 300``; the init's pid."""
    created = runtime.run("create", "--bundle", str(bundle.path), cid)
    assert created.returncode == 0, created.stderr
    assert runtime.run("start", cid).returncode == 0
    state = runtime.wait_status(cid, "running")
    return int(state["pid"])


def symlink_to_other(runtime: RuntimeCLI, victim: str, other: str) -> None:
    path = runtime.root / victim / STATE
    path.unlink()
    path.symlink_to(runtime.root / other / STATE)


CORRUPTIONS: dict[str, Callable[[RuntimeCLI, str, str], object]] = {
    "garbage": lambda rt, victim, other: (rt.root / victim / STATE).write_bytes(
        b"\x00\xffnot json at all {{{"),
    "empty": lambda rt, victim, other: (rt.root / victim / STATE).write_bytes(b""),
    "symlink": symlink_to_other,
    "nested 100000 deep": lambda rt, victim, other: (rt.root / victim / STATE).write_bytes(
        b'{"id":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "huge whitespace": lambda rt, victim, other: (rt.root / victim / STATE).write_bytes(
        b" " * (STATE_LIMIT + 1)),
    "huge string": lambda rt, victim, other: (rt.root / victim / STATE).write_bytes(
        b'{"id": "' + b"x" * STATE_LIMIT + b'"}'),
}
PROBLEMS = {
    "garbage": "not valid UTF-8",
    "empty": "not valid JSON",
    "symlink": "a symlink, not followed",
    "nested 100000 deep": "nested deeper than 64 levels",
    "huge whitespace": f"larger than {STATE_LIMIT} bytes",
    "huge string": f"larger than {STATE_LIMIT} bytes",
}


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_one_corrupt_state_record(runtime: RuntimeCLI, make_bundle: MakeBundle,
                                  corruption: str, paused: bool) -> None:
    other_bundle = make_bundle(["sleep", "300"])
    other = runtime.container_id()
    other_pid = start_sleeper(runtime, other_bundle, other)
    victim_bundle = make_bundle(["sleep", "300"])
    victim = runtime.container_id()
    victim_pid = start_sleeper(runtime, victim_bundle, victim)
    if paused:
        assert runtime.run("pause", victim).returncode == 0
        runtime.wait_status(victim, "paused")
    CORRUPTIONS[corruption](runtime, victim, other)
    problem = PROBLEMS[corruption]

    table = runtime.run("list")
    assert table.returncode == 0, table.stderr
    no_traceback(table)
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows[other][1:3] == [str(other_pid), "running"]
    assert rows[victim][2] == "unknown"
    warnings = table.stderr.splitlines()
    assert len(warnings) == 1 and victim in warnings[0] and problem in warnings[0], warnings
    listed = runtime.run("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    by_id = {state["id"]: state for state in json.loads(listed.stdout)}
    assert by_id[other]["status"] == "running"
    assert by_id[victim]["status"] == "unknown" and problem in by_id[victim]["error"]
    assert sorted(runtime.list_ids()) == sorted([other, victim])

    line = one_line_error(runtime.run("state", victim))
    assert victim in line and problem in line
    assert bad_commands_fail_in_one_line(runtime, victim, problem)

    deleted = runtime.run("delete", "--force", victim)
    assert deleted.returncode == 0, deleted.stderr
    no_traceback(deleted)
    assert not is_running(victim_pid), "the init survived delete --force"
    assert cgroup_dirs(victim_bundle.cgroups_path) == []
    assert not (runtime.root / victim).exists()
    leakcheck.reap_zombie_children()

    # the other container, the one a symlink pointed at included, is untouched
    assert is_running(other_pid)
    assert runtime.state(other)["status"] == "running"
    assert runtime.list_ids() == [other]
    assert cgroup_dirs(other_bundle.cgroups_path) != []


def bad_commands_fail_in_one_line(runtime: RuntimeCLI, cid: str, problem: str) -> bool:
    for argv in (["kill", cid, "KILL"], ["ps", cid], ["pause", cid], ["resume", cid],
                 ["start", cid], ["delete", cid], ["exec", cid, "true"]):
        line = one_line_error(runtime.run(*argv))
        assert cid in line and problem in line, (argv, line)
    return True


def test_a_reused_pid_in_the_cleanup_record_is_never_killed(
        runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """The cleanup record names some other live process (right pid, wrong start time): that
    process lives; the container's init still goes, found by cgroup membership."""
    bundle = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    init = start_sleeper(runtime, bundle, cid)
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        cleanup = json.loads((runtime.root / cid / CLEANUP).read_text())
        assert cleanup["pid"] == init
        start_time = int(Path(f"/proc/{bystander.pid}/stat").read_text()
                         .rsplit(")", 1)[1].split()[19])
        cleanup.update(pid=bystander.pid, startTime=start_time + 1)
        (runtime.root / cid / CLEANUP).write_text(json.dumps(cleanup))
        (runtime.root / cid / STATE).write_text("garbage")

        deleted = runtime.run("delete", "--force", cid)
        assert deleted.returncode == 0, deleted.stderr
        assert bystander.poll() is None, "a process with a reused pid was killed"
        assert not is_running(init)
        assert cgroup_dirs(bundle.cgroups_path) == []
        assert not (runtime.root / cid).exists()
    finally:
        bystander.kill()
        bystander.wait()
        leakcheck.reap_zombie_children()


def test_both_records_destroyed_is_one_honest_warning(runtime: RuntimeCLI,
                                                     make_bundle: MakeBundle) -> None:
    """Nothing left that names the init or the cgroup: the folder goes (exit 0, as runc),
    and one warning line says what may be left (the test then removes it by hand)."""
    bundle = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    init = start_sleeper(runtime, bundle, cid)
    try:
        (runtime.root / cid / STATE).write_bytes(b"[" * 100_000)
        (runtime.root / cid / CLEANUP).write_bytes(b"")
        deleted = runtime.run("delete", "--force", cid)
        assert deleted.returncode == 0, deleted.stderr
        no_traceback(deleted)
        [line] = deleted.stderr.splitlines()
        assert cid in line and "could not be found" in line
        assert "nested deeper than 64 levels" in line and "cleanup record" in line
        assert not (runtime.root / cid).exists()
        assert is_running(init)  # honestly not found: nothing killed by guesswork
        deleted = runtime.run("delete", "--force", cid)
        assert (deleted.returncode, deleted.stderr) == (0, "")  # gone is gone
    finally:
        if is_running(init):
            os.kill(init, 9)
        deadline = time.monotonic() + 10
        while is_running(init) and time.monotonic() < deadline:
            time.sleep(0.02)
        leakcheck.reap_zombie_children()
        for directory in reversed(cgroup_dirs(bundle.cgroups_path)):
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def test_a_symlinked_container_folder_is_not_followed(runtime: RuntimeCLI,
                                                     make_bundle: MakeBundle) -> None:
    """``ROOT/alias -> ROOT/<running container>``: not listed; ``delete --force alias``
    removes the link only, and the container behind it runs on with its records."""
    bundle = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    init = start_sleeper(runtime, bundle, cid)
    (runtime.root / "alias").symlink_to(runtime.root / cid)
    assert runtime.list_ids() == [cid]
    for argv in (["state", "alias"], ["kill", "alias", "KILL"], ["pause", "alias"]):
        line = one_line_error(runtime.run(*argv))
        assert "alias is a symlink, not followed" in line, line
    deleted = runtime.run("delete", "--force", "alias")
    assert deleted.returncode == 0, deleted.stderr
    [warning] = deleted.stderr.splitlines()
    assert "alias is a symlink, not followed" in warning
    assert not (runtime.root / "alias").is_symlink()
    assert is_running(init) and runtime.state(cid)["status"] == "running"
    assert sorted(p.name for p in (runtime.root / cid).iterdir()) == [CLEANUP, STATE]


def test_a_created_container_with_a_fifo_for_a_state_file(runtime: RuntimeCLI,
                                                          make_bundle: MakeBundle) -> None:
    """A FIFO in place of state.json: nothing blocks; delete --force kills the waiting init."""
    bundle = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    created = runtime.run("create", "--bundle", str(bundle.path), cid)
    assert created.returncode == 0, created.stderr
    init = int(runtime.state(cid)["pid"])
    (runtime.root / cid / STATE).unlink()
    os.mkfifo(runtime.root / cid / STATE)
    assert "not a regular file" in one_line_error(runtime.run("state", cid, timeout=10))
    listed = runtime.run("list", timeout=10)
    assert listed.returncode == 0 and cid in listed.stdout
    assert runtime.run("delete", "--force", cid, timeout=20).returncode == 0
    assert not is_running(init)
    assert cgroup_dirs(bundle.cgroups_path) == []
    leakcheck.reap_zombie_children()
