"""``tsubo-runtime update``: runc's argv (``--resources FILE``, ``--resources -``, the flags).

podman's ``update`` writes a ``linux.resources`` file and passes ``--resources FILE``;
containerd's runc shim pipes it (``--resources -``). The limits land in the container's
cgroup (read on the host) and in the container's own view; what is not updated keeps its
value; a stopped container, bad JSON and bad values are refused in one line. Real runtime,
real kernel, `root` tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeBundle, RuntimeCLI
from tests.kernel.test_isolation import one_line_error
from tests.kernel.test_resources import cgroup_dirs, controller_file, read

MIB = 1 << 20


@pytest.fixture
def running(runtime: RuntimeCLI, make_bundle: MakeBundle) -> Iterator[str]:
    """A started container (`sleep 100`) with 128 MiB of memory and 50 pids; deleted
    (--force) by the runtime fixture's teardown."""
    b = make_bundle(
        ["sleep", "100"],
        linux={"resources": {"memory": {"limit": 128 * MIB}, "pids": {"limit": 50}}},
    )
    cid = runtime.container_id()
    assert runtime.run("create", "--bundle", str(b.path), cid).returncode == 0
    assert runtime.run("start", cid).returncode == 0
    yield cid


def _memory_limit(runtime: RuntimeCLI, cid: str) -> int:
    dirs = cgroup_dirs(runtime, cid)
    name = "memory.limit_in_bytes" if "memory" in dirs else "memory.max"
    return int(read(controller_file(dirs, "memory", name)))


def _pids_limit(runtime: RuntimeCLI, cid: str) -> str:
    return read(controller_file(cgroup_dirs(runtime, cid), "pids", "pids.max"))


def test_update_resources_file(runtime: RuntimeCLI, running: str, tmp_path: Path) -> None:
    """podman's form: only what changes is in the file; the rest keeps its value."""
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"memory": {"limit": 64 * MIB}}))
    proc = runtime.run("update", "--resources", str(resources), running)
    assert proc.returncode == 0, proc.stderr
    assert _memory_limit(runtime, running) == 64 * MIB
    assert _pids_limit(runtime, running) == "50"
    inside = runtime.run("exec", running, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if inside.returncode == 0:  # a v1 / hybrid host: the container sees its own limit
        assert int(inside.stdout) == 64 * MIB


def test_update_resources_from_stdin_then_flags(runtime: RuntimeCLI, running: str) -> None:
    """containerd's form (`--resources -`), and runc's flags laid over it (sizes as runc
    reads them: 96m)."""
    proc = runtime.run("update", "--resources", "-", running,
                       input=json.dumps({"pids": {"limit": 20}}))
    assert proc.returncode == 0, proc.stderr
    assert _pids_limit(runtime, running) == "20"
    proc = runtime.run("update", "--memory", "96m", "--pids-limit", "30", running)
    assert proc.returncode == 0, proc.stderr
    assert (_memory_limit(runtime, running), _pids_limit(runtime, running)) == (96 * MIB, "30")


def test_update_a_paused_container(runtime: RuntimeCLI, running: str) -> None:
    assert runtime.run("pause", running).returncode == 0
    proc = runtime.run("update", "--pids-limit", "40", running)
    assert proc.returncode == 0, proc.stderr
    assert _pids_limit(runtime, running) == "40"
    assert runtime.run("resume", running).returncode == 0


def test_update_of_a_stopped_container_is_refused(
    runtime: RuntimeCLI, running: str
) -> None:
    assert runtime.run("kill", running, "KILL").returncode == 0
    runtime.wait_status(running, "stopped")
    line = one_line_error(runtime.run("update", "--pids-limit", "10", running))
    assert "container is stopped" in line, line


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[1]", "not a JSON object"),
        ('{"memory": {"limit": "lots"}}', "resources.memory.limit"),
        ('{"memory": ', "not valid JSON"),
    ],
    ids=["not-an-object", "bad-value", "bad-json"],
)
def test_bad_resources_are_refused_and_change_nothing(
    runtime: RuntimeCLI, running: str, text: str, words: str
) -> None:
    line = one_line_error(runtime.run("update", "--resources", "-", running, input=text))
    assert words in line, line
    assert (_memory_limit(runtime, running), _pids_limit(runtime, running)) == (128 * MIB, "50")
