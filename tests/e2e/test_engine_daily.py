"""Docker's daily commands and habits (issue 13), end to end through the ``tsubo`` CLI.

Each table row states the Docker behaviour it checks. Exit codes are docker/cli's: 125 for
a usage error in the flags (``FlagErrorFunc`` returns a ``StatusError`` of 125) and for
any failure of ``run``/``create``, 1 for an unknown command and for the other commands'
errors, 126/127 when the container's command cannot be run / is not found; ``| head``
ends a command as it ends a shell tool (SIGPIPE's 141, quietly).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import (
    HEX64,
    EngineCLI,
    engine_env,
    one_line,
    processes_using,
    wait_for,
)
from tests.e2e.test_engine_cli import run_in_pty

engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
rootfs_tar = engine_fixtures.rootfs_tar

FLAG_ERROR = 125
DOCKER_CLI_ERROR = 1
UNKNOWN_COMMAND = 1
BROKEN_PIPE = 141


def _check(cli: EngineCLI, row: tuple[object, ...]) -> None:
    """One table row: (argv, exit code, stdout pattern, stderr pattern, Docker's
    behaviour); patterns are regular expressions matched against the whole output."""
    argv, code, out, err, docker = row
    assert isinstance(argv, list)
    proc = cli(*argv)
    where = f"{argv}: {docker}; got exit {proc.returncode}, out {proc.stdout!r}, " \
        f"err {proc.stderr!r}"
    assert proc.returncode == code, where
    assert re.fullmatch(str(out), proc.stdout, re.S), where
    assert re.fullmatch(str(err), proc.stderr, re.S), where
    assert "Traceback" not in proc.stderr, where


# ---------------------------------------------------------------------------------------------
# argument parsing, exit codes, messages


def test_docker_argument_habits_and_exit_codes(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    cli.run_d(["sh", "-c", "echo one; echo two; sleep 100"], "--name", "web", "-l", "a=1")
    cli.run_d(["sleep", "100"], "--name", "x1")
    cli.run_d(["sleep", "100"], "--name", "x2")
    short = cli.run_d(["sh", "-c", "echo a; echo b"], "--name", "short")
    assert cli.ok("wait", short) == "0\n"
    assert wait_for(lambda: cli.ok("logs", "web") == "one\ntwo\n", 5)
    line = r"tsubo: [^\n]*\n"
    rows: list[tuple[object, ...]] = [
        # flags after positionals, before anything runs
        (["stop", "x1", "-t", "0"], 0, "x1\n", "", "docker stop x1 -t 0 stops x1 at once"),
        (["rm", "x1", "-f"], 0, "x1\n", "", "docker rm x1 -f removes it"),
        (["logs", "short", "-f"], 0, "a\nb\n", "", "docker logs NAME -f follows to the end"),
        (["logs", "web", "--tail=1"], 0, "two\n", "", "--flag=value"),
        (["logs", "--tail", "1", "web"], 0, "two\n", "", "--flag value before"),
        (["logs", "web", "-n1"], 0, "two\n", "", "a short flag's attached value"),
        (["inspect", "web", "-f", "{{.State.Status}}"], 0, "running\n", "",
         "docker inspect NAME -f TEMPLATE"),
        (["ps", "-aq", "--filter", "name=short"], 0, f"{short[:12]}\n", "",
         "grouped short flags: -aq"),
        (["container", "ls", "-a", "--format", "{{.Names}}"], 0,
         "(?=.*short\n)(?=.*web\n).*", "", "docker container ls is docker ps"),
        (["rm", "web", "--help"], 0, "usage: tsubo rm .*", "",
         "--help anywhere shows the usage and removes nothing"),
        (["help", "stop"], 0, "usage: tsubo stop .*", "", "docker help COMMAND"),
        (["run", "--rm", "--rootfs", rootfs, "sh", "-c", "echo $0 -f", "--", "-d"], 0,
         "-- -f\n", "", "run's flags end at the image: the rest is the command's"),
        (["run", "--rm", "-e=A=1", "--rootfs", rootfs, "sh", "-c", "echo $A"], 0, "1\n", "",
         "-e=A=1 is A=1"),
        # exit codes
        (["frob"], UNKNOWN_COMMAND, "",
         r"tsubo: 'frob' is not a tsubo command \(see 'tsubo --help'\)\n",
         "docker frob: not a docker command, exit 1 (and no doubled prefix)"),
        (["container", "frob"], UNKNOWN_COMMAND, "", line,
         "docker container frob: exit 1"),
        (["rm", "--bogus", "x2"], FLAG_ERROR, "",
         r"tsubo: rm --bogus: unknown flag \(hint: 'tsubo rm --help' lists the flags\)\n",
         "unknown flag on any command: 125, and x2 untouched"),
        (["container", "ls", "--bogus"], FLAG_ERROR, "", line, "in a group too: 125"),
        (["container", "rm", "nosuch"], DOCKER_CLI_ERROR, "", line,
         "docker container rm of a missing container: 1"),
        (["ps", "--format"], FLAG_ERROR, "", r"tsubo: ps --format: needs a value\n",
         "a value missing: 125"),
        (["--bogus", "ps"], FLAG_ERROR, "", line, "an unknown global flag: 125"),
        (["stop", "x2", "-t"], FLAG_ERROR, "", line, "stop x2 -t: nothing stopped"),
        (["run", "--bogus", "--rootfs", rootfs, "true"], FLAG_ERROR, "", line,
         "docker run --bogus: 125"),
        (["rename", "x2"], DOCKER_CLI_ERROR, "",
         r"tsubo: rename x2: requires exactly 2 arguments \(hint: usage: .*\)\n",
         "docker rename NAME: requires exactly 2 arguments, exit 1"),
        (["stop"], DOCKER_CLI_ERROR, "", line, "docker stop: requires at least 1 argument"),
        (["logs", "nosuch"], DOCKER_CLI_ERROR, "", line, "no such container: 1"),
        # messages: errno in words, the right object
        (["run", "--rm", "--env-file", "/nonexistent", "--rootfs", rootfs, "true"], FLAG_ERROR,
         "", r"tsubo: read --env-file /nonexistent: no such file or directory\n",
         "docker: open /nonexistent: no such file or directory"),
        (["run", "--rm", "-w", "relative", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: check the working directory relative: must be an absolute path\n",
         "the working directory is named, not 'create container relative'"),
        # exec
        (["exec", "-t", "web", "sh", "-c", "echo $TERM"], 0, r"xterm\r?\n", "",
         "docker exec -t sets TERM=xterm as docker run -t does"),
        (["exec", "-e", "TERM=dumb", "-t", "web", "sh", "-c", "echo $TERM"], 0, r"dumb\r?\n",
         "", "a TERM given with -e wins"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.status("x2") == "running"
    assert cli.inspect("web")["State"]["Running"] is True

    # -itd: grouped, with -d the terminal is not read, as Docker allows
    grouped = cli.ok("run", "-itd", "--name", "grouped", "--rootfs", rootfs, "sleep", "100")
    assert HEX64.match(grouped.strip())
    config = cli.inspect("grouped")["Config"]
    assert (config["Tty"], config["OpenStdin"]) == (True, True)

    # docker exec -it with a pipe on stdin: "the input device is not a TTY", exit 1
    proc = cli("exec", "-it", "web", "sh", input="echo x\n", timeout=10)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", "tsubo: the input device is not a TTY\n")

    # a command not found: the CLI's 127 is also the container's recorded exit code
    proc = cli("run", "--name", "nf", "--rootfs", rootfs, "nosuchcommand")
    assert proc.returncode == 127
    assert "nosuchcommand" in one_line(proc.stderr)
    assert cli.inspect("nf")["State"]["ExitCode"] == 127
    status = cli.ok("ps", "-a", "--filter", "name=nf", "--format", "{{.Status}}")
    assert status.startswith("Exited (127)"), status

    # login HOST -u U -p P: the flags are flags (the registry is simply not there)
    proc = cli("login", "127.0.0.1:9", "-u", "someone", "-p", "secret", timeout=30)
    assert proc.returncode == DOCKER_CLI_ERROR
    assert "127.0.0.1:9" in proc.stderr.splitlines()[-1]
    assert "-u" not in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_exec_into_an_exiting_container_says_not_running(engine_cli: EngineCLI) -> None:
    """Docker: ``container X is not running`` — never the runtime's internals (cgroup
    files, namespaces, "init exited during setup") however the exec meets the exit."""
    bad = re.compile(r"cgroup|tasks|namespace|init exited|setns|ENOENT|ESRCH", re.I)
    for attempt in range(3):
        name = f"brief{attempt}"
        engine_cli.run_d(["sh", "-c", "sleep 0.3"], "--name", name)
        seen_failure = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            proc = engine_cli("exec", name, "true")
            if proc.returncode in (0, 137) and proc.stderr == "":
                continue  # ran, or was killed as the container's PID 1 ended (Docker: 137)
            line = one_line(proc.stderr)
            assert not bad.search(line), line
            assert proc.returncode == DOCKER_CLI_ERROR, line
            assert f"container {name} is not running" in line, line
            seen_failure = True
            break
        assert seen_failure


def _answer_in_pty(argv: list[str], answer: bytes) -> tuple[int, bytes]:
    """Run *argv* on a new terminal, type *answer* once it asks ``[y/N]``."""
    return run_in_pty(argv, answer=(b"[y/N]", answer))


def test_prune_asks_on_a_terminal(engine_cli: EngineCLI) -> None:
    """docker system prune / container prune / volume prune ask ``[y/N]`` on a terminal,
    -f skips the question; without a terminal and without -f we refuse (as image prune)."""
    cli = engine_cli
    exited = cli.run_d(["true"], "--name", "done")
    assert cli.ok("wait", exited) == "0\n"
    running = cli.run_d(["sleep", "100"], "--name", "alive")

    code, out = _answer_in_pty(cli.argv("system", "prune"), b"n\n")
    assert code == 0 and b"WARNING! This will remove:" in out, out
    assert cli.status("done") == "exited"  # "n": nothing removed

    proc = cli("system", "prune")
    assert (proc.returncode, proc.stdout) == (DOCKER_CLI_ERROR, "")
    assert "not a terminal" in one_line(proc.stderr) and "-f" in proc.stderr
    assert cli.status("done") == "exited"

    code, out = _answer_in_pty(cli.argv("container", "prune"), b"y\n")
    assert code == 0, out
    assert b"Deleted Containers:" in out and exited.encode() in out, out
    assert cli.ids() == [running[:12]]

    # volume prune: anonymous volumes no container uses (-a: named ones too)
    cli.ok("volume", "create", "named")
    anonymous = cli.run_d(["true"], "-v", "/scratch")
    assert cli.ok("wait", anonymous) == "0\n"
    cli.ok("rm", anonymous)  # without -v: its anonymous volume stays
    volumes = cli.ok("volume", "ls", "-q").split()
    assert len(volumes) == 2 and "named" in volumes
    pruned = cli.ok("volume", "prune", "-f")
    assert pruned.startswith("Deleted Volumes:\n") and "named" not in pruned
    assert cli.ok("volume", "ls", "-q").split() == ["named"]
    pruned = cli.ok("volume", "prune", "-a", "-f")
    assert "named" in pruned
    assert cli.ok("volume", "ls", "-q") == ""
    assert cli.status("alive") == "running"


# ---------------------------------------------------------------------------------------------
# no traceback: broken pipes, hostile roots


def _run_into_closed_pipe(cli: EngineCLI, *args: str, timeout: float = 60
                          ) -> tuple[int, str]:
    """Run with stdout a pipe nobody reads (its read end closed: the first write fails
    with EPIPE); (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.run(cli.argv(*args), stdin=subprocess.DEVNULL, stdout=write_end,
                                  stderr=err, timeout=timeout, env=engine_env(), check=False)
            err.seek(0)
            return proc.returncode, err.read().decode(errors="replace")
    finally:
        os.close(write_end)


def test_broken_pipes_end_quietly(engine_cli: EngineCLI, rootfs_tar: Path,
                                  tmp_path: Path) -> None:
    """Every command with output, its reader gone (``| head``): no traceback, no
    "Exception ignored", exit 141 as a shell tool killed by SIGPIPE (or the command's own
    error when it fails before printing)."""
    cli = engine_cli
    rootfs = str(cli.rootfs)
    cli.ok("import", str(rootfs_tar), "bb")
    cli.run_d(["sh", "-c", "seq 1 100000; sleep 100"], "--name", "web")
    assert wait_for(lambda: cli.ok("logs", "--tail", "1", "web") == "100000\n", 10)
    (tmp_path / "file").write_text("x" * 100000)
    commands: dict[str, list[str]] = {
        "run": ["run", "--rm", "--rootfs", rootfs, "seq", "1", "100000"],
        "create": ["create", "--rootfs", rootfs, "true"],
        "logs": ["logs", "web"], "ps": ["ps", "-a"], "inspect": ["inspect", "web"],
        "images": ["images"], "image": ["image", "history", "bb"],
        "save": ["save", "bb"], "exec": ["exec", "web", "seq", "1", "100000"],
        "top": ["top", "web"], "stats": ["stats"], "info": ["info"],
        "events": ["events", "--since", "10m", "--until", "0s"],
        "cp": ["cp", "web:/bin", "-"], "version": ["version"], "volume": ["volume", "ls"],
        "network": ["network", "ls"], "system": ["system", "df"],
        "container": ["container", "ls"], "help": ["--help"],
    }
    for name, argv in commands.items():
        code, err = _run_into_closed_pipe(cli, *argv)
        assert code == BROKEN_PIPE, (name, code, err)
        assert err == "", (name, err)
    # the run whose reader went away is still a container: --rm removes it when it ends
    assert wait_for(lambda: len(cli.ids()) == 2, 20), cli.ok("ps", "-a")


def _hostile_roots(tmp_path: Path) -> dict[str, Path]:
    roots = tmp_path / "hostile"
    roots.mkdir()
    (roots / "afile").write_text("not a folder\n")
    (roots / "dbdir" / "tsubo.db").mkdir(parents=True)
    (roots / "garbage").mkdir()
    (roots / "garbage" / "tsubo.db").write_bytes(os.urandom(8192))
    (roots / "dangling").symlink_to("/nonexistent/tsubo-root")
    (roots / "loop").symlink_to(roots / "loop")
    return {"missing under /proc": Path("/proc/tsubo-nope"), "/dev/null": Path("/dev/null"),
            **{name: roots / name for name in ("afile", "dbdir", "garbage", "dangling",
                                               "loop")}}


def test_hostile_roots_are_one_line(engine_cli: EngineCLI, tmp_path: Path) -> None:
    """A data root that cannot be one (missing under /proc, a device, a file, a database
    that is a folder or garbage, a dangling or looping symlink): every command says so in
    one line, never a traceback, and leaves nothing running."""
    rootfs = str(engine_cli.rootfs)
    commands = [["ps"], ["run", "--rm", "--rootfs", rootfs, "true"],
                ["create", "--rootfs", rootfs, "true"], ["start", "x"], ["stop", "x"],
                ["rm", "-f", "x"], ["logs", "x"], ["exec", "x", "true"], ["inspect", "x"],
                ["images"], ["volume", "ls"], ["network", "ls"], ["system", "df"],
                ["system", "prune", "-f"], ["info"], ["stats", "--no-stream"],
                ["events", "--until", "0s"], ["top", "x"], ["cp", "x:/a", str(tmp_path)],
                ["rename", "x", "y"], ["container", "prune", "-f"], ["wait", "x"]]
    for label, root in _hostile_roots(tmp_path).items():
        hostile = EngineCLI(engine_cli.binary, root, engine_cli.rootfs)
        for argv in commands:
            proc = hostile(*argv)
            where = f"root {label}, {argv}: exit {proc.returncode}, {proc.stderr!r}"
            assert proc.returncode in (DOCKER_CLI_ERROR, FLAG_ERROR), where
            line = one_line(proc.stderr)
            assert "Traceback" not in line and "unexpected error" not in line, where
            assert proc.stdout == "", where
    # a keeper forked for a root whose monitor cannot start goes away by itself
    assert wait_for(lambda: not processes_using(tmp_path / "hostile"), 20)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
        engine_cli: EngineCLI) -> None:
    """A bug still reaches the user as one line pointing at --debug (here: an engine
    database whose containers table is not what the engine made)."""
    engine_cli.ok("ps")
    import sqlite3

    connection = sqlite3.connect(engine_cli.root / "tsubo.db")
    try:
        connection.execute("DROP TABLE container_volumes")
        connection.execute("DROP TABLE containers")
        connection.execute("CREATE TABLE containers (id TEXT)")
        connection.commit()
    finally:
        connection.close()
    proc = engine_cli("ps", "-a")
    line = one_line(proc.stderr)
    assert proc.returncode == DOCKER_CLI_ERROR
    assert "Traceback" not in line
    proc = engine_cli("--debug", "ps", "-a")
    assert "Traceback (most recent call last)" in proc.stderr
    # a usable root again for the fixture's teardown
    for name in ("tsubo.db", "tsubo.db-wal", "tsubo.db-shm"):
        (engine_cli.root / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the commands: inspect -f, rename, top, stats, info, events


def test_inspect_format(engine_cli: EngineCLI, rootfs_tar: Path) -> None:
    cli = engine_cli
    cli.ok("import", str(rootfs_tar), "bb")
    cli.run_d(["sleep", "100"], "--name", "web", "-l", "tier=front", "-e", "A=1")
    cli.run_d(["sleep", "100"], "--name", "db")
    rows: list[tuple[object, ...]] = [
        (["inspect", "-f", "{{.State.Status}}", "web", "db"], 0, "running\nrunning\n", "",
         "one line per object"),
        (["inspect", "--format", "{{json .Config.Labels}}", "web"], 0,
         '{"tier":"front"}\n', "", "{{json}} is compact JSON"),
        (["inspect", "-f", '{{index .Config.Labels "tier"}}', "web"], 0, "front\n", "",
         "{{index}} of a map"),
        (["inspect", "-f", "{{range .Config.Env}}{{if eq . \"A=1\"}}{{.}}{{end}}{{end}}",
          "web"], 0, "A=1\n", "", "{{range}} with {{if}}"),
        (["inspect", "-f", "{{.Name}} {{.State.Running}}", "web"], 0, "/web true\n", "",
         "Docker's leading / and Go's true"),
        (["inspect", "-f", "{{.Nope}}", "web"], 0, "<no value>\n", "",
         "a missing key prints <no value>"),
        (["inspect", "-f", "{{.State.Status", "web"], DOCKER_CLI_ERROR, "",
         r"tsubo: parse --format '\{\{\.State\.Status': unclosed action\n",
         "a bad template: nothing looked up, one line"),
        (["inspect", "-f", "{{.Name}}", "web", "nosuch"], DOCKER_CLI_ERROR, "/web\n",
         r"tsubo: [^\n]*nosuch[^\n]*\n", "the ones found print, the missing one is named"),
        (["inspect", "--type", "image", "-f", "{{.Id}}", "bb"], 0, r"sha256:[0-9a-f]{64}\n",
         "", "--type image"),
        (["container", "inspect", "bb"], DOCKER_CLI_ERROR, "", r"tsubo: [^\n]*bb[^\n]*\n",
         "container inspect: containers only"),
        (["image", "inspect", "-f", "{{.Id}}", "bb"], 0, r"sha256:[0-9a-f]{64}\n", "",
         "image inspect -f"),
        (["volume", "create", "v1"], 0, "v1\n", "", "volume create"),
        (["volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "v1"], 0, "v1 local\n", "",
         "volume inspect -f"),
        (["volume", "rm", "-f", "v1", "nosuch"], 0, "v1\nnosuch\n", "",
         "volume rm -f: a missing volume is not an error"),
    ]
    for row in rows:
        _check(cli, row)


def test_rename(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    first = cli.run_d(["sleep", "100"], "--name", "web")
    cli.ok("create", "--name", "other", "--rootfs", str(cli.rootfs), "true")
    rows: list[tuple[object, ...]] = [
        (["rename", "web", "web2"], 0, "", "", "docker rename: silent on success"),
        (["rename", "web2", "other"], DOCKER_CLI_ERROR, "",
         r'tsubo: rename container other: the name "other" is already in use by container '
         r"[0-9a-f]{12} \(hint: .*\)\n", "a taken name: both keep theirs"),
        (["rename", "web2", "web2"], DOCKER_CLI_ERROR, "", r"tsubo: [^\n]*same name[^\n]*\n",
         "the same name: refused"),
        (["rename", "web2", "bad name"], DOCKER_CLI_ERROR, "", r"tsubo: [^\n]*bad name[^\n]*\n",
         "Docker's name rule"),
        (["container", "rename", "web2", "/web3"], 0, "", "", "a leading / is the same name"),
    ]
    for row in rows:
        _check(cli, row)
    record = cli.inspect("web3")
    assert (record["Id"], record["Name"], record["State"]["Running"]) == (first, "/web3", True)
    assert cli.inspect("other")["Name"] == "/other"
    assert cli("inspect", "web").returncode == DOCKER_CLI_ERROR
    assert cli.ok("exec", "web3", "echo", "still") == "still\n"


def test_top_stats_info(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    busy = cli.run_d(["sh", "-c", "while :; do :; done"], "--name", "busy", "-m", "64m")
    cli.run_d(["sleep", "100"], "--name", "idle")
    stopped = cli.run_d(["true"], "--name", "stopped")
    assert cli.ok("wait", stopped) == "0\n"

    # top: the host's ps -ef limited to the container's processes
    lines = cli.ok("top", "busy").splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(lines) == 2 and lines[1].endswith("sh -c while :; do :; done"), lines
    assert int(lines[1].split()[1]) == cli.inspect("busy")["State"]["Pid"]
    assert cli.ok("top", "busy", "-o", "pid,comm").splitlines()[1].split()[1] == "sh"
    proc = cli("top", "busy", "-o", "comm")
    assert proc.returncode == DOCKER_CLI_ERROR and "PID" in one_line(proc.stderr)
    proc = cli("top", "stopped")
    assert "is not running" in one_line(proc.stderr)

    # stats --no-stream: the running ones, Docker's columns
    table = cli.ok("stats", "--no-stream").splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["CONTAINER ID", "NAME", "CPU %",
                                             "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                                             "BLOCK I/O", "PIDS"]
    assert sorted(line.split()[1] for line in table[1:]) == ["busy", "idle"]
    records = [json.loads(line) for line in
               cli.ok("stats", "--no-stream", "--format", "json", "busy").splitlines()]
    assert len(records) == 1
    record = records[0]
    assert (record["ID"], record["Name"], record["PIDs"]) == (busy[:12], "busy", "1")
    assert record["MemUsage"].endswith(" / 64MiB"), record
    assert float(record["CPUPerc"].rstrip("%")) > 20, record  # a busy loop
    assert record["NetIO"] == "0B / 0B"  # --network none: only lo
    out = cli.ok("stats", "--no-stream", "-a", "--format", "{{.Name}}:{{.PIDs}}")
    assert sorted(out.split()) == ["busy:1", "idle:1", "stopped:0"]

    # info: counts and the host
    info = json.loads(cli.ok("info", "--format", "json"))
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (
        3, 2, 1)
    assert info["CgroupVersion"] in ("1", "2") and info["Driver"] == "overlay"
    assert info["DockerRootDir"] == str(cli.root)
    assert cli.ok("info", "-f", "{{.ContainersPaused}}") == "0\n"
    text = cli.ok("system", "info")
    assert " Containers: 3\n  Running: 2\n" in text and "Cgroup Version:" in text


def test_events(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    follower = subprocess.Popen(cli.argv("events", "--filter", "type=container", "--format",
                                         "{{.Action}} {{.Actor.Attributes.name}}"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=engine_env())
    try:
        time.sleep(0.5)  # it listens from now on
        cli.run_d(["sleep", "100"], "--name", "web")
        cli.ok("pause", "web")
        cli.ok("unpause", "web")
        cli.ok("stop", "-t", "0", "web")
        cli.ok("rename", "web", "web2")
        cli.ok("rm", "web2")
        cli.ok("volume", "create", "vol")
        wanted = ["create web", "start web", "pause web", "unpause web", "kill web", "die ",
                  "stop web", "rename web2", "destroy web2"]
        received = b""
        deadline = time.monotonic() + 10
        assert follower.stdout is not None
        while received.count(b"\n") < len(wanted) and time.monotonic() < deadline:
            readable, _, _ = select.select([follower.stdout], [], [], 0.5)
            if readable:
                received += os.read(follower.stdout.fileno(), 4096)
        seen = received.decode().splitlines()
        assert [line.split(" ")[0] for line in seen] == [w.split(" ")[0] for w in wanted], seen
        assert seen == [*wanted[:5], seen[5], *wanted[6:]], seen
    finally:
        follower.terminate()
        follower.wait(10)
        if follower.stdout is not None:
            follower.stdout.close()
        if follower.stderr is not None:
            follower.stderr.close()
    # the log, filtered, then exit (--until)
    out = cli.ok("events", "--since", "1m", "--until", "0s", "--filter", "event=die",
                 "--format", "{{.Actor.Attributes.exitCode}}")
    assert out == "137\n"
    lines = cli.ok("events", "--since", "1m", "--until", "0s", "--filter", "type=volume",
                   "--format", "json").splitlines()
    assert [json.loads(line)["Action"] for line in lines] == ["create"]
    text = cli.ok("events", "--since", "1m", "--until", "0s", "--filter", "container=web2")
    assert re.search(r"^\S+Z container rename [0-9a-f]{64} \(name=web2, oldName=web\)$",
                     text, re.M), text
    proc = cli("events", "--until", "0s", "--filter", "colour=blue")
    assert proc.returncode == DOCKER_CLI_ERROR and "colour=blue" in one_line(proc.stderr)


@pytest.mark.parametrize("verb", ["ls", "ps", "list"])
def test_container_group_lists(engine_cli: EngineCLI, verb: str) -> None:
    container_id = engine_cli.run_d(["sleep", "100"], "--name", "web")
    assert engine_cli.ok("container", verb, "-q") == f"{container_id[:12]}\n"
    assert engine_cli.ok("container", "stop", "-t", "0", "web") == "web\n"
    assert engine_cli.ok("container", "rm", "web") == "web\n"


def test_python_api_daily(engine_cli: EngineCLI) -> None:
    """The same operations through ``tsubo.Engine``: rename, top, stats, info, events,
    volume prune; errors are tsubo errors."""
    import tsubo
    from tsubo.errors import AlreadyExists, NotFound, WrongState

    with tsubo.Engine(str(engine_cli.root)) as engine:
        since = time.time()
        with engine.run(rootfs=str(engine_cli.rootfs), command=["sleep", "100"],
                        name="apiweb") as container:
            container.rename("apiweb2")
            assert container.name == "apiweb2"
            engine.create(rootfs=str(engine_cli.rootfs), command=["true"], name="taken")
            with pytest.raises(AlreadyExists):
                engine.rename("apiweb2", "taken")
            titles, rows = engine.top("apiweb2", ["-o", "pid,args"])
            assert titles == ["PID", "COMMAND"] and rows == [[str(container.pid), "sleep 100"]]
            (stats,) = engine.stats(["apiweb2"], interval=0.1)
            assert (stats.name, stats.pids) == ("apiweb2", 1) and stats.memory > 0
            info = engine.info()
            assert (info["Containers"], info["ContainersRunning"]) == (2, 1)
        with pytest.raises(NotFound):
            engine.top("apiweb2")
        with pytest.raises(WrongState):
            engine.top("taken")
        actions = [(event["Action"], event["Actor"]["Attributes"].get("name"))
                   for event in engine.events(since=since, until=time.time(),
                                              filters=["container=apiweb2"])]
        assert ("rename", "apiweb2") in actions and ("destroy", "apiweb2") in actions
        engine.create_volume("kept")
        assert engine.prune_volumes() == []
        assert [name for name, _ in engine.prune_volumes(all=True)] == ["kept"]
        engine.remove("taken")


def test_run_flags_cidfile_and_label_file(engine_cli: EngineCLI, tmp_path: Path) -> None:
    """Docker's --cidfile (written once the container exists; an existing file refuses the
    run before anything is made, exit 125) and --label-file (KEY=VALUE lines, # comments,
    a bare KEY is an empty label; --label wins)."""
    cli = engine_cli
    rootfs = str(cli.rootfs)
    labels = tmp_path / "labels"
    labels.write_text("a=1\n# a comment\n\nbare\nb=from file\n")
    cidfile = tmp_path / "cid"
    container_id = cli.run_d(["sleep", "100"], "--cidfile", str(cidfile), "--label-file",
                             str(labels), "-l", "b=2", "--name", "lf")
    assert cidfile.read_text() == container_id
    assert json.loads(cli.ok("inspect", "-f", "{{json .Config.Labels}}", "lf")) == {
        "a": "1", "bare": "", "b": "2"}
    rows: list[tuple[object, ...]] = [
        (["run", "-d", "--cidfile", str(cidfile), "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: create container --cidfile: container ID file found, [^\n]*\n",
         "docker: Container ID file found, make sure the other container isn't running"),
        (["create", "--label-file", str(tmp_path / "none"), "--rootfs", rootfs, "true"],
         FLAG_ERROR, "", r"tsubo: read --label-file [^\n]*: no such file or directory\n",
         "a missing label file: nothing created"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.ids() == [container_id[:12]]
    attached = tmp_path / "attached"
    proc = cli("run", "--rm", "--cidfile", str(attached), "--rootfs", rootfs, "true")
    assert proc.returncode == 0 and HEX64.match(attached.read_text())


def test_health_checks(engine_cli: EngineCLI) -> None:
    """Docker's --health-*: "starting", unhealthy after Retries failures, healthy on the
    first success; shown by ps ("Up 1 second (healthy)"), inspect (State.Health with the
    last results, Config.Healthcheck) and events (health_status: ...); a probe that
    outlives --health-timeout is killed; --no-healthcheck has none; wait --condition
    healthy returns once healthy."""
    cli = engine_cli
    cli.run_d(["sleep", "100"], "--name", "hc", "--health-cmd", "test -f /tmp/ok",
              "--health-interval", "200ms", "--health-retries", "2")
    assert cli.ok("ps", "--format", "{{.Status}}").endswith("(health: starting)\n")
    assert wait_for(lambda: cli.inspect("hc")["State"]["Health"]["Status"] == "unhealthy", 10)
    assert cli.ok("ps", "--format", "{{.Status}}").endswith("(unhealthy)\n")
    cli.ok("exec", "hc", "touch", "/tmp/ok")
    assert cli.ok("wait", "--condition", "healthy", "hc", timeout=20) == "hc\n"
    record = cli.inspect("hc")
    health = record["State"]["Health"]
    assert (health["Status"], health["FailingStreak"]) == ("healthy", 0)
    assert 3 <= len(health["Log"]) <= 5 and health["Log"][-1]["ExitCode"] == 0
    assert record["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -f /tmp/ok"], "Interval": 200_000_000, "Retries": 2,
        "Timeout": 30_000_000_000, "StartPeriod": 0}
    assert cli.ok("ps", "--format", "{{.Status}}").endswith("(healthy)\n")
    actions = cli.ok("events", "--since", "1m", "--until", "0s", "--filter",
                     "event=health_status", "--format", "{{.Action}}").splitlines()
    assert actions == ["health_status: unhealthy", "health_status: healthy"]

    cli.run_d(["sleep", "100"], "--name", "slow", "--health-cmd", "sleep 30",
              "--health-timeout", "300ms", "--health-interval", "200ms",
              "--health-retries", "1")
    assert wait_for(lambda: cli.inspect("slow")["State"]["Health"]["Status"] == "unhealthy",
                    10)
    last = cli.inspect("slow")["State"]["Health"]["Log"][-1]
    assert (last["ExitCode"], last["Output"]) == (-1, "Health check exceeded timeout (0.3s)")
    # the killed probes are gone: at most the one in flight is left beside the init
    assert len(cli.ok("top", "slow").splitlines()) <= 3

    cli.run_d(["sleep", "100"], "--name", "plain", "--no-healthcheck")
    assert "Health" not in cli.inspect("plain")["State"]
    proc = cli("wait", "--condition", "healthy", "plain")
    assert proc.returncode == DOCKER_CLI_ERROR
    assert "no health check" in one_line(proc.stderr)
    _check(cli, (["run", "--rm", "--no-healthcheck", "--health-cmd", "true", "--rootfs",
                  str(cli.rootfs), "true"], FLAG_ERROR, "",
                 r"tsubo: create container --no-healthcheck: conflicts with --health-\* "
                 r"options\n", "docker: --no-healthcheck conflicts with --health-* options"))

    import tsubo

    with tsubo.Engine(str(cli.root)) as engine, \
            engine.run(rootfs=str(cli.rootfs), command=["sleep", "100"],
                       health_cmd="true", health_interval=0.2) as container:
        container.wait_healthy(timeout=10)
        assert container.health == "healthy"


def test_run_flags_namespaces_sysctls_shm_cpuset(engine_cli: EngineCLI) -> None:
    """Docker's --shm-size, --sysctl (namespaced ones only, never the host's), --cpuset-cpus,
    --pid/--ipc/--uts host: each checked from inside the container."""
    cli = engine_cli
    rootfs = str(cli.rootfs)
    own = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("pid", "ipc", "uts")}
    host_name = os.uname().nodename
    rows: list[tuple[object, ...]] = [
        (["run", "--rm", "--shm-size", "16m", "--rootfs", rootfs, "sh", "-c",
          "df -k /dev/shm | tail -1 | awk '{print $2}'"], 0, "16384\n", "",
         "--shm-size sizes /dev/shm"),
        (["run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl",
          "kernel.shmmax=123456", "--rootfs", rootfs, "cat", "/proc/sys/net/ipv4/ip_forward",
          "/proc/sys/kernel/shmmax"], 0, "1\n123456\n", "", "--sysctl of its own namespaces"),
        (["run", "--rm", "--sysctl", "kernel.panic=1", "--rootfs", rootfs, "true"],
         FLAG_ERROR, "", r"tsubo: parse --sysctl kernel.panic=1: [^\n]*not namespaced[^\n]*\n",
         "a host-wide sysctl is refused"),
        (["run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=0", "--rootfs",
          rootfs, "true"], FLAG_ERROR, "", r"tsubo: [^\n]*--network host[^\n]*\n",
         "net.* with the host's network namespace is refused"),
        (["run", "--rm", "--cpuset-cpus", "0", "--rootfs", rootfs, "sh", "-c",
          "grep Cpus_allowed_list /proc/self/status"], 0, r"Cpus_allowed_list:\s+0\n", "",
         "--cpuset-cpus"),
        (["run", "--rm", "--cpuset-cpus", "0-999", "--rootfs", rootfs, "true"], FLAG_ERROR,
         "", r"tsubo: parse --cpuset-cpus 0-999: this host has CPUs [^\n]*\n",
         "CPUs the host does not have"),
        (["run", "--rm", "--pid", "host", "--rootfs", rootfs, "readlink", "/proc/self/ns/pid"],
         0, f"{re.escape(own['pid'])}\n", "", "--pid host"),
        (["run", "--rm", "--ipc", "host", "--rootfs", rootfs, "readlink", "/proc/self/ns/ipc"],
         0, f"{re.escape(own['ipc'])}\n", "", "--ipc host"),
        (["run", "--rm", "--uts", "host", "--rootfs", rootfs, "hostname"], 0,
         f"{re.escape(host_name)}\n", "", "--uts host: the host's name"),
        (["run", "--rm", "--uts", "host", "--hostname", "x", "--rootfs", rootfs, "true"],
         FLAG_ERROR, "", r"tsubo: [^\n]*conflicting options: hostname and the UTS mode\n",
         "docker: conflicting options"),
        (["run", "--rm", "--pid", "bogus", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --pid bogus: expected host or container:NAME\n",
         "docker: invalid PID mode (container:NAME: test_engine_runflags.py)"),
    ]
    for row in rows:
        _check(cli, row)
    host_dir = cli.root.parent / "mounted"
    host_dir.mkdir()
    (host_dir / "f").write_text("from the host\n")
    out = cli.ok("run", "--rm", "--mount", f"type=bind,src={host_dir},dst=/data,readonly",
                 "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m", "--mount",
                 "type=volume,src=mvol,dst=/v", "--rootfs", rootfs, "sh", "-c",
                 "cat /data/f; touch /data/x 2>/dev/null || echo read-only; "
                 "df -k /scratch | tail -1 | awk '{print $2}'; echo kept > /v/f")
    assert out == "from the host\nread-only\n1024\n", out
    assert cli.ok("run", "--rm", "--mount", "src=mvol,dst=/v", "--rootfs", rootfs, "cat",
                  "/v/f") == "kept\n"
    assert not (host_dir / "x").exists()
    for kind in ("pid", "ipc", "uts"):  # the default is a namespace of its own
        inside = cli.ok("run", "--rm", "--rootfs", rootfs, "readlink", f"/proc/self/ns/{kind}")
        assert inside.strip() != own[kind]
    cli.run_d(["sleep", "100"], "--name", "shown", "--shm-size", "1g", "--pid", "host",
              "--sysctl", "net.ipv4.tcp_syncookies=0")
    host_config = cli.inspect("shown")["HostConfig"]
    assert (host_config["ShmSize"], host_config["PidMode"], host_config["Sysctls"]) == (
        1 << 30, "host", {"net.ipv4.tcp_syncookies": "0"})


def test_ps_flags_and_logs_until(engine_cli: EngineCLI, rootfs_tar: Path) -> None:
    """docker ps -n N / -l (of all states, newest first), --no-trunc, --filter ancestor=
    (however the image is spelled); docker logs --until."""
    cli = engine_cli
    cli.ok("import", str(rootfs_tar), "bb")
    proc = cli("run", "-d", "--name", "from-image", "bb", "sleep", "100")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.strip()
    first_line = cli("run", "--name", "printer", "--rootfs", str(cli.rootfs), "sh", "-c",
                     "echo early").stdout
    assert first_line == "early\n"
    cli.ok("create", "--name", "newest", "--rootfs", str(cli.rootfs), "true")
    rows: list[tuple[object, ...]] = [
        (["ps", "-n", "2", "--format", "{{.Names}}"], 0, "newest\nprinter\n", "",
         "-n 2: the last two created, stopped ones too"),
        (["ps", "-l", "--format", "{{.Names}}"], 0, "newest\n", "", "-l: the latest"),
        (["ps", "--no-trunc", "-q"], 0, f"{first}\n", "", "--no-trunc: full IDs"),
        (["ps", "--no-trunc", "--format", "{{.ID}}"], 0, f"{first}\n", "",
         "--no-trunc in templates too"),
        (["ps", "-a", "--filter", "ancestor=bb", "--format", "{{.Names}}"], 0,
         "from-image\n", "", "ancestor=NAME"),
        (["ps", "-a", "--filter", "ancestor=docker.io/library/bb:latest", "-q"], 0,
         f"{first[:12]}\n", "", "ancestor=, however the reference is spelled"),
        (["ps", "--filter", "colour=red"], DOCKER_CLI_ERROR, "", r"tsubo: [^\n]*colour[^\n]*\n",
         "an unknown filter"),
        (["logs", "printer", "--until", "0s"], 0, "early\n", "", "--until now: everything"),
        (["logs", "printer", "--since", "1h", "--until", "30m"], 0, "", "",
         "--until before the output: nothing"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli("run", "--rm", "bb", "true").returncode == 0  # imports work as images


def test_import_from_stdin(engine_cli: EngineCLI, rootfs_tar: Path) -> None:
    """docker import - NAME: the tarball on stdin (nothing left behind in the root)."""
    cli = engine_cli
    run = subprocess.run(cli.argv("import", "-", "piped:1"), input=rootfs_tar.read_bytes(),
                         capture_output=True, env=engine_env(), timeout=60, check=False)
    assert run.returncode == 0 and re.fullmatch(rb"sha256:[0-9a-f]{64}\n", run.stdout), run
    assert cli.ok("run", "--rm", "piped:1", "echo", "from stdin") == "from stdin\n"
    proc = cli("import", "-", "empty:1")  # stdin /dev/null: an empty layer is refused
    assert proc.returncode == DOCKER_CLI_ERROR and "empty" in one_line(proc.stderr)
    assert not [p.name for p in cli.root.iterdir() if p.name.startswith(".import-")]


def test_update_and_detached_rm(engine_cli: EngineCLI) -> None:
    """docker update: resources applied to the running container at once (its cgroup,
    inspect), the restart policy used at its next exit; refused for an --rm container.
    docker run -d --rm: removed when it ends; rm -f of one that ends meanwhile succeeds."""
    cli = engine_cli
    cli.run_d(["sleep", "100"], "--name", "up", "-m", "64m")
    assert cli.ok("stats", "--no-stream", "--format", "{{.MemUsage}}", "up").endswith(
        " / 64MiB\n")
    assert cli.ok("update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "20",
                  "--cpus", "0.5", "up") == "up\n"
    assert cli.ok("stats", "--no-stream", "--format", "{{.MemUsage}}", "up").endswith(
        " / 128MiB\n")
    host = cli.inspect("up")["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"], host["NanoCpus"]) == (
        128 << 20, 256 << 20, 20, 500_000_000)
    # the new pids limit holds inside: a 21st process cannot start
    proc = cli("exec", "up", "sh", "-c", "for i in $(seq 30); do sleep 5 & done; wait")
    assert proc.returncode != 0
    rows: list[tuple[object, ...]] = [
        (["update", "up"], DOCKER_CLI_ERROR, "", r"tsubo: [^\n]*nothing to update[^\n]*\n",
         "update with no flag"),
        (["update", "--memory", "1g", "up"], DOCKER_CLI_ERROR, "",
         r"tsubo: [^\n]*smaller than the memory\+swap limit[^\n]*\n",
         "Docker: Memory limit should be smaller than already set memoryswap limit"),
        (["update", "--bogus", "1", "up"], FLAG_ERROR, "", r"tsubo: update --bogus: [^\n]*\n",
         "an unknown flag"),
    ]
    for row in rows:
        _check(cli, row)
    cli.run_d(["sh", "-c", "sleep 0.5; exit 3"], "--name", "flaky")
    cli.ok("update", "--restart", "on-failure:2", "flaky")
    assert wait_for(lambda: cli.inspect("flaky")["RestartCount"] == 2
                    and cli.status("flaky") == "exited", 20)

    cli.run_d(["sleep", "100"], "--name", "auto", "--rm")
    proc = cli("update", "--restart", "always", "auto")
    assert proc.returncode == DOCKER_CLI_ERROR and "--rm" in one_line(proc.stderr)
    assert cli.ok("rm", "-f", "auto") == "auto\n"
    cli.run_d(["true"], "--name", "brief", "--rm")
    assert wait_for(lambda: "brief" not in cli.ok("ps", "-a", "--format", "{{.Names}}"), 10)


def test_attach(engine_cli: EngineCLI) -> None:
    """docker attach: the running container's output from now on and its exit code; its
    stdin when it was started with -i; a stopped one is refused (exit 1)."""
    cli = engine_cli
    cli.run_d(["sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); "
               "sleep 0.1; done"], "--name", "talk")
    attached = subprocess.Popen(cli.argv("attach", "--no-stdin", "talk"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=engine_env())
    try:
        time.sleep(1.0)
        cli.ok("stop", "-t", "1", "talk")
        out, err = attached.communicate(timeout=20)
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    assert (attached.returncode, err) == (137, b"")
    lines = out.decode().splitlines()
    assert len(lines) >= 3 and all(re.fullmatch(r"line \d+", line) for line in lines), lines
    assert lines[0] != "line 0"  # from the moment of attaching, not the log's start

    cli.run_d(["sh", "-c", "read x; echo got $x; exit 4"], "-i", "--name", "reader")
    proc = cli("attach", "reader", input="hello\n", timeout=20)
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "got hello\n", "")
    _check(cli, (["attach", "reader"], DOCKER_CLI_ERROR, "",
                 r"tsubo: attach to container reader: you cannot attach to a stopped "
                 r"container, start it first\n", "docker: You cannot attach to a stopped "
                 "container"))
    _check(cli, (["attach", "--sig-proxy=false", "--detach-keys", "ctrl-1", "reader"],
                 DOCKER_CLI_ERROR, "", r"tsubo: parse --detach-keys ctrl-1: unknown character: "
                 r"'ctrl-1'[^\n]*\n", "docker: Unknown character"))
