"""The monitor is not a single point of failure: attacks on it and on its keeper.

- 200 ``start``/``rm -f`` races: the monitor never dies (the same process serves a
  long-running container throughout), and nothing is left behind;
- ``kill -9`` of the monitor with 20 logging containers, a ``--restart always`` one and one
  about to exit 7 running, then any command: none is lost, every log is continuous, the
  restart policy still applies and the exit code is the container's own;
- ``kill -9`` of both the monitor and its keeper: the running containers are adopted and
  stay running, one that exits unseen is recorded with an unknown exit code, said so;
- a monitor killed while it creates a ``run --rm`` container leaves no row, folder or
  mount; a ``run --rm`` CLI killed during create leaves nothing once the container ends.

The pids killed here are the engine's own monitor and keeper of the test's root, read
from the engine's database and pid file: never a process found by name.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import EngineCLI, process_alive, wait_for

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli

_COUNTER = "i=0; while :; do echo $i; i=$((i+1)); usleep 20000; done"


def _rows(root: Path) -> dict[str, tuple[str, int, int, int, int | None, str]]:
    """name -> (state, pid, monitor_pid, restart_count, exit_code, error)."""
    connection = sqlite3.connect(f"file:{root / 'tsubo.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = connection.execute("SELECT name, state, pid, monitor_pid, restart_count, "
                                  "exit_code, error FROM containers").fetchall()
    finally:
        connection.close()
    return {name: (state, pid, monitor, restarts, code, error)
            for name, state, pid, monitor, restarts, code, error in rows}


def _monitor_pid(root: Path) -> int:
    monitors = {row[2] for row in _rows(root).values() if row[2]}
    assert len(monitors) == 1, monitors
    return monitors.pop()


def _keeper_pid(root: Path) -> int:
    return int((root / "run" / "keeper.pid").read_text().split()[0])


def _counter_values(cli: EngineCLI, name: str) -> list[int]:
    return [int(line) for line in cli.ok("logs", name).split()]


def _assert_continuous(values: list[int], name: str) -> None:
    assert values, f"{name}: no output"
    assert values == list(range(len(values))), \
        f"{name}: a gap in its log: {[v for i, v in enumerate(values) if v != i][:5]}"


def test_start_and_rm_f_racing_200_times_never_end_the_monitor(
        engine_cli: EngineCLI) -> None:
    engine_cli.run_d(["sleep", "600"], "--name", "bystander")
    monitor = _monitor_pid(engine_cli.root)

    def race(round_number: int) -> None:
        name = f"race{round_number}"
        engine_cli.ok("create", "--name", name, "--rootfs", str(engine_cli.rootfs),
                      "sleep", "60")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            start = pool.submit(engine_cli, "start", name)
            remove = pool.submit(engine_cli, "rm", "-f", name)
            started, removed = start.result(), remove.result()
        assert removed.returncode == 0, removed.stderr
        assert started.returncode in (0, 1, 125), started.stderr
        assert "Traceback" not in started.stderr + removed.stderr

    for round_number in range(200):
        race(round_number)
        assert process_alive(monitor), f"the monitor died in round {round_number}"
    assert set(_rows(engine_cli.root)) == {"bystander"}
    assert engine_cli.inspect("bystander")["State"]["Running"]
    assert engine_cli.container_dirs() == [engine_cli.inspect("bystander")["Id"]]
    engine_cli.ok("rm", "-f", "bystander")


def test_kill_9_of_the_monitor_loses_no_container_and_no_log_line(
        engine_cli: EngineCLI) -> None:
    """The figure of issue 15: 0 of 20 running containers lost, their logs continuous."""
    root = engine_cli.root
    for number in range(20):
        engine_cli.run_d(["sh", "-c", _COUNTER], "--name", f"log{number}")
    engine_cli.run_d(["sh", "-c", "echo up; sleep 1; exit 3"], "--name", "always",
                     "--restart", "always")
    engine_cli.run_d(["sh", "-c", "sleep 2; exit 7"], "--name", "seven")
    before = _rows(root)
    time.sleep(0.5)
    os.kill(_monitor_pid(root), signal.SIGKILL)
    time.sleep(1.5)  # the containers write on; "seven" exits while a new monitor starts
    listed = engine_cli.ok("ps", "--format", "{{.Names}}").split()
    after = _rows(root)
    lost = [name for name in before if name.startswith("log") and
            (after[name][0] != "running" or after[name][1] != before[name][1])]
    assert not lost, f"{len(lost)} of 20 containers lost: {lost}"
    assert {f"log{number}" for number in range(20)} <= set(listed)
    assert wait_for(lambda: _rows(root)["seven"][0] == "exited", 10)
    assert _rows(root)["seven"][4] == 7, _rows(root)["seven"]
    assert wait_for(lambda: _rows(root)["always"][3] > before["always"][3] + 1, 15), \
        _rows(root)["always"]
    time.sleep(0.5)
    for number in range(20):
        _assert_continuous(_counter_values(engine_cli, f"log{number}"), f"log{number}")
    engine_cli.ok("rm", "-f", *before)


def test_kill_9_of_monitor_and_keeper_adopts_running_containers_honestly(
        engine_cli: EngineCLI) -> None:
    root = engine_cli.root
    engine_cli.run_d(["sleep", "600"], "--name", "sleeper")
    engine_cli.run_d(["sh", "-c", "sleep 1.5; exit 5"], "--name", "five")
    sleeper_pid = _rows(root)["sleeper"][1]
    keeper, monitor = _keeper_pid(root), _monitor_pid(root)
    os.kill(keeper, signal.SIGKILL)
    os.kill(monitor, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(monitor) and not process_alive(keeper), 5)
    assert engine_cli.ok("ps", "--format", "{{.Names}}").split() == ["five", "sleeper"] or \
        _rows(root)["five"][0] == "exited"
    assert _rows(root)["sleeper"][:2] == ("running", sleeper_pid)
    assert wait_for(lambda: _rows(root)["five"][0] == "exited", 10)
    five = engine_cli.inspect("five")["State"]
    assert five["ExitCode"] == 255 and "exit status unknown" in five["Error"], five
    assert engine_cli.ok("exec", "sleeper", "echo", "still here") == "still here\n"
    engine_cli.ok("rm", "-f", "sleeper", "five")
    assert engine_cli.container_dirs() == []


def _slow_create_image(cli: EngineCLI, tmp_path: Path) -> None:
    """An image whose VOLUME holds 3,000 files: its copy-up makes create take a while."""
    import tarfile

    tarball = tmp_path / "slow.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(cli.rootfs, arcname=".")
        payload = tmp_path / "payload"
        payload.write_bytes(b"x" * 100)
        for number in range(3000):
            tar.add(payload, arcname=f"data/f{number}")
    cli.ok("import", "-c", "VOLUME /data", str(tarball), "slow:1")


def test_a_monitor_killed_while_creating_a_run_rm_container_leaves_nothing(
        engine_cli: EngineCLI, tmp_path: Path) -> None:
    root = engine_cli.root
    _slow_create_image(engine_cli, tmp_path)
    engine_cli.run_d(["sleep", "600"], "--name", "keepalive")
    monitor = _monitor_pid(root)
    run = subprocess.Popen(engine_cli.argv("run", "--rm", "--name", "victim", "slow:1",
                                           "true"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=engine_fixtures.engine_env())
    assert wait_for(lambda: "victim" in _rows(root), 20, 0.005)
    os.kill(monitor, signal.SIGKILL)
    _, err = run.communicate(timeout=30)
    assert run.returncode != 0 and b"Traceback" not in err, err
    assert wait_for(lambda: "victim" not in _rows(root) or
                    engine_cli.ok("ps", "-a", "--format", "{{.Names}}") == "keepalive\n", 20)
    assert engine_cli.ok("ps", "-a", "--format", "{{.Names}}") == "keepalive\n"
    assert _rows(root)["keepalive"][0] == "running"
    keepalive_id = engine_cli.inspect("keepalive")["Id"]
    engine_cli.ok("system", "gc")
    assert engine_cli.container_dirs() == [keepalive_id]
    engine_cli.ok("rm", "-f", "keepalive")
    assert engine_fixtures.mounts_under(root) == []


def test_a_run_rm_cli_killed_during_create_leaves_nothing_once_the_container_ends(
        engine_cli: EngineCLI, tmp_path: Path) -> None:
    root = engine_cli.root
    _slow_create_image(engine_cli, tmp_path)
    run = subprocess.Popen(engine_cli.argv("run", "--rm", "--name", "orphan", "slow:1",
                                           "sleep", "1"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=engine_fixtures.engine_env())
    assert wait_for(lambda: "orphan" in _rows(root), 20, 0.005)
    run.kill()
    run.wait()
    assert wait_for(lambda: engine_cli.ok("ps", "-aq") == "", 20)
    assert engine_cli.container_dirs() == []


def test_system_gc_removes_container_folders_and_overlay_mounts_without_a_row(
        engine_cli: EngineCLI) -> None:
    """What a process killed between deleting a container's row and its folder leaves:
    a folder, its overlay still mounted, its run folder. `system gc` finds them all."""
    root = engine_cli.root
    container_id = engine_cli.ok("create", "--rootfs", str(engine_cli.rootfs), "true").strip()
    folder = root / "containers" / container_id
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={engine_cli.rootfs},upperdir={folder}/upper,"
                    f"workdir={folder}/work", str(folder / "merged")], check=True)
    (root / "run" / "containers" / container_id[:12]).mkdir(parents=True)
    connection = sqlite3.connect(root / "tsubo.db")
    with connection:
        connection.execute("DELETE FROM containers WHERE id = ?", (container_id,))
    connection.close()
    report = engine_cli.ok("system", "gc")
    assert f"unrecorded container {container_id[:12]}" in report, report
    assert engine_cli.container_dirs() == []
    assert not (root / "run" / "containers" / container_id[:12]).exists()
    assert engine_fixtures.mounts_under(root) == []


def test_a_monitor_killed_with_400_containers_is_replaced_and_adopts_them_all(
        engine_cli: EngineCLI) -> None:
    """Adopting hundreds: the keeper hands every kept container to the new monitor while
    the monitor must not wait on the keeper (both once blocked in sendmsg on full socket
    buffers, and the keeper killed each new monitor after its start-up timeout, forever)."""
    root = engine_cli.root
    count = 400

    def start(number: int) -> None:
        engine_cli.ok("run", "-d", "--name", f"c{number}", "--network", "none",
                      "--rootfs", str(engine_cli.rootfs), "sleep", "600")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(start, range(count)))
    before = _rows(root)
    monitor = _monitor_pid(root)
    os.kill(monitor, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(monitor), 5)
    started = time.monotonic()
    listed = engine_cli.ok("ps", "-q")  # served by a new monitor once it adopted them all
    assert len(listed.split()) == count
    after = _rows(root)
    new_monitors = {row[2] for row in after.values()}
    assert len(new_monitors) == 1 and monitor not in new_monitors, new_monitors
    assert all(after[name][:2] == ("running", before[name][1]) for name in before)
    assert engine_cli.ok("exec", "c7", "echo", "adopted") == "adopted\n"
    assert time.monotonic() - started < 30, "adoption took longer than 30 s"
    assert process_alive(new_monitors.pop())
    engine_cli.ok("rm", "-f", *before, timeout=180)
