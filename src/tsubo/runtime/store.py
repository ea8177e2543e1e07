"""The runtime's state directory: one folder per container under ``--root``.

Layout, per container ``<root>/<id>/``:

- ``state.json`` — the :class:`ContainerRecord`, written atomically (temp file, rename)
  so a reader never sees half a record, and a crash leaves the old one or the new;
- ``exec.fifo`` — the create/start rendezvous: it exists while the container is "created";
- the directory itself is created with mkdir(2), which fails if it exists: that is what
  makes a second ``create`` with the same ID fail without touching the first.

Container IDs are validated here (``[A-Za-z0-9_+.-]``, no ``.``/``..``, at most 255 bytes)
before they are ever joined to a path.
"""

from __future__ import annotations

import os

from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/run/tsubo-runtime"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+.-")
MAX_ID_LENGTH = 255


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
        """Write the record atomically."""
        from tsubo.oci import jsonwire

        write_atomic(f"{self.directory(record.id)}/{STATE_FILE}",
                     jsonwire.dumps(record.to_json()).encode())

    def load(self, container_id: str) -> ContainerRecord:
        """The record of *container_id*; NotFound if there is none, a clear error if corrupt."""
        from tsubo.oci import jsonwire

        path = f"{self.directory(container_id)}/{STATE_FILE}"
        try:
            with open(path, "rb") as state_file:
                raw = state_file.read()
        except FileNotFoundError:
            raise NotFound("load container", container_id,
                           detail="container does not exist") from None
        try:
            data = jsonwire.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("config"), dict) \
                    or not isinstance(data.get("cgroup"), dict):
                raise ValueError("not a container record")
            return ContainerRecord.from_json(data)
        except (ValueError, KeyError, TypeError) as error:
            raise TsuboError("load container", container_id,
                             detail=f"state file {path} is corrupt ({error})",
                             hint="'delete --force' removes it") from None

    def exists(self, container_id: str) -> bool:
        return os.path.isdir(self.directory(container_id))

    def remove(self, container_id: str) -> None:
        """Remove the container's folder and all in it; a missing folder is fine."""
        path = self.directory(container_id)
        try:
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
        """IDs of every container folder under the root (sorted)."""
        try:
            return sorted(name for name in os.listdir(self.root)
                          if os.path.isdir(f"{self.root}/{name}"))
        except FileNotFoundError:
            return []

    def lock(self, container_id: str) -> int:
        """An exclusive flock on the container's folder; close the returned fd to release."""
        import fcntl

        path = self.directory(container_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound("load container", container_id,
                           detail="container does not exist") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


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


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with nanoseconds, as runc's ``created`` field."""
    import time

    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
