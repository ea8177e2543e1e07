"""End-to-end tests of the Python API (``import tsubo; tsubo.Engine(root=...)``), root only.

The engine root is the per-test one of ``engine_cli`` (engine_fixtures.py), whose teardown
removes what is left, waits for the monitors and checks for leftover mounts.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tsubo
from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import (
    HEX64,
    EngineCLI,
)
from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, TsuboError, WrongState

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
engine_root = engine_fixtures.engine_root


def test_run_exec_logs_wait_remove(engine_root: Path, engine_cli: EngineCLI) -> None:
    rootfs = str(engine_cli.rootfs)
    with tsubo.Engine(root=str(engine_root)) as engine:
        container = engine.run(rootfs=rootfs, command=["sleep", "100"], memory="64m")
        assert isinstance(container, tsubo.Container)
        assert HEX64.match(container.id)
        assert container.status == "running"
        assert container.pid > 0

        result = container.exec(["sh", "-c", "echo hello; echo oops >&2; exit 2"])
        assert isinstance(result, tsubo.ExecResult)
        assert (result.exit_code, result.stdout, result.stderr) == (2, b"hello\n", b"oops\n")
        result = container.exec(
            ["sh", "-c", 'echo "$GREETING"; pwd'], env=["GREETING=hi"], workdir="/tmp"
        )
        assert (result.exit_code, result.stdout) == (0, b"hi\n/tmp\n")
        assert container.inspect()["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert engine.container(container.id[:12]).id == container.id
        assert [c.id for c in engine.containers()] == [container.id]

        printer = engine.run(
            rootfs=rootfs, command=["sh", "-c", "echo one; echo two >&2; echo three; exit 4"]
        )
        assert printer.wait(timeout=10) == 4
        assert printer.status == "exited" and printer.exit_code == 4
        assert printer.logs(stderr=False) == b"one\nthree\n"
        assert printer.logs(stdout=False) == b"two\n"
        printer.remove()
        counter = engine.run(rootfs=rootfs, command=["sh", "-c", "echo 1; echo 2; echo 3"])
        assert counter.wait(timeout=10) == 0
        assert counter.logs(tail=1) == b"3\n"
        counter.remove()
        assert engine_cli.ids() == [container.id[:12]]

        # stop: SIGTERM is ignored by a PID 1 without a handler, SIGKILL after the timeout
        started = time.monotonic()
        container.stop(timeout=1)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 6.0, elapsed
        assert (container.status, container.exit_code) == ("exited", 137)
        assert container.wait() == 137
        container.remove()
        assert engine_cli.ids() == []
        assert engine_cli.container_dirs() == []


def test_context_managers_remove_the_container(engine_root: Path, engine_cli: EngineCLI) -> None:
    rootfs = str(engine_cli.rootfs)
    with (
        tsubo.Engine(root=str(engine_root)) as engine,
        engine.run(rootfs=rootfs, command=["sleep", "100"], name="scoped") as container,
    ):
        assert engine_cli.ids() == [container.id[:12]]
        assert container.name == "scoped"
    assert engine_cli.ids() == []
    assert engine_cli.container_dirs() == []

    # also when the block raises
    with (
        pytest.raises(RuntimeError, match="boom"),
        tsubo.Engine(root=str(engine_root)) as engine,
        engine.run(rootfs=rootfs, command=["sleep", "100"]),
    ):
        raise RuntimeError("boom")
    assert engine_cli.ids() == []
    assert engine_cli.container_dirs() == []


def test_errors_are_tsubo_errors(engine_root: Path, engine_cli: EngineCLI, tmp_path: Path) -> None:
    rootfs = str(engine_cli.rootfs)
    with tsubo.Engine(root=str(engine_root)) as engine:
        with pytest.raises(NotFound) as missing:
            engine.container("no-such-container")
        assert missing.value.object == "no-such-container"
        assert missing.value.operation

        absent = str(tmp_path / "absent")
        with pytest.raises(NotFound) as no_rootfs:
            engine.run(rootfs=absent, command=["true"])
        assert no_rootfs.value.object == absent

        with pytest.raises(InvalidArgument) as bad_memory:
            engine.run(rootfs=rootfs, command=["true"], memory="abc")
        assert "--memory" in bad_memory.value.operation and bad_memory.value.object == "abc"

        with pytest.raises(InvalidArgument) as unknown:
            engine.run(rootfs=rootfs, command=["true"], no_such_option=1)
        assert unknown.value.object == "no_such_option"
        assert engine_cli.ids() == []

        first = engine.run(rootfs=rootfs, command=["sleep", "100"], name="taken")
        with pytest.raises(AlreadyExists) as taken:
            engine.run(rootfs=rootfs, command=["true"], name="taken")
        assert taken.value.object == "taken"
        with pytest.raises(WrongState) as running:
            first.remove()
        assert running.value.object == "taken"
        assert engine_cli.ids() == [first.id[:12]]

        with pytest.raises(TsuboError) as not_found:
            engine.run(rootfs=rootfs, command=["nosuchcommand"], name="broken")
        assert "nosuchcommand" in str(not_found.value)
        assert not_found.value.operation
        # the error names what failed: the program the runtime could not find
        assert not_found.value.object == "nosuchcommand"
        assert not_found.value.operation == "exec"
        first.remove(force=True)

        for error in (missing, no_rootfs, bad_memory, unknown, taken, running, not_found):
            assert isinstance(error.value, TsuboError)
            assert "\n" not in str(error.value)
