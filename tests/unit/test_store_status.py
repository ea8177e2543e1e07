"""tsubo.runtime.store (IDs, records, the state folder on a tmp dir) and tsubo.runtime.status."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, TsuboError, WrongState
from tsubo.kernel import procfs
from tsubo.runtime import status
from tsubo.runtime.store import (
    CLEANUP_FILE,
    EXEC_FIFO,
    MAX_ID_LENGTH,
    MAX_STATE_BYTES,
    STATE_FILE,
    ContainerRecord,
    StateStore,
    validate_id,
    write_atomic,
)
from tsubo.state.clock import now_rfc3339 as rfc3339_now

CONFIG = {"ociVersion": "1.2.0", "root": {"path": "rootfs"},
          "annotations": {"org.example/k": "v\u00e9"}}


def record(container_id: str = "web", **fields: object) -> ContainerRecord:
    made = ContainerRecord(container_id, "/srv/bundle", "/srv/bundle/rootfs", dict(CONFIG),
                           {"path": "/tsubo/web", "memory": "/sys/fs/cgroup/memory/tsubo/web"},
                           "2024-01-02T03:04:05.000000006Z", owner="alice")
    for name, value in fields.items():
        setattr(made, name, value)
    return made


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(str(tmp_path / "root"))


# --- validate_id ------------------------------------------------------------------------------


@pytest.mark.parametrize("container_id", [
    "web", "a", "A-b_c.d+e", "0123456789", "...", ".hidden", "x" * MAX_ID_LENGTH, "a..b",
])
def test_valid_ids(container_id: str) -> None:
    assert validate_id(container_id) == container_id


@pytest.mark.parametrize("container_id", [
    ".", "..", "a/b", "../etc", "/abs", "sp ace", "tab\t", "new\nline", "caf\u00e9", "a:b",
    "a*", "nul\x00",
])
def test_invalid_ids(container_id: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_id(container_id)
    assert caught.value.operation == "check container id"
    assert caught.value.object == repr(container_id)
    assert "may only hold letters, digits and _ + . -" in caught.value.detail


def test_empty_id() -> None:
    with pytest.raises(InvalidArgument, match=r'^check container id "": must not be empty$'):
        validate_id("")


def test_too_long_id_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_id("x" * (MAX_ID_LENGTH + 1))
    assert caught.value.object == "x" * 32 + "..."
    assert caught.value.detail == f"is longer than {MAX_ID_LENGTH} characters"


@given(st.text(max_size=20))
def test_property_valid_ids_are_safe_directory_names(text: str) -> None:
    try:
        validate_id(text)
    except InvalidArgument:
        assert not re.fullmatch(r"[A-Za-z0-9_+.-]+", text) or text in (".", "..")
    else:
        assert "/" not in text
        assert text not in ("", ".", "..")
        assert re.fullmatch(r"[A-Za-z0-9_+.-]+", text)


def test_store_paths_validate_the_id(store: StateStore) -> None:
    assert store.directory("web") == f"{store.root}/web"
    assert store.fifo_path("web") == f"{store.root}/web/{EXEC_FIFO}"
    with pytest.raises(InvalidArgument):
        store.directory("../escape")
    with pytest.raises(InvalidArgument):
        store.reserve("..")


# --- ContainerRecord --------------------------------------------------------------------------


def test_record_json_round_trip() -> None:
    original = record(pid=4242, start_time=987654321)
    data = original.to_json()
    assert data == {
        "id": "web", "pid": 4242, "startTime": 987654321, "bundle": "/srv/bundle",
        "rootfs": "/srv/bundle/rootfs", "created": "2024-01-02T03:04:05.000000006Z",
        "owner": "alice", "cgroup": original.cgroup, "config": CONFIG,
    }
    again = ContainerRecord.from_json(json.loads(json.dumps(data)))
    assert again.to_json() == data
    assert again.annotations == {"org.example/k": "v\u00e9"}


def test_record_defaults() -> None:
    made = ContainerRecord("c", "/b", "/b/r", {}, {"path": "/c"}, "now")
    assert (made.pid, made.start_time, made.owner, made.annotations) == (0, 0, "", {})
    data = made.to_json()
    del data["owner"]
    assert ContainerRecord.from_json(data).owner == ""


# --- StateStore -------------------------------------------------------------------------------


def test_reserve_creates_the_root_and_the_folder(store: StateStore) -> None:
    path = store.reserve("web")
    assert path == f"{store.root}/web"
    assert os.path.isdir(path)
    assert os.stat(path).st_mode & 0o777 == 0o711 & ~_umask()
    assert store.exists("web")
    assert not store.exists("other")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_reserve_twice_is_already_exists_and_keeps_the_first(store: StateStore) -> None:
    store.reserve("web")
    store.save(record(pid=7))
    with pytest.raises(AlreadyExists) as caught:
        store.reserve("web")
    assert str(caught.value) == "create container web: a container with this ID exists"
    assert store.load("web").pid == 7


def test_reserve_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(TsuboError) as caught:
        StateStore(str(tmp_path / "file" / "root")).reserve("web")
    assert type(caught.value) is TsuboError
    assert caught.value.operation == "create state directory"
    assert caught.value.object == f"{tmp_path}/file/root"  # the root could not be made
    assert caught.value.errno != 0


def test_reserve_with_a_root_that_is_a_file_is_not_already_exists(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(TsuboError) as caught:
        StateStore(str(tmp_path / "file")).reserve("web")
    assert not isinstance(caught.value, AlreadyExists)
    assert caught.value.operation == "create state directory"


def test_save_then_load(store: StateStore) -> None:
    store.reserve("web")
    saved = record(pid=123, start_time=456)
    store.save(saved)
    state_file = Path(store.directory("web")) / STATE_FILE
    assert state_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(state_file.read_text()) == saved.to_json()
    # no temp file left; the cleanup record beside it
    assert sorted(p.name for p in state_file.parent.iterdir()) == [CLEANUP_FILE, STATE_FILE]
    loaded = store.load("web")
    assert loaded.to_json() == saved.to_json()
    store.save(record(pid=124, start_time=456))
    assert store.load("web").pid == 124
    cleanup = store.load_cleanup("web")
    assert cleanup is not None
    assert (cleanup.pid, cleanup.start_time, cleanup.cgroup) == (124, 456, saved.cgroup)


def test_load_of_a_missing_container_is_not_found(store: StateStore) -> None:
    with pytest.raises(NotFound, match=r"^load container ghost: container does not exist$"):
        store.load("ghost")
    store.reserve("half")  # reserved, never saved
    with pytest.raises(NotFound):
        store.load("half")


@pytest.mark.parametrize("content", [
    b"", b"{", b"[1, 2]", b'"text"', b'{"id": "web"}', b"\xff\xfe",
    b'{"id":"web","bundle":"/b","rootfs":"/r","config":{},"cgroup":{},"created":"x",'
    b'"pid":"many","startTime":0}',
])
def test_corrupt_state_file_is_a_clear_error(store: StateStore, content: bytes) -> None:
    store.reserve("web")
    path = Path(store.directory("web")) / STATE_FILE
    path.write_bytes(content)
    with pytest.raises(TsuboError) as caught:
        store.load("web")
    error = caught.value
    assert type(error) is TsuboError
    assert (error.operation, error.object) == ("load container", "web")
    assert error.detail.startswith(f"state file {path} is corrupt (")
    assert error.hint == "'delete --force' removes it"


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("content", "problem"), [
    (DEEP, "nested deeper than 64 levels"),
    (b'{"config": ' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
    (b" " * (MAX_STATE_BYTES + 1), f"larger than {MAX_STATE_BYTES} bytes"),
    (b'"' + b"x" * MAX_STATE_BYTES + b'"', f"larger than {MAX_STATE_BYTES} bytes"),
])
def test_deep_or_huge_state_file_is_one_clear_line(store: StateStore, content: bytes,
                                                    problem: str) -> None:
    store.reserve("web")
    path = Path(store.directory("web")) / STATE_FILE
    path.write_bytes(content)
    with pytest.raises(TsuboError) as caught:
        store.load("web")
    assert str(caught.value) == (f"load container web: state file {path} is corrupt "
                                 f"({problem}) (hint: 'delete --force' removes it)")


def test_symlinked_state_file_is_not_followed(store: StateStore, tmp_path: Path) -> None:
    store.reserve("other")
    store.save(record("other", pid=7, start_time=8))
    store.reserve("web")
    link = Path(store.directory("web")) / STATE_FILE
    link.symlink_to(Path(store.directory("other")) / STATE_FILE)  # a valid record, elsewhere
    with pytest.raises(TsuboError, match=r"is corrupt \(a symlink, not followed\)"):
        store.load("web")
    cleanup_link = Path(store.directory("web")) / CLEANUP_FILE
    cleanup_link.symlink_to(Path(store.directory("other")) / CLEANUP_FILE)
    with pytest.raises(TsuboError, match=r"cleanup record .* is corrupt \(a symlink"):
        store.load_cleanup("web")


def test_fifo_or_directory_as_state_file_is_refused_without_blocking(store: StateStore) -> None:
    store.reserve("web")
    path = Path(store.directory("web")) / STATE_FILE
    os.mkfifo(path)  # a blocking open would hang here: nobody writes to it
    with pytest.raises(TsuboError, match=r"is corrupt \(not a regular file\)"):
        store.load("web")
    path.unlink()
    path.mkdir()
    with pytest.raises(TsuboError, match=r"is corrupt \(not a regular file\)"):
        store.load("web")


def test_cleanup_record_missing_or_corrupt(store: StateStore) -> None:
    store.reserve("web")
    assert store.load_cleanup("web") is None
    path = Path(store.directory("web")) / CLEANUP_FILE
    for content, problem in [(b"", "not valid JSON"), (DEEP, "larger than 65536 bytes"),
                             (b"[" * 1000 + b"]" * 1000, "nested deeper than 64 levels"),
                             (b'{"pid": -1, "startTime": 0, "cgroup": {}}', "non-negative"),
                             (b'{"pid": 1, "startTime": 2, "cgroup": {"path": 3}}',
                              "cgroup must map names to paths"), (b"[]", "not an object")]:
        path.write_bytes(content)
        with pytest.raises(TsuboError) as caught:
            store.load_cleanup("web")
        assert caught.value.detail.startswith(f"cleanup record {path} is corrupt (")
        assert problem in caught.value.detail


def test_symlinked_container_folder_is_neither_listed_nor_entered(store: StateStore,
                                                                   tmp_path: Path) -> None:
    store.reserve("real")
    store.save(record("real"))
    Path(store.root, "alias").symlink_to(store.directory("real"))
    assert store.ids() == ["real"]
    assert not store.exists("alias")
    with pytest.raises(TsuboError, match=r"alias is a symlink, not followed"):
        store.lock("alias")
    with pytest.raises(TsuboError, match=r"alias is a symlink, not followed"):
        store.load("alias")  # never the record behind it
    store.remove("alias")  # the link goes, what it points at stays
    assert store.ids() == ["real"] and store.load("real").id == "real"
    assert not Path(store.root, "alias").exists()


def test_state_file_with_a_non_object_config_is_a_clear_error(store: StateStore) -> None:
    store.reserve("web")
    data = record().to_json()
    data["config"] = None
    (Path(store.directory("web")) / STATE_FILE).write_text(json.dumps(data))
    with pytest.raises(TsuboError, match="is corrupt"):
        store.load("web")


def test_remove(store: StateStore) -> None:
    store.reserve("web")
    store.save(record())
    os.mkfifo(store.fifo_path("web"))
    store.remove("web")
    assert not store.exists("web")
    assert os.listdir(store.root) == []
    store.remove("web")  # a missing folder is fine
    store.remove("never-was")


def test_ids_lists_container_folders_sorted(store: StateStore) -> None:
    assert store.ids() == []  # no root yet
    for name in ("zeta", "alpha", "m.1"):
        store.reserve(name)
    Path(store.root, "stray-file").write_text("")
    assert store.ids() == ["alpha", "m.1", "zeta"]
    store.remove("m.1")
    assert store.ids() == ["alpha", "zeta"]


def test_lock_of_a_missing_container(store: StateStore) -> None:
    with pytest.raises(NotFound):
        store.lock("ghost")
    store.reserve("web")
    fd = store.lock("web")
    os.close(fd)


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(str(target), b"first version, long")
    write_atomic(str(target), b"second", mode=0o644)
    assert target.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["f"]


def test_rfc3339_now_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", rfc3339_now())


# --- status -----------------------------------------------------------------------------------

ALL = (status.CREATING, status.CREATED, status.RUNNING, status.PAUSED, status.STOPPED)
ALLOWED = {
    "start": {status.CREATED},
    "kill": {status.CREATED, status.RUNNING, status.PAUSED},
    "delete": {status.STOPPED, status.CREATING},
    "pause": {status.RUNNING},
    "resume": {status.PAUSED},
    "exec": {status.CREATED, status.RUNNING},
}


@pytest.mark.parametrize("operation", sorted(ALLOWED))
@pytest.mark.parametrize("state", ALL)
def test_check_allows_exactly_the_table(operation: str, state: str) -> None:
    if state in ALLOWED[operation]:
        status.check(operation, "web", state)
        return
    with pytest.raises(WrongState) as caught:
        status.check(operation, "web", state)
    assert caught.value.operation == f"{operation} container"
    assert caught.value.object == "web"


@pytest.mark.parametrize(("operation", "state", "message"), [
    ("start", "running", "start container web: container is running, start needs it created"),
    ("kill", "stopped",
     "kill container web: container not running, kill needs it created or running or paused"),
    ("delete", "running",
     "delete container web: container is running, delete needs it stopped or creating"),
    ("resume", "running", "resume container web: container is running, resume needs it paused"),
])
def test_wrong_state_message(operation: str, state: str, message: str) -> None:
    with pytest.raises(WrongState) as caught:
        status.check(operation, "web", state)
    assert str(caught.value) == message


def test_current_status_creating_without_a_pid(store: StateStore) -> None:
    assert status.current_status(store, record(pid=0)) == status.CREATING


def test_current_status_stopped_when_the_pid_is_gone(store: StateStore) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert status.current_status(store, record(pid=child.pid, start_time=1)) == status.STOPPED


def test_current_status_stopped_when_the_pid_was_reused(store: StateStore) -> None:
    stat = procfs.read_stat(os.getpid())
    assert stat is not None
    reused = record(pid=os.getpid(), start_time=stat.start_time + 1)
    assert status.current_status(store, reused) == status.STOPPED


def test_current_status_created_while_the_fifo_exists(store: StateStore) -> None:
    stat = procfs.read_stat(os.getpid())
    assert stat is not None
    store.reserve("web")
    os.mkfifo(store.fifo_path("web"))
    alive = record(pid=os.getpid(), start_time=stat.start_time)
    assert status.current_status(store, alive) == status.CREATED
