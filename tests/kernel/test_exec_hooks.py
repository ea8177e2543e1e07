"""tsubo-runtime's `exec`, lifecycle hooks and terminals against the real kernel (root only).

exec: inline args (exit code forwarded), -e, --cwd, -u, -d --pid-file, --process FILE, the
new process's pid namespace and cgroup, exec into a stopped container. Hooks: all six
phases in the spec's order with the state JSON on stdin, a failing and a timed-out hook.
Terminals: `process.terminal` with a console socket served by the test (the pty master
arrives through SCM_RIGHTS), and without one.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck
from tests.conftest import Bundle, MakeBundle, RuntimeCLI

POLL = 0.02
HOOK_DIR_IN_CONTAINER = "/hooklog"


# ---------------------------------------------------------------------------------------------
# helpers


def one_line_error(proc: Any) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {proc.stderr!r}"
    return str(lines[0])


def running_container(runtime: RuntimeCLI, make_bundle: MakeBundle, **overrides: Any) -> str:
    b = make_bundle(["sleep", "30"], **overrides)
    cid = runtime.container_id()
    proc = runtime.run("run", "-d", "--bundle", str(b.path), cid)
    assert proc.returncode == 0, proc.stderr
    runtime.wait_status(cid, "running")
    return cid


def proc_alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return raw[raw.rindex(")") + 2 :].split()[0] != "Z"


# ---------------------------------------------------------------------------------------------
# exec


def test_exec_inline_args_forward_exit_code(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    cid = running_container(runtime, make_bundle)
    proc = runtime.run("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"
    ok = runtime.run("exec", cid, "true")
    assert ok.returncode == 0, ok.stderr
    # the container is untouched by its exec'd processes
    assert runtime.state(cid)["status"] == "running"


def test_exec_repeatedly_all_succeed(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """Short-lived exec'd programs: every exec reports its own exit code, none is lost to a
    race between the new process and the runtime, and nothing is left in the container."""
    cid = running_container(runtime, make_bundle)
    init = runtime.state(cid)["pid"]

    def one(i: int) -> str:
        proc = runtime.run("exec", cid, "sh", "-c", f"exit {i % 7}")
        if proc.returncode != i % 7:
            return f"exec #{i}: {proc.returncode} {proc.stderr.strip()}"
        return ""

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(one, range(100)) if f]
    assert failures == []
    leakcheck.reap_zombie_children()
    assert json.loads(runtime.run("ps", "--format", "json", cid).stdout) == [init]


def test_exec_env_cwd_user(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    cid = running_container(runtime, make_bundle)
    env = runtime.run("exec", "-e", "FOO=bar baz", "-e", "X=1", cid, "sh", "-c", 'echo "$FOO/$X"')
    assert env.returncode == 0, env.stderr
    assert env.stdout == "bar baz/1\n"

    cwd = runtime.run("exec", "--cwd", "/home/tsubotest", cid, "pwd")
    assert cwd.returncode == 0, cwd.stderr
    assert cwd.stdout == "/home/tsubotest\n"

    user = runtime.run("exec", "-u", "1000:1000", cid, "sh", "-c", "id -u; id -g")
    assert user.returncode == 0, user.stderr
    assert user.stdout.split() == ["1000", "1000"]

    default = runtime.run("exec", cid, "sh", "-c", "id -u; pwd")
    assert default.stdout.split() == ["0", "/"]


def test_exec_detached_pid_file(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    cid = running_container(runtime, make_bundle)
    init = int(runtime.state(cid)["pid"])
    pid_file = tmp_path / "exec.pid"
    proc = runtime.run("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "30")
    assert proc.returncode == 0, proc.stderr
    pid = int(pid_file.read_text().strip())
    assert pid != init
    assert proc_alive(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0030\x00"
    for ns in ("pid", "mnt", "net", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    listed = json.loads(runtime.run("ps", "--format", "json", cid).stdout)
    assert sorted(listed) == sorted([init, pid])
    # delete --force takes the exec'd process with it. The exec'd process was re-parented to
    # us (the subreaper), and the dying init waits until every process of its namespace is
    # reaped: reap while the delete runs, as a real caller (containerd's shim) does.
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(runtime.run, "delete", "--force", cid)
        while not future.done():
            leakcheck.reap_zombie_children()
            time.sleep(POLL)
        deleted = future.result()
    assert deleted.returncode == 0, deleted.stderr
    assert not proc_alive(pid)
    assert not (runtime.root / cid).exists()


def test_exec_process_file(runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path) -> None:
    cid = running_container(runtime, make_bundle)
    process = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", 'echo "$GREETING"; id -u; pwd; exit 5'],
        "env": ["PATH=/bin", "GREETING=from process.json"],
        "cwd": "/tmp",
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    proc = runtime.run("exec", "--process", str(path), cid)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.splitlines() == ["from process.json", "1000", "/tmp"]


def test_exec_is_in_the_container_pid_namespace_and_cgroup(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    cid = running_container(runtime, make_bundle)
    init = int(runtime.state(cid)["pid"])
    proc = runtime.run(
        "exec", cid, "sh", "-c", "echo $$; cat /proc/1/cmdline; echo; cat /proc/self/cgroup"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] != "1" and int(lines[0]) > 1
    assert lines[1] == "sleep\x0030\x00"
    # no cgroup namespace: the exec'd process sees its host cgroup paths, the init's
    assert "\n".join(lines[2:]) + "\n" == Path(f"/proc/{init}/cgroup").read_text()


def test_exec_into_stopped_container_fails(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["true"])
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    runtime.wait_status(cid, "stopped")
    proc = runtime.run("exec", cid, "true")
    assert proc.returncode == 1
    assert "stopped" in one_line_error(proc)
    assert proc.stdout == ""
    assert runtime.run("delete", cid).returncode == 0


def test_exec_with_seccomp_profile(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """The container's seccomp filter applies to exec'd processes too."""
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    cid = running_container(runtime, make_bundle, linux={"seccomp": profile})
    proc = runtime.run("exec", cid, "sh", "-c", "mkdir /dev/shm/d; echo mkdir=$?; ls -d /dev")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["mkdir=1", "/dev"]
    assert "Operation not permitted" in proc.stderr


def test_exec_missing_program(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    cid = running_container(runtime, make_bundle)
    proc = runtime.run("exec", cid, "nosuchprog")
    assert proc.returncode != 0
    assert "executable file not found" in one_line_error(proc)
    assert json.loads(runtime.run("ps", "--format", "json", cid).stdout) == [
        runtime.state(cid)["pid"]
    ]


# ---------------------------------------------------------------------------------------------
# hooks

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def _host_hook(log_dir: Path, name: str, extra: str = "") -> dict[str, Any]:
    return {
        "path": "/bin/sh",
        "args": ["sh", "-c", f"{extra}cat > {log_dir}/{name}.json; echo {name} >> {log_dir}/order"],
    }


def _container_hook(name: str, extra: str = "") -> dict[str, Any]:
    """A hook for after pivot_root: busybox sh of the rootfs, the log dir bind-mounted."""
    d = HOOK_DIR_IN_CONTAINER
    return {
        "path": "/bin/sh",
        "args": ["sh", "-c", f"{extra}cat > {d}/{name}.json; echo {name} >> {d}/order"],
    }


def _hook_bundle(
    make_bundle: MakeBundle,
    log_dir: Path,
    hooks: dict[str, list[dict[str, Any]]],
    args: list[str] | None = None,
) -> Bundle:
    b = make_bundle(args or ["sleep", "30"], hooks=hooks)
    log_dir.mkdir(exist_ok=True)
    b.config["mounts"].append(
        {
            "destination": HOOK_DIR_IN_CONTAINER,
            "type": "bind",
            "source": str(log_dir),
            "options": ["rbind", "rw"],
        }
    )
    (b.rootfs / HOOK_DIR_IN_CONTAINER.lstrip("/")).mkdir()
    b.write()
    return b


def _all_hooks(log_dir: Path, start_delay: str = "") -> dict[str, list[dict[str, Any]]]:
    return {
        "prestart": [_host_hook(log_dir, "prestart")],
        "createRuntime": [_host_hook(log_dir, "createRuntime")],
        # before pivot_root, in the container's mount namespace: host paths still resolve
        "createContainer": [
            _host_hook(log_dir, "createContainer", f"readlink /proc/self/ns/mnt > {log_dir}/mnt; ")
        ],
        "startContainer": [_container_hook("startContainer", start_delay)],
        "poststart": [_host_hook(log_dir, "poststart")],
        "poststop": [_host_hook(log_dir, "poststop")],
    }


def _create_start_kill_delete(runtime: RuntimeCLI, b: Bundle) -> tuple[str, int]:
    cid = runtime.container_id()
    created = runtime.run("create", "--bundle", str(b.path), cid)
    assert created.returncode == 0, created.stderr
    pid = int(runtime.state(cid)["pid"])
    started = runtime.run("start", cid)
    assert started.returncode == 0, started.stderr
    assert runtime.run("kill", cid, "KILL").returncode == 0
    runtime.wait_status(cid, "stopped")
    deleted = runtime.run("delete", cid)
    assert deleted.returncode == 0, deleted.stderr
    return cid, pid


@pytest.mark.parametrize("mode", ["create-start", "run"])
def test_hooks_run_in_spec_order(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path, mode: str
) -> None:
    """prestart, createRuntime, createContainer, startContainer, poststart, poststop.

    The startContainer hook takes 0.3 s: poststart must still come after it (the spec:
    startContainer runs before the user's program is executed; poststart after it, and
    before `start` returns)."""
    log_dir = tmp_path / "hooklog"
    hooks = _all_hooks(log_dir, start_delay="sleep 0.3; ")
    if mode == "create-start":
        b = _hook_bundle(make_bundle, log_dir, hooks)
        _create_start_kill_delete(runtime, b)
    else:
        b = _hook_bundle(make_bundle, log_dir, hooks, args=["true"])
        proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
        assert proc.returncode == 0, proc.stderr
    order = (log_dir / "order").read_text().split()
    assert order == list(PHASES), order


def test_hooks_get_the_state_on_stdin(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    log_dir = tmp_path / "hooklog"
    b = _hook_bundle(make_bundle, log_dir, _all_hooks(log_dir))
    cid = runtime.container_id()
    created = runtime.run("create", "--bundle", str(b.path), cid)
    assert created.returncode == 0, created.stderr
    pid = int(runtime.state(cid)["pid"])
    init_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    assert runtime.run("start", cid).returncode == 0
    # both ends of `start` logged (they race in a runtime that returns from `start` before
    # the user's program is executed: test_hooks_run_in_spec_order catches that)
    order = log_dir / "order"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
        order.exists() and {"startContainer", "poststart"} <= set(order.read_text().split())
    ):
        time.sleep(POLL)
    assert runtime.run("delete", "--force", cid).returncode == 0

    # createContainer ran in the container's mount namespace
    assert (log_dir / "mnt").read_text().strip() == init_mnt
    assert init_mnt != os.readlink("/proc/self/ns/mnt")
    for phase in PHASES:
        raw = (log_dir / f"{phase}.json").read_text()
        assert raw, f"{phase} hook got an empty stdin"
        state = json.loads(raw)
        assert state["id"] == cid, phase
        assert state["bundle"] == str(b.path), phase
        assert state["ociVersion"] == "1.2.0", phase
        if phase == "poststop":
            assert state["status"] == "stopped"
        else:
            assert state["pid"] == pid, phase
        if phase == "poststart":
            assert state["status"] == "running"


def test_start_container_hook_alone_gets_state(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    """A startContainer hook without any create-time hook still gets the state on stdin."""
    log_dir = tmp_path / "hooklog"
    b = _hook_bundle(
        make_bundle,
        log_dir,
        {"startContainer": [_container_hook("startContainer")]},
        args=["true"],
    )
    cid = runtime.container_id()
    proc = runtime.run("run", "--bundle", str(b.path), cid)
    assert proc.returncode == 0, proc.stderr
    assert (log_dir / "order").read_text().split() == ["startContainer"]
    raw = (log_dir / "startContainer.json").read_text()
    assert raw, "startContainer hook got an empty stdin"
    assert json.loads(raw)["id"] == cid


def test_failing_create_runtime_hook_fails_create(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    b = make_bundle(
        ["sleep", "30"], hooks={"createRuntime": [{"path": "/bin/false", "args": ["false"]}]}
    )
    cid = runtime.container_id()
    proc = runtime.run("create", "--bundle", str(b.path), cid)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "createRuntime" in line
    assert "/bin/false" in line
    assert list(runtime.root.iterdir()) == []
    assert runtime.run("state", cid).returncode == 1


def test_hook_timeout(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(
        ["sleep", "30"],
        hooks={"prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]},
    )
    cid = runtime.container_id()
    started = time.monotonic()
    proc = runtime.run("create", "--bundle", str(b.path), cid)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "prestart" in line and "timed out" in line, line
    assert 0.9 <= elapsed < 4, elapsed
    assert list(runtime.root.iterdir()) == []


def _failing_then_marking(marker: Path) -> list[dict[str, object]]:
    """A hook that fails, then one that leaves *marker* (it must run all the same)."""
    return [{"path": "/bin/false", "args": ["false"]},
            {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran > {marker}"]}]


def test_failing_poststart_hook_is_a_warning(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    """The spec (runtime.md, Lifecycle): a failing poststart hook is logged as a warning;
    the remaining hooks and the lifecycle go on as if it had succeeded."""
    marker = tmp_path / "second-hook"
    b = make_bundle(["sleep", "30"], hooks={"poststart": _failing_then_marking(marker)})
    cid = runtime.container_id()
    assert runtime.run("create", "--bundle", str(b.path), cid).returncode == 0
    proc = runtime.run("start", cid)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("tsubo-runtime: warning: ") and "poststart[0]" in line, line
    assert marker.read_text() == "ran\n"
    assert runtime.state(cid)["status"] == "running"


def test_failing_poststop_hook_does_not_block_delete(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    marker = tmp_path / "second-hook"
    b = make_bundle(["true"], hooks={"poststop": _failing_then_marking(marker)})
    cid = runtime.container_id()
    assert runtime.run("run", "-d", "--bundle", str(b.path), cid).returncode == 0
    runtime.wait_status(cid, "stopped")
    proc = runtime.run("delete", cid)
    # the spec: poststop failures are logged, the container is deleted anyway
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "poststop[0]" in proc.stderr, proc.stderr
    assert marker.read_text() == "ran\n"
    assert list(runtime.root.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# terminal


class ConsoleServer:
    """An AF_UNIX listener that accepts one connection and receives the pty master."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(15)
        self.master: int | None = None
        self.name = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(15)
                msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
                self.name = msg
                if fds:
                    self.master = fds[0]
                    for extra in fds[1:]:
                        os.close(extra)
        except BaseException as error:  # reported by the test
            self.error = error

    def wait_master(self, timeout: float = 15) -> int:
        self.thread.join(timeout)
        assert self.error is None, f"console socket server: {self.error!r}"
        assert self.master is not None, "no pty master received"
        return self.master

    def read_all(self, timeout: float = 10) -> bytes:
        """Read the master until the slave side is closed everywhere (EIO) or timeout."""
        master = self.wait_master()
        out = b""
        deadline = time.monotonic() + timeout
        os.set_blocking(master, False)
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except BlockingIOError:
                time.sleep(POLL)
                continue
            except OSError:  # EIO: every slave fd is closed
                break
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        self.thread.join(1)
        if self.master is not None:
            os.close(self.master)
            self.master = None
        self.sock.close()


