"""podman (a real OCI client) drives tsubo-runtime end to end (root only).

podman runs with Debian's **stock** containers.conf (`/usr/share/containers/containers.conf`:
its default capabilities and `default_sysctls = ["net.ipv4.ping_group_range=0 0"]`) plus only
what this host needs: ulimits under the host's hard limit, the cgroupfs manager, file
events, the runtime under test, and paths into the temp dir. Everything podman keeps lives
in that one temp dir: storage.conf (vfs driver, so no overlay mounts), graphroot, runroot,
tmpdir, network config dir, image-copy temp dir. The same root flags are passed on every
call. `podman import` (the only call that uses containers/image's blob-info cache,
hard-wired to /var/lib/containers/cache for root) runs in a private mount namespace with that
directory shadowed by one in the temp dir, so the host's podman state is never written.

Networks: most containers run with `--network none`. The bridge tests run podman inside a
throwaway network namespace the module fixture makes (`nsenter --net`), so CNI's bridge,
veths and iptables rules live and die there; CNI's state (/var/lib/cni: host-local leases,
results cache) goes to the temp dir through a bind mount over /var/lib, made only when this
process already has a mount namespace of its own (`scripts/test.sh`), else those tests
skip.

Per test: podman's helper processes (conmon, `podman container cleanup`) must be gone shortly
after the test; the autouse leak check then compares host state. Per module: no container,
mount or process mentioning the temp dir and no new runtime state entry may remain.

CI needs the Debian packages podman, conmon, catatonit, containernetworking-plugins,
iptables, busybox-static, util-linux (unshare, nsenter) and, for the timing comparison only,
runc.
"""

from __future__ import annotations

import os
import secrets
import select
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import leakcheck
from tests.conftest import BUSYBOX, runtime_binary

IMAGE = "localhost/tsubo-test-busybox:latest"
TIMEOUT = 30.0
SETTLE_TIMEOUT = 15.0
RUNTIME_NAME = "tsubo"
# default state roots of the runtimes podman calls (podman passes no --root)
RUNTIME_STATE_ROOTS = (Path("/run/tsubo-runtime"), Path("/run/runc"))
RUNTIME_COMMANDS = frozenset(
    ("create", "start", "state", "kill", "delete", "exec", "pause", "resume", "ps", "update")
)
HOST_BLOB_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
STOCK_CONTAINERS_CONF = Path("/usr/share/containers/containers.conf")
#: podman's default network (CNI's bridge `cni-podman0`), in the throwaway netns only
BRIDGE_SUBNET_PREFIX = "10.88."


# ---------------------------------------------------------------------------------------------
# podman in a sandboxed configuration


