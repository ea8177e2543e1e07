"""What a lab made, as one JSON file per lab: ``<data root>/labs/<name>.json``.

What it owns
    The lab records and their folder. A record names the lab's containers, the netns pins,
    bridges and host-side veth ends it made, and its management network (and whether the
    lab created it); it is written *before* each of those is made (as the network ledger
    is), so ``lab destroy`` and ``system gc`` after a crash at any step remove exactly the
    lab's objects and nothing else. ``state`` is ``deploying`` until the deploy finished;
    ``deployer`` (pid and start time) says whether that deploy still runs.

Decisions
    * A file per lab rather than a table: no schema migration for a feature that sits
      beside the engine, and ``cat`` shows what a lab holds. Written atomically (temp file
      and rename); read with the bounded JSON reader.
    * One command at a time per lab: ``deploy``, ``apply``, ``destroy`` and gc hold an
      exclusive ``flock`` on ``labs/.<name>.lock`` (not waiting: a second command is told
      the lab is busy). The lock files stay (a few bytes; removing one another command
      may hold is a race).
    * Kernel objects in the host's namespace (bridges, host veth ends) are also in the
      network ledger with owner ``lab:<name>``; gc keeps them while the record exists.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.paths import EnginePaths

DEPLOYING = "deploying"
DEPLOYED = "deployed"
OWNER_PREFIX = "lab:"


@dataclass
class LabRecord:
    name: str
    path: str
    digest: str
    state: str = DEPLOYING
    deployer_pid: int = 0
    deployer_start: int = 0
    #: node -> container name, in deploy order
    containers: dict[str, str] = field(default_factory=dict)
    #: netns pins the lab made (nodes without a management network)
    pins: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    mgmt_network: str = ""
    mgmt_created: bool = False
    #: what ``apply`` compares a new version of the file with (``manager._remember``)
    shape_mgmt: str = ""
    node_digests: dict[str, str] = field(default_factory=dict)
    links: list[list[str | int]] = field(default_factory=list)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)
    sysctls: dict[str, list[str]] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return owner_of(self.name)

    def deployer_alive(self) -> bool:
        from tsubo.kernel.procfs import is_alive

        return bool(self.deployer_pid) and is_alive(self.deployer_pid, self.deployer_start)


def owner_of(lab_name: str) -> str:
    return f"{OWNER_PREFIX}{lab_name}"


def labs_dir(paths: EnginePaths) -> str:
    return f"{paths.data}/labs"


def _file(paths: EnginePaths, name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        from tsubo.errors import InvalidArgument

        raise InvalidArgument("find lab", name, detail="not a lab name")
    return f"{labs_dir(paths)}/{name}.json"


class LabLock:
    """``with LabLock(paths, name):`` this process works on lab *name* alone (WrongState
    when another holds it)."""

    def __init__(self, paths: EnginePaths, name: str) -> None:
        self.path = f"{labs_dir(paths)}/.{_file(paths, name).rsplit('/', 1)[1]}.lock"
        self.name = name
        self.fd = -1

    def __enter__(self) -> LabLock:
        import fcntl

        from tsubo.errors import WrongState

        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                          0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            raise WrongState("lock lab", self.name,
                             detail="another tsubo command is working on it") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def save(paths: EnginePaths, record: LabRecord) -> None:
    from tsubo import jsonwire
    from tsubo.runtime.store import write_atomic

    os.makedirs(labs_dir(paths), mode=0o700, exist_ok=True)
    write_atomic(_file(paths, record.name), jsonwire.dumps(asdict(record)).encode())


def load(paths: EnginePaths, name: str) -> LabRecord | None:
    from tsubo import jsonwire
    from tsubo.errors import TsuboError

    try:
        with open(_file(paths, name), "rb") as stream:
            data = jsonwire.loads(stream.read(1 << 24).decode())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise TsuboError("read lab record", name, detail="not a JSON object")
    known = {key: value for key, value in data.items()
             if key in LabRecord.__dataclass_fields__}
    try:
        return LabRecord(**known)
    except TypeError as error:
        raise TsuboError("read lab record", name, detail=str(error)) from None


def remove(paths: EnginePaths, name: str) -> None:
    try:
        os.unlink(_file(paths, name))
    except FileNotFoundError:
        pass


def names(paths: EnginePaths) -> list[str]:
    try:
        entries = os.listdir(labs_dir(paths))
    except FileNotFoundError:
        return []
    return sorted(entry[:-5] for entry in entries
                  if entry.endswith(".json") and not entry.startswith("."))


def live_owners(paths: EnginePaths) -> set[str]:
    """Ledger owners of the labs that have a record (gc keeps their objects)."""
    return {owner_of(name) for name in names(paths)}
