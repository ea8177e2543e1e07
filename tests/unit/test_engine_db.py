"""tsubo.engine.db: schema and migrations, rows, names, resolution, volumes, transactions."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from tsubo.engine import db as dbmod
from tsubo.engine.db import (
    MIGRATIONS,
    ContainerRow,
    Database,
    VolumeRow,
    generate_name,
    new_container_id,
    now_rfc3339,
)
from tsubo.engine.names import container_name
from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, WrongState


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "state" / "tsubo.db")


@pytest.fixture
def db(db_path):
    database = Database(db_path)
    yield database
    database.close()


def make_row(name: str, container_id: str | None = None, state: str = "created",
             created_at: str | None = None) -> ContainerRow:
    return ContainerRow(container_id or new_container_id(), name,
                        created_at or now_rfc3339(), '{"image":"busybox","cmd":["true"]}',
                        image="busybox", state=state)


# --- opening and migrating -----------------------------------------------------------------


def test_open_creates_private_dir_and_file(db_path, db):
    assert stat.S_IMODE(os.stat(os.path.dirname(db_path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    assert db.schema_version() == len(MIGRATIONS)


def test_pragmas(db):
    connection = db._connection
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert connection.isolation_level is None


def test_reopen_is_idempotent_and_keeps_data(db_path, db):
    db.insert_container(make_row("web"))
    for _ in range(3):
        again = Database(db_path)
        assert again.schema_version() == len(MIGRATIONS)
        assert [row.name for row in again.list_containers(all_states=True)] == ["web"]
        again.close()


def test_migration_is_not_rerun_and_no_journal_mode_write(db_path, db):
    statements: list[str] = []
    again = Database.__new__(Database)
    again.path = db_path
    again._connection = sqlite3.connect(db_path, isolation_level=None)
    again._connection.set_trace_callback(statements.append)
    again._configure()
    again._migrate()
    again.close()
    assert not any(s.startswith(("CREATE", "BEGIN")) for s in statements), statements
    assert "PRAGMA journal_mode = WAL" not in statements


def test_two_databases_on_one_file_see_each_other(db_path, db):
    other = Database(db_path)
    try:
        row = make_row("shared")
        db.insert_container(row)
        assert other.get_container(row.id).name == "shared"
        other.update_container(row.id, state="running", pid=42)
        seen = db.get_container(row.id)
        assert (seen.state, seen.pid) == ("running", 42)
    finally:
        other.close()


def test_context_manager_closes(db_path):
    with Database(db_path) as database:
        database.insert_container(make_row("x1"))
    with pytest.raises(sqlite3.ProgrammingError):
        database.list_containers()


# --- containers ----------------------------------------------------------------------------


def test_row_round_trip(db):
    row = make_row("roundtrip")
    row.labels = '{"a": "b\u00e9"}'
    row.exit_code = 3
    row.oom_killed = 1
    row.started_at = now_rfc3339()
    db.insert_container(row)
    back = db.get_container(row.id)
    for column in dbmod.CONTAINER_COLUMNS:
        assert getattr(back, column) == getattr(row, column), column
    assert (back.oom_killed, back.stopped_by_user, back.finished_at) == (1, 0, None)
    assert back.short_id == row.id[:12]
    assert repr(back) == f"<ContainerRow {row.id[:12]} 'roundtrip' created>"


def test_new_row():
    row = ContainerRow.new("a" * 64, "fresh", {"cmd": ["sh"]}, "/rootfs", image="img",
                           labels={"k": "v"})
    assert (row.options, row.labels, row.rootfs, row.image, row.state) == \
        ('{"cmd":["sh"]}', '{"k":"v"}', "/rootfs", "img", "created")
    assert len(row.created_at) == 30
    text = ContainerRow.new("b" * 64, "text", '{"cmd": []}', labels='{"x": "1"}')
    assert (text.options, text.labels) == ('{"cmd": []}', '{"x": "1"}')
    with pytest.raises(ValueError):
        ContainerRow.new("c" * 64, "bad", "{not json")


def test_get_missing_container(db):
    with pytest.raises(NotFound, match="no such container"):
        db.get_container("0" * 64)


def test_from_row_accepts_sqlite_row_and_tuple(db):
    row = make_row("rowtypes")
    db.insert_container(row)
    connection = db._connection
    connection.row_factory = sqlite3.Row
    try:
        as_row = connection.execute(dbmod._CONTAINER_SELECT).fetchone()
    finally:
        connection.row_factory = None
    assert ContainerRow.from_row(as_row).name == "rowtypes"
    as_tuple = connection.execute(dbmod._CONTAINER_SELECT).fetchone()
    assert isinstance(as_tuple, tuple)
    assert ContainerRow.from_row(as_tuple).id == row.id


def test_name_collision_error(db):
    first = make_row("web")
    db.insert_container(first)
    with pytest.raises(AlreadyExists) as caught:
        db.insert_container(make_row("web"))
    error = caught.value
    assert error.operation == "create container"
    assert error.object == "web"
    assert error.detail == f'the name "web" is already in use by container {first.id[:12]}'
    assert error.hint == "remove it or pick another --name"
    assert str(error) == (f'create container web: the name "web" is already in use by '
                          f"container {first.id[:12]} (hint: remove it or pick another --name)")
    assert db.name_in_use("web")
    assert db.name_in_use("/web")
    assert not db.name_in_use("other")


def test_id_collision(db):
    row = make_row("one")
    db.insert_container(row)
    with pytest.raises(AlreadyExists, match="a container with this id exists"):
        db.insert_container(make_row("two", container_id=row.id))


def test_resolve(db):
    a = make_row("alpha", container_id="abc" + "0" * 61)
    b = make_row("beta", container_id="abd" + "1" * 61)
    # a container whose *name* looks like the other's id prefix
    c = make_row("abd1", container_id="f" * 64)
    for row in (a, b, c):
        db.insert_container(row)
    assert db.resolve_container(a.id).id == a.id  # full id
    assert db.resolve_container("alpha").id == a.id  # name
    assert db.resolve_container("/beta").id == b.id  # name with Docker's slash
    assert db.resolve_container("abc").id == a.id  # unique prefix
    assert db.resolve_container("abd1").id == c.id  # exact name wins over id prefix
    assert db.resolve_container("f").id == c.id
    with pytest.raises(InvalidArgument) as ambiguous:
        db.resolve_container("ab")
    assert ambiguous.value.detail == "multiple containers match prefix ab"
    with pytest.raises(NotFound) as missing:
        db.resolve_container("nope")
    assert (missing.value.operation, missing.value.object, missing.value.detail) == \
        ("find container", "nope", "no such container")
    with pytest.raises(NotFound):
        db.resolve_container("0123")  # hex, but no id starts with it
    with pytest.raises(NotFound):
        db.resolve_container("ABC")  # ids are lower-case; prefixes match exactly
    with pytest.raises(InvalidArgument):
        db.resolve_container("")


def test_resolve_prefix_is_not_a_like_pattern(db):
    db.insert_container(make_row("gamma", container_id="a" * 64))
    for ref in ("%", "_", "a%", "a_"):
        with pytest.raises(NotFound):
            db.resolve_container(ref)


def test_list_ordering_and_filter(db):
    names = []
    for index, state in enumerate(("running", "exited", "paused", "created", "restarting")):
        name = f"c{index}"
        names.append(name)
        db.insert_container(make_row(name, state=state,
                                     created_at=f"2026-01-0{index + 1}T00:00:00.000000000Z"))
    assert [r.name for r in db.list_containers(all_states=True)] == names[::-1]
    assert [r.name for r in db.list_containers(all_states=False)] == ["c4", "c2", "c0"]
    assert [r.name for r in db.list_containers()] == ["c4", "c2", "c0"]


def test_list_ties_newest_inserted_first(db):
    stamp = now_rfc3339()
    for name in ("t1", "t2", "t3"):
        db.insert_container(make_row(name, created_at=stamp))
    assert [r.name for r in db.list_containers(all_states=True)] == ["t3", "t2", "t1"]


def test_update(db):
    row = make_row("upd")
    db.insert_container(row)
    db.update_container(row.id, state="exited", exit_code=137, oom_killed=True,
                        labels={"k": "v"}, finished_at="2026-01-01T00:00:00.000000000Z")
    back = db.get_container(row.id)
    assert (back.state, back.exit_code, back.oom_killed, back.labels) == \
        ("exited", 137, 1, '{"k":"v"}')
    db.update_container(row.id, state="starting", stopped_by_user=0, options='{"a":1}')
    back = db.get_container(row.id)
    assert (back.state, back.stopped_by_user, back.options) == ("starting", 0, '{"a":1}')
    with pytest.raises(ValueError):
        db.update_container(row.id, labels="{broken")
    db.update_container(row.id)  # nothing to do
    with pytest.raises(ValueError, match="bogus"):
        db.update_container(row.id, bogus=1)
    with pytest.raises(ValueError, match="id"):
        db.update_container(row.id, id="x")
    with pytest.raises(ValueError, match="state"):
        db.update_container(row.id, state="sleeping")
    with pytest.raises(NotFound):
        db.update_container("0" * 64, state="exited")


def test_insert_rejects_unknown_state(db):
    with pytest.raises(ValueError, match="state"):
        db.insert_container(make_row("bad", state="zombie"))


def test_delete_container(db):
    row = make_row("gone")
    db.insert_container(row)
    assert db.delete_container(row.id) is True
    with pytest.raises(NotFound):
        db.get_container(row.id)
    assert db.delete_container(row.id) is False
    assert not db.name_in_use("gone")


# --- volumes -------------------------------------------------------------------------------


def test_volumes(db):
    created = db.insert_volume("data", labels={"x": "y"})
    assert isinstance(created, VolumeRow)
    db.insert_volume("anon", anonymous=True)
    with pytest.raises(AlreadyExists):
        db.insert_volume("data")
    volume = db.get_volume("data")
    assert (volume.name, volume.driver, volume.labels, volume.anonymous) == \
        ("data", "local", '{"x":"y"}', 0)
    assert volume.created_at == created.created_at
    with pytest.raises(NotFound, match="no such volume"):
        db.get_volume("missing")
    assert [v.name for v in db.list_volumes()] == ["anon", "data"]
    assert db.list_volumes()[0].anonymous == 1


def test_anonymous_volumes_of(db):
    row = make_row("ctr")
    db.insert_container(row)
    db.insert_volume("named")
    db.insert_volume("f" * 64, anonymous=True)
    db.attach_volume(row.id, "named", "/a")
    db.attach_volume(row.id, "f" * 64, "/b")
    assert db.anonymous_volumes_of(row.id) == ["f" * 64]
    assert db.container_volumes(row.id) == [("named", "/a"), ("f" * 64, "/b")]


def test_volume_in_use_is_refused(db):
    db.insert_volume("data")
    web, worker = make_row("web"), make_row("worker")
    db.insert_container(web)
    db.insert_container(worker)
    db.attach_volume(web.id, "data", "/srv")
    db.attach_volume(worker.id, "data", "/data")
    assert db.volume_users("data") == sorted([web.id, worker.id])
    assert db.container_volumes(web.id) == [("data", "/srv")]
    with pytest.raises(WrongState) as caught:
        db.delete_volume("data")
    assert caught.value.detail == (f"volume is in use by container(s) web ({web.id[:12]}), "
                                   f"worker ({worker.id[:12]})")
    assert db.get_volume("data").name == "data"
    # deleting a container drops its links (ON DELETE CASCADE)
    db.delete_container(web.id)
    db.delete_container(worker.id)
    assert db.volume_users("data") == []
    db.delete_volume("data")
    with pytest.raises(NotFound):
        db.get_volume("data")
    with pytest.raises(NotFound):
        db.delete_volume("data")


def test_attach_volume_errors(db):
    db.insert_volume("data")
    row = make_row("ctr")
    db.insert_container(row)
    with pytest.raises(NotFound):
        db.attach_volume(row.id, "missing", "/x")
    with pytest.raises(NotFound):
        db.attach_volume("0" * 64, "data", "/x")
    db.attach_volume(row.id, "data", "/x")
    with pytest.raises(AlreadyExists, match="already has a volume at /x"):
        db.attach_volume(row.id, "data", "/x")


# --- transactions --------------------------------------------------------------------------


def test_transaction_commits(db):
    with db.transaction():
        db.insert_container(make_row("kept"))
    assert db.name_in_use("kept")


def test_transaction_rolls_back_on_exception(db):
    with pytest.raises(RuntimeError), db.transaction():
        db.insert_container(make_row("lost"))
        db.insert_volume("lostvol")
        raise RuntimeError("boom")
    assert not db.name_in_use("lost")
    with pytest.raises(NotFound):
        db.get_volume("lostvol")
    assert not db._connection.in_transaction


def test_nested_transaction_joins_outer(db):
    with pytest.raises(RuntimeError), db.transaction():
        with db.transaction():
            db.insert_container(make_row("inner"))
        assert db._connection.in_transaction  # the inner block did not commit
        raise RuntimeError("boom")
    assert not db.name_in_use("inner")


def test_transaction_blocks_other_writer(db_path, db):
    other = Database(db_path)
    other._connection.execute("PRAGMA busy_timeout = 0")
    try:
        with db.transaction():
            with pytest.raises(sqlite3.OperationalError, match="locked"), other.transaction():
                pass
            # readers are not blocked in WAL mode
            assert other.list_containers(all_states=True) == []
    finally:
        other.close()


def _increment_restart_count(path: str, container_id: str, times: int) -> None:
    database = Database(path)
    for _ in range(times):
        with database.transaction():
            row = database.get_container(container_id)
            database.update_container(container_id, restart_count=row.restart_count + 1)
    database.close()


def test_concurrent_writers_lose_no_update(db_path, db):
    row = make_row("counter")
    db.insert_container(row)
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 1
            try:
                _increment_restart_count(db_path, row.id, 200)
                code = 0
            except BaseException as error:
                print(f"child failed: {error!r}", file=sys.stderr)
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert db.get_container(row.id).restart_count == 400


@pytest.mark.parametrize("round_number", range(5))
def test_concurrent_first_open_migrates_once(tmp_path, round_number):
    # A fresh file opened by four engines at once: one switches it to WAL and migrates.
    path = str(tmp_path / f"race{round_number}.db")
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                Database(path).close()
                code = 0
            except BaseException as error:
                print(f"child failed: {error!r}", file=sys.stderr)
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    with Database(path) as database:
        assert database.schema_version() == len(MIGRATIONS)


# --- ids, names, times ---------------------------------------------------------------------


def test_new_container_id():
    ids = {new_container_id() for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        assert len(value) == 64
        assert set(value) <= set("0123456789abcdef")


def test_generate_name_format():
    for _ in range(50):
        name = generate_name(lambda _name: False)
        adjective, _, surname = name.partition("_")
        assert adjective in dbmod._ADJECTIVES
        assert surname in dbmod._SURNAMES
        assert name != "boring_wozniak"
        assert container_name(name) == name


def test_generate_name_retries_then_adds_a_digit():
    tried: list[str] = []

    def taken(name: str) -> bool:
        tried.append(name)
        return len(tried) <= 7

    name = generate_name(taken)
    assert len(tried) == 8
    assert not any(c.isdigit() for c in "".join(tried[:5]))
    assert name[-1].isdigit()
    assert name.rstrip("0123456789").partition("_")[2] in dbmod._SURNAMES


def test_generate_name_gives_up():
    with pytest.raises(AlreadyExists):
        generate_name(lambda _name: True)


def test_now_rfc3339_format():
    stamp = now_rfc3339()
    assert len(stamp) == 30
    assert stamp[4] == "-" and stamp[10] == "T" and stamp[19] == "." and stamp.endswith("Z")
    assert stamp[20:29].isdigit()


def test_module_imports_are_cheap():
    assert_cheap_imports("tsubo.engine.db")


def assert_cheap_imports(module: str) -> None:
    """Importing *module* (on the ``tsubo run`` hot path) loads nothing slow."""
    src = os.path.dirname(os.path.dirname(os.path.dirname(dbmod.__file__)))
    code = (f"import sys; sys.path.insert(0, {src!r}); import {module}; "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-S", "-c", code], check=True,
                                capture_output=True, text=True).stdout.split())
    heavy = {"json", "typing", "dataclasses", "enum", "re", "pathlib", "argparse", "random"}
    assert module in loaded
    assert not loaded & heavy
