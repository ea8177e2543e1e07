"""A containerd of the test's own, shared by the containerd tests (ctr and CRI).

What is kept here: starting Debian's containerd 1.6 on a config the test writes (root, state,
sockets in a temp dir) and stopping it by its pid; the tmpfs over /run/containerd, where
the runc shim keeps its sockets and the runtime's `--root` whatever the config says (1.6),
mounted only when this process has a mount namespace of its own (as under scripts/test.sh),
the folder made if the host has none and removed; `ctr` bound to the daemon; a logging
wrapper that records the runtime commands the shim calls; OCI image archives written here
from busybox-static (no registry, no network) for `ctr images import`.

Stopping checks what containerd leaves: processes (pytest is a child subreaper: the shims
are its children), files under /run/containerd, mounts under the temp dir.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck
from tests.conftest import BUSYBOX, runtime_binary

TIMEOUT = 60.0
SHIM_STATE = Path("/run/containerd")
#: the runtime commands the shim may call (runc's names)
RUNTIME_COMMANDS = frozenset(
    ("create", "start", "state", "kill", "delete", "exec", "pause", "resume", "ps", "update",
     "features")
)

#: the part of a config every test's containerd shares: everything in the temp dir, no
#: debug or metrics listeners ({tmp}: the temp dir; {disabled}: a TOML list of plugins;
#: a test appends its plugins' tables)
BASE_CONFIG = """\
version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = {disabled}

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
    namespace: str
    made_shim_dir: bool = False

    @property
    def socket(self) -> Path:
        return self.tmp / "containerd.sock"

    def ctr(self, *args: str, timeout: float = TIMEOUT,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`ctr --address SOCK --namespace NS ARGS`; output through temp files (a detached
        task's shim must not hold our pipe)."""
        cmd = ["ctr", "--address", str(self.socket), "--namespace", self.namespace, *args]
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
        assert proc.returncode == 0, describe(proc)
        return proc.stdout

    def wrapper_commands(self, log: Path | None = None) -> list[str]:
        """The runtime command of each call logged by the wrapper (its argv's first word
        that is one of runc's commands)."""
        log = log or self.wrapper_log
        if not log.exists():
            return []
        return [next((word for word in line.split() if word in RUNTIME_COMMANDS), line)
                for line in log.read_text().splitlines()]

    def log_tail(self, size: int = 3000) -> str:
        return (self.tmp / "containerd.log").read_text(errors="replace")[-size:]


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"{' '.join(proc.args)}\n  exit {proc.returncode}\n  stdout: {proc.stdout!r}"
            f"\n  stderr: {proc.stderr!r}")


def write_wrapper(path: Path, log: Path, runtime: Path | str) -> Path:
    """A shell script that logs its argv to *log* and execs *runtime*."""
    path.write_text(WRAPPER.format(log=log, runtime=runtime))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------------------------
# OCI image archives of busybox-static, written here (no registry, no network)


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


def busybox_layer(applets: list[str] | None = None) -> bytes:
    """An uncompressed layer: /bin/busybox, a symlink per applet (all of busybox's unless
    *applets* names some), /etc/passwd, dirs."""
    if applets is None:
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


def oci_archive(path: Path, name: str, *, layer: bytes | None = None,
                config: dict[str, Any] | None = None) -> None:
    """An OCI image layout as a tar, as `ctr images import` reads it: one layer (default
    the whole busybox) and the image config's `config` (default PATH=/bin, Cmd sh)."""
    layer = gzip.compress(busybox_layer() if layer is None else layer, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    image_config = {"architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
                    "os": "linux",
                    "config": config or {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **blob(json.dumps(image_config).encode())},
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
# start and stop


def private_mount_namespace() -> bool:
    """Whether a mount on /run/containerd stays ours: our mount namespace is not our
    parent's, and neither / nor /run propagates to a peer group."""
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


def preconditions() -> Path:
    """The runtime under test, or a skip saying what is missing."""
    if os.geteuid() != 0:
        pytest.skip("containerd e2e tests need root")
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed: install Debian package containerd")
    runtime = runtime_binary()
    if not (runtime.is_file() and os.access(runtime, os.X_OK)):
        pytest.skip(f"runtime under test not found: {runtime}")
    if not private_mount_namespace():
        pytest.skip("containerd's shim writes /run/containerd: needs a private mount "
                    "namespace (scripts/test.sh runs pytest in one)")
    return runtime


def start(tmp: Path, config: str, runtime: Path, namespace: str, *,
          prefix: tuple[str, ...] = ()) -> Containerd:
    """Mount the tmpfs over /run/containerd, write *config* and the wrapper (logging to
    tmp/wrapper.log, execing *runtime*), start `prefix... containerd --config`. It does
    not wait: call `wait_ready` in the `try` whose `finally` calls `stop`."""
    (tmp / "containerd.toml").write_text(config)
    wrapper_log = tmp / "wrapper.log"
    wrapper = write_wrapper(tmp / "tsubo-runtime-wrapper", wrapper_log, runtime)
    made_shim_dir = not SHIM_STATE.exists()
    if made_shim_dir:
        SHIM_STATE.mkdir(mode=0o711)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0711", "tsubo-test", str(SHIM_STATE)],
                   check=True, timeout=TIMEOUT)
    with (tmp / "containerd.log").open("wb") as log:
        process = subprocess.Popen([*prefix, "containerd", "--config",
                                    str(tmp / "containerd.toml")],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    return Containerd(tmp, process, runtime, wrapper, wrapper_log, namespace, made_shim_dir)


def wait_ready(cd: Containerd) -> None:
    deadline = time.monotonic() + TIMEOUT
    while cd.ctr("version", timeout=5).returncode != 0:
        assert cd.process.poll() is None, cd.log_tail()
        assert time.monotonic() < deadline, "containerd did not answer"
        time.sleep(0.1)


def quietly(*argv: str) -> list[str]:
    """Run a teardown command; its failure as a one-line problem (none when it worked)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=TIMEOUT)
    return [f"{' '.join(argv)}: {proc.stderr.strip()}"] if proc.returncode != 0 else []


def stop(cd: Containerd) -> list[str]:
    """SIGTERM containerd by its pid and wait; then what is left fails: processes (killed),
    files under /run/containerd, mounts under the temp dir (kept then, else it is removed).
    The client's own objects must be removed before."""
    problems: list[str] = []
    if cd.process.poll() is None:
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
    problems += quietly("umount", str(SHIM_STATE))
    if cd.made_shim_dir:
        try:
            SHIM_STATE.rmdir()
        except OSError as error:
            problems.append(f"rmdir {SHIM_STATE}: {error}")
    mounts = [mp for mp, _fs in leakcheck.mounts() if mp.startswith(f"{cd.tmp}/")]
    if mounts:
        problems.append(f"mounts left under {cd.tmp} (kept): {mounts}")
    else:
        shutil.rmtree(cd.tmp, ignore_errors=True)
    return problems
