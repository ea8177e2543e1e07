"""containerd 1.6 (Debian's) drives tsubo-runtime through its runc shim, as Kubernetes does.

`ctr run --runc-binary tsubo-runtime` goes through `containerd-shim-runc-v2` (the shim
containerd's CRI plugin uses for every pod), which calls the runtime with runc's argv:
create/start/state/kill/delete/exec/pause/resume/ps/update, with `--log`, `--log-format
json` and `--root`.

Sandbox, made and removed by the module fixture:
- a containerd of our own: root, state, gRPC/ttrpc sockets and the `opt` plugin's folder in a
  temp dir, the CRI plugin off, no debug or metrics listeners; started by the fixture (its
  pid recorded), stopped by that pid at the end;
- the shim keeps its sockets and its runc root under /run/containerd (hard-wired in 1.6):
  a tmpfs is mounted there, only when this process has a mount namespace of its own (as
  under scripts/test.sh); the folder is made for it if the host has none, and removed;
- images through the `native` snapshotter (plain copies: no overlay mounts), imported from
  an OCI archive the fixture writes (busybox-static);
- each container's cgroup is `/tsubo-test-<tag>/<id>` (ctr's `--cgroup`), so the per-test
  leak check covers it; every container runs in a new network namespace (ctr's default).

CI needs the Debian packages containerd, busybox-static and, for the comparison, runc.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import leakcheck
from tests.bundles import CGROUP_PREFIX
from tests.conftest import BUSYBOX, runtime_binary
from tests.e2e.test_podman_client import (
    _run_in_pty,
    print_medians,
    runtimes_to_compare,
    time_interleaved,
)

TIMEOUT = 60.0
NAMESPACE = "tsubo-test"
IMAGE = "localhost/tsubo-test-busybox:latest"
SHIM_STATE = Path("/run/containerd")
#: the runtime commands the shim may call (runc's names)
RUNTIME_COMMANDS = frozenset(
    ("create", "start", "state", "kill", "delete", "exec", "pause", "resume", "ps", "update",
     "features")
)

CONFIG = """\
version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{tmp}/containerd.sock"

[ttrpc]
  address = "{tmp}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
"""

WRAPPER = """\
#!/bin/sh
printf '%s\\n' "$*" >> {log}
exec {runtime} "$@"
"""


@dataclass
class Containerd:
    """A running containerd of our own and `ctr` bound to it."""

    tmp: Path
    process: subprocess.Popen[bytes]
    runtime: Path
    wrapper: Path
    wrapper_log: Path

    def ctr(self, *args: str, timeout: float = TIMEOUT,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`ctr --address SOCK --namespace NS ARGS`; output through temp files (a detached
        task's shim must not hold our pipe)."""
        cmd = ["ctr", "--address", str(self.tmp / "containerd.sock"), "--namespace", NAMESPACE,
               *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL if input is None else None,
                input=None if input is None else input.encode(), stdout=out, stderr=err,
                timeout=timeout, check=False,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, proc.returncode,
                                               out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))

    def ok(self, *args: str, timeout: float = TIMEOUT) -> str:
        proc = self.ctr(*args, timeout=timeout)
        assert proc.returncode == 0, _describe(proc)
        return proc.stdout

    def wrapper_commands(self) -> list[str]:
        if not self.wrapper_log.exists():
            return []
        return [next((word for word in line.split() if word in RUNTIME_COMMANDS), line)
                for line in self.wrapper_log.read_text().splitlines()]


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"{' '.join(proc.args)}\n  exit {proc.returncode}\n  stdout: {proc.stdout!r}"
            f"\n  stderr: {proc.stderr!r}")


# ---------------------------------------------------------------------------------------------
# an OCI image archive of busybox-static, written here (no registry, no network)