@dataclass
class Podman:
    """`podman <root flags> ARGV...` with the temp dir's config; see the module docstring."""

    binary: str
    tmp: Path
    runtime: Path
    wrapper: Path
    wrapper_log: Path
    #: the throwaway network namespace of the bridge tests ("" when they cannot run)
    netns: str = ""
    #: why the bridge tests skip, when they do
    no_bridge: str = ""

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONTAINER", "PODMAN", "REGISTRY_AUTH"))
        }
        env["CONTAINERS_CONF"] = str(self.tmp / "containers.conf")
        env["CONTAINERS_STORAGE_CONF"] = str(self.tmp / "storage.conf")
        env["TMPDIR"] = str(self.tmp / "vartmp")
        return env

    def argv(self, *args: str) -> list[str]:
        t = self.tmp
        return [
            self.binary,
            "--root", str(t / "graph"),
            "--runroot", str(t / "run"),
            "--tmpdir", str(t / "libpod-tmp"),
            "--network-config-dir", str(t / "networks"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            *args,
        ]  # fmt: skip

    def run(
        self, *args: str, timeout: float = TIMEOUT, wrap: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run podman (stdin /dev/null); stdout/stderr captured as text. Output goes to
        unlinked temp files, not pipes: a detached container's conmon must not hold our pipe.
        `wrap` is a command prefix (e.g. unshare)."""
        cmd = [*(wrap or []), *self.argv(*args)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=self.tmp,  # conmon writes files (e.g. `oom`) into its working directory
                timeout=timeout,
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

    def ok(self, *args: str, timeout: float = TIMEOUT) -> str:
        """Run podman, assert exit 0, return stdout."""
        proc = self.run(*args, timeout=timeout)
        assert proc.returncode == 0, _describe(proc)
        return proc.stdout

    def in_netns(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """podman inside the throwaway network namespace (bridge tests); skips if there is
        none."""
        if not self.netns:
            pytest.skip(self.no_bridge)
        return self.run(*args, timeout=timeout, wrap=["nsenter", f"--net=/run/netns/{self.netns}"])

    def wrapper_lines(self) -> list[list[str]]:
        if not self.wrapper_log.exists():
            return []
        return [line.split() for line in self.wrapper_log.read_text().splitlines()]


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{shlex.join(proc.args)}\n  exit {proc.returncode}\n  stdout: {proc.stdout!r}"
        f"\n  stderr: {proc.stderr!r}"
    )


#: what this host needs on top of the stock file, inserted under each table's header
HOST_SETTINGS = {
    # the stock default asks for more open files than this host's hard limit
    "[containers]": 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n',
    "[engine]": 'cgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "{name}"\n'
                'image_copy_tmp_dir = "{tmp}/vartmp"\n',
    "[engine.runtimes]": '{name} = ["{runtime}"]\n',
}


def containers_conf(name: str, tmp: Path, runtime: Path) -> str:
    """Debian's stock containers.conf with HOST_SETTINGS added under their tables (a table
    the stock file lacks is appended)."""
    stock = STOCK_CONTAINERS_CONF.read_text() if STOCK_CONTAINERS_CONF.is_file() else ""
    missing = dict(HOST_SETTINGS)
    lines = []
    for line in stock.splitlines(keepends=True):
        lines.append(line)
        settings = missing.pop(line.strip(), None)
        if settings is not None:
            lines.append(settings.format(name=name, tmp=tmp, runtime=runtime))
    for header, settings in missing.items():
        lines.append(f"\n{header}\n" + settings.format(name=name, tmp=tmp, runtime=runtime))
    return "".join(lines)


STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{tmp}/graph"
runroot = "{tmp}/run"
"""

WRAPPER = """\
#!/bin/sh
printf '%s\\n' "$*" >> {log}
exec {runtime} "$@"
"""


def _make_busybox_tar(tmp: Path) -> Path:
    """A busybox rootfs tarball: /bin/busybox + one symlink per applet, /etc/passwd+group."""
    root = tmp / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "etc", "root", "tmp"):
        (root / d).mkdir(parents=True, mode=0o755)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True, timeout=TIMEOUT
    ).stdout.split()
    for applet in applets:
        if "/" in applet or applet == "busybox":
            continue
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    tar = tmp / "busybox.tar"
    subprocess.run(
        ["tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), "."],
        check=True,
        timeout=TIMEOUT,
    )
    shutil.rmtree(root)
    return tar


# ---------------------------------------------------------------------------------------------
# processes / mounts attributable to the temp dir


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _processes_mentioning(text: str) -> dict[int, str]:
    """Every live process (not us) whose cmdline mentions `text`: pid -> cmdline."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        line = _cmdline(int(name))
        st = leakcheck._stat(int(name))
        if text in line and st is not None and st[1] != "Z":
            out[int(name)] = line
    return out


def _our_podman_children(tmp: Path) -> dict[int, str]:
    """Our live children that belong to podman's machinery: conmon, or anything whose cmdline
    mentions the temp dir (`podman container cleanup`, the runtime wrapper, ...)."""
    out = {}
    for pid, (comm, state) in leakcheck.child_processes().items():
        if state == "Z":
            continue
        line = _cmdline(pid)
        if comm == "conmon" or str(tmp) in line:
            out[pid] = f"{comm}: {line}"
    return out


def wait_settled(tmp: Path, timeout: float = SETTLE_TIMEOUT) -> dict[int, str]:
    """Reap zombies until no podman helper (see above) is our child; returns the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        leakcheck.reap_zombie_children()
        left = _our_podman_children(tmp)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _mounts_under(tmp: Path) -> list[str]:
    return [mp for mp, _fs in leakcheck.mounts() if mp == str(tmp) or mp.startswith(f"{tmp}/")]


def _state_entries() -> set[str]:
    out = set()
    for root in RUNTIME_STATE_ROOTS:
        if root.is_dir():
            out |= {str(root / name) for name in os.listdir(root)}
    return out


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def podman(subreaper: None) -> Iterator[Podman]:
    """Sandboxed podman with IMAGE imported; see the module docstring. Teardown removes every
    container and image, then fails if a process, mount or runtime state entry is left."""
    binary, runtime = _podman_preconditions()
    tmp = Path(tempfile.mkdtemp(prefix="tsubo-e2e-podman-"))
    tmp.chmod(0o700)
    for d in ("graph", "run", "libpod-tmp", "networks", "vartmp", "shadow", "varlib"):
        (tmp / d).mkdir(mode=0o700)
    (tmp / "containers.conf").write_text(containers_conf(RUNTIME_NAME, tmp, runtime))
    (tmp / "storage.conf").write_text(STORAGE_CONF.format(tmp=tmp))
    wrapper = tmp / "tsubo-runtime-wrapper"
    wrapper_log = tmp / "wrapper.log"
    wrapper.write_text(
        WRAPPER.format(log=shlex.quote(str(wrapper_log)), runtime=shlex.quote(str(runtime)))
    )
    wrapper.chmod(0o755)
    pm = Podman(binary=binary, tmp=tmp, runtime=runtime, wrapper=wrapper, wrapper_log=wrapper_log)

    states_before = _state_entries()
    cache_before = HOST_BLOB_CACHE.stat().st_mtime_ns if HOST_BLOB_CACHE.exists() else None
    problems: list[str] = []
    try:
        tar = _make_busybox_tar(tmp)
        # containers/image writes its blob-info cache to /var/lib/containers/cache for root,
        # whatever --root says: shadow that (or /var/lib if it is absent) in a private mount
        # namespace that dies with the import.
        target = "/var/lib/containers" if Path("/var/lib/containers").is_dir() else "/var/lib"
        shadow = f'mount --bind {shlex.quote(str(tmp / "shadow"))} {target} && exec "$@"'
        imported = pm.run(
            "import",
            str(tar),
            IMAGE,
            wrap=["unshare", "--mount", "--propagation", "private", "sh", "-c", shadow, "sh"],
        )
        assert imported.returncode == 0, _describe(imported)
        cache_after = HOST_BLOB_CACHE.stat().st_mtime_ns if HOST_BLOB_CACHE.exists() else None
        assert cache_after == cache_before, f"the import wrote the host's {HOST_BLOB_CACHE}"
        pm.no_bridge = _bridge_sandbox(pm, tmp)
        yield pm
    finally:
        problems += _podman_teardown(pm, tmp, states_before)
        leakcheck.reap_zombie_children()
        if problems:
            pytest.fail("podman teardown:\n  " + "\n  ".join(problems), pytrace=False)


def _bridge_sandbox(pm: Podman, tmp: Path) -> str:
    """Make the bridge tests' throwaway netns and shadow /var/lib (CNI writes its leases and
    cache to /var/lib/cni, podman its caches to /var/lib/containers) with a temp dir; "" on
    success, else why the bridge tests skip. The bind mount is made only in a mount
    namespace of our own: in the host's, it would hide /var/lib from everyone."""
    if not _private_mount_namespace():
        return "bridge tests need a private mount namespace (scripts/test.sh runs pytest in one)"
    for tool in ("nsenter", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian packages util-linux, iptables)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "CNI plugins not installed: install Debian package containernetworking-plugins"
    subprocess.run(["mount", "--bind", str(tmp / "varlib"), "/var/lib"], check=True,
                   timeout=TIMEOUT)
    name = f"tsubo-pm-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=TIMEOUT)
    pm.netns = name
    return ""


def _private_mount_namespace() -> bool:
    """Whether a mount on /var/lib stays ours: our mount namespace is not our parent's
    (where it is readable) and the mount holding /var/lib propagates nowhere (no shared
    peer group), as under `unshare --mount --propagation private`."""
    try:
        if os.stat("/proc/self/ns/mnt").st_ino == os.stat(f"/proc/{os.getppid()}/ns/mnt").st_ino:
            return False
    except PermissionError:
        pass
    best, shared = "", True
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")[0].split()
        point = fields[4]
        if "/var/lib/".startswith(point.rstrip("/") + "/") and len(point) >= len(best):
            best, shared = point, any(f.startswith("shared:") for f in fields[6:])
    return bool(best) and not shared


def _bridge_sandbox_teardown(pm: Podman, tmp: Path) -> list[str]:
    """Delete the throwaway netns (CNI's bridge and rules go with it), lift the shadow."""
    problems = []
    if pm.netns:
        proc = subprocess.run(["ip", "netns", "delete", pm.netns], capture_output=True,
                              text=True, check=False, timeout=TIMEOUT)
        if proc.returncode != 0:
            problems.append(f"ip netns delete {pm.netns}: {proc.stderr.strip()}")
    if not pm.no_bridge and any(mp == "/var/lib" for mp, _fs in leakcheck.mounts()):
        proc = subprocess.run(["umount", "/var/lib"], capture_output=True, text=True,
                              check=False, timeout=TIMEOUT)
        if proc.returncode != 0:
            problems.append(f"umount /var/lib: {proc.stderr.strip()}")
    return problems


def _podman_preconditions() -> tuple[str, Path]:
    """podman's binary and the runtime under test, or a skip saying what to install."""
    if os.geteuid() != 0:
        pytest.skip("podman e2e tests need root")
    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman not installed: install Debian packages podman and conmon")
    if shutil.which("conmon") is None:
        pytest.skip("conmon not installed: install Debian package conmon")
    if shutil.which("unshare") is None:
        pytest.skip("unshare not installed: install Debian package util-linux")
    if not BUSYBOX.is_file() or b"/ld-linux" in BUSYBOX.read_bytes()[:4096]:
        pytest.skip(f"{BUSYBOX} missing or not static: install Debian package busybox-static")
    runtime = runtime_binary()
    if not (runtime.is_file() and os.access(runtime, os.X_OK)):
        pytest.skip(f"runtime under test not found: {runtime}")
    return binary, runtime


def _podman_teardown(pm: Podman, tmp: Path, states_before: set[str]) -> list[str]:
    """Remove every container and image; what is left behind (processes, mounts, runtime
    state entries), as problems."""
    problems: list[str] = []
    for args in (("rm", "-af", "-t", "0"), ("rmi", "-af")):
        try:
            proc = pm.run(*args)
            if proc.returncode != 0:
                problems.append(_describe(proc))
        except subprocess.TimeoutExpired:
            problems.append(f"podman {' '.join(args)} timed out")
    try:
        left = pm.run("ps", "-aq").stdout.split()
        if left:
            problems.append(f"containers left after rm -af: {left}")
    except subprocess.TimeoutExpired:
        problems.append("podman ps -aq timed out")
    survivors = wait_settled(tmp)
    if survivors:
        problems.append(f"podman helpers still running (killed, ours): {survivors}")
        problems += leakcheck.kill_pids(survivors)
    problems += _bridge_sandbox_teardown(pm, tmp)
    strays = _processes_mentioning(str(tmp))
    if strays:  # not our descendants: reported, never killed by pattern
        problems.append(f"processes mentioning {tmp} remain: {strays}")
    mounts = _mounts_under(tmp)
    if mounts:
        problems.append(f"mounts left under {tmp} (temp dir NOT removed): {mounts}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    new_states = sorted(_state_entries() - states_before)
    if new_states:
        problems.append(f"runtime state entries left: {new_states}")
    return problems


@pytest.fixture(autouse=True)
def settled(podman: Podman) -> Iterator[None]:
    """After each test: podman's helpers (conmon, cleanup) must exit within SETTLE_TIMEOUT;
    runs before the conftest leak check takes its 'after' snapshot."""
    yield
    left = wait_settled(podman.tmp)
    if left:
        pytest.fail(f"podman helpers still running {SETTLE_TIMEOUT}s after the test: {left}")


def _name() -> str:
    return f"tsubo-e2e-{secrets.token_hex(4)}"


# ---------------------------------------------------------------------------------------------
# tests


def test_run_uses_tsubo_runtime(podman: Podman) -> None:
    info = podman.ok("info", "--format", "{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Path}}")
    assert info.strip() == f"{RUNTIME_NAME}|{podman.runtime}"

    script = "echo hello; cat /proc/1/cmdline; hostname"
    proc = podman.run(
        "--runtime", str(podman.wrapper),
        "run", "--rm", "--network", "none", IMAGE, "sh", "-c", script,
    )  # fmt: skip
    assert proc.returncode == 0, _describe(proc)
    assert wait_settled(podman.tmp) == {}

    lines = podman.wrapper_lines()
    creates = [line for line in lines if "create" in line]
    assert len(creates) == 1, lines
    create = creates[0]
    cid = create[-1]
    assert len(cid) == 64, create
    assert "--bundle" in create, create
    calls = [next(t for t in line if t in RUNTIME_COMMANDS) for line in lines if cid in line]
    # create, start, ..., delete (podman may query state / kill / delete again in between)
    assert calls[:2] == ["create", "start"] and calls[-1] == "delete", lines
    assert set(calls[2:]) <= {"state", "kill", "delete"}, lines

    # pid 1 is our sh, the hostname is podman's default: the short container id
    assert proc.stdout == f"hello\nsh\0-c\0{script}\0{cid[:12]}\n", _describe(proc)


def test_exit_code_passes_through(podman: Podman) -> None:
    proc = podman.run("run", "--rm", "--network", "none", IMAGE, "sh", "-c", "exit 3")
    assert proc.returncode == 3, _describe(proc)
    assert proc.stdout == ""


def test_detached_exec_top_stop_rm(podman: Podman) -> None:
    name = _name()
    try:
        cid = podman.ok("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "100")
        cid = cid.strip()
        assert len(cid) == 64, cid

        ps = podman.ok("ps", "--filter", f"name=^{name}$", "--format", "{{.ID}}|{{.Status}}")
        short, _, status = ps.strip().partition("|")
        assert short == cid[:12] and status.startswith("Up "), ps
        assert podman.ok("inspect", "--format", "{{.OCIRuntime}}", name).strip() == RUNTIME_NAME

        assert podman.ok("exec", name, "sh", "-c", "echo $((1+2))") == "3\n"

        rows = [line.split(None, 1) for line in podman.ok("top", name, "pid", "args").splitlines()]
        assert rows[0] == ["PID", "COMMAND"], rows
        assert [r[0] for r in rows[1:]] == ["1"] and rows[1][1].strip() == "sleep 100", rows

        listed = podman.ok("exec", name, "ls", "/proc").split()
        pids = sorted(int(p) for p in listed if p.isdigit())
        assert pids[0] == 1, listed  # the exec'd ls is the other one
        assert len(pids) == 2, listed

        # busybox sleep as pid 1 has no TERM handler: stop escalates to KILL after 1 s
        started = time.monotonic()
        assert podman.ok("stop", "-t", "1", name).strip() == name
        assert time.monotonic() - started >= 0.9
        state = podman.ok("inspect", "--format", "{{.State.Status}}|{{.State.ExitCode}}", name)
        assert state.strip() == "exited|137"

        assert podman.ok("rm", name).strip() == name
        assert podman.ok("ps", "-aq", "--filter", f"name=^{name}$") == ""
    finally:
        podman.run("rm", "-f", "-t", "0", "--ignore", name)


def _run_in_pty(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run argv with a fresh pseudo-terminal as stdin/stdout/stderr; (exit code, output)."""
    master, slave = os.openpty()
    chunks: list[bytes] = []
    try:
        proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        slave = -1
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every slave fd is closed
                        break
                    if not data:
                        break
                    chunks.append(data)
                    quiet_since = None
                elif proc.poll() is not None:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > 0.5:
                        break
            code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, b"".join(chunks).decode(errors="replace")


def test_tty(podman: Podman) -> None:
    argv = podman.argv("run", "--rm", "-t", "--network", "none", IMAGE, "sh", "-c", "tty")
    code, out = _run_in_pty(argv, podman.env, podman.tmp, TIMEOUT)
    assert code == 0, out
    assert out.replace("\r\n", "\n") == "/dev/pts/0\n", repr(out)


def test_memory_and_pids_limits(podman: Podman) -> None:
    if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():  # v1 / hybrid
        files = ["/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max"]
    else:  # unified
        files = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max"]
    proc = podman.run(
        "run", "--rm", "--network", "none", "--memory", "64m", "--pids-limit", "32",
        IMAGE, "sh", "-c", f"cat {' '.join(files)} && cat /proc/self/cgroup >&2",
    )  # fmt: skip
    assert proc.returncode == 0, _describe(proc)
    assert proc.stdout.split() == ["67108864", "32"], _describe(proc)


def test_capabilities(podman: Podman) -> None:
    proc = podman.run(
        "run", "--rm", "--network", "none", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
        IMAGE, "grep", "^Cap", "/proc/self/status",
    )  # fmt: skip
    assert proc.returncode == 0, _describe(proc)
    caps = dict(line.split(":\t") for line in proc.stdout.splitlines())
    net_bind_service = f"{1 << 10:016x}"
    assert net_bind_service == "0000000000000400"
    assert caps == {
        "CapInh": "0" * 16,
        "CapPrm": net_bind_service,
        "CapEff": net_bind_service,
        "CapBnd": net_bind_service,
        "CapAmb": "0" * 16,
    }


def time_interleaved(
    runtimes: dict[str, str], run_once: Callable[[str], None], rounds: int = 5
) -> dict[str, list[float]]:
    """Seconds of `run_once(path)` per runtime, `rounds` rounds interleaved (so a busy
    moment of the machine hits both)."""
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, path in runtimes.items():
            started = time.perf_counter()
            run_once(path)
            times[name].append(time.perf_counter() - started)
    return times


def print_medians(what: str, times: dict[str, list[float]]) -> None:
    print()
    for name, samples in times.items():
        print(
            f"{what} via {name}: median {statistics.median(samples):.3f}s"
            f" (min {min(samples):.3f}s, max {max(samples):.3f}s, n={len(samples)})"
        )
    if "runc" not in times:
        print("runc not installed (Debian package runc): no comparison")


def runtimes_to_compare(ours: Path) -> dict[str, str]:
    """The runtime under test, and runc when it is installed."""
    runtimes = {"tsubo-runtime": str(ours)}
    runc = shutil.which("runc")
    if runc is not None:
        runtimes["runc"] = runc
    return runtimes


def test_timing_tsubo_vs_runc(podman: Podman) -> None:
    """Five `podman run --rm ... true` per runtime, interleaved; medians printed (see -s)."""

    def run_once(path: str) -> None:
        proc = podman.run("--runtime", path, "run", "--rm", "--network", "none", IMAGE, "true")
        assert proc.returncode == 0, _describe(proc)

    print_medians("podman run --rm true", time_interleaved(runtimes_to_compare(podman.runtime),
                                                          run_once))


# ---------------------------------------------------------------------------------------------
# networks, and the rest of the lifecycle (issue 14)


def test_bridge_network_with_the_stock_sysctl(podman: Podman) -> None:
    """podman's default bridge (CNI) inside the throwaway netns: podman makes the netns and
    passes its path with the stock `net.ipv4.ping_group_range=0 0`; the container gets an
    address, a default route, the sysctl, lo up, and is reachable from the bridge's side."""
    name = _name()
    script = (
        "ip -o -4 addr show eth0 | awk '{print $4}'; ip route | awk '/^default/ {print $3}'; "
        "cat /proc/sys/net/ipv4/ping_group_range; cat /sys/class/net/lo/flags; "
        "echo served | nc -l -p 8080"
    )
    try:
        proc = podman.in_netns("run", "-d", "--name", name, IMAGE, "sh", "-c", script)
        assert proc.returncode == 0, _describe(proc)
        address = podman.ok("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name)
        address = address.strip()
        assert address.startswith(BRIDGE_SUBNET_PREFIX), address
        reply = ""
        deadline = time.monotonic() + TIMEOUT
        while not reply and time.monotonic() < deadline:  # until nc listens
            reply = subprocess.run(
                ["ip", "netns", "exec", podman.netns, str(BUSYBOX), "nc", "-w", "2", address,
                 "8080"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=TIMEOUT, check=False,
            ).stdout
            time.sleep(0.1)
        assert reply == "served\n"
        podman.in_netns("wait", name)
        lines = podman.ok("logs", name).split("\n")
        cidr, gateway, ping_range, lo_flags = lines[:4]
        assert cidr.startswith(address + "/"), lines
        assert gateway.startswith(BRIDGE_SUBNET_PREFIX) and gateway.endswith(".1"), lines
        assert ping_range.split() == ["0", "0"], lines
        assert int(lo_flags, 16) & 1, lines
    finally:
        podman.in_netns("rm", "-f", "-t", "0", "--ignore", name)


def test_network_none_has_loopback_up(podman: Podman) -> None:
    """A new netns of the runtime's own: lo is up, 127.0.0.1 answers (runc's behaviour)."""
    script = (
        "cat /sys/class/net/lo/flags; nc -l -p 7777 > /tmp/got & sleep 0.2; "
        "echo ping | nc -w 1 127.0.0.1 7777; sleep 0.2; cat /tmp/got"
    )
    proc = podman.run("run", "--rm", "--network", "none", IMAGE, "sh", "-c", script)
    assert proc.returncode == 0, _describe(proc)
    flags, got = proc.stdout.split()
    assert int(flags, 16) & 1 and got == "ping", _describe(proc)


def _pid(podman: Podman, name: str) -> int:
    return int(podman.ok("inspect", "--format", "{{.State.Pid}}", name))


def test_pause_update_restart(podman: Podman) -> None:
    """pause/unpause (runtime pause/resume), update (runtime update --resources FILE), stats,
    restart (a new create/start of the same container)."""
    name = _name()
    limit = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    if not Path(limit).exists():
        limit = "/sys/fs/cgroup/memory.max"
    try:
        podman.ok("run", "-d", "--name", name, "--network", "none", "--memory", "128m",
                  IMAGE, "sleep", "100")
        podman.ok("pause", name)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "paused"
        podman.ok("unpause", name)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "running"

        podman.ok("update", "--memory", "64m", name)
        assert podman.ok("exec", name, "cat", limit).strip() == str(64 << 20)
        # stats works; podman 4.3 still shows the limit it started with (under runc too)
        stats = podman.ok("stats", "--no-stream", "--format", "{{.Name}} {{.MemLimit}}", name)
        assert stats.split() == [name, str(128 << 20)], stats

        first = _pid(podman, name)
        podman.ok("restart", "-t", "0", name)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "running"
        assert _pid(podman, name) != first
        assert podman.ok("exec", name, "echo", "again") == "again\n"
    finally:
        podman.run("rm", "-f", "-t", "0", "--ignore", name)


def test_init(podman: Podman) -> None:
    """--init: podman binds its init (catatonit) in as pid 1, our command its child."""
    proc = podman.run("run", "--rm", "--init", "--network", "none", IMAGE,
                      "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$")
    assert proc.returncode == 0, _describe(proc)
    pid1, own_pid = proc.stdout.splitlines()
    assert pid1.split()[:2] == ["/run/podman-init", "--"], pid1
    assert own_pid != "1"


@pytest.mark.parametrize(("program", "code"), [("/nonexistent", 127), ("/etc/passwd", 126)])
def test_exec_failures_map_to_dockers_codes(podman: Podman, program: str, code: int) -> None:
    """podman reads the runtime's words (runc's) to pick 127 (not found) or 126."""
    proc = podman.run("run", "--rm", "--network", "none", IMAGE, program)
    assert proc.returncode == code, _describe(proc)


def test_oom_kill_same_as_runc(podman: Podman) -> None:
    """A container over its memory limit: exit 137 under both runtimes, and podman's
    OOMKilled the same under both (conmon watches the cgroup itself; on this host it reports
    false for runc too, so the comparison, not the value, is what is pinned)."""
    allocate = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'
    runtimes = {"tsubo-runtime": str(podman.runtime)}
    runc = shutil.which("runc")
    if runc is not None:
        runtimes["runc"] = runc
    seen = {}
    for label, path in runtimes.items():
        name = _name()
        try:
            proc = podman.run("--runtime", path, "run", "--name", name, "--network", "none",
                              "--memory", "32m", "--memory-swap", "32m", IMAGE,
                              "sh", "-c", allocate)
            assert proc.returncode == 137, _describe(proc)
            seen[label] = podman.ok("inspect", "--format", "{{.State.OOMKilled}}", name).strip()
        finally:
            podman.run("rm", "-f", "-t", "0", "--ignore", name)
    assert len(set(seen.values())) == 1, seen


def test_runtime_commands_podman_calls(podman: Podman) -> None:
    """Every runtime command a whole lifecycle makes podman call (printed with -s; the list
    is in docs/runtime.md): all of them are commands tsubo-runtime has."""
    name = _name()
    wrap = ("--runtime", str(podman.wrapper))
    start = len(podman.wrapper_lines())
    try:
        podman.ok(*wrap, "run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "100")
        podman.ok(*wrap, "exec", name, "true")
        podman.ok(*wrap, "pause", name)
        podman.ok(*wrap, "unpause", name)
        podman.ok(*wrap, "update", "--memory", "64m", name)
        podman.ok(*wrap, "top", name)
        podman.ok(*wrap, "stop", "-t", "0", name)
        podman.ok(*wrap, "rm", name)
    finally:
        podman.run("rm", "-f", "-t", "0", "--ignore", name)
    wait_settled(podman.tmp)
    lines = podman.wrapper_lines()[start:]
    called = sorted({next((t for t in line if t in RUNTIME_COMMANDS), line[0]) for line in lines})
    print(f"\npodman called: {' '.join(called)}")
    assert set(called) <= RUNTIME_COMMANDS, called
    assert {"create", "start", "exec", "pause", "resume", "update", "kill", "delete"} <= set(
        called
    ), called
