"""tsubo-runtime's container lifecycle against the real kernel (root only).

create -> state -> start -> kill -> delete, `run` exit codes, signals by name and number,
`kill --all`, detached runs with list/ps, pause/resume, forced deletes, pid files, stdio,
`features`, `--version`, `--log`, `--systemd-cgroup`, seccomp, and configs that must be
refused with a one-line error and nothing left behind (the autouse leak check verifies the
host side; the `runtime` fixture verifies the state root).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck
from tests.conftest import MakeBundle, RuntimeCLI

POLL = 0.02


# ---------------------------------------------------------------------------------------------
# helpers


def wait_for(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


def cgroup_map(runtime: RuntimeCLI, cid: str) -> dict[str, str]:
    record = json.loads((runtime.root / cid / "state.json").read_text())
    cgroups = record["cgroup"]
    assert isinstance(cgroups, dict) and cgroups, record
    return {k: v for k, v in cgroups.items() if k != "path"}


def proc_state(pid: int) -> str | None:
    """The one-letter state of /proc/PID/stat, None if the pid is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()[0]


def gone_or_zombie(pid: int) -> bool:
    return proc_state(pid) in (None, "Z")


def cpu_ticks(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def one_line_error(proc: Any) -> str:
    """The stderr of a failed command: exactly one non-empty line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {proc.stderr!r}"
    return str(lines[0])


def runtime_interpreter(runtime: RuntimeCLI) -> str | None:
    """The interpreter named in the runtime launcher's #! line (None: not a script, e.g.
    runc as $TSUBO_TEST_RUNTIME)."""
    with runtime.binary.open("rb") as launcher:
        first = launcher.readline()
    if not first.startswith(b"#!"):
        return None
    return first[2:].decode().split()[0]


def run_in_background(runtime: RuntimeCLI, *argv: str) -> tuple[ThreadPoolExecutor, Future[Any]]:
    pool = ThreadPoolExecutor(max_workers=1)
    return pool, pool.submit(runtime.run, *argv)


# ---------------------------------------------------------------------------------------------
# create / start / kill / delete


def test_create_start_kill_delete(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "30"])
    cid = runtime.container_id()
    created = runtime.run("create", "--bundle", str(b.path), cid)
    assert created.returncode == 0, created.stderr
    assert created.stdout == ""

    state = runtime.state(cid)
    assert state["status"] == "created"
    assert state["id"] == cid
    assert state["bundle"] == str(b.path)
    assert state["ociVersion"] == "1.2.0"
    pid = int(state["pid"])
    assert pid > 0
    assert proc_state(pid) not in (None, "Z")
    # the init waits in the runtime's own (forked) python until `start`
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    interpreter = runtime_interpreter(runtime)
    if interpreter is not None:
        assert os.path.realpath(cmdline[0].decode()) == os.path.realpath(interpreter)
        assert b"create" in cmdline
    assert cmdline[0] != b"sleep"

    started = runtime.run("start", cid)
    assert started.returncode == 0, started.stderr
    state = runtime.state(cid)
    assert state["status"] == "running"
    assert state["pid"] == pid
    wait_for(
        lambda: Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0030\x00",
        what="the init to exec sleep 30",
    )

    killed = runtime.run("kill", cid, "KILL")
    assert killed.returncode == 0, killed.stderr
    state = runtime.wait_status(cid, "stopped")
    assert state["pid"] == 0

    cgroups = cgroup_map(runtime, cid)
    deleted = runtime.run("delete", cid)
    assert deleted.returncode == 0, deleted.stderr
    assert not (runtime.root / cid).exists()
    for directory in cgroups.values():
        assert not Path(directory).exists(), directory
    missing = runtime.run("state", cid)
    assert missing.returncode == 1
    assert cid in one_line_error(missing)


def test_start_twice_and_delete_running_are_refused(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    b = make_bundle(["sleep", "30"])
    cid = runtime.container_id()
    assert runtime.run("create", "--bundle", str(b.path), cid).returncode == 0
    assert runtime.run("start", cid).returncode == 0
    again = runtime.run("start", cid)
    assert again.returncode == 1
    assert "running" in one_line_error(again)
    busy = runtime.run("delete", cid)
    assert busy.returncode == 1
    assert "running" in one_line_error(busy)
    assert runtime.state(cid)["status"] == "running"


# ---------------------------------------------------------------------------------------------
# run: exit codes and signals


def test_run_returns_exit_code(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "exit 7"])
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 7, proc.stderr
    assert runtime.list_ids() == []


def test_run_killed_by_signal_gives_128_plus_n(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    b = make_bundle(["sleep", "30"])
    cid = runtime.container_id()
    pool, future = run_in_background(runtime, "run", "--bundle", str(b.path), cid)
    try:
        wait_for(
            lambda: cid in runtime.list_ids() and runtime.state(cid)["status"] == "running",
            what="the container to run",
        )
        assert runtime.run("kill", cid, "9").returncode == 0
        proc = future.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert proc.returncode == 128 + 9, proc.stderr
    assert runtime.list_ids() == []


TRAP_INIT = 'trap "exit 42" TERM; touch /dev/shm/ready; while true; do sleep 0.1; done'


@pytest.mark.parametrize("signal_name", ["TERM", "SIGTERM", "15"])
def test_kill_signal_by_name_and_number(
    runtime: RuntimeCLI, make_bundle: MakeBundle, signal_name: str
) -> None:
    b = make_bundle(["sh", "-c", TRAP_INIT])
    cid = runtime.container_id()
    pool, future = run_in_background(runtime, "run", "--bundle", str(b.path), cid)
    try:
        wait_for(lambda: cid in runtime.list_ids(), what="the container to appear")
        pid = int(runtime.wait_status(cid, "running")["pid"])
        wait_for(
            lambda: Path(f"/proc/{pid}/root/dev/shm/ready").exists(),
            what="the TERM trap to be set",
        )
        killed = runtime.run("kill", cid, signal_name)
        assert killed.returncode == 0, killed.stderr
        proc = future.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    # the trap's own exit status: TERM reached the init and its handler ran
    assert proc.returncode == 42, proc.stderr


def test_kill_default_signal_is_term(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", TRAP_INIT])
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    pid = int(runtime.state(cid)["pid"])
    wait_for(lambda: Path(f"/proc/{pid}/root/dev/shm/ready").exists(), what="the trap")
    assert runtime.run("kill", cid).returncode == 0
    runtime.wait_status(cid, "stopped")
    assert runtime.run("delete", cid).returncode == 0


def test_kill_all(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    init = int(runtime.state(cid)["pid"])

    def pids() -> list[int]:
        proc = runtime.run("ps", "--format", "json", cid)
        assert proc.returncode == 0, proc.stderr
        return [int(p) for p in json.loads(proc.stdout)]

    wait_for(lambda: len(pids()) == 3, what="init and its two sleeps")
    everyone = pids()
    assert init in everyone
    killed = runtime.run("kill", "--all", cid, "KILL")
    assert killed.returncode == 0, killed.stderr
    runtime.wait_status(cid, "stopped")
    wait_for(lambda: all(gone_or_zombie(p) for p in everyone), what="every process to die")
    leakcheck.reap_zombie_children()
    assert runtime.run("delete", cid).returncode == 0


def test_kill_stopped_container_fails(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["true"])
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    runtime.wait_status(cid, "stopped")
    proc = runtime.run("kill", cid, "KILL")
    assert proc.returncode == 1
    # runc's words: containerd's shim reads them as "process already finished"
    assert "container not running" in one_line_error(proc)
    assert runtime.run("delete", cid).returncode == 0


# ---------------------------------------------------------------------------------------------
# detached runs, list, ps


def test_run_detached_list_and_ps(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "30"])
    cid = runtime.container_id()
    proc = runtime.run("run", "-d", "--bundle", str(b.path), cid)
    assert proc.returncode == 0, proc.stderr
    state = runtime.state(cid)
    assert state["status"] == "running"
    pid = int(state["pid"])

    table = runtime.run("list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert len(lines) == 2
    row = lines[1].split()
    assert row[:4] == [cid, str(pid), "running", str(b.path)]
    assert row[-1] == "root"

    as_json = runtime.run("list", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert [(s["id"], s["pid"], s["status"], s["bundle"]) for s in listed] == [
        (cid, pid, "running", str(b.path))
    ]

    quiet = runtime.run("list", "-q")
    assert quiet.stdout == f"{cid}\n"

    ps_json = runtime.run("ps", "--format", "json", cid)
    assert ps_json.returncode == 0, ps_json.stderr
    assert json.loads(ps_json.stdout) == [pid]

    ps_table = runtime.run("ps", cid)
    assert ps_table.returncode == 0, ps_table.stderr
    ps_lines = ps_table.stdout.splitlines()
    assert "PID" in ps_lines[0].split()
    assert [line.split()[1] for line in ps_lines[1:]] == [str(pid)]

    assert runtime.run("delete", "--force", cid).returncode == 0
    assert runtime.run("list", "-q").stdout == ""


# ---------------------------------------------------------------------------------------------
# pause / resume / delete --force


def test_pause_and_resume(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "while :; do :; done"])
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    pid = int(runtime.state(cid)["pid"])
    freezer = Path(cgroup_map(runtime, cid)["freezer"]) / "freezer.state"

    paused = runtime.run("pause", cid)
    assert paused.returncode == 0, paused.stderr
    state = runtime.state(cid)
    assert state["status"] == "paused"
    assert state["pid"] == pid
    assert freezer.read_text().strip() == "FROZEN"
    # a frozen busy loop burns no cpu and is not runnable
    before = cpu_ticks(pid)
    time.sleep(0.3)
    assert cpu_ticks(pid) == before
    assert proc_state(pid) in ("D", "S", "T"), proc_state(pid)

    again = runtime.run("pause", cid)
    assert again.returncode == 1
    assert "paused" in one_line_error(again)

    resumed = runtime.run("resume", cid)
    assert resumed.returncode == 0, resumed.stderr
    assert runtime.state(cid)["status"] == "running"
    assert freezer.read_text().strip() == "THAWED"
    before = cpu_ticks(pid)
    time.sleep(0.3)
    assert cpu_ticks(pid) > before
    assert proc_state(pid) == "R"

    assert runtime.run("delete", "--force", cid).returncode == 0


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_delete_force_cleans_everything(
    runtime: RuntimeCLI, make_bundle: MakeBundle, paused: bool
) -> None:
    b = make_bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    wait_for(
        lambda: len(json.loads(runtime.run("ps", "--format", "json", cid).stdout)) == 3,
        what="three processes",
    )
    pids_proc = runtime.run("ps", "--format", "json", cid)
    pids = [int(p) for p in json.loads(pids_proc.stdout)]
    if paused:
        assert runtime.run("pause", cid).returncode == 0
        assert runtime.state(cid)["status"] == "paused"
    cgroups = cgroup_map(runtime, cid)
    for directory in cgroups.values():
        assert Path(directory).is_dir(), directory

    started = time.monotonic()
    deleted = runtime.run("delete", "--force", cid)
    assert deleted.returncode == 0, deleted.stderr
    assert time.monotonic() - started < 5
    assert not (runtime.root / cid).exists()
    for directory in cgroups.values():
        assert not Path(directory).exists(), directory
    wait_for(lambda: all(gone_or_zombie(p) for p in pids), what="every process to die")
    assert runtime.run("list", "-q").stdout == ""
    assert runtime.run("state", cid).returncode == 1


# ---------------------------------------------------------------------------------------------
# pid file, stdio


def test_pid_file(runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path) -> None:
    b = make_bundle(["sleep", "30"])
    cid = runtime.container_id()
    pid_file = tmp_path / "init.pid"
    proc = runtime.run("create", "--bundle", str(b.path), "--pid-file", str(pid_file), cid)
    assert proc.returncode == 0, proc.stderr
    assert pid_file.read_text().strip() == str(runtime.state(cid)["pid"])

    b2 = make_bundle(["sleep", "30"])
    cid2 = runtime.container_id()
    pid_file2 = tmp_path / "run.pid"
    proc = runtime.run("run", "-d", "--pid-file", str(pid_file2), "--bundle", str(b2.path), cid2)
    assert proc.returncode == 0, proc.stderr
    assert pid_file2.read_text().strip() == str(runtime.state(cid2)["pid"])


def test_stdout_and_stderr_reach_the_caller(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "echo hello; echo oops >&2"])
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\n"
    assert proc.stderr == "oops\n"


def test_stdin_reaches_the_container(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["cat"])
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id(), input="piped\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "piped\n"


# ---------------------------------------------------------------------------------------------
# features, version, log, systemd


def test_features_json(runtime: RuntimeCLI) -> None:
    proc = runtime.run("features")
    assert proc.returncode == 0, proc.stderr
    features = json.loads(proc.stdout)
    assert features["ociVersionMax"] == "1.2.0"
    assert features["ociVersionMin"].startswith("1.")
    assert set(features["hooks"]) >= {
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    }
    assert "pid" in features["linux"]["namespaces"]


def test_version(runtime: RuntimeCLI) -> None:
    proc = runtime.run("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "spec: 1.2.0" in lines
    assert lines[0].startswith("tsubo-runtime version ")


def test_log_json_on_failure(runtime: RuntimeCLI, tmp_path: Path) -> None:
    log = tmp_path / "runtime.log"
    cid = "t-no-such-container"
    proc = runtime.run("--log", str(log), "--log-format", "json", "state", cid)
    assert proc.returncode == 1
    message = one_line_error(proc)
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert cid in entry["msg"]
    assert entry["msg"] in message
    assert entry["time"]


def test_systemd_cgroup_refused(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["true"])
    cid = runtime.container_id()
    proc = runtime.run("--systemd-cgroup", "run", "--bundle", str(b.path), cid)
    assert proc.returncode == 1
    assert "systemd" in one_line_error(proc)
    assert runtime.list_ids() == []
    assert list(runtime.root.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# seccomp


def test_seccomp_profile_blocks_mkdir(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    script = "ls /bin/busybox && echo ls=$?; mkdir /dev/shm/d; echo mkdir=$?"
    b = make_bundle(["sh", "-c", script], linux={"seccomp": profile})
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["/bin/busybox", "ls=0", "mkdir=1"]
    assert "Operation not permitted" in proc.stderr

    # the same script without the profile makes the directory
    control = make_bundle(["sh", "-c", script])
    proc = runtime.run("run", "--bundle", str(control.path), runtime.container_id())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["/bin/busybox", "ls=0", "mkdir=0"]


# ---------------------------------------------------------------------------------------------
# refused configs: exit 1, one line, nothing left behind


def _bad_version(b: Any) -> None:
    b.config["ociVersion"] = "2.0.0"
    b.write()


def _bad_json(b: Any) -> None:
    (b.path / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')


def _no_rootfs(b: Any) -> None:
    b.config["root"]["path"] = "no-such-rootfs"
    b.write()


def _no_program(b: Any) -> None:
    b.config["process"]["args"] = ["nosuchprog"]
    b.write()


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (_bad_version, "2.0.0"),
        (_bad_json, "config.json"),
        (_no_rootfs, "no-such-rootfs"),
        (_no_program, "executable file not found"),
    ],
    ids=["oci-version-2", "invalid-json", "missing-rootfs", "missing-program"],
)
@pytest.mark.parametrize("command", ["create", "run"])
def test_bad_config_is_refused_cleanly(
    runtime: RuntimeCLI, make_bundle: MakeBundle, breaker: Any, expected: str, command: str
) -> None:
    b = make_bundle(["true"])
    breaker(b)
    cid = runtime.container_id()
    proc = runtime.run(command, "--bundle", str(b.path), cid)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = one_line_error(proc)
    assert expected in line, line
    assert list(runtime.root.iterdir()) == []
    assert runtime.run("state", cid).returncode == 1
