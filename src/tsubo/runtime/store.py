"""The runtime's state directory: one folder per container under ``--root``.

Layout, per container ``<root>/<id>/``:

- ``state.json`` — the :class:`ContainerRecord`, written atomically (temp file, rename)
  so a reader never sees half a record, and a crash leaves the old one or the new;
- ``cleanup.json`` — the :class:`CleanupRecord`: only what ``delete --force`` needs to kill
  the container's init and remove its cgroup (init pid + start time, cgroup directories),
  written with every ``state.json``, so a state file that is garbage, empty, a symlink,
  nested 100,000 deep or huge does not leave a running container nobody can remove;
- ``exec.fifo`` — the create/start rendezvous: it exists while the container is "created";
- the directory itself is created with mkdir(2), which fails if it exists: that is what
  makes a second ``create`` with the same ID fail without touching the first.

Container IDs are validated here (``[A-Za-z0-9_+.-]``, no ``.``/``..``, at most 255 bytes)
before they are ever joined to a path. Records are read through :func:`read_record`:
``O_NOFOLLOW|O_NONBLOCK``, regular files of bounded size only, parsed by the one JSON
reader (:mod:`tsubo.jsonwire`, depth and size limits); container folders that are
symlinks are neither listed nor entered.
"""

from __future__ import annotations

import os

from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/run/tsubo-runtime"
STATE_FILE = "state.json"
CLEANUP_FILE = "cleanup.json"
EXEC_FIFO = "exec.fifo"
_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+.-")
MAX_ID_LENGTH = 255
#: a state record holds the container's config.json (at most
#: :data:`tsubo.oci.runtime_spec.MAX_CONFIG_BYTES`) and a little more
MAX_STATE_BYTES = (16 << 20) + (64 << 10)
MAX_CLEANUP_BYTES = 64 << 10
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def validate_id(container_id: str) -> str:
    """Return *container_id* if it is safe to use as a directory name, else raise."""
    if not container_id:
        raise InvalidArgument("check container id", '""', detail="must not be empty")
    if len(container_id) > MAX_ID_LENGTH:
        raise InvalidArgument("check container id", f"{container_id[:32]}...",
                              detail=f"is longer than {MAX_ID_LENGTH} characters")
    if container_id in (".", "..") or not _ID_CHARACTERS.issuperset(container_id):
        raise InvalidArgument("check container id", repr(container_id),
                              detail="may only hold letters, digits and _ + . - "
                              "(and must not be . or ..)")
    return container_id


class ContainerRecord:
    """What the runtime remembers about a container between commands."""

    __slots__ = ("annotations", "bundle", "cgroup", "config", "created", "id", "owner", "pid",
                 "rootfs", "start_time")

    def __init__(self, container_id: str, bundle: str, rootfs: str, config: dict[str, Any],
                 cgroup: dict[str, str], created: str, owner: str = "") -> None:
        self.id = container_id
        self.pid = 0
        self.start_time = 0
        self.bundle = bundle
        self.rootfs = rootfs
        self.config = config
        self.cgroup = cgroup
        self.created = created
        self.owner = owner
        self.annotations: dict[str, str] = config.get("annotations") or {}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "pid": self.pid, "startTime": self.start_time,
            "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
            "owner": self.owner, "cgroup": self.cgroup, "config": self.config,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerRecord:
        record = cls(data["id"], data["bundle"], data["rootfs"], data["config"],
                     data["cgroup"], data["created"], data.get("owner", ""))
        record.pid = int(data["pid"])
        record.start_time = int(data["startTime"])
        return record