def _tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _entry(name: str, kind: bytes, *, mode: int = 0o755, link: str = "",
           data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.size = len(data) if data is not None else 0
    return info, data


def busybox_layer() -> bytes:
    """An uncompressed layer: /bin/busybox, a symlink per applet, /etc/passwd, dirs."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True, timeout=TIMEOUT).stdout.split()
    entries = [_entry(d, tarfile.DIRTYPE) for d in ("bin", "etc", "proc", "sys", "dev", "tmp")]
    entries[-1][0].mode = 0o1777
    entries.append(_entry("bin/busybox", tarfile.REGTYPE, data=BUSYBOX.read_bytes()))
    entries += [_entry(f"bin/{name}", tarfile.SYMTYPE, mode=0o777, link="busybox")
                for name in applets if "/" not in name and name != "busybox"]
    entries.append(_entry("etc/passwd", tarfile.REGTYPE, mode=0o644,
                          data=b"root:x:0:0:root:/root:/bin/sh\n"))
    return _tar_bytes(entries)


def oci_archive(path: Path, name: str) -> None:
    """An OCI image layout as a tar, as `ctr images import` reads it."""
    layer = gzip.compress(busybox_layer(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    config = {"architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
              "os": "linux", "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **blob(json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            **blob(layer)}]}
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **blob(json.dumps(manifest).encode()),
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
    }]}
    entries = [_entry("oci-layout", tarfile.REGTYPE, mode=0o644,
                      data=b'{"imageLayoutVersion": "1.0.0"}'),
               _entry("index.json", tarfile.REGTYPE, mode=0o644,
                      data=json.dumps(index).encode()),
               _entry("blobs", tarfile.DIRTYPE), _entry("blobs/sha256", tarfile.DIRTYPE)]
    entries += [_entry(f"blobs/sha256/{digest[7:]}", tarfile.REGTYPE, mode=0o644, data=data)
                for digest, data in blobs.items()]
    path.write_bytes(_tar_bytes(entries))


# ---------------------------------------------------------------------------------------------
# fixtures


def _private_mount_namespace() -> bool:
    """Whether a mount on /run/containerd stays ours (see the module docstring)."""
    try:
        if os.stat("/proc/self/ns/mnt").st_ino == os.stat(f"/proc/{os.getppid()}/ns/mnt").st_ino:
            return False
    except PermissionError:
        pass
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")[0].split()
        if fields[4] in ("/", "/run") and any(f.startswith("shared:") for f in fields[6:]):
            return False
    return True


@pytest.fixture(scope="module")
def containerd(subreaper: None) -> Iterator[Containerd]:
    """Our own containerd with IMAGE imported (see the module docstring); at the end every
    container, task, image and the namespace are removed, containerd is stopped by its pid,
    and what is left (processes, mounts, runtime state) fails the module."""
    if os.geteuid() != 0:
        pytest.skip("containerd e2e tests need root")
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed: install Debian package containerd")
    runtime = runtime_binary()
    if not (runtime.is_file() and os.access(runtime, os.X_OK)):
        pytest.skip(f"runtime under test not found: {runtime}")
    if not _private_mount_namespace():
        pytest.skip("containerd's shim writes /run/containerd: needs a private mount "
                    "namespace (scripts/test.sh runs pytest in one)")
    tmp = Path(tempfile.mkdtemp(prefix="tsubo-e2e-containerd-"))
    tmp.chmod(0o700)
    (tmp / "containerd.toml").write_text(CONFIG.format(tmp=tmp))
    wrapper_log = tmp / "wrapper.log"
    wrapper = tmp / "tsubo-runtime-wrapper"
    wrapper.write_text(WRAPPER.format(log=wrapper_log, runtime=runtime))
    wrapper.chmod(0o755)
    made_shim_dir = not SHIM_STATE.exists()
    if made_shim_dir:
        SHIM_STATE.mkdir(mode=0o711)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0711", "tsubo-test", str(SHIM_STATE)],
                   check=True, timeout=TIMEOUT)
    log = (tmp / "containerd.log").open("wb")
    process = subprocess.Popen(["containerd", "--config", str(tmp / "containerd.toml")],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    cd = Containerd(tmp, process, runtime, wrapper, wrapper_log)
    problems: list[str] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while cd.ctr("version", timeout=5).returncode != 0:
            assert process.poll() is None, (tmp / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not answer"
            time.sleep(0.1)
        oci_archive(tmp / "busybox.tar", IMAGE)
        cd.ok("images", "import", "--snapshotter", "native", str(tmp / "busybox.tar"))
        yield cd
    finally:
        problems += _teardown(cd)
        log.close()
        if made_shim_dir:
            try:
                SHIM_STATE.rmdir()
            except OSError as error:
                problems.append(f"rmdir {SHIM_STATE}: {error}")
        if problems:
            pytest.fail("containerd teardown:\n  " + "\n  ".join(problems), pytrace=False)


def _teardown(cd: Containerd) -> list[str]:
    problems: list[str] = []
    if cd.process.poll() is None:
        for task in cd.ctr("tasks", "list", "-q").stdout.split():
            cd.ctr("tasks", "kill", "-s", "SIGKILL", task)
            cd.ctr("tasks", "delete", "-f", task)
        containers = cd.ctr("containers", "list", "-q").stdout.split()
        if containers:
            cd.ctr("containers", "delete", *containers)
        cd.ctr("images", "remove", IMAGE)
        cd.ctr("namespaces", "remove", NAMESPACE)
        cd.process.send_signal(signal.SIGTERM)
    try:
        cd.process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        problems.append("containerd did not stop on SIGTERM: killed")
        cd.process.kill()
        cd.process.wait()
    leakcheck.reap_zombie_children()
    left = {pid: comm for pid, (comm, state) in leakcheck.child_processes().items()
            if state != "Z"}
    if left:
        problems.append(f"processes left after containerd stopped (killed, ours): {left}")
        problems += leakcheck.kill_pids(left)
    # (empty folders are the shim's, runc's as well; a file or socket would be a leak)
    leftovers = [str(p) for p in SHIM_STATE.rglob("*") if not p.is_dir()]
    if leftovers:
        problems.append(f"left under {SHIM_STATE}: {leftovers[:10]}")
    proc = subprocess.run(["umount", str(SHIM_STATE)], capture_output=True, text=True,
                          check=False, timeout=TIMEOUT)
    if proc.returncode != 0:
        problems.append(f"umount {SHIM_STATE}: {proc.stderr.strip()}")
    mounts = [mp for mp, _fs in leakcheck.mounts() if mp.startswith(f"{cd.tmp}/")]
    if mounts:
        problems.append(f"mounts left under {cd.tmp} (kept): {mounts}")
    else:
        shutil.rmtree(cd.tmp, ignore_errors=True)
    return problems


@pytest.fixture
def cgroup(test_tag: str) -> str:
    """ctr's --cgroup for this test's containers: under the test's own parent."""
    return f"/{CGROUP_PREFIX}{test_tag}/ctr-{secrets.token_hex(4)}"


def _id() -> str:
    return f"tsubo-e2e-{secrets.token_hex(4)}"


def _run_args(cd: Containerd, cgroup: str, *flags: str, runtime: str = "") -> list[str]:
    return ["run", "--snapshotter", "native", "--runc-binary", runtime or str(cd.runtime),
            "--cgroup", cgroup, *flags]


def _wait_task(cd: Containerd, cid: str, status: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        rows = [line.split() for line in cd.ok("tasks", "list").splitlines()[1:]]
        if any(row[0] == cid and row[-1] == status for row in rows):
            return
        time.sleep(0.05)
    pytest.fail(f"task {cid} never {status}: {cd.ok('tasks', 'list')}")


def _cleanup(cd: Containerd, cid: str) -> None:
    cd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
    cd.ctr("tasks", "delete", "-f", cid)
    cd.ctr("containers", "delete", cid)


# ---------------------------------------------------------------------------------------------
# tests


def test_run_rm_output_and_exit_code(containerd: Containerd, cgroup: str) -> None:
    script = "echo hello; cat /sys/class/net/lo/flags; exit 3"
    proc = containerd.ctr(*_run_args(containerd, cgroup, "--rm"), IMAGE, _id(),
                          "sh", "-c", script)
    assert proc.returncode == 3, _describe(proc)
    hello, flags = proc.stdout.split()
    assert hello == "hello" and int(flags, 16) & 1, _describe(proc)  # lo up, as under runc
    assert containerd.ok("containers", "list", "-q") == ""


def test_detached_exec_pause_ps_metrics_kill_delete(containerd: Containerd, cgroup: str) -> None:
    cid = _id()
    try:
        containerd.ok(*_run_args(containerd, cgroup, "-d"), IMAGE, cid, "sleep", "100")
        _wait_task(containerd, cid, "RUNNING")
        proc = containerd.ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c",
                              "echo $((6*7)); exit 5")
        assert (proc.returncode, proc.stdout) == (5, "42\n"), _describe(proc)
        missing = containerd.ctr("tasks", "exec", "--exec-id", "e2", cid, "/nonexistent")
        assert missing.returncode != 0
        assert "no such file or directory" in missing.stderr, _describe(missing)

        pids = containerd.ok("tasks", "ps", cid).splitlines()[1:]
        assert len(pids) == 1, pids
        containerd.ok("tasks", "pause", cid)
        _wait_task(containerd, cid, "PAUSED")
        containerd.ok("tasks", "resume", cid)
        _wait_task(containerd, cid, "RUNNING")
        metrics = containerd.ok("tasks", "metrics", "--format", "json", cid)
        assert json.loads(metrics), metrics

        containerd.ok("tasks", "kill", "-s", "SIGKILL", cid)
        _wait_task(containerd, cid, "STOPPED")
        containerd.ok("tasks", "delete", cid)
        containerd.ok("containers", "delete", cid)
        assert containerd.ok("containers", "list", "-q") == ""
    finally:
        _cleanup(containerd, cid)


def test_tty(containerd: Containerd, cgroup: str) -> None:
    """ctr run -t: the shim hands the runtime a console socket; the pty is the container's
    stdio."""
    argv = ["ctr", "--address", str(containerd.tmp / "containerd.sock"), "--namespace",
            NAMESPACE, *_run_args(containerd, cgroup, "--rm", "-t"), IMAGE, _id(),
            "sh", "-c", "tty"]
    code, out = _run_in_pty(argv, dict(os.environ), containerd.tmp, TIMEOUT)
    assert code == 0, out
    assert out.split() == ["/dev/pts/0"], repr(out)


def test_runtime_commands_the_shim_calls(containerd: Containerd, cgroup: str) -> None:
    """A whole lifecycle through a logging wrapper: every runtime command the shim calls is
    one tsubo-runtime has (printed with -s; the list is in docs/runtime.md)."""
    cid = _id()
    start = len(containerd.wrapper_commands())
    try:
        containerd.ok(*_run_args(containerd, cgroup, "-d", runtime=str(containerd.wrapper)),
                      IMAGE, cid, "sleep", "100")
        _wait_task(containerd, cid, "RUNNING")
        containerd.ok("tasks", "exec", "--exec-id", "e1", cid, "true")
        containerd.ok("tasks", "pause", cid)
        containerd.ok("tasks", "resume", cid)
        containerd.ok("tasks", "ps", cid)
        containerd.ok("tasks", "kill", "-s", "SIGKILL", cid)
        _wait_task(containerd, cid, "STOPPED")
        containerd.ok("tasks", "delete", cid)
        containerd.ok("containers", "delete", cid)
    finally:
        _cleanup(containerd, cid)
    called = sorted(set(containerd.wrapper_commands()[start:]))
    print(f"\ncontainerd's shim called: {' '.join(called)}")
    assert {"create", "start", "exec", "pause", "resume", "kill", "delete"} <= set(called), called


def test_timing_tsubo_vs_runc(containerd: Containerd, cgroup: str) -> None:
    """Five `ctr run --rm ... true` per runtime, interleaved; medians printed (see -s)."""

    def run_once(path: str) -> None:
        proc = containerd.ctr(*_run_args(containerd, cgroup, "--rm", runtime=path), IMAGE,
                              _id(), "true")
        assert proc.returncode == 0, _describe(proc)

    print_medians("ctr run --rm true",
                  time_interleaved(runtimes_to_compare(containerd.runtime), run_once))