@pytest.mark.parametrize("detach", [True, False], ids=["run-d", "run"])
def test_terminal_with_console_socket(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path, detach: bool
) -> None:
    """The pty master arrives on the console socket; the container's stdio is the slave.
    (runc accepts a console socket only with -d; tsubo also in the foreground.)"""
    b = make_bundle(["sh", "-c", "tty; echo ok"], process={"terminal": True})
    cid = runtime.container_id()
    server = ConsoleServer(tmp_path / "console.sock")
    try:
        flags = ["-d"] if detach else []
        proc = runtime.run(
            "run", *flags, "--console-socket", str(server.path), "--bundle", str(b.path), cid
        )
        assert proc.returncode == 0, proc.stderr
        output = server.read_all().decode(errors="replace")
    finally:
        server.close()
    assert output.replace("\r\n", "\n").splitlines() == ["/dev/pts/0", "ok"]
    assert proc.stdout == ""
    if detach:
        runtime.wait_status(cid, "stopped")
        assert runtime.run("delete", cid).returncode == 0


def test_exec_with_tty(runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path) -> None:
    cid = running_container(runtime, make_bundle)
    server = ConsoleServer(tmp_path / "console.sock")
    try:
        proc = runtime.run(
            "exec", "-d", "-t", "--console-socket", str(server.path), cid,
            "sh", "-c", "tty; echo ok",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        output = server.read_all().decode(errors="replace")
    finally:
        server.close()
    # the container's init has no terminal: the exec'd process gets the first pty
    assert output.replace("\r\n", "\n").splitlines() == ["/dev/pts/0", "ok"]
    # the detached exec'd process was re-parented to us: reap it, or the container's init
    # cannot finish dying on delete (it waits for every pid of its namespace to be freed)
    # (a zombie has already left the cgroup: `ps` alone does not show it)
    init = runtime.state(cid)["pid"]
    deadline = time.monotonic() + 5
    while True:
        leakcheck.reap_zombie_children()
        zombies = [p for p, (_, st) in leakcheck.child_processes().items() if st == "Z"]
        if not zombies and json.loads(runtime.run("ps", "--format", "json", cid).stdout) == [init]:
            break
        assert time.monotonic() < deadline, "the exec'd process did not go away"
        time.sleep(POLL)


@pytest.mark.parametrize("command", ["create", "run"])
def test_terminal_without_console_socket(
    runtime: RuntimeCLI, make_bundle: MakeBundle, command: str
) -> None:
    b = make_bundle(["sh", "-c", "tty"], process={"terminal": True})
    cid = runtime.container_id()
    proc = runtime.run(command, "--bundle", str(b.path), cid)
    assert proc.returncode == 1
    assert "console-socket" in one_line_error(proc)
    assert list(runtime.root.iterdir()) == []