class CleanupRecord:
    """What ``delete --force`` needs when ``state.json`` cannot be read: the init's pid
    and start time (0, 0 while the create is under way) and the cgroup directories."""

    __slots__ = ("cgroup", "pid", "start_time")

    def __init__(self, pid: int, start_time: int, cgroup: dict[str, str]) -> None:
        self.pid = pid
        self.start_time = start_time
        self.cgroup = cgroup

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "startTime": self.start_time, "cgroup": self.cgroup}

    @classmethod
    def from_json(cls, data: object) -> CleanupRecord:
        """ValueError unless *data* is a cleanup record."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        pid, start_time, cgroup = data.get("pid"), data.get("startTime"), data.get("cgroup")
        if type(pid) is not int or type(start_time) is not int or pid < 0 or start_time < 0:
            raise ValueError("pid and startTime must be non-negative integers")
        if not isinstance(cgroup, dict) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in cgroup.items()):
            raise ValueError("cgroup must map names to paths")
        return cls(pid, start_time, cgroup)


class StateStore:
    """The folder of container records under one ``--root``."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    @property
    def seccomp_cache(self) -> str:
        """Generated seccomp BPF, keyed by profile (beside the root: never a container ID)."""
        return f"{self.root}.cache/seccomp"

    def directory(self, container_id: str) -> str:
        return f"{self.root}/{validate_id(container_id)}"

    def fifo_path(self, container_id: str) -> str:
        return f"{self.directory(container_id)}/{EXEC_FIFO}"

    def reserve(self, container_id: str) -> str:
        """Create the container's folder; AlreadyExists if the ID is taken."""
        path = self.directory(container_id)
        try:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
        except OSError as error:
            raise TsuboError.from_os_error("create state directory", self.root, error) from None
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise AlreadyExists("create container", container_id,
                                detail="a container with this ID exists") from None
        except OSError as error:
            raise TsuboError.from_os_error("create state directory", path, error) from None
        return path

    def save(self, record: ContainerRecord) -> None:
        """Write the record atomically, its cleanup record first (so a state file always
        has one beside it)."""
        from tsubo import jsonwire

        directory = self.directory(record.id)
        cleanup = CleanupRecord(record.pid, record.start_time, record.cgroup)
        write_atomic(f"{directory}/{CLEANUP_FILE}", jsonwire.dumps(cleanup.to_json()).encode())
        write_atomic(f"{directory}/{STATE_FILE}", jsonwire.dumps(record.to_json()).encode())

    def load(self, container_id: str) -> ContainerRecord:
        """The record of *container_id*; NotFound if there is none, a clear error if corrupt
        (a symlink, not a regular file, too large, too deeply nested, not a record)."""
        path = f"{self.directory(container_id)}/{STATE_FILE}"
        try:
            data = _read_json(path, MAX_STATE_BYTES)
            if not isinstance(data, dict) or not isinstance(data.get("config"), dict) \
                    or not isinstance(data.get("cgroup"), dict):
                raise ValueError("not a container record")
            return ContainerRecord.from_json(data)
        except FileNotFoundError:
            raise NotFound("load container", container_id,
                           detail="container does not exist") from None
        except OSError as error:
            raise TsuboError("load container", container_id, errno=error.errno or 0,
                             detail=f"read state file {path}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise TsuboError("load container", container_id,
                             detail=f"state file {path} is corrupt ({problem_of(error)})",
                             hint="'delete --force' removes it") from None

    def load_cleanup(self, container_id: str) -> CleanupRecord | None:
        """The cleanup record of *container_id*; None if it has none (a create that ended
        before its first record, or a container of an older tsubo-runtime); a clear error
        if it cannot be read or is corrupt."""
        path = f"{self.directory(container_id)}/{CLEANUP_FILE}"
        try:
            return CleanupRecord.from_json(_read_json(path, MAX_CLEANUP_BYTES))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise TsuboError("load container", container_id, errno=error.errno or 0,
                             detail=f"read cleanup record {path}") from None
        except ValueError as error:
            raise TsuboError("load container", container_id,
                             detail=f"cleanup record {path} is corrupt ({problem_of(error)})"
                             ) from None

    def exists(self, container_id: str) -> bool:
        path = self.directory(container_id)
        return os.path.isdir(path) and not os.path.islink(path)

    def remove(self, container_id: str) -> None:
        """Remove the container's folder and all in it; a missing folder is fine, and a
        symlink (or any non-folder) in its place is removed, not followed."""
        import stat

        path = self.directory(container_id)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
                return
            names = os.listdir(path)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(f"{path}/{name}")
            except FileNotFoundError:
                pass
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass

    def ids(self) -> list[str]:
        """IDs of every container folder under the root (sorted; symlinks are not ours)."""
        try:
            with os.scandir(self.root) as entries:
                return sorted(entry.name for entry in entries
                              if entry.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def lock(self, container_id: str) -> int:
        """An exclusive flock on the container's folder; close the returned fd to release."""
        import fcntl

        path = self.directory(container_id)
        try:
            fd = _open_folder(path)
        except FileNotFoundError:
            raise NotFound("load container", container_id,
                           detail="container does not exist") from None
        except NotADirectoryError as error:
            raise TsuboError("load container", container_id, detail=error.strerror or "",
                             hint="'delete --force' removes it") from None
        except OSError as error:
            raise TsuboError.from_os_error("load container", path, error) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def read_record(path: str, limit: int, *, follow_symlinks: bool = False) -> bytes:
    """The bytes of the record file *path*: it and its folder opened ``O_NOFOLLOW`` (a
    symlink is refused, so ``ROOT/alias -> ROOT/other`` cannot pass off another
    container's record), the file ``O_NONBLOCK`` (a FIFO cannot block us), a regular file
    of at most *limit* bytes; else OSError/ValueError saying so. FileNotFoundError when
    there is none. A bundle's config.json is the caller's and may be a symlink:
    *follow_symlinks* for that."""
    import stat

    if follow_symlinks:
        fd = os.open(path, _READ_FLAGS & ~os.O_NOFOLLOW)
    else:
        folder, _, name = path.rpartition("/")
        try:
            dir_fd = _open_folder(folder or "/")
        except NotADirectoryError as error:
            raise ValueError(error.strerror or "not a folder") from None
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as error:
            import errno  # only here: a builtin module, but ~0.1 ms on every command

            if error.errno == errno.ELOOP:
                raise ValueError("a symlink, not followed") from None
            raise
        finally:
            os.close(dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit} bytes")
        data = os.read(fd, info.st_size + 1)
        while info.st_size < len(data) <= limit:  # it grew after fstat: read on, bounded
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _open_folder(path: str) -> int:
    """An fd of the folder *path*, never through a symlink: NotADirectoryError saying
    which it is otherwise (O_DIRECTORY|O_NOFOLLOW fails with ENOTDIR or ELOOP)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        import errno

        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        kind = "a symlink" if os.path.islink(path) else "not a folder"
        raise NotADirectoryError(error.errno, f"{path} is {kind}, not followed") from None


def _read_json(path: str, limit: int) -> object:
    from tsubo import jsonwire

    return jsonwire.loads(read_record(path, limit), path, max_bytes=limit)


def problem_of(error: BaseException) -> str:
    """The problem alone, for a message that names the object itself: a TsuboError's
    detail, else the error's text."""
    if isinstance(error, TsuboError):
        return error.detail or error.message()
    return str(error)


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write *data* to *path* through a temp file and rename(2): readers see the old file
    or the new one, never a part. No fsync: runtime state lives in /run, a tmpfs that does
    not outlive the boot (nor do the processes it describes), so durability would buy
    nothing and costs ~0.5 ms a write on disk-backed roots."""
    temp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.rename(temp, path)
