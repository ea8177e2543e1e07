"""End-to-end tests of the ``tsubo`` engine CLI against Docker's behaviour (root only).

Every test gets its own engine root (``engine_cli``); containers use ``--rootfs`` (the
busybox rootfs) and the default ``--network none``. Teardown removes every container, waits
for the monitors to exit and checks that no overlay mount is left (engine_fixtures.py); the
autouse leak check compares host state.

Exit codes are Docker's: ``docker run`` gives 125 for an engine error, 126 when the command
cannot be executed, 127 when it is not found, the container's status otherwise. The other
commands (``rm``, ``exec`` failing before the process starts, ...) exit 1 with the error, as
docker/cli does for every error that is not a ``StatusError`` (``cmd/docker/docker.go``; the
``docker exec`` reference shows ``exec`` on a paused container ending with ``$? == 1``).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import (
    HEX64,
    EngineCLI,
    engine_env,
    one_line,
    wait_for,
)

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli

#: docker/cli's exit status for an error that is not the container's own (rm, exec, ...)
DOCKER_CLI_ERROR = 1
EXIT_ENGINE = 125
RFC3339_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) ")
TRAP_TERM = ["sh", "-c", 'trap "exit 3" TERM; while :; do sleep 0.1; done']


def run_in_pty(argv: list[str], timeout: float = 20.0,
               answer: tuple[bytes, bytes] | None = None) -> tuple[int, bytes]:
    """Run *argv* with a new pty as its controlling terminal and stdio; (exit code, all
    it printed). A child still running after *timeout* is killed (by its pid) and fails.
    *answer* (prompt, reply): type the reply once the prompt was printed."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execve(argv[0], argv, engine_env())
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the last slave fd closed
                break
            if not data:
                break
            out += data
            if answer is not None and answer[0] in out:
                os.write(fd, answer[1])
                answer = None
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert not timed_out, f"{argv} still running after {timeout} s; printed {out!r}"
    return os.waitstatus_to_exitcode(status), out


def term_handler_installed(cli: EngineCLI, ref: str, timeout: float = 5.0) -> None:
    """Wait until the container's PID 1 catches SIGTERM (the TRAP_TERM shell's trap is set)."""

    def caught() -> bool:
        pid = cli.inspect(ref)["State"]["Pid"]
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
        return bool(mask & (1 << (signal.SIGTERM - 1)))

    assert wait_for(caught, timeout), f"{ref}: no TERM handler after {timeout} s"


def unique_prefix(container_id: str, others: list[str], minimum: int = 4) -> str:
    for length in range(minimum, 64):
        prefix = container_id[:length]
        if not any(o != container_id and o.startswith(prefix) for o in others):
            return prefix
    return container_id


# ---------------------------------------------------------------------------------------------
# run: output, exit codes, --rm, refusals


