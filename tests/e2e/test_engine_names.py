"""Name aliases through the ``tsubo`` CLI and the Python API, written as attacks (root only).

A leading "/" used to give a second name to the same thing: ``volume create /abs`` stored
at ``abs``'s folder and ``volume rm /abs`` deleted ``abs``'s data; containers ``/dup`` and
``dup`` could both exist. Each test gives ``abs`` (or ``dup``) real content first, tries
every spelling, then checks that the content is untouched and that exactly one object
exists. Fixtures as in test_engine_cli.py (a fresh engine root per test, the busybox rootfs,
teardown and leak checks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tsubo
from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import HEX64, EngineCLI, one_line
from tsubo.errors import AlreadyExists

engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
engine_root = engine_fixtures.engine_root

DOCKER_CLI_ERROR = 1
EXIT_ENGINE = 125
INVALID_CHARS = ("includes invalid characters for a local volume name, only "
                 '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                 "directory, use absolute path")


def _volume_names(cli: EngineCLI) -> list[str]:
    return cli.ok("volume", "ls", "-q").split()


def _abs_with_data(cli: EngineCLI) -> Path:
    """Volume ``abs`` holding ``/data/precious``; the host path of that file."""
    assert cli.ok("volume", "create", "abs") == "abs\n"
    proc = cli.run_fg(["sh", "-c", "echo precious > /data/precious"], "--rm", "-v", "abs:/data")
    assert (proc.returncode, proc.stderr) == (0, "")
    (record,) = json.loads(cli.ok("volume", "inspect", "abs"))
    data = Path(record["Mountpoint"]) / "precious"
    assert data.read_text() == "precious\n"
    return data


def test_slash_volume_name_is_refused_everywhere_and_abs_survives(
        engine_cli: EngineCLI) -> None:
    data = _abs_with_data(engine_cli)
    for verb in ("create", "rm", "inspect"):
        for alias in ("/abs", "//abs", "abs/", "./abs", "/abs/."):
            proc = engine_cli("volume", verb, alias)
            assert (proc.returncode, proc.stdout) == (DOCKER_CLI_ERROR, ""), (verb, alias)
            line = one_line(proc.stderr)
            assert f'"{alias}" {INVALID_CHARS}' in line, line
            assert data.read_text() == "precious\n", (verb, alias)
    assert _volume_names(engine_cli) == ["abs"]
    assert sorted(p.name for p in (engine_cli.root / "volumes").iterdir()) == ["abs"]
    # the real name still works, to the end
    proc = engine_cli.run_fg(["cat", "/data/precious"], "--rm", "-v", "abs:/data")
    assert (proc.returncode, proc.stdout) == (0, "precious\n")
    assert engine_cli.ok("volume", "rm", "abs") == "abs\n"
    assert not data.exists()


def test_dash_v_forms_never_reach_abs(engine_cli: EngineCLI, tmp_path: Path) -> None:
    data = _abs_with_data(engine_cli)

    # NAME:/dst with a name that is not one: refused before anything is made
    for source in ("abs/", "abs/.", "x/../abs"):
        proc = engine_cli.run_fg(["true"], "--rm", "-v", f"{source}:/dst")
        assert (proc.returncode, proc.stdout) == (EXIT_ENGINE, ""), source
        assert f'"{source}" {INVALID_CHARS}' in one_line(proc.stderr)
    # ./abs:/dst is the caller's directory ./abs (Docker 23+, issue 9), never the volume:
    # here it does not exist, so the run fails naming it
    proc = engine_cli("run", "--rm", "-v", "./abs:/dst", "--rootfs", str(engine_cli.rootfs),
                      "true")
    assert (proc.returncode, proc.stdout) == (EXIT_ENGINE, "")
    assert f"bind mount {os.getcwd()}/abs" in one_line(proc.stderr)
    assert engine_cli.ids() == []

    # /abs:/dst stays a bind mount of the host's /abs: here it does not exist, so the run
    # fails, and neither a host /abs nor the volume is touched
    if not Path("/abs").exists():
        proc = engine_cli.run_fg(["ls", "/dst"], "--rm", "-v", "/abs:/dst")
        assert proc.returncode == EXIT_ENGINE
        assert "/abs" in one_line(proc.stderr)
        assert "precious" not in proc.stdout
        assert not Path("/abs").exists()
    # ... and a host directory called abs is what it mounts
    host_abs = tmp_path / "abs"
    host_abs.mkdir()
    (host_abs / "marker").write_text("host\n")
    proc = engine_cli.run_fg(["cat", "/dst/marker"], "--rm", "-v", f"{host_abs}:/dst")
    assert (proc.returncode, proc.stdout) == (0, "host\n")

    # -v /abs: an anonymous volume at /abs in the container, empty, not the volume abs
    container_id = engine_cli.run_d(["sh", "-c", "ls -A /abs; echo new > /abs/new"], "-v", "/abs")
    assert engine_cli.ok("wait", container_id) == "0\n"
    assert engine_cli.ok("logs", container_id) == ""
    anonymous = [name for name in _volume_names(engine_cli) if name != "abs"]
    assert len(anonymous) == 1 and HEX64.match(anonymous[0]), anonymous
    engine_cli.ok("rm", "-v", container_id)

    assert _volume_names(engine_cli) == ["abs"]
    assert data.read_text() == "precious\n"
    assert sorted(p.name for p in data.parent.iterdir()) == ["precious"]


@pytest.mark.parametrize("first, second", [("dup", "/dup"), ("/dup", "dup")])
def test_slash_container_name_is_the_same_name(engine_cli: EngineCLI, first: str,
                                               second: str) -> None:
    kept = engine_cli.run_d(["sleep", "100"], "--name", first)
    proc = engine_cli("run", "-d", "--name", second, "--rootfs", str(engine_cli.rootfs),
                      "sleep", "100")
    assert (proc.returncode, proc.stdout) == (EXIT_ENGINE, "")
    assert f'the name "dup" is already in use by container {kept[:12]}' in one_line(proc.stderr)
    proc = engine_cli("create", "--name", second, "--rootfs", str(engine_cli.rootfs), "true")
    assert (proc.returncode, proc.stdout) == (EXIT_ENGINE, "")
    assert "already in use" in one_line(proc.stderr)

    assert engine_cli.ids() == [kept[:12]]
    assert engine_cli.container_dirs() == [kept]
    names = engine_cli.ok("ps", "-a", "--format", "{{.Names}}").split()
    assert names == ["dup"]
    for ref in ("dup", "/dup"):
        record = engine_cli.inspect(ref)
        assert (record["Id"], record["Name"]) == (kept, "/dup")
        assert record["State"]["Running"] is True
    engine_cli.ok("rm", "-f", "/dup")
    assert engine_cli.ids() == []


def test_python_api_normalises_the_same_way(engine_root: Path, engine_cli: EngineCLI) -> None:
    rootfs = str(engine_cli.rootfs)
    with tsubo.Engine(root=str(engine_root)) as engine:
        web = engine.create(rootfs=rootfs, command=["true"], name="/web")
        assert web.name == "web"
        assert engine.container("/web").id == engine.container("web").id == web.id
        with pytest.raises(AlreadyExists, match='the name "web" is already in use'):
            engine.create(rootfs=rootfs, command=["true"], name="web")
        assert [c.id for c in engine.containers(all=True)] == [web.id]
        web.remove()
    assert engine_cli.ids() == []
