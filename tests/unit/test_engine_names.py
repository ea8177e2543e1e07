"""Container and volume names (tsubo.engine.names), attacked through every layer that takes one.

A leading "/" used to make aliases: ``volume create /abs`` stored at ``abs``'s folder
(``<root>/volumes//abs``) and ``volume rm /abs`` deleted ``abs``'s data; containers ``/dup``
and ``dup`` could both exist. Here: the rules themselves, the database (which must refuse
to store or look up a name in another spelling), and the engine's volume calls against a
real data root, each time checking that ``abs``'s data is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tsubo.engine.containers import Engine
from tsubo.engine.db import ContainerRow, Database, new_container_id, now_rfc3339
from tsubo.engine.names import (
    bare_name,
    container_name,
    is_volume_name,
    volume_name,
)
from tsubo.engine.options import parse_volume
from tsubo.engine.volumes import ensure_volume, remove_volume
from tsubo.errors import AlreadyExists, InvalidArgument, NotFound

#: moby volume/local/local.go validateName, the name as Go's %q writes it
DOCKER_BAD_VOLUME_NAME = (
    '{} includes invalid characters for a local volume name, only '
    '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
    'use absolute path')
DOCKER_TOO_SHORT = ("volume name is too short, names should be at least two alphanumeric "
                    "characters")

#: spellings that would reach ``abs``'s folder if they were taken as paths
ALIASES_OF_ABS = ["/abs", "//abs", "abs/", "./abs", "abs/.", "/abs/", "x/../abs",
                  "../volumes/abs", "/./abs"]


# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "web", "my-app_1.0", "A1", "0x", "a" * 128, "/web"])
def test_container_name_accepts_and_strips_one_slash(name: str) -> None:
    assert container_name(name) == name.removeprefix("/")
    assert container_name(container_name(name)) == container_name(name)  # stored form


@pytest.mark.parametrize("name", ["", "a", "/", "/a", "//web", "-web", "_web", ".web", "we b",
                                  "web!", "caf\u00e9", "a" * 129, "a/b", "web/", "web\n"])
def test_container_name_refuses(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        container_name(name)
    assert repr(name) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bare_name_strips_exactly_one_slash() -> None:
    assert (bare_name("/web"), bare_name("web"), bare_name("//web")) == ("web", "web", "/web")


@pytest.mark.parametrize("name", ["ab", "abs", "data_1.0-x", "A1", "0" * 64, "v" * 255])
def test_volume_name_accepts(name: str) -> None:
    assert is_volume_name(name)
    assert volume_name(name) == name


@pytest.mark.parametrize("name", [*ALIASES_OF_ABS, "..", "...", "-x", "_x", ".x", "a b",
                                  "ab$", "caf\u00e9", "a:b"])
def test_volume_name_refuses_in_dockers_words(name: str) -> None:
    assert not is_volume_name(name)
    with pytest.raises(InvalidArgument) as caught:
        volume_name(name, "create volume")
    error = caught.value
    assert error.operation == "create volume"
    assert error.object == name
    assert error.detail == DOCKER_BAD_VOLUME_NAME.format(f'"{name}"')
    assert str(error) == f"create volume {name}: {error.detail}"


def test_volume_name_too_short_and_too_long() -> None:
    for name in ("a", ".", "~", "/"):  # Docker checks the length first
        with pytest.raises(InvalidArgument) as caught:
            volume_name(name)
        assert caught.value.detail == DOCKER_TOO_SHORT
    with pytest.raises(InvalidArgument, match="too long, at most 255"):
        volume_name("v" * 256)


def test_volume_name_error_is_one_line_whatever_the_name() -> None:
    for name in ("a\nb", "\x1b[31mred", "x\ty", 'q"uote\\'):
        with pytest.raises(InvalidArgument) as caught:
            volume_name(name, "remove volume")
        text = str(caught.value)
        assert text.isprintable(), text
        assert "\n" not in text


def test_dash_v_slash_is_a_bind_mount_and_bad_names_are_refused() -> None:
    bind = parse_volume("/abs:/dst")
    assert (bind.is_bind, bind.is_named, bind.source) == (True, False, "/abs")
    named = parse_volume("abs:/dst")
    assert (named.is_bind, named.is_named, named.source) == (False, True, "abs")
    for source in ("abs/", "./abs", "x/../abs", "ab$"):
        with pytest.raises(InvalidArgument) as caught:
            parse_volume(f"{source}:/dst")
        assert caught.value.operation == "parse --volume"
        assert caught.value.detail == DOCKER_BAD_VOLUME_NAME.format(f'"{source}"')


# --- the database ---------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(str(tmp_path / "state" / "tsubo.db"))
    yield database
    database.close()


def _row(name: str) -> ContainerRow:
    return ContainerRow(new_container_id(), name, now_rfc3339(), "{}", state="created")


def test_database_never_stores_a_slashed_container_name(db: Database) -> None:
    first = _row("dup")
    db.insert_container(first)
    with pytest.raises(InvalidArgument, match='stored name has no leading "/"'):
        db.insert_container(_row("/dup"))
    with pytest.raises(InvalidArgument, match='stored name has no leading "/"'):
        db.insert_container(_row("/fresh"))  # not even a free one
    with pytest.raises(AlreadyExists, match='the name "dup" is already in use'):
        db.insert_container(_row(container_name("/dup")))
    assert [row.name for row in db.list_containers(all_states=True)] == ["dup"]
    assert db.resolve_container("/dup").id == first.id
    assert db.name_in_use("/dup")


@pytest.mark.parametrize("alias", ALIASES_OF_ABS)
def test_database_refuses_volume_aliases(db: Database, alias: str) -> None:
    db.insert_volume("abs")
    for call, operation in ((lambda: db.insert_volume(alias), "create volume"),
                            (lambda: db.get_volume(alias), "find volume"),
                            (lambda: db.get_volume(alias, "inspect volume"), "inspect volume"),
                            (lambda: db.delete_volume(alias), "remove volume")):
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert caught.value.operation == operation
        assert "includes invalid characters for a local volume name" in str(caught.value)
    assert [volume.name for volume in db.list_volumes()] == ["abs"]


# --- the engine's volume calls, on a real data root -----------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    core = Engine(str(tmp_path / "root"))
    yield core
    core.close()


@pytest.mark.parametrize("alias", ALIASES_OF_ABS)
def test_volume_alias_attack_leaves_abs_data_intact(engine: Engine, alias: str) -> None:
    assert ensure_volume(engine, "abs") == "abs"
    data = Path(engine.paths.volume_dir("abs")) / "_data" / "precious"
    data.write_text("abs's data\n")
    volumes = Path(engine.paths.data) / "volumes"

    with pytest.raises(InvalidArgument) as created:
        ensure_volume(engine, alias)
    assert created.value.operation == "create volume"
    with pytest.raises(InvalidArgument) as removed:
        remove_volume(engine, alias)
    assert removed.value.operation == "remove volume"

    assert data.read_text() == "abs's data\n"
    assert sorted(path.name for path in volumes.iterdir()) == ["abs"]
    assert [volume.name for volume in engine.db.list_volumes()] == ["abs"]
    remove_volume(engine, "abs")
    assert not volumes.joinpath("abs").exists()
    with pytest.raises(NotFound):
        remove_volume(engine, "abs")