def test_run_separates_streams_and_passes_exit_code(engine_cli: EngineCLI) -> None:
    proc = engine_cli.run_fg(["sh", "-c", "echo out; echo err >&2"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "out\n", "err\n")

    proc = engine_cli.run_fg(["sh", "-c", "echo bye; exit 7"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "bye\n", "")

    # -i without -t: our stdin reaches the container, its EOF too
    proc = engine_cli.run_fg(["cat"], "-i", input="hello\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\n", "")


def test_run_rm_leaves_nothing(engine_cli: EngineCLI) -> None:
    proc = engine_cli.run_fg(["sh", "-c", "echo gone"], "--rm")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "gone\n", "")
    # docker run --rm returns once the container is removed: nothing is left right away
    assert engine_cli.ids() == []
    assert engine_cli.container_dirs() == []


def test_run_command_cannot_start(engine_cli: EngineCLI) -> None:
    wanted = {
        "nosuchcommand": 127,  # not found in $PATH
        "/nonexistent/program": 127,  # no such file
        "/etc/passwd": 126,  # not executable
        "/etc": 126,  # a directory
    }
    got = {}
    for command in wanted:
        proc = engine_cli.run_fg([command])
        assert proc.stdout == ""
        line = one_line(proc.stderr)
        assert command in line
        got[command] = proc.returncode
    assert got == wanted


def test_run_duplicate_name_fails_and_keeps_first(engine_cli: EngineCLI) -> None:
    first = engine_cli.run_d(["sleep", "100"], "--name", "web")
    proc = engine_cli(
        "run", "-d", "--name", "web", "--rootfs", str(engine_cli.rootfs), "sleep", "100"
    )
    assert proc.returncode == EXIT_ENGINE
    assert proc.stdout == ""
    assert "web" in one_line(proc.stderr)
    assert engine_cli.ids() == [first[:12]]
    record = engine_cli.inspect("web")
    assert record["Id"] == first
    assert record["State"]["Running"] is True
    assert engine_cli.container_dirs() == [first]


def test_run_refuses_bad_input(engine_cli: EngineCLI, tmp_path: Path) -> None:
    for flags in (["--memory", "abc"], ["--cpus", "-1"], ["--restart", "bogus"]):
        proc = engine_cli("run", "--rm", *flags, "--rootfs", str(engine_cli.rootfs), "true")
        assert (proc.returncode, proc.stdout) == (EXIT_ENGINE, ""), flags
        line = one_line(proc.stderr)
        assert flags[0] in line and flags[1] in line, line

    missing = tmp_path / "no-such-rootfs"
    proc = engine_cli("run", "--rm", "--rootfs", str(missing), "true")
    assert proc.returncode == EXIT_ENGINE
    assert str(missing) in one_line(proc.stderr)

    proc = engine_cli("run", "--rm", "--pull", "never", "tsubo-test-no-such-image:latest",
                      "true")  # (a missing image is pulled otherwise: test_engine_runflags)
    assert proc.returncode == EXIT_ENGINE
    line = one_line(proc.stderr)
    assert "no such image" in line.lower() and "tsubo-test-no-such-image" in line

    assert engine_cli.ids() == []
    assert engine_cli.container_dirs() == []


# ---------------------------------------------------------------------------------------------
# -d, ps, inspect, id prefixes


def test_detached_container_in_ps(engine_cli: EngineCLI) -> None:
    running = engine_cli.run_d(["sleep", "100"], "--name", "runner")
    exited = engine_cli.run_d(["true"], "--name", "quitter")
    assert engine_cli.ok("wait", exited) == "0\n"

    table = engine_cli.ok("ps").splitlines()
    assert table[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    assert len(table) == 2
    assert table[1].startswith(running[:12]) and table[1].endswith("runner")
    assert " Up " in table[1]

    assert engine_cli.ok("ps", "-q") == f"{running[:12]}\n"
    assert sorted(engine_cli.ok("ps", "-aq").split()) == sorted([running[:12], exited[:12]])
    everything = engine_cli.ok("ps", "-a")
    assert "quitter" in everything and "Exited (0)" in everything
    assert engine_cli.ok("ps", "-q", "--filter", "status=exited") == f"{exited[:12]}\n"
    assert engine_cli.ok("ps", "-q", "--filter", "status=running") == f"{running[:12]}\n"
    assert engine_cli.ok("ps", "--format", "{{.ID}} {{.Names}}") == f"{running[:12]} runner\n"
    lines = engine_cli.ok("ps", "-a", "--format", "json").splitlines()
    records = {r["Names"]: r for r in map(json.loads, lines)}
    assert set(records) == {"runner", "quitter"}
    assert records["runner"]["ID"] == running[:12]
    assert records["runner"]["State"] == "running"
    assert records["runner"]["Status"].startswith("Up ")
    assert records["quitter"]["State"] == "exited"
    assert records["quitter"]["Status"].startswith("Exited (0) ")


def test_inspect_fields(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sleep", "100"], "--memory", "64m")
    record = engine_cli.inspect(container_id)
    assert record["Id"] == container_id
    assert record["State"]["Status"] == "running"
    assert record["State"]["Running"] is True
    pid = record["State"]["Pid"]
    assert isinstance(pid, int) and pid > 0
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00100\x00"
    assert record["Config"]["Hostname"] == container_id[:12]
    assert record["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert record["Path"] == "sleep" and record["Args"] == ["100"]
    assert engine_cli.ok("exec", container_id, "hostname") == f"{container_id[:12]}\n"


def test_unique_id_prefix_works_in_every_command(engine_cli: EngineCLI) -> None:
    target = engine_cli.run_d(TRAP_TERM)
    other = engine_cli.run_d(["sleep", "100"])
    ref = unique_prefix(target, [other])
    term_handler_installed(engine_cli, target)
    assert engine_cli.inspect(ref)["Id"] == target
    assert engine_cli.ok("exec", ref, "echo", "in") == "in\n"
    assert engine_cli.ok("logs", ref) == ""
    assert engine_cli.ok("ps", "-q", "--filter", f"id={ref}") == f"{target[:12]}\n"
    engine_cli.ok("pause", ref)
    assert engine_cli.status(target) == "paused"
    engine_cli.ok("unpause", ref)
    assert engine_cli.status(target) == "running"
    engine_cli.ok("kill", "-s", "TERM", ref)
    assert engine_cli.ok("wait", ref) == "3\n"
    engine_cli.ok("start", ref)
    assert engine_cli.status(target) == "running"
    term_handler_installed(engine_cli, target)
    engine_cli.ok("restart", ref)
    assert engine_cli.status(target) == "running"
    term_handler_installed(engine_cli, target)
    engine_cli.ok("stop", ref)
    assert engine_cli.inspect(target)["State"]["ExitCode"] == 3
    engine_cli.ok("rm", ref)
    assert engine_cli.ids() == [other[:12]]


# ---------------------------------------------------------------------------------------------
# logs


def test_logs_tail_and_timestamps(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sh", "-c", "for i in 1 2 3; do echo line$i; done"])
    assert engine_cli.ok("wait", container_id) == "0\n"
    assert engine_cli.ok("logs", container_id) == "line1\nline2\nline3\n"
    assert engine_cli.ok("logs", "--tail", "1", container_id) == "line3\n"
    stamped = engine_cli.ok("logs", "-t", container_id).splitlines()
    assert len(stamped) == 3
    for number, line in enumerate(stamped, 1):
        assert RFC3339_PREFIX.match(line), line
        assert line.split(" ", 1)[1] == f"line{number}"

    # logs keeps the streams apart
    other = engine_cli.run_d(["sh", "-c", "echo to-out; echo to-err >&2"])
    assert engine_cli.ok("wait", other) == "0\n"
    proc = engine_cli("logs", other)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "to-out\n", "to-err\n")


def test_logs_follow_ends_when_container_exits(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(
        ["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick$i; sleep 0.2; done"]
    )
    started = time.monotonic()
    proc = engine_cli("logs", "-f", container_id, timeout=20)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(f"tick{i}\n" for i in range(1, 7))
    assert elapsed >= 0.6, f"logs -f returned after {elapsed:.2f} s, before the container ended"
    record = engine_cli.inspect(container_id)
    assert (record["State"]["Status"], record["State"]["ExitCode"]) == ("exited", 0)


# ---------------------------------------------------------------------------------------------
# exec


def test_exec_output_exit_code_env_workdir(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sleep", "100"])
    proc = engine_cli("exec", container_id, "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "out\n", "err\n")
    out = engine_cli.ok(
        "exec", "-e", "FOO=bar", "-w", "/tmp", container_id, "sh", "-c", 'echo "$FOO"; pwd'
    )
    assert out == "bar\n/tmp\n"
    proc = engine_cli("exec", container_id, "nosuchcommand")
    assert proc.returncode == 127
    assert "nosuchcommand" in one_line(proc.stderr)


def test_exec_as_user(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sleep", "100"])
    results = {}
    for user in ("1000", "tsubotest", "1000:1000"):
        proc = engine_cli("exec", "-u", user, container_id, "sh", "-c", "id -u; id -g")
        results[user] = (proc.returncode, proc.stdout, proc.stderr)
    assert results == dict.fromkeys(("1000", "tsubotest", "1000:1000"), (0, "1000\n1000\n", ""))


def test_exec_in_stopped_container_fails(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["true"])
    assert engine_cli.ok("wait", container_id) == "0\n"
    proc = engine_cli("exec", container_id, "echo", "never")
    assert proc.stdout == ""
    assert "not running" in one_line(proc.stderr)
    assert proc.returncode == DOCKER_CLI_ERROR


def test_exec_with_tty(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sleep", "100"])
    code, out = run_in_pty(engine_cli.argv("exec", "-it", container_id, "sh", "-c", "tty; exit 3"))
    assert code == 3, out
    assert re.fullmatch(rb"/dev/pts/\d+\r?\n", out), out


# ---------------------------------------------------------------------------------------------
# run -it, run -i


def test_run_with_tty(engine_cli: EngineCLI) -> None:
    code, out = run_in_pty(
        engine_cli.argv(
            "run", "-it", "--rm", "--rootfs", str(engine_cli.rootfs), "sh", "-c", "tty; echo done"
        )
    )
    assert code == 0, out
    assert re.fullmatch(rb"/dev/pts/\d+\r?\ndone\r?\n", out), out


def test_detach_keys_leave_the_container_running(engine_cli: EngineCLI) -> None:
    """ctrl-p ctrl-q on an attached TTY detaches (exit 0); the container runs on."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        argv = engine_cli.argv("run", "-it", "--name", "detachme", "--rootfs",
                               str(engine_cli.rootfs), "sh")
        try:
            os.execve(argv[0], argv, engine_env())
        finally:
            os._exit(127)
    try:
        out = b""
        deadline = time.monotonic() + 10
        while b"#" not in out and time.monotonic() < deadline:  # the shell's prompt
            readable, _, _ = select.select([fd], [], [], 0.5)
            if readable:
                try:
                    out += os.read(fd, 4096)
                except OSError:  # EIO: the CLI exited
                    break
        assert b"#" in out, out
        os.write(fd, b"\x10\x11")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine_cli.inspect("detachme")["State"]["Running"] is True


# ---------------------------------------------------------------------------------------------
# stop, kill, restart, pause, wait, rm


def test_stop(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sleep", "100"])
    started = time.monotonic()
    engine_cli.ok("stop", "-t", "1", container_id)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 6.0, f"stop -t 1 took {elapsed:.2f} s"
    record = engine_cli.inspect(container_id)
    assert (record["State"]["Status"], record["State"]["ExitCode"]) == ("exited", 137)
    assert engine_cli.ok("wait", container_id) == "137\n"

    # with a TERM handler, PID 1 exits by itself and its exit code is kept
    container_id = engine_cli.run_d(TRAP_TERM)
    term_handler_installed(engine_cli, container_id)
    started = time.monotonic()
    assert engine_cli.ok("stop", container_id) == f"{container_id}\n"
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"stop took {elapsed:.2f} s with a TERM handler"
    assert engine_cli.inspect(container_id)["State"]["ExitCode"] == 3
    assert engine_cli.ok("wait", container_id) == "3\n"


def test_kill_restart_pause_wait_rm(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(TRAP_TERM, "--name", "trapper")
    term_handler_installed(engine_cli, "trapper")
    engine_cli.ok("kill", "-s", "TERM", "trapper")
    assert engine_cli.ok("wait", "trapper") == "3\n"
    assert engine_cli.inspect("trapper")["State"]["Status"] == "exited"

    engine_cli.ok("restart", "trapper")
    record = engine_cli.inspect("trapper")
    assert record["State"]["Running"] is True
    first_pid = record["State"]["Pid"]
    term_handler_installed(engine_cli, "trapper")
    engine_cli.ok("restart", "-t", "5", "trapper")
    record = engine_cli.inspect("trapper")
    assert record["State"]["Running"] is True and record["State"]["Pid"] != first_pid

    engine_cli.ok("pause", "trapper")
    record = engine_cli.inspect("trapper")
    assert (record["State"]["Status"], record["State"]["Paused"]) == ("paused", True)
    line = engine_cli.ok("ps", "--format", "{{.Status}}").strip()
    assert line.startswith("Up ") and line.endswith("(Paused)"), line
    engine_cli.ok("unpause", "trapper")
    line = engine_cli.ok("ps", "--format", "{{.Status}}").strip()
    assert line.startswith("Up ") and "Paused" not in line, line

    proc = engine_cli("rm", "trapper")
    assert proc.returncode == DOCKER_CLI_ERROR
    assert "trapper" in one_line(proc.stderr)
    assert engine_cli.inspect("trapper")["State"]["Running"] is True

    assert engine_cli.ok("rm", "-f", "trapper") == "trapper\n"
    assert engine_cli.ids() == []
    assert engine_cli.container_dirs() == []
    proc = engine_cli("inspect", container_id)
    assert proc.returncode != 0 and "no such container" in one_line(proc.stderr).lower()


def test_killing_the_attached_cli_leaves_container_running(engine_cli: EngineCLI) -> None:
    client = subprocess.Popen(
        engine_cli.argv(
            "run",
            "--name",
            "orphan",
            "--rootfs",
            str(engine_cli.rootfs),
            "sh",
            "-c",
            "sleep 2; exit 5",
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=engine_env(),
    )
    try:
        assert wait_for(
            lambda: engine_cli("ps", "-q", "--filter", "name=orphan").stdout.strip() != "", 10
        ), "the container never showed up as running"
        client.send_signal(signal.SIGKILL)
    finally:
        client.wait(10)
    assert client.returncode == -signal.SIGKILL
    status = engine_cli.ok("ps", "--filter", "name=orphan", "--format", "{{.Status}}")
    assert status.startswith("Up "), status
    record = engine_cli.wait_status("orphan", "exited", timeout=10)
    assert record["State"]["ExitCode"] == 5


def test_restart_on_failure_gives_up_after_max(engine_cli: EngineCLI) -> None:
    container_id = engine_cli.run_d(["sh", "-c", "exit 1"], "--restart", "on-failure:3")
    record: dict[str, object] = {}

    def given_up() -> bool:
        nonlocal record
        record = engine_cli.inspect(container_id)
        return record["RestartCount"] == 3 and record["State"]["Status"] == "exited"  # type: ignore[index]

    assert wait_for(given_up, 10, 0.1), record
    assert record["State"]["ExitCode"] == 1  # type: ignore[index]
    time.sleep(0.5)
    assert engine_cli.inspect(container_id)["RestartCount"] == 3


# ---------------------------------------------------------------------------------------------
# --init, resources, mounts, volumes


def test_init_reaps_zombies(engine_cli: EngineCLI) -> None:
    # the inner shell leaves two orphans; they are re-parented to PID 1 and must be reaped
    script = (
        'sh -c "sleep 0.2 & sleep 0.2 &"; sleep 1; '
        "ps -o stat= -o comm=; echo PID1; /proc/1/exe --version"
    )
    proc = engine_cli.run_fg(["sh", "-c", script], "--rm", "--init")
    assert proc.returncode == 0, proc.stderr
    table, _, version = proc.stdout.partition("PID1\n")
    states = [line.split()[0] for line in table.splitlines() if line.strip()]
    assert states and not any(state.startswith("Z") for state in states), table
    assert "tini" in version.lower(), version


def test_resource_flags_reach_the_cgroup(engine_cli: EngineCLI) -> None:
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
    )
    proc = engine_cli.run_fg(
        ["sh", "-c", script], "--rm", "--memory", "32m", "--pids-limit", "20", "--cpus", "0.5"
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.split() == [str(32 * 1024 * 1024), "20", "50000", "100000"]


def test_read_only_tmpfs_and_bind_mounts(engine_cli: EngineCLI, tmp_path: Path) -> None:
    proc = engine_cli.run_fg(
        ["sh", "-c", "touch /newfile && echo wrote-root; touch /run/x && echo wrote-run"],
        "--rm",
        "--read-only",
        "--tmpfs",
        "/run",
    )
    assert "Read-only file system" in proc.stderr
    assert proc.stdout == "wrote-run\n"
    assert not (engine_cli.rootfs / "newfile").exists()

    # -v HOSTDIR:/data, then :ro
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello.txt").write_text("from the host\n")
    proc = engine_cli.run_fg(
        ["sh", "-c", "cat /data/hello.txt; echo new > /data/made.txt"],
        "--rm",
        "-v",
        f"{host}:/data",
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "from the host\n", "")
    assert (host / "made.txt").read_text() == "new\n"

    proc = engine_cli.run_fg(
        ["sh", "-c", "cat /data/hello.txt; echo x > /data/refused.txt"],
        "--rm",
        "-v",
        f"{host}:/data:ro",
    )
    assert proc.returncode != 0
    assert proc.stdout == "from the host\n"
    assert "Read-only file system" in proc.stderr
    assert not (host / "refused.txt").exists()


def test_named_volume_and_volume_commands(engine_cli: EngineCLI) -> None:
    engine_cli.ok(
        "run",
        "--rm",
        "-v",
        "vol1:/data",
        "--rootfs",
        str(engine_cli.rootfs),
        "sh",
        "-c",
        "echo kept > /data/file",
    )
    assert (
        engine_cli.ok(
            "run",
            "--rm",
            "-v",
            "vol1:/data",
            "--rootfs",
            str(engine_cli.rootfs),
            "cat",
            "/data/file",
        )
        == "kept\n"
    )
    listing = engine_cli.ok("volume", "ls").splitlines()
    assert listing[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert [line.split() for line in listing[1:]] == [["local", "vol1"]]
    (record,) = json.loads(engine_cli.ok("volume", "inspect", "vol1"))
    assert record["Name"] == "vol1" and record["Driver"] == "local"
    mountpoint = Path(record["Mountpoint"])
    assert (mountpoint / "file").read_text() == "kept\n"
    assert engine_cli.ok("volume", "rm", "vol1") == "vol1\n"
    assert engine_cli.ok("volume", "ls").splitlines()[1:] == []
    assert not mountpoint.exists()

    # rm -v removes an anonymous volume (-v /path)
    container_id = engine_cli.run_d(["sh", "-c", "echo x > /anon/file"], "-v", "/anon")
    assert engine_cli.ok("wait", container_id) == "0\n"
    rows = [line.split() for line in engine_cli.ok("volume", "ls").splitlines()[1:]]
    assert len(rows) == 1 and rows[0][0] == "local" and HEX64.match(rows[0][1]), rows
    (record,) = json.loads(engine_cli.ok("volume", "inspect", rows[0][1]))
    mountpoint = Path(record["Mountpoint"])
    assert (mountpoint / "file").read_text() == "x\n"
    engine_cli.ok("rm", "-v", container_id)
    assert engine_cli.ok("volume", "ls").splitlines()[1:] == []
    assert not mountpoint.exists()


# ---------------------------------------------------------------------------------------------
# logs cap, prune


def test_log_files_are_capped(engine_cli: EngineCLI) -> None:
    # ~25 MB in 101-byte lines (`yes | head` with 2-byte lines costs ~20 s in the monitor)
    line = "0123456789" * 10
    proc = engine_cli(
        "run",
        "--name",
        "chatty",
        "--rootfs",
        str(engine_cli.rootfs),
        "sh",
        "-c",
        f"yes {line} | head -c 25000000",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) == 25_000_000
    container_id = engine_cli.inspect("chatty")["Id"]
    folder = engine_cli.root / "containers" / container_id
    logs = {p.name: p.stat().st_size for p in folder.glob("container.log*")}
    total = sum(logs.values())
    assert 10 * 1024 * 1024 <= total <= 21 * 1024 * 1024, logs
    # the last line is the partial one `head -c` cut, without a newline (as Docker's)
    partial = line[: 25_000_000 % (len(line) + 1)]
    assert engine_cli.ok("logs", "--tail", "1", "chatty") == partial


def test_system_prune_removes_only_stopped(engine_cli: EngineCLI) -> None:
    running = engine_cli.run_d(["sleep", "100"])
    exited = engine_cli.run_d(["true"])
    assert engine_cli.ok("wait", exited) == "0\n"
    created = engine_cli.ok("create", "--rootfs", str(engine_cli.rootfs), "true").strip()
    assert HEX64.match(created)
    out = engine_cli.ok("system", "prune", "-f")
    assert exited in out and created in out and running not in out
    assert engine_cli.ids() == [running[:12]]
    assert engine_cli.container_dirs() == [running]
    assert engine_cli.status(running) == "running"
