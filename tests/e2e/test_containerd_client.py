"""containerd 1.6 (Debian's) drives tsubo-runtime through its runc shim, as Kubernetes does.

`ctr run --runc-binary tsubo-runtime` goes through `containerd-shim-runc-v2` (the shim
containerd's CRI plugin uses for every pod), which calls the runtime with runc's argv:
create/start/state/kill/delete/exec/pause/resume/ps/update, with `--log`, `--log-format
json` and `--root`.

Sandbox, made and removed by the module fixture:
- a containerd of our own (tests/e2e/containerd_fixtures.py: root, state, sockets in a temp
  dir, the tmpfs over /run/containerd, started and stopped by pid), the CRI plugin off, no
  debug or metrics listeners, the `opt` plugin's folder in the temp dir;
- images through the `native` snapshotter (plain copies: no overlay mounts), imported from
  an OCI archive the fixture writes (busybox-static);
- each container's cgroup is `/tsubo-test-<tag>/<id>` (ctr's `--cgroup`), so the per-test
  leak check covers it; every container runs in a new network namespace (ctr's default).

CI needs the Debian packages containerd, busybox-static and, for the comparison, runc.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bundles import CGROUP_PREFIX
from tests.e2e import containerd_fixtures
from tests.e2e.containerd_fixtures import TIMEOUT, Containerd, describe, oci_archive
from tests.e2e.test_podman_client import (
    _run_in_pty,
    print_medians,
    runtimes_to_compare,
    time_interleaved,
)

NAMESPACE = "tsubo-test"
IMAGE = "localhost/tsubo-test-busybox:latest"

CONFIG = containerd_fixtures.BASE_CONFIG


@pytest.fixture(scope="module")
def containerd(subreaper: None) -> Iterator[Containerd]:
    """Our own containerd with IMAGE imported (see the module docstring); at the end every
    container, task, image and the namespace are removed, containerd is stopped by its pid,
    and what is left (processes, mounts, runtime state) fails the module."""
    runtime = containerd_fixtures.preconditions()
    tmp = Path(tempfile.mkdtemp(prefix="tsubo-e2e-containerd-"))
    tmp.chmod(0o700)
    config = CONFIG.format(tmp=tmp, disabled='["io.containerd.grpc.v1.cri"]')
    cd = containerd_fixtures.start(tmp, config, runtime, NAMESPACE)
    problems: list[str] = []
    try:
        containerd_fixtures.wait_ready(cd)
        oci_archive(tmp / "busybox.tar", IMAGE)
        cd.ok("images", "import", "--snapshotter", "native", str(tmp / "busybox.tar"))
        yield cd
    finally:
        if cd.process.poll() is None:
            _remove_everything(cd)
        problems += containerd_fixtures.stop(cd)
        if problems:
            pytest.fail("containerd teardown:\n  " + "\n  ".join(problems), pytrace=False)


def _remove_everything(cd: Containerd) -> None:
    for task in cd.ctr("tasks", "list", "-q").stdout.split():
        cd.ctr("tasks", "kill", "-s", "SIGKILL", task)
        cd.ctr("tasks", "delete", "-f", task)
    containers = cd.ctr("containers", "list", "-q").stdout.split()
    if containers:
        cd.ctr("containers", "delete", *containers)
    cd.ctr("images", "remove", IMAGE)
    cd.ctr("namespaces", "remove", NAMESPACE)


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
    assert proc.returncode == 3, describe(proc)
    hello, flags = proc.stdout.split()
    assert hello == "hello" and int(flags, 16) & 1, describe(proc)  # lo up, as under runc
    assert containerd.ok("containers", "list", "-q") == ""


def test_detached_exec_pause_ps_metrics_kill_delete(containerd: Containerd, cgroup: str) -> None:
    cid = _id()
    try:
        containerd.ok(*_run_args(containerd, cgroup, "-d"), IMAGE, cid, "sleep", "100")
        _wait_task(containerd, cid, "RUNNING")
        proc = containerd.ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c",
                              "echo $((6*7)); exit 5")
        assert (proc.returncode, proc.stdout) == (5, "42\n"), describe(proc)
        missing = containerd.ctr("tasks", "exec", "--exec-id", "e2", cid, "/nonexistent")
        assert missing.returncode != 0
        assert "no such file or directory" in missing.stderr, describe(missing)

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
        assert proc.returncode == 0, describe(proc)

    print_medians("ctr run --rm true",
                  time_interleaved(runtimes_to_compare(containerd.runtime), run_once))
